"""Read-only access to a FAT12/16/32 file system inside an image file (for `inspect` and tests)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO


class FatReadError(ValueError):
    pass


@dataclass(frozen=True)
class FatEntry:
    path: str
    is_dir: bool
    size: int
    first_cluster: int


class FatReader:
    def __init__(self, f: BinaryIO, offset: int = 0) -> None:
        self.f, self.offset = f, offset
        f.seek(offset)
        bs = f.read(512)
        if len(bs) < 512 or bs[510:512] != b"\x55\xaa":
            raise FatReadError("no FAT boot sector (missing 0x55AA)")
        (self.bps, self.spc, self.reserved, self.nfats, self.root_entries, small, _media,
         fat16_size, _spt, _heads, _hidden, large) = struct.unpack_from("<HBHBHHBHHHII", bs, 11)
        if self.bps not in (512, 1024, 2048, 4096) or self.spc == 0 or self.nfats == 0:
            raise FatReadError("boot sector has an invalid BPB")
        self.fat_size = fat16_size or struct.unpack_from("<I", bs, 36)[0]
        total = small or large
        root_sectors = (self.root_entries * 32 + self.bps - 1) // self.bps
        self.data_start = self.reserved + self.nfats * self.fat_size + root_sectors
        clusters = (total - self.data_start) // self.spc
        self.bits = 12 if clusters < 4085 else 16 if clusters < 65525 else 32
        self.root_cluster = struct.unpack_from("<I", bs, 44)[0] if self.bits == 32 else 0
        self.root_offset = offset + (self.reserved + self.nfats * self.fat_size) * self.bps
        f.seek(offset + self.reserved * self.bps)
        self.fat = f.read(self.fat_size * self.bps)

    def _next(self, cluster: int) -> int:
        if self.bits == 32:
            return struct.unpack_from("<I", self.fat, cluster * 4)[0] & 0x0FFFFFFF
        if self.bits == 16:
            return struct.unpack_from("<H", self.fat, cluster * 2)[0]
        v = struct.unpack_from("<H", self.fat, cluster * 3 // 2)[0]
        return v >> 4 if cluster & 1 else v & 0xFFF

    def _eoc(self, cluster: int) -> bool:
        return cluster >= {12: 0xFF8, 16: 0xFFF8, 32: 0x0FFFFFF8}[self.bits] or cluster < 2

    def _chain(self, cluster: int) -> bytes:
        out, seen, csize = [], set(), self.spc * self.bps
        while not self._eoc(cluster):
            if cluster in seen:
                raise FatReadError(f"cluster chain loops at {cluster}")
            seen.add(cluster)
            self.f.seek(self.offset + (self.data_start + (cluster - 2) * self.spc) * self.bps)
            out.append(self.f.read(csize))
            cluster = self._next(cluster)
        return b"".join(out)

    def _dir_bytes(self, cluster: int) -> bytes:
        if cluster == 0 and self.bits != 32:
            self.f.seek(self.root_offset)
            return self.f.read(self.root_entries * 32)
        return self._chain(cluster or self.root_cluster)

    def listdir(self, cluster: int = 0, prefix: str = "") -> list[FatEntry]:
        raw = self._dir_bytes(cluster)
        out: list[FatEntry] = []
        lfn: list[bytes] = []
        for i in range(0, len(raw), 32):
            e = raw[i : i + 32]
            if e[0] == 0:
                break
            if e[0] == 0xE5:
                lfn = []
                continue
            if e[11] == 0x0F:
                lfn.insert(0, e[1:11] + e[14:26] + e[28:32])
                continue
            if e[11] & 0x08:
                lfn = []
                continue
            name = b"".join(lfn).decode("utf-16-le", "replace").split("\0")[0] if lfn else ""
            lfn = []
            if not name:
                base, ext = e[0:8].decode("ascii", "replace").rstrip(), e[8:11].decode(
                    "ascii", "replace").rstrip()
                name = base + ("." + ext if ext else "")
            if name in (".", ".."):
                continue
            hi, lo = struct.unpack_from("<H", e, 20)[0], struct.unpack_from("<H", e, 26)[0]
            size = struct.unpack_from("<I", e, 28)[0]
            out.append(FatEntry(f"{prefix}/{name}", bool(e[11] & 0x10), size, (hi << 16) | lo))
        return out

    def walk(self) -> list[FatEntry]:
        result, stack = [], [(0, "")]
        while stack:
            cluster, prefix = stack.pop()
            for entry in self.listdir(cluster, prefix):
                result.append(entry)
                if entry.is_dir:
                    stack.append((entry.first_cluster, entry.path))
        return sorted(result, key=lambda e: e.path)

    def read(self, path: str) -> bytes:
        for entry in self.walk():
            if entry.path.lower() == "/" + path.strip("/").lower() and not entry.is_dir:
                return self._chain(entry.first_cluster)[: entry.size]
        raise FatReadError(f"{path}: no such file in the FAT file system")
