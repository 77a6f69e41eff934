"""Assemble a Unified Kernel Image: a systemd-stub with our sections appended.

Layout rules (as in the UKI specification and ukify): new section headers go into the stub's
spare header room; raw data is aligned to FileAlignment and addresses to SectionAlignment;
names are at most 8 characters; `.linux` goes last because the kernel may grow in place;
SizeOfImage covers every section; the stub's trailing COFF symbol table is dropped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cloudboot import pe
from cloudboot.arch import Arch

# Order of the sections we add; `.linux` must remain last.
SECTION_ORDER = (".osrel", ".cmdline", ".uname", ".initrd", ".linux")
# The kernel reads at most this many bytes of command line on x86 (COMMAND_LINE_SIZE).
MAX_CMDLINE = 2048


class UKIError(ValueError):
    pass


@dataclass(frozen=True)
class UKIParts:
    stub: bytes
    linux: bytes
    initrd: bytes
    cmdline: str
    osrel: str
    uname: str | None = None


def check_kernel(kernel: bytes, arch: Arch, what: str = "kernel") -> None:
    """Refuse anything that is not an EFI-stub kernel image for `arch`."""
    try:
        img = pe.parse(kernel, what)
    except pe.PEError as e:
        raise UKIError(
            f"{e}; an EFI-stub kernel (vmlinuz/Image with CONFIG_EFI_STUB) is needed") from None
    if img.machine != arch.pe_machine:
        got = pe.MACHINE_NAMES.get(img.machine, hex(img.machine))
        raise UKIError(f"{what}: EFI-stub kernel for {got}, not for {arch.name}")


def assemble(parts: UKIParts, arch: Arch) -> bytes:
    """Return the UKI bytes; raise UKIError on anything that would not boot."""
    if len(parts.cmdline.encode()) >= MAX_CMDLINE:
        raise UKIError(
            f"command line is {len(parts.cmdline.encode())} bytes; the limit is {MAX_CMDLINE - 1}"
        )
    check_kernel(parts.linux, arch)
    stub = pe.parse(parts.stub, "stub")
    if stub.machine != arch.pe_machine:
        got = pe.MACHINE_NAMES.get(stub.machine, hex(stub.machine))
        raise UKIError(f"stub: built for {got}, not for {arch.name}")
    payload: dict[str, bytes | None] = {
        ".osrel": parts.osrel.encode(),
        ".cmdline": parts.cmdline.encode(),
        ".uname": parts.uname.encode() if parts.uname else None,
        ".initrd": parts.initrd,
        ".linux": parts.linux,
    }
    sections = [(name, data) for name in SECTION_ORDER if (data := payload[name]) is not None]
    for name, _ in sections:
        if stub.section(name) is not None:
            raise UKIError(f"stub already has a {name} section (is it a UKI already?)")
    room = stub.size_of_headers - stub.section_table_end
    need = pe.SECTION_HEADER_SIZE * len(sections)
    if room < need:
        raise UKIError(
            f"stub header has room for {room // 40} new sections, {len(sections)} needed")

    # Cut the stub at the end of its last section's raw data: drops the COFF symbol table.
    raw_end = max(s.raw_pointer + s.raw_size for s in stub.sections)
    out = bytearray(parts.stub[:raw_end])
    struct.pack_into("<II", out, stub.pe_offset + 12, 0, 0)

    va = pe.align(
        max(s.virtual_address + s.virtual_size for s in stub.sections),
        stub.section_alignment,
    )
    header_at = stub.section_table_end
    for name, data in sections:
        raw_ptr = pe.align(len(out), stub.file_alignment)
        raw_size = pe.align(len(data), stub.file_alignment)
        out += b"\0" * (raw_ptr - len(out))
        out += data + b"\0" * (raw_size - len(data))
        struct.pack_into(
            "<8sIIIIIIHHI", out, header_at,
            name.encode(), len(data), va, raw_size, raw_ptr, 0, 0, 0, 0,
            pe.IMAGE_SCN_CNT_INITIALIZED_DATA | pe.IMAGE_SCN_MEM_READ,
        )
        header_at += pe.SECTION_HEADER_SIZE
        va = pe.align(va + len(data), stub.section_alignment)

    struct.pack_into("<H", out, stub.pe_offset + 6, stub.n_sections + len(sections))
    struct.pack_into("<I", out, stub.opt_offset + pe.PEImage.OPT_SIZE_OF_IMAGE, va)
    struct.pack_into("<I", out, stub.opt_offset + pe.PEImage.OPT_CHECKSUM, 0)
    struct.pack_into("<I", out, stub.opt_offset + pe.PEImage.OPT_CHECKSUM, _pe_checksum(out, stub))
    result = bytes(out)
    problems = pe.check_uki(result, arch.pe_machine)
    if problems:
        raise UKIError("assembled UKI fails the PE check: " + "; ".join(problems))
    return result


def _pe_checksum(data: bytearray, img: pe.PEImage) -> int:
    """The PE image checksum (ones'-complement sum of 16-bit words plus the file length),
    computed with the checksum field zeroed, as pefile and the Windows loader do."""
    n = len(data)
    padded = bytes(data) + (b"\0" if n % 2 else b"")
    total = sum(memoryview(padded).cast("H"))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (total + n) & 0xFFFFFFFF


def osrel_text(name: str = "cloudboot", version: str = "0") -> str:
    return (
        f'NAME="{name}"\nID={name}\nPRETTY_NAME="cloudboot bootstrap {version}"\n'
        f'VERSION_ID="{version}"\n'
    )
