"""The Path C cache disk: GPT, one FAT32 ESP whose GPT partition name is `cloud-boot-cache`.

cloudboot-init finds the partition by that name and stages target kernels in `\\EFI\\Linux\\`.
Creating is idempotent: an existing cache disk is left byte-for-byte as it is, so staged
kernels and the Boot#### entries pointing at them survive a re-run.
"""

from __future__ import annotations

import os
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

from cloudboot.fsutil import atomic_output
from cloudboot.init.storage.gptread import read_gpt
from cloudboot.media import gpt
from cloudboot.media.fat import FatBuilder, FatError, geometry, valid_label
from cloudboot.media.timestamps import build_time, reproducible

PARTITION_NAME = "cloud-boot-cache"
VOLUME_LABEL = "CB-CACHE"
DEFAULT_SIZE_MIB = 256
# The firmware reads the staged kernel a cluster at a time: take the largest cluster FAT32
# allows for the size, up to 4 KiB (2 KiB at 256 MiB; FAT32 needs >= 65525 clusters).
MAX_CLUSTER_BYTES = 4096
ALIGN = 2048  # sectors (1 MiB)


class CacheDiskError(RuntimeError):
    pass


@dataclass(frozen=True)
class CacheDiskResult:
    path: Path
    created: bool
    message: str


def layout(size_mib: int) -> tuple[int, int, int]:
    """(total sectors, first LBA, last LBA) of the ESP on a disk of size_mib."""
    total = size_mib * 1024 * 1024 // 512
    last_usable = total - 1 - 1 - gpt.ENTRIES_SECTORS
    last = (last_usable + 1) // ALIGN * ALIGN - 1
    return total, ALIGN, last


def is_cache_disk(path: Path) -> bool:
    table = read_gpt(path)
    return bool(table) and any(
        p.name == PARTITION_NAME and p.type_guid.lower() == gpt.ESP_TYPE
        for p in table.partitions  # type: ignore[union-attr]
    )


def create(path: Path, size_mib: int = DEFAULT_SIZE_MIB, *, force: bool = False,
           label: str = VOLUME_LABEL) -> CacheDiskResult:
    path = Path(path)
    label = valid_label(label)
    if path.exists() and not path.is_file():
        raise CacheDiskError(f"{path}: not a regular file")
    if path.exists() and path.stat().st_size > 0 and not force:
        if is_cache_disk(path):
            return CacheDiskResult(path, False, f"{path}: already a cloudboot cache disk; "
                                   "left unchanged (staged files and entries kept)")
        raise CacheDiskError(
            f"{path}: exists and is not a cloudboot cache disk; refusing to overwrite it "
            "(use --force to replace it)"
        )
    total, first, last = layout(size_mib)
    part_bytes = (last - first + 1) * 512
    try:
        geometry(part_bytes, 32, MAX_CLUSTER_BYTES)
    except FatError as e:
        raise CacheDiskError(f"cache disk of {size_mib} MiB: {e} for the partition") from None
    if reproducible():
        disk_guid = gpt.stable_guid(f"cache-disk:{size_mib}:{label}")
        part_guid = gpt.stable_guid(f"cache-disk-esp:{size_mib}:{label}")
    else:
        disk_guid, part_guid = str(uuid.uuid4()), str(uuid.uuid4())
    fat = FatBuilder()
    fat.mkdir("EFI/Linux")
    with atomic_output(path) as tmp, open(tmp, "r+b") as out:
        out.truncate(total * 512)
        gpt.write_gpt(out, total, disk_guid, [
            gpt.Partition(gpt.ESP_TYPE, part_guid, PARTITION_NAME, first, last),
        ])
        fat.write(out, first * 512, part_bytes, fat_bits=32, label=label,
                  volume_id=zlib.crc32(part_guid.encode()), timestamp=build_time(),
                  hidden_sectors=first, max_cluster_bytes=MAX_CLUSTER_BYTES)
        out.flush()
        os.fsync(out.fileno())
    return CacheDiskResult(path, True, f"{path}: cache disk created ({size_mib} MiB, FAT32 "
                           f"partition {PARTITION_NAME!r}, volume label {label})")
