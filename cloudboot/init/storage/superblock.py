"""Identify a filesystem from its superblock: type, label and UUID, like `blkid -p`.

Runs in the guest as PID 1, where there is no udev and no libblkid, so the few on-disk
formats cloudboot cares about are read here directly. Standard library only.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FsInfo:
    fstype: str  # "ext4" | "ext3" | "ext2" | "xfs" | "btrfs" | "vfat" | "iso9660"
    label: str | None
    uuid: str | None


class _Reader:
    """Reads ranges of a device or image, relative to `offset`; short reads yield short data."""

    def __init__(self, fd: int, offset: int) -> None:
        self.fd = fd
        self.offset = offset

    def read(self, pos: int, size: int) -> bytes:
        try:
            return os.pread(self.fd, size, self.offset + pos)
        except OSError:
            return b""


def _text(raw: bytes) -> str | None:
    s = raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    return s or None


def _guid(raw: bytes) -> str | None:
    if len(raw) != 16 or raw == bytes(16):
        return None
    return str(uuid.UUID(bytes=raw))


# ext2/3/4 feature bits that make ext3 or ext2 tools refuse a filesystem (as libblkid decides).
_EXT_COMPAT_HAS_JOURNAL = 0x0004
_EXT_INCOMPAT_JOURNAL_DEV = 0x0008
_EXT3_INCOMPAT_OK = 0x0002 | 0x0004 | 0x0010  # filetype, recover, meta_bg
_EXT3_RO_COMPAT_OK = 0x0001 | 0x0002 | 0x0004  # sparse_super, large_file, btree_dir
_EXT2_INCOMPAT_OK = 0x0002 | 0x0010


def _probe_ext(r: _Reader) -> FsInfo | None:
    sb = r.read(1024, 1024)
    if len(sb) < 0x88 or struct.unpack_from("<H", sb, 0x38)[0] != 0xEF53:
        return None
    compat, incompat, ro_compat = struct.unpack_from("<III", sb, 0x5C)
    if incompat & _EXT_INCOMPAT_JOURNAL_DEV:
        return None  # an external journal, not a mountable filesystem
    if incompat & ~_EXT3_INCOMPAT_OK or ro_compat & ~_EXT3_RO_COMPAT_OK:
        fstype = "ext4"
    elif compat & _EXT_COMPAT_HAS_JOURNAL:
        fstype = "ext3"
    elif incompat & ~_EXT2_INCOMPAT_OK:
        fstype = "ext4"  # e.g. needs_recovery without a journal: only ext4 copes
    else:
        fstype = "ext2"
    return FsInfo(fstype, _text(sb[0x78:0x88]), _guid(sb[0x68:0x78]))


def _probe_xfs(r: _Reader) -> FsInfo | None:
    sb = r.read(0, 120)
    if len(sb) < 120 or sb[:4] != b"XFSB":
        return None
    return FsInfo("xfs", _text(sb[108:120]), _guid(sb[32:48]))


def _probe_btrfs(r: _Reader) -> FsInfo | None:
    sb = r.read(0x10000, 0x22B)
    if len(sb) < 0x22B or sb[0x40:0x48] != b"_BHRfS_M":
        return None
    return FsInfo("btrfs", _text(sb[0x12B:0x22B]), _guid(sb[0x20:0x30]))


def _probe_iso9660(r: _Reader) -> FsInfo | None:
    pvd = r.read(0x8000, 2048)
    if len(pvd) < 2048 or pvd[0] != 1 or pvd[1:6] != b"CD001":
        return None
    label = _text(pvd[40:72])
    # libblkid turns the volume creation time into the UUID (what /dev/disk/by-uuid shows).
    created = pvd[813:829]
    iso_uuid = None
    if created.isdigit() and created != b"0" * 16:
        c = created.decode()
        iso_uuid = "-".join([c[0:4], c[4:6], c[6:8], c[8:10], c[10:12], c[12:14], c[14:16]])
    return FsInfo("iso9660", label, iso_uuid)


def _fat_root_label(r: _Reader, bs: bytes, fat32: bool) -> str | None:
    """The volume-label entry of the root directory; it wins over the boot sector's copy."""
    bps, spc, reserved, nfats, root_entries = struct.unpack_from("<HBHBH", bs, 11)
    fat_size = struct.unpack_from("<H", bs, 22)[0] or struct.unpack_from("<I", bs, 36)[0]
    first_data = (reserved + nfats * fat_size) * bps
    if fat32:
        root_cluster = struct.unpack_from("<I", bs, 44)[0]
        start, length = first_data + (root_cluster - 2) * spc * bps, spc * bps
    else:
        start, length = first_data, root_entries * 32
    data = r.read(start, min(length, 1 << 16))
    for i in range(0, len(data) - 31, 32):
        entry = data[i : i + 32]
        if entry[0] == 0:
            break
        if entry[0] == 0xE5 or entry[11] & 0x3F == 0x0F:  # deleted or long-name entry
            continue
        if entry[11] & 0x08:
            return _text(entry[:11].rstrip(b" "))
    return None


def _probe_vfat(r: _Reader) -> FsInfo | None:
    bs = r.read(0, 512)
    if len(bs) < 512 or bs[510:512] != b"\x55\xaa" or bs[0] not in (0xEB, 0xE9):
        return None
    bps, spc, reserved, nfats = struct.unpack_from("<HBHB", bs, 11)
    if bps not in (512, 1024, 2048, 4096) or spc == 0 or spc & (spc - 1) or not reserved:
        return None
    if nfats not in (1, 2):
        return None
    fat32 = struct.unpack_from("<H", bs, 22)[0] == 0
    if fat32:
        if bs[82:87] != b"FAT32" and bs[66] != 0x29:
            return None
        serial_at, label_at = 67, 71
    else:
        if bs[54:57] != b"FAT" and bs[38] != 0x29:
            return None
        serial_at, label_at = 39, 43
    serial = struct.unpack_from("<I", bs, serial_at)[0]
    label = _fat_root_label(r, bs, fat32)
    if label is None:
        boot_label = _text(bs[label_at : label_at + 11])
        label = None if boot_label == "NO NAME" else boot_label
    return FsInfo("vfat", label, f"{serial >> 16:04X}-{serial & 0xFFFF:04X}")


# Order matters: ISO9660 before FAT because hybrid ISOs carry an MBR boot sector at 0.
_PROBES: tuple[Callable[[_Reader], FsInfo | None], ...] = (
    _probe_ext,
    _probe_xfs,
    _probe_btrfs,
    _probe_iso9660,
    _probe_vfat,
)


def probe(path: str | Path, offset: int = 0) -> FsInfo | None:
    """Return the filesystem found at `offset` bytes into `path`, or None if none is known.

    Raises OSError (naming the path) only if the device cannot be opened at all.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, f"cannot open {path} to probe a filesystem: {e.strerror}") from e
    try:
        r = _Reader(fd, offset)
        for fn in _PROBES:
            info = fn(r)
            if info is not None:
                return info
        return None
    finally:
        os.close(fd)
