"""Assemble a Unified Kernel Image: a systemd-stub with our sections appended.

Layout rules (as in the UKI specification and ukify): new section headers go into the stub's
spare header room; raw data is aligned to FileAlignment and addresses to SectionAlignment;
names are at most 8 characters; `.linux` goes last because the kernel may grow in place;
SizeOfImage covers every section; the stub's trailing COFF symbol table is dropped.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
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


@dataclass(frozen=True)
class Placement:
    """Where one added section's bytes go in the file."""

    name: str
    raw_pointer: int
    size: int  # bytes of data (VirtualSize)
    raw_size: int  # size rounded up to FileAlignment; the rest is zero padding


@dataclass(frozen=True)
class Layout:
    """A UKI before its section data: the stub's bytes with the new section headers written
    in (PE checksum 0), and where every section's data goes. `stream` turns it into bytes."""

    head: bytes
    placements: tuple[Placement, ...]
    size: int  # the file size of the whole UKI
    checksum_offset: int  # of the PE checksum field in `head`


def _check_stub(stub: bytes, arch: Arch) -> pe.PEImage:
    img = pe.parse(stub, "stub")
    if img.machine != arch.pe_machine:
        got = pe.MACHINE_NAMES.get(img.machine, hex(img.machine))
        raise UKIError(f"stub: built for {got}, not for {arch.name}")
    return img


def layout(stub_bytes: bytes, sections: list[tuple[str, int]], arch: Arch) -> Layout:
    """Lay out `sections` ((name, size), in SECTION_ORDER, `.linux` last) on the stub.

    Holds no section data, so a caller can stream gigabytes through `stream` while only the
    stub (~100 KB) sits in memory. Raises UKIError on anything that would not boot."""
    stub = _check_stub(stub_bytes, arch)
    names = [name for name, _ in sections]
    if names != sorted(names, key=SECTION_ORDER.index) or ".linux" not in names:
        raise UKIError(f"sections {names}: expected a subsequence of {SECTION_ORDER} "
                       "ending in .linux")
    for name in names:
        if stub.section(name) is not None:
            raise UKIError(f"stub already has a {name} section (is it a UKI already?)")
    room = stub.size_of_headers - stub.section_table_end
    need = pe.SECTION_HEADER_SIZE * len(sections)
    if room < need:
        raise UKIError(
            f"stub header has room for {room // 40} new sections, {len(sections)} needed")

    # Cut the stub at the end of its last section's raw data: drops the COFF symbol table.
    raw_end = max(s.raw_pointer + s.raw_size for s in stub.sections)
    head = bytearray(stub_bytes[:raw_end])
    struct.pack_into("<II", head, stub.pe_offset + 12, 0, 0)

    va = pe.align(
        max(s.virtual_address + s.virtual_size for s in stub.sections),
        stub.section_alignment,
    )
    header_at = stub.section_table_end
    end = len(head)
    placements = []
    for name, size in sections:
        raw_ptr = pe.align(end, stub.file_alignment)
        raw_size = pe.align(size, stub.file_alignment)
        struct.pack_into(
            "<8sIIIIIIHHI", head, header_at,
            name.encode(), size, va, raw_size, raw_ptr, 0, 0, 0, 0,
            pe.IMAGE_SCN_CNT_INITIALIZED_DATA | pe.IMAGE_SCN_MEM_READ,
        )
        placements.append(Placement(name, raw_ptr, size, raw_size))
        header_at += pe.SECTION_HEADER_SIZE
        va = pe.align(va + size, stub.section_alignment)
        end = raw_ptr + raw_size

    struct.pack_into("<H", head, stub.pe_offset + 6, stub.n_sections + len(sections))
    struct.pack_into("<I", head, stub.opt_offset + pe.PEImage.OPT_SIZE_OF_IMAGE, va)
    checksum_offset = stub.opt_offset + pe.PEImage.OPT_CHECKSUM
    struct.pack_into("<I", head, checksum_offset, 0)
    return Layout(bytes(head), tuple(placements), end, checksum_offset)


def stream(lay: Layout, sources: dict[str, Iterable[bytes | memoryview]]
           ) -> Iterator[bytes | memoryview]:
    """The UKI's bytes in file order: `lay.head`, then each section's chunks from `sources`
    with the zero padding between. A source that yields more or fewer bytes than its
    section was laid out for raises UKIError (a file that changed under us)."""
    yield lay.head
    at = len(lay.head)
    for p in lay.placements:
        if p.raw_pointer > at:
            yield bytes(p.raw_pointer - at)
        got = 0
        for chunk in sources[p.name]:
            got += len(chunk)
            if got > p.size:
                break
            yield chunk
        if got != p.size:
            raise UKIError(f"{p.name}: source gave {got} bytes, laid out for {p.size}")
        if p.raw_size > p.size:
            yield bytes(p.raw_size - p.size)
        at = p.raw_pointer + p.raw_size


def assemble(parts: UKIParts, arch: Arch) -> bytes:
    """Return the UKI bytes; raise UKIError on anything that would not boot."""
    if len(parts.cmdline.encode()) >= MAX_CMDLINE:
        raise UKIError(
            f"command line is {len(parts.cmdline.encode())} bytes; the limit is {MAX_CMDLINE - 1}"
        )
    check_kernel(parts.linux, arch)
    stub = _check_stub(parts.stub, arch)
    payload: dict[str, bytes | None] = {
        ".osrel": parts.osrel.encode(),
        ".cmdline": parts.cmdline.encode(),
        ".uname": parts.uname.encode() if parts.uname else None,
        ".initrd": parts.initrd,
        ".linux": parts.linux,
    }
    sections = [(name, data) for name in SECTION_ORDER if (data := payload[name]) is not None]
    lay = layout(parts.stub, [(name, len(data)) for name, data in sections], arch)
    out = bytearray()
    for chunk in stream(lay, {name: [data] for name, data in sections}):
        out += chunk
    struct.pack_into("<I", out, lay.checksum_offset, _pe_checksum(out, stub))
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
