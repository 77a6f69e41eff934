"""Write a protective MBR and a GUID partition table (primary and backup) into a disk image."""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import BinaryIO

SECTOR = 512
ENTRY_SIZE = 128
N_ENTRIES = 128
ENTRIES_SECTORS = ENTRY_SIZE * N_ENTRIES // SECTOR  # 32
ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
LINUX_FS_TYPE = "0fc63daf-8483-4772-8e79-3d69d8477de4"


class GptError(ValueError):
    pass


@dataclass(frozen=True)
class Partition:
    type_guid: str
    part_guid: str
    name: str
    first_lba: int
    last_lba: int
    attributes: int = 0

    @property
    def size_lba(self) -> int:
        return self.last_lba - self.first_lba + 1


def guid_bytes(guid: str) -> bytes:
    return uuid.UUID(guid).bytes_le


def stable_guid(seed: str) -> str:
    """A GUID derived from `seed`, for reproducible images."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "cloudboot:" + seed))


def _entry(p: Partition) -> bytes:
    name = p.name.encode("utf-16-le")
    if len(name) > 72:
        raise GptError(f"GPT partition name {p.name!r} is longer than 36 characters")
    return struct.pack(
        "<16s16sQQQ72s", guid_bytes(p.type_guid), guid_bytes(p.part_guid), p.first_lba,
        p.last_lba, p.attributes, name,
    )


def _header(current: int, backup: int, first_usable: int, last_usable: int, disk_guid: str,
            entries_lba: int, entries_crc: int) -> bytes:
    fields = [b"EFI PART", 0x00010000, 92, 0, 0, current, backup, first_usable, last_usable,
              guid_bytes(disk_guid), entries_lba, N_ENTRIES, ENTRY_SIZE, entries_crc]
    fmt = "<8sIIIIQQQQ16sQIII"
    raw = struct.pack(fmt, *fields)
    crc = zlib.crc32(raw)
    fields[3] = crc
    return struct.pack(fmt, *fields).ljust(SECTOR, b"\0")


def protective_mbr(total_sectors: int, boot_code: bytes = b"") -> bytes:
    mbr = bytearray(SECTOR)
    mbr[: len(boot_code[:440])] = boot_code[:440]
    size = min(total_sectors - 1, 0xFFFFFFFF)
    # status, CHS first (0/0/2), type 0xEE, CHS last (max), LBA first 1, size
    mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1, size)
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


def write_gpt(out: BinaryIO, total_sectors: int, disk_guid: str, partitions: list[Partition],
              *, write_mbr: bool = True, first_usable: int = 34) -> None:
    """Write MBR (sector 0), primary GPT (1..33) and backup GPT (last 33 sectors)."""
    last_usable = total_sectors - 1 - 1 - ENTRIES_SECTORS
    for p in partitions:
        if not (first_usable <= p.first_lba <= p.last_lba <= last_usable):
            raise GptError(
                f"partition {p.name!r} ({p.first_lba}-{p.last_lba}) outside the usable "
                f"range {first_usable}-{last_usable}"
            )
    entries = b"".join(_entry(p) for p in partitions).ljust(ENTRY_SIZE * N_ENTRIES, b"\0")
    crc = zlib.crc32(entries)
    backup_lba = total_sectors - 1
    backup_entries = backup_lba - ENTRIES_SECTORS
    if write_mbr:
        out.seek(0)
        out.write(protective_mbr(total_sectors))
    out.seek(SECTOR)
    out.write(_header(1, backup_lba, first_usable, last_usable, disk_guid, 2, crc))
    out.write(entries)
    out.seek(backup_entries * SECTOR)
    out.write(entries)
    out.write(_header(backup_lba, 1, first_usable, last_usable, disk_guid, backup_entries, crc))
