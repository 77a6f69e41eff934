"""Just enough ELF reading to pack a foreign-arch runtime: PT_INTERP, DT_NEEDED, DT_SONAME,
dynamic symbol names and raw section contents. Standard library only; 32/64-bit, LE/BE.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

PT_INTERP = 3
PT_DYNAMIC = 2
PT_LOAD = 1
DT_NULL, DT_NEEDED, DT_STRTAB, DT_SONAME = 0, 1, 5, 14
SHT_DYNSYM = 11


class ElfError(ValueError):
    pass


@dataclass
class ElfInfo:
    path: Path
    bits: int
    endian: str  # "<" or ">"
    machine: int
    interp: str | None = None
    needed: list[str] = field(default_factory=list)
    soname: str | None = None


@dataclass(frozen=True)
class _Section:
    name: str
    type: int
    offset: int
    size: int
    link: int
    entsize: int


class _Reader:
    def __init__(self, path: Path, data: bytes) -> None:
        self.path = path
        self.data = data
        if data[:4] != b"\x7fELF":
            raise ElfError(f"{path}: not an ELF file")
        if data[4] not in (1, 2) or data[5] not in (1, 2):
            raise ElfError(f"{path}: bad ELF class/data bytes {data[4]}/{data[5]}")
        self.bits = 32 if data[4] == 1 else 64
        self.e = "<" if data[5] == 1 else ">"
        fmt = self.e + ("HHIQQQIHHHHHH" if self.bits == 64 else "HHIIIIIHHHHHH")
        (_, self.machine, _, _, self.phoff, self.shoff, _, _, self.phentsize, self.phnum,
         self.shentsize, self.shnum, self.shstrndx) = struct.unpack_from(fmt, data, 16)

    def _get(self, fmt: str, off: int) -> tuple[int, ...]:
        try:
            return struct.unpack_from(self.e + fmt, self.data, off)
        except struct.error:
            raise ElfError(f"{self.path}: truncated ELF structure at offset {off}") from None

    def segments(self) -> list[tuple[int, int, int, int]]:
        """(type, file offset, vaddr, file size) of each program header."""
        out = []
        for i in range(self.phnum):
            off = self.phoff + i * self.phentsize
            if self.bits == 64:
                p_type, _, p_off, p_vaddr, _, p_filesz = self._get("IIQQQQ", off)
            else:
                p_type, p_off, p_vaddr, _, p_filesz = self._get("IIIII", off)
            out.append((p_type, p_off, p_vaddr, p_filesz))
        return out

    def vaddr_to_offset(self, vaddr: int) -> int:
        for p_type, p_off, p_vaddr, p_filesz in self.segments():
            if p_type == PT_LOAD and p_vaddr <= vaddr < p_vaddr + p_filesz:
                return vaddr - p_vaddr + p_off
        raise ElfError(f"{self.path}: address {vaddr:#x} is in no loadable segment")

    def cstr(self, off: int) -> str:
        end = self.data.find(b"\0", off)
        if end < 0:
            raise ElfError(f"{self.path}: unterminated string at offset {off}")
        return self.data[off:end].decode("utf-8", "replace")

    def sections(self) -> list[_Section]:
        if not self.shoff or not self.shnum:
            return []
        raw = []
        for i in range(self.shnum):
            off = self.shoff + i * self.shentsize
            if self.bits == 64:
                name, typ, _, _, s_off, size, link, _, _, entsize = self._get("IIQQQQIIQQ", off)
            else:
                name, typ, _, _, s_off, size, link, _, _, entsize = self._get("IIIIIIIIII", off)
            raw.append((name, typ, s_off, size, link, entsize))
        strtab_off = raw[self.shstrndx][2] if self.shstrndx < len(raw) else 0
        return [_Section(self.cstr(strtab_off + n) if strtab_off else "", t, o, s, lk, es)
                for n, t, o, s, lk, es in raw]


def _load(path: Path) -> _Reader:
    try:
        return _Reader(path, Path(path).read_bytes())
    except OSError as e:
        raise ElfError(f"{path}: cannot read: {e.strerror}") from None


def read_elf(path: Path) -> ElfInfo:
    """Program interpreter, DT_NEEDED entries (in order) and DT_SONAME of an ELF file."""
    r = _load(path)
    info = ElfInfo(Path(path), r.bits, r.e, r.machine)
    dyn_off = dyn_size = None
    for p_type, p_off, _, p_filesz in r.segments():
        if p_type == PT_INTERP:
            info.interp = r.data[p_off:p_off + p_filesz].rstrip(b"\0").decode()
        elif p_type == PT_DYNAMIC:
            dyn_off, dyn_size = p_off, p_filesz
    if dyn_off is None or dyn_size is None:
        return info  # static binary or plain object
    entry = "qQ" if r.bits == 64 else "iI"
    step = 16 if r.bits == 64 else 8
    tags: list[tuple[int, int]] = []
    for off in range(dyn_off, dyn_off + dyn_size, step):
        tag, val = r._get(entry, off)
        if tag == DT_NULL:
            break
        tags.append((tag, val))
    strtab = next((v for t, v in tags if t == DT_STRTAB), None)
    if strtab is None:
        return info
    str_off = r.vaddr_to_offset(strtab)
    for tag, val in tags:
        if tag == DT_NEEDED:
            info.needed.append(r.cstr(str_off + val))
        elif tag == DT_SONAME:
            info.soname = r.cstr(str_off + val)
    return info


def dynamic_symbols(path: Path) -> set[str]:
    """Names in .dynsym (what a stripped executable still exports)."""
    r = _load(path)
    secs = r.sections()
    names: set[str] = set()
    for s in secs:
        if s.type != SHT_DYNSYM or not s.entsize:
            continue
        strtab = secs[s.link]
        for off in range(s.offset, s.offset + s.size, s.entsize):
            (st_name,) = r._get("I", off)  # st_name is first in both 32- and 64-bit Sym
            if st_name:
                names.add(r.cstr(strtab.offset + st_name))
    return names


def section_data(source: Path | bytes, name: str, where: str = "<bytes>") -> bytes | None:
    """Raw contents of the named section (of a file, or of ELF bytes named `where`)."""
    r = _Reader(Path(where), source) if isinstance(source, bytes) else _load(source)
    for s in r.sections():
        if s.name == name:
            return r.data[s.offset:s.offset + s.size]
    return None
