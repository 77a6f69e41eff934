"""Read a GUID partition table (UEFI spec ch. 5) from a disk or image; 512-byte sectors.

Used by cloudboot-init to learn PARTLABEL / PARTUUID without udev. The primary header's
CRCs are checked; if it or its entry array is damaged the backup at the disk's end is used.
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

SECTOR = 512
_SIGNATURE = b"EFI PART"
_MAX_ENTRIES_BYTES = 1 << 20  # far above the usual 128 x 128 bytes; guards against garbage


@dataclass(frozen=True)
class GptPartition:
    number: int  # 1-based slot index in the entry array, as Linux numbers partitions
    type_guid: str
    part_guid: str
    name: str
    first_lba: int
    last_lba: int

    @property
    def start(self) -> int:
        """Byte offset of the partition on the disk."""
        return self.first_lba * SECTOR

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * SECTOR


@dataclass(frozen=True)
class Gpt:
    disk_guid: str
    partitions: list[GptPartition]
    from_backup: bool = False

    def by_number(self, number: int) -> GptPartition | None:
        return next((p for p in self.partitions if p.number == number), None)


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw))


def _header_at(fd: int, lba: int) -> tuple[bytes, dict[str, int]] | None:
    hdr = os.pread(fd, SECTOR, lba * SECTOR)
    if len(hdr) < 92 or hdr[:8] != _SIGNATURE:
        return None
    size, crc = struct.unpack_from("<II", hdr, 12)
    if not 92 <= size <= SECTOR:
        return None
    check = bytearray(hdr[:size])
    check[16:20] = bytes(4)
    if zlib.crc32(check) != crc:
        return None
    my_lba, alt_lba, _first, _last = struct.unpack_from("<QQQQ", hdr, 24)
    entries_lba, count, entry_size, entries_crc = struct.unpack_from("<QIII", hdr, 72)
    if my_lba != lba or entry_size < 128 or count * entry_size > _MAX_ENTRIES_BYTES:
        return None
    fields = {
        "alt_lba": alt_lba,
        "entries_lba": entries_lba,
        "count": count,
        "entry_size": entry_size,
        "entries_crc": entries_crc,
    }
    return hdr, fields


def _parse(fd: int, lba: int, from_backup: bool) -> Gpt | None:
    found = _header_at(fd, lba)
    if found is None:
        return None
    hdr, f = found
    table = os.pread(fd, f["count"] * f["entry_size"], f["entries_lba"] * SECTOR)
    if len(table) != f["count"] * f["entry_size"] or zlib.crc32(table) != f["entries_crc"]:
        return None
    parts = []
    for i in range(f["count"]):
        e = table[i * f["entry_size"] : (i + 1) * f["entry_size"]]
        if e[:16] == bytes(16):
            continue  # unused slot
        first, last = struct.unpack_from("<QQ", e, 32)
        name = e[56:128].decode("utf-16-le", "replace").split("\0", 1)[0]
        parts.append(GptPartition(i + 1, _guid(e[0:16]), _guid(e[16:32]), name, first, last))
    return Gpt(_guid(hdr[56:72]), parts, from_backup)


def read_gpt(path: str | Path) -> Gpt | None:
    """Return the GPT on `path`, or None if neither header is valid.

    Raises OSError naming the path if it cannot be opened.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, f"cannot open {path} to read its GPT: {e.strerror}") from e
    try:
        try:
            gpt = _parse(fd, 1, False)
            if gpt is not None:
                return gpt
            # The backup lives in the last sector; the primary may point elsewhere if the
            # image was grown, so try its alternate LBA first when the header itself is sane.
            last = os.lseek(fd, 0, os.SEEK_END) // SECTOR - 1
            primary = _header_at(fd, 1)
            candidates = [primary[1]["alt_lba"]] if primary else []
            candidates.append(last)
            for lba in dict.fromkeys(candidates):
                if lba > 1:
                    gpt = _parse(fd, lba, True)
                    if gpt is not None:
                        return gpt
            return None
        except OSError:
            return None  # unreadable media (e.g. an empty CD drive): simply no GPT
    finally:
        os.close(fd)
