"""Write a fresh FAT16 or FAT32 file system holding a given tree, deterministically.

Only creation is supported: boot media are built once and never edited in place (the guest
edits the cache ESP through the kernel's vfat driver). Files are laid out in contiguous
cluster runs; timestamps come from the `timestamp` argument so builds are reproducible.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

SECTOR = 512
FAT16_MIN_CLUSTERS = 4085
FAT32_MIN_CLUSTERS = 65525
FAT16_MAX_CLUSTERS = 65524
ATTR_DIR = 0x10
ATTR_ARCHIVE = 0x20
ATTR_VOLUME = 0x08
ATTR_LFN = 0x0F


class FatError(ValueError):
    pass


@dataclass
class _Node:
    name: str
    data: bytes | None = None  # None for a directory
    children: dict[str, _Node] = field(default_factory=dict)
    first_cluster: int = 0
    n_clusters: int = 0

    @property
    def is_dir(self) -> bool:
        return self.data is None


@dataclass(frozen=True)
class Geometry:
    fat_bits: int
    total_sectors: int
    sectors_per_cluster: int
    reserved: int
    fat_sectors: int
    root_entries: int  # FAT16 fixed root directory entries; 0 for FAT32

    @property
    def root_dir_sectors(self) -> int:
        return self.root_entries * 32 // SECTOR

    @property
    def data_start(self) -> int:
        return self.reserved + 2 * self.fat_sectors + self.root_dir_sectors

    @property
    def clusters(self) -> int:
        return (self.total_sectors - self.data_start) // self.sectors_per_cluster

    @property
    def cluster_bytes(self) -> int:
        return self.sectors_per_cluster * SECTOR


def geometry(size_bytes: int, fat_bits: int, max_cluster_bytes: int = SECTOR) -> Geometry:
    """Pick a cluster size giving a cluster count legal for the FAT type, or raise FatError:
    the largest legal one up to `max_cluster_bytes` (the smallest legal one by default).
    Larger clusters mean fewer reads for firmware FAT drivers, which read a cluster at a time
    (OVMF took ~4 s for a 14 MB kernel in 512-byte clusters under TCG)."""
    if fat_bits not in (16, 32):  # the FAT is written as 16- or 32-bit entries, nothing else
        raise FatError(f"FAT{fat_bits} is not supported: FatBuilder writes FAT16 or FAT32")
    total = size_bytes // SECTOR
    reserved, root_entries = (32, 0) if fat_bits == 32 else (4, 512)
    # At most 32 KiB per cluster: fatgen103 says larger clusters "do not work properly".
    sizes = (1, 2, 4, 8, 16, 32, 64)
    preferred = [n for n in sizes if n * SECTOR <= max_cluster_bytes][::-1]
    too_many = False
    for spc in preferred + [n for n in sizes if n not in preferred]:
        # Iterate the FAT size to a fixed point: it must cover every data cluster.
        # Grow the FAT until it covers every data cluster (it may end a sector larger than
        # strictly needed, which is allowed).
        fat_sectors = 1
        while True:
            g = Geometry(fat_bits, total, spc, reserved, fat_sectors, root_entries)
            need = -(-((g.clusters + 2) * fat_bits // 8) // SECTOR)
            if need <= fat_sectors:
                break
            fat_sectors = need
        g = Geometry(fat_bits, total, spc, reserved, fat_sectors, root_entries)
        lo, hi = (FAT32_MIN_CLUSTERS, 0x0FFFFFF5) if fat_bits == 32 else (
            FAT16_MIN_CLUSTERS, FAT16_MAX_CLUSTERS)
        if lo <= g.clusters <= hi:
            return g
        too_many = too_many or g.clusters > hi
    if too_many:  # even 32 KiB clusters are too many (a FAT16 of 2 GiB or more)
        raise FatError(f"{size_bytes // (1024 * 1024)} MiB is too large for FAT{fat_bits}")
    # The fewest clusters (of 512 bytes) plus the reserved sectors, two FATs covering them
    # and, on FAT16, the root directory: 32 + 2 * 512 sectors or 4 + 2 * 16 + 32.
    overhead = 32 + 2 * 512 if fat_bits == 32 else 4 + 2 * 16 + 32
    lo = FAT32_MIN_CLUSTERS if fat_bits == 32 else FAT16_MIN_CLUSTERS
    minimum = (lo + overhead) * SECTOR
    raise FatError(
        f"{size_bytes // (1024 * 1024)} MiB is too small for FAT{fat_bits}: it needs at least "
        f"{-(-minimum // (1024 * 1024))} MiB"
    )


def _dos_time(ts: dt.datetime) -> tuple[int, int]:
    ts = max(ts, dt.datetime(1980, 1, 1))
    date = ((ts.year - 1980) << 9) | (ts.month << 5) | ts.day
    time = (ts.hour << 11) | (ts.minute << 5) | (ts.second // 2)
    return date, time


_SHORT_OK = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'()-@^_`{}~")


def _fits_83(name: str) -> bool:
    base, _, ext = name.partition(".")
    return (
        0 < len(base) <= 8 and len(ext) <= 3 and "." not in ext
        and all(c in _SHORT_OK for c in base + ext)
    )


def _short_name(name: str, taken: set[bytes]) -> tuple[bytes, bool]:
    """Return (11-byte short name, needs_lfn)."""
    if _fits_83(name):
        base, _, ext = name.partition(".")
        return (base.ljust(8) + ext.ljust(3)).encode(), False
    upper = name.upper()
    base, _, ext = upper.rpartition(".") if "." in upper else (upper, "", "")
    clean = "".join(c for c in base if c in _SHORT_OK)[:6] or "FILE"
    ext = "".join(c for c in ext if c in _SHORT_OK)[:3]
    for n in range(1, 1000000):
        tail = f"~{n}"
        cand = (clean[: 8 - len(tail)] + tail).ljust(8) + ext.ljust(3)
        raw = cand.encode()
        if raw not in taken:
            return raw, True
    raise FatError(f"cannot make a short name for {name!r}")


def _lfn_checksum(short: bytes) -> int:
    s = 0
    for b in short:
        s = (((s & 1) << 7) + (s >> 1) + b) & 0xFF
    return s


def _lfn_entries(name: str, short: bytes) -> list[bytes]:
    units = name.encode("utf-16-le")
    chars = [units[i : i + 2] for i in range(0, len(units), 2)]
    chars.append(b"\0\0")
    while len(chars) % 13:
        chars.append(b"\xff\xff")
    chunks = [chars[i : i + 13] for i in range(0, len(chars), 13)]
    if len(chunks) > 20:
        raise FatError(f"file name too long for FAT: {name!r}")
    csum = _lfn_checksum(short)
    out = []
    for seq, chunk in enumerate(chunks, 1):
        order = seq | (0x40 if seq == len(chunks) else 0)
        e = (
            bytes([order]) + b"".join(chunk[0:5]) + bytes([ATTR_LFN, 0, csum])
            + b"".join(chunk[5:11]) + b"\0\0" + b"".join(chunk[11:13])
        )
        out.append(e)
    return list(reversed(out))


def _dirent(short: bytes, attr: int, cluster: int, size: int, stamp: tuple[int, int]) -> bytes:
    date, time = stamp
    return struct.pack(
        "<11sBBBHHHHHHHI", short, attr, 0, 0, time, date, date, cluster >> 16, time, date,
        cluster & 0xFFFF, size,
    )


class FatBuilder:
    """Collect files and directories, then write them as one FAT file system."""

    def __init__(self) -> None:
        self.root = _Node("")

    def mkdir(self, path: str) -> _Node:
        node = self.root
        for part in [p for p in path.replace("\\", "/").split("/") if p]:
            key = part.upper()
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = _Node(part)
            elif not child.is_dir:
                raise FatError(f"{path}: {part} is a file")
            node = child
        return node

    def add_file(self, path: str, data: bytes) -> None:
        parent, _, name = path.replace("\\", "/").strip("/").rpartition("/")
        d = self.mkdir(parent)
        if name.upper() in d.children:
            raise FatError(f"{path}: already added")
        d.children[name.upper()] = _Node(name, data)

    def content_bytes(self) -> int:
        def walk(n: _Node) -> int:
            own = len(n.data) if n.data is not None else 32 * (2 + 3 * len(n.children))
            return own + sum(walk(c) for c in n.children.values())
        return walk(self.root)

    def write(  # the caller sizes `out` (e.g. truncate) to cover offset + size_bytes
        self, out: BinaryIO, offset: int, size_bytes: int, *, fat_bits: int, label: str,
        volume_id: int, timestamp: dt.datetime, hidden_sectors: int = 0,
        max_cluster_bytes: int = SECTOR,
    ) -> Geometry:
        g = geometry(size_bytes, fat_bits, max_cluster_bytes)
        stamp = _dos_time(timestamp)
        cb = g.cluster_bytes
        next_cluster = 2
        fat = [0] * (g.clusters + 2)
        fat[0] = 0x0FFFFFF8 if fat_bits == 32 else 0xFFF8
        fat[1] = 0x0FFFFFFF if fat_bits == 32 else 0xFFFF
        eoc = 0x0FFFFFFF if fat_bits == 32 else 0xFFFF

        def allocate(n_bytes: int) -> tuple[int, int]:
            nonlocal next_cluster
            n = max(1, -(-n_bytes // cb))
            if next_cluster + n > g.clusters + 2:
                raise FatError(f"files do not fit in a {size_bytes // 1024} KiB FAT{fat_bits}")
            first = next_cluster
            for c in range(first, first + n):
                fat[c] = c + 1
            fat[first + n - 1] = eoc
            next_cluster += n
            return first, n

        def entries_for(node: _Node, parent_cluster: int, is_root: bool) -> bytes:
            ents = []
            if is_root:
                vol = label.upper().encode("ascii")[:11].ljust(11)
                ents.append(_dirent(vol, ATTR_VOLUME, 0, 0, stamp))
            else:
                ents.append(_dirent(b".          ", ATTR_DIR, node.first_cluster, 0, stamp))
                ents.append(_dirent(b"..         ", ATTR_DIR, parent_cluster, 0, stamp))
            # Names that are already 8.3 keep theirs; a generated alias (NAME~1) must not repeat
            # one of them, whatever the sort order puts first.
            taken = {_short_name(c.name, set())[0] for c in node.children.values()
                     if _fits_83(c.name)}
            for key in sorted(node.children):
                child = node.children[key]
                short, lfn = _short_name(child.name, taken)
                taken.add(short)
                if lfn:
                    ents.extend(_lfn_entries(child.name, short))
                attr = ATTR_DIR if child.is_dir else ATTR_ARCHIVE
                size = 0 if child.is_dir or child.data is None else len(child.data)
                first = child.first_cluster if (child.is_dir or size) else 0
                ents.append(_dirent(short, attr, first, size, stamp))
            return b"".join(ents)

        def dir_size(node: _Node, is_root: bool) -> int:
            return len(entries_for(node, 0, is_root))

        # Allocate clusters: directories first (breadth-first), then file data.
        order: list[_Node] = []
        queue = [self.root]
        while queue:
            n = queue.pop(0)
            order.append(n)
            queue.extend(n.children[k] for k in sorted(n.children) if n.children[k].is_dir)
        for n in order:
            if n is self.root and fat_bits == 16:
                if dir_size(n, True) > g.root_entries * 32:
                    raise FatError("too many entries in the FAT16 root directory")
                continue
            n.first_cluster, n.n_clusters = allocate(dir_size(n, n is self.root))
        files: list[_Node] = []
        for n in order:
            for k in sorted(n.children):
                c = n.children[k]
                if not c.is_dir and c.data:
                    c.first_cluster, c.n_clusters = allocate(len(c.data))
                    files.append(c)

        def cluster_offset(c: int) -> int:
            return offset + (g.data_start + (c - 2) * g.sectors_per_cluster) * SECTOR

        out.seek(offset)
        out.write(self._boot_sector(g, label, volume_id, hidden_sectors))
        if fat_bits == 32:
            free = g.clusters - (next_cluster - 2)
            out.seek(offset + SECTOR)
            out.write(_fsinfo(free, next_cluster))
            out.seek(offset + 6 * SECTOR)
            out.write(self._boot_sector(g, label, volume_id, hidden_sectors))
            out.seek(offset + 7 * SECTOR)
            out.write(_fsinfo(free, next_cluster))
        fmt = "<%dI" if fat_bits == 32 else "<%dH"
        used = fat[:next_cluster]
        fat_bytes = struct.pack(fmt % len(used), *used)
        for i in range(2):
            out.seek(offset + (g.reserved + i * g.fat_sectors) * SECTOR)
            out.write(fat_bytes)
        parents = {id(c): n for n in order for c in n.children.values()}
        for n in order:
            parent = parents.get(id(n))
            pc = 0 if parent is None or parent is self.root else parent.first_cluster
            data = entries_for(n, pc, n is self.root)
            if n is self.root and fat_bits == 16:
                out.seek(offset + (g.reserved + 2 * g.fat_sectors) * SECTOR)
            else:
                out.seek(cluster_offset(n.first_cluster))
            out.write(data)
        for f in files:
            out.seek(cluster_offset(f.first_cluster))
            assert f.data is not None
            out.write(f.data)
        return g

    @staticmethod
    def _boot_sector(g: Geometry, label: str, volume_id: int, hidden: int) -> bytes:
        small = g.total_sectors if g.total_sectors < 0x10000 and g.fat_bits == 16 else 0
        large = 0 if small else g.total_sectors
        bpb = struct.pack(
            "<3s8sHBHBHHBHHHII", b"\xeb\x58\x90" if g.fat_bits == 32 else b"\xeb\x3c\x90",
            b"CLOUDBT ", SECTOR, g.sectors_per_cluster, g.reserved, 2, g.root_entries, small,
            0xF8, 0 if g.fat_bits == 32 else g.fat_sectors, 32, 64, hidden, large,
        )
        vol_label = label.upper().encode("ascii")[:11].ljust(11)
        if g.fat_bits == 32:
            ext = struct.pack(
                "<IHHIHH12sBBBI11s8s", g.fat_sectors, 0, 0, 2, 1, 6, b"", 0x80, 0, 0x29,
                volume_id, vol_label, b"FAT32   ",
            )
        else:
            ext = struct.pack("<BBBI11s8s", 0x80, 0, 0x29, volume_id, vol_label, b"FAT16   ")
        sector = bytearray(SECTOR)
        sector[: len(bpb) + len(ext)] = bpb + ext
        sector[510:512] = b"\x55\xaa"
        return bytes(sector)


def _fsinfo(free: int, next_free: int) -> bytes:
    s = bytearray(SECTOR)
    struct.pack_into("<I", s, 0, 0x41615252)
    struct.pack_into("<III", s, 484, 0x61417272, free, next_free)
    struct.pack_into("<I", s, 508, 0xAA550000)
    return bytes(s)


def valid_label(label: str) -> str:
    if not label or len(label) > 11 or not all(c.upper() in _SHORT_OK or c == " " for c in label):
        raise FatError(f"FAT volume label {label!r}: 1-11 characters of A-Z 0-9 - _ and space")
    return label.upper()
