"""A minimal PE/COFF reader and the checks a UKI must pass (standard library only)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

IMAGE_SCN_CNT_INITIALIZED_DATA = 0x00000040
IMAGE_SCN_MEM_READ = 0x40000000
PE32_MAGIC = 0x10B
PE32PLUS_MAGIC = 0x20B
SECTION_HEADER_SIZE = 40

MACHINE_NAMES = {
    0x014C: "i386", 0x8664: "x86_64", 0xAA64: "aarch64", 0x01C2: "armv7",
    0x5064: "riscv64", 0x6264: "loongarch64",
}


class PEError(ValueError):
    pass


@dataclass
class Section:
    name: str
    virtual_address: int
    virtual_size: int
    raw_pointer: int
    raw_size: int
    characteristics: int
    header_offset: int  # where this section's header sits in the file


@dataclass
class PEImage:
    data: bytes
    pe_offset: int
    machine: int
    n_sections: int
    symtab_pointer: int
    n_symbols: int
    opt_offset: int
    opt_size: int
    magic: int
    section_alignment: int
    file_alignment: int
    size_of_image: int
    size_of_headers: int
    sections: list[Section]

    @property
    def section_table_end(self) -> int:
        return self.opt_offset + self.opt_size + SECTION_HEADER_SIZE * self.n_sections

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)

    def section_data(self, name: str) -> bytes | None:
        s = self.section(name)
        if s is None:
            return None
        size = min(s.raw_size, s.virtual_size) if s.virtual_size else s.raw_size
        return self.data[s.raw_pointer : s.raw_pointer + size]

    # Offsets of fields within the optional header, same for PE32 and PE32+.
    OPT_SIZE_OF_INIT_DATA = 8
    OPT_SECTION_ALIGNMENT = 32
    OPT_SIZE_OF_IMAGE = 56
    OPT_SIZE_OF_HEADERS = 60
    OPT_CHECKSUM = 64


def parse(data: bytes, what: str = "image") -> PEImage:
    """Parse the headers of a PE/COFF file; raise PEError saying what is wrong."""
    if len(data) < 64 or data[:2] != b"MZ":
        raise PEError(f"{what}: not a PE/COFF file (no MZ header)")
    (pe_offset,) = struct.unpack_from("<I", data, 0x3C)
    if pe_offset + 24 > len(data) or data[pe_offset : pe_offset + 4] != b"PE\0\0":
        raise PEError(f"{what}: MZ header present but no PE signature (not an EFI-stub image)")
    machine, n_sections, _ts, symtab, n_symbols, opt_size, _chars = struct.unpack_from(
        "<HHIIIHH", data, pe_offset + 4
    )
    opt_offset = pe_offset + 24
    if opt_offset + opt_size > len(data) or opt_size < 68:
        raise PEError(f"{what}: truncated optional header")
    (magic,) = struct.unpack_from("<H", data, opt_offset)
    if magic not in (PE32_MAGIC, PE32PLUS_MAGIC):
        raise PEError(f"{what}: unknown optional header magic {magic:#x}")
    sect_align, file_align = struct.unpack_from("<II", data, opt_offset + 32)
    size_of_image, size_of_headers = struct.unpack_from("<II", data, opt_offset + 56)
    sections = []
    table = opt_offset + opt_size
    if table + SECTION_HEADER_SIZE * n_sections > len(data):
        raise PEError(f"{what}: section table runs past the end of the file")
    for i in range(n_sections):
        off = table + SECTION_HEADER_SIZE * i
        raw_name, vsize, va, rsize, rptr = struct.unpack_from("<8sIIII", data, off)
        (chars,) = struct.unpack_from("<I", data, off + 36)
        name = raw_name.rstrip(b"\0").decode("ascii", "replace")
        sections.append(Section(name, va, vsize, rptr, rsize, chars, off))
    return PEImage(
        data, pe_offset, machine, n_sections, symtab, n_symbols, opt_offset, opt_size, magic,
        sect_align, file_align, size_of_image, size_of_headers, sections,
    )


def align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


UKI_REQUIRED = (".linux",)
# Sections a UKI builder adds; the stub's own sections are checked for overlap only, since
# systemd-stub 252 itself ships .sdmagic at an address not aligned to SectionAlignment.
UKI_SECTIONS = (".osrel", ".cmdline", ".uname", ".initrd", ".linux", ".splash", ".dtb")


def check_uki(data: bytes, machine: int | None = None, size: int | None = None) -> list[str]:
    """Return the layout problems of a UKI (an empty list means it passes).

    `size`: the file size when `data` holds only the headers (a UKI checked before its
    sections are streamed to disk); the section data itself is never read here."""
    try:
        img = parse(data, "UKI")
    except PEError as e:
        return [str(e)]
    problems: list[str] = []
    if machine is not None and img.machine != machine:
        problems.append(
            f"machine {MACHINE_NAMES.get(img.machine, hex(img.machine))}, expected "
            f"{MACHINE_NAMES.get(machine, hex(machine))}"
        )
    if img.symtab_pointer or img.n_symbols:
        problems.append("COFF symbol table still present")
    if img.section_table_end > img.size_of_headers:
        problems.append("section table overflows SizeOfHeaders")
    names = [s.name for s in img.sections]
    for required in UKI_REQUIRED:
        if required not in names:
            problems.append(f"section {required} missing")
    if names and ".linux" in names and names[-1] != ".linux":
        problems.append(".linux is not the last section")
    if len(set(names)) != len(names):
        problems.append(f"duplicate section names: {names}")
    prev_va_end = 0
    prev_raw_end = img.size_of_headers
    for s in img.sections:
        if len(s.name.encode()) > 8:
            problems.append(f"section name {s.name!r} longer than 8 characters")
        if s.name in UKI_SECTIONS and s.virtual_address % img.section_alignment:
            problems.append(f"{s.name}: VirtualAddress {s.virtual_address:#x} not aligned")
        if s.raw_pointer % img.file_alignment or s.raw_size % img.file_alignment:
            problems.append(f"{s.name}: raw data not aligned to FileAlignment")
        if s.virtual_address < prev_va_end:
            problems.append(f"{s.name}: overlaps the previous section in memory")
        if s.raw_size and s.raw_pointer < prev_raw_end:
            problems.append(f"{s.name}: overlaps the previous section in the file")
        if s.raw_pointer + s.raw_size > (len(data) if size is None else size):
            problems.append(f"{s.name}: raw data runs past the end of the file")
        prev_va_end = s.virtual_address + s.virtual_size
        if s.raw_size:
            prev_raw_end = s.raw_pointer + s.raw_size
    if img.sections:
        last = img.sections[-1]
        want = align(last.virtual_address + last.virtual_size, img.section_alignment)
        if img.size_of_image != want:
            problems.append(f"SizeOfImage {img.size_of_image:#x}, expected {want:#x}")
    return problems
