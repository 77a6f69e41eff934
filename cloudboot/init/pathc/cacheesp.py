"""Find the Path C cache ESP: the FAT partition cloudboot stages target kernels on.

Rules (issue 5): the GPT partition named `cloud-boot-cache` wins; without one, a single ESP
(type C12A7328-…) on a writable disk is used with a warning; several such ESPs are an error
that names them (we will not guess which one is ours); none is an error telling the user to
attach a cache disk and how to make one. Read-only disks (the boot ISO) never count.

Standard library only: runs as PID 1 in the bootstrap initramfs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cloudboot.init.storage import blockdev, gptread

PARTITION_NAME = "cloud-boot-cache"
ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
HOW_TO_MAKE = (f"make one on the host with `cloudboot cache-disk menu-cache.raw 256` (GPT, one "
               f"FAT32 ESP named {PARTITION_NAME}) and attach it as a writable disk")


class CacheEspError(LookupError):
    """No usable cache ESP, or more than one candidate; the message says what to do."""


@dataclass(frozen=True)
class Candidate:
    disk: str  # node of the whole disk, e.g. /dev/vdb
    partition: gptread.GptPartition
    devpath: str  # node of the partition, e.g. /dev/vdb1

    @property
    def named(self) -> bool:
        return self.partition.name == PARTITION_NAME

    def describe(self) -> str:
        p = self.partition
        return (f"{self.devpath} (partition {p.number} of {self.disk}, name "
                f"{p.name or '(none)'!r}, partuuid {p.part_guid})")


@dataclass(frozen=True)
class CacheEsp:
    candidate: Candidate
    warning: str | None = None

    @property
    def devpath(self) -> str:
        return self.candidate.devpath

    @property
    def partition(self) -> gptread.GptPartition:
        return self.candidate.partition


def candidates_on(disk: str, partition_node: str | None = None) -> list[Candidate]:
    """ESPs and `cloud-boot-cache` partitions in the GPT of `disk` (a node or an image file).

    `partition_node` formats the partition's node from its number (default: Linux naming).
    """
    try:
        table = gptread.read_gpt(disk)
    except OSError:
        return []
    if table is None:
        return []
    out = []
    for p in table.partitions:
        if p.name != PARTITION_NAME and p.type_guid.lower() != ESP_TYPE:
            continue
        node = (partition_node or _linux_partition_node(disk)).format(n=p.number)
        out.append(Candidate(disk, p, node))
    return out


def _linux_partition_node(disk: str) -> str:
    # vdb -> vdb1, nvme0n1 -> nvme0n1p1, loop0 -> loop0p1
    return disk + ("p{n}" if disk[-1:].isdigit() else "{n}")


def choose(candidates: Iterable[Candidate]) -> CacheEsp:
    """Apply the rules of the module docstring; CacheEspError when none or ambiguous."""
    cands = list(candidates)
    named = [c for c in cands if c.named]
    if named:
        warning = None
        if len(named) > 1:
            warning = (f"{len(named)} partitions are named {PARTITION_NAME}: using "
                       f"{named[0].describe()}; others: "
                       + "; ".join(c.describe() for c in named[1:]))
        return CacheEsp(named[0], warning)
    if len(cands) == 1:
        return CacheEsp(cands[0], f"no partition is named {PARTITION_NAME}; using the only "
                        f"ESP, {cands[0].describe()}: name it {PARTITION_NAME} to silence this")
    if cands:
        raise CacheEspError(
            f"no partition is named {PARTITION_NAME} and {len(cands)} ESPs could hold the "
            "staged kernel: " + "; ".join(c.describe() for c in cands)
            + f". Name the one to use {PARTITION_NAME} (sgdisk -c N:{PARTITION_NAME}), "
            "or attach a cache disk made by `cloudboot cache-disk`")
    raise CacheEspError("no cache ESP: cloudboot.exit=reboot (Path C) stages the target kernel "
                        f"on a writable disk's ESP, and none is attached; {HOW_TO_MAKE}")


def _read_only(sys_root: Path, name: str) -> bool:
    try:
        return (sys_root / "class/block" / name / "ro").read_text().strip() == "1"
    except OSError:
        return False


def scan(sys_root: str | Path = "/sys", dev_root: str | Path = "/dev") -> list[Candidate]:
    """Candidates on every writable whole disk the kernel lists."""
    sys_root = Path(sys_root)
    devices = blockdev.list_devices(sys_root, dev_root, probe=False)
    parts = {(d.parent, d.partnum): d.devpath for d in devices if d.is_partition}
    out: list[Candidate] = []
    for d in devices:
        if d.is_partition or _read_only(sys_root, d.name):
            continue
        for c in candidates_on(d.devpath):
            node = parts.get((d.name, c.partition.number), c.devpath)
            out.append(Candidate(c.disk, c.partition, node))
    return out


def find(sys_root: str | Path = "/sys", dev_root: str | Path = "/dev",
         timeout: float = 5.0, interval: float = 0.25) -> CacheEsp:
    """The cache ESP, polling up to `timeout` s for the named partition (disks appear late)."""
    deadline = time.monotonic() + timeout
    while True:
        cands = scan(sys_root, dev_root)
        if any(c.named for c in cands) or time.monotonic() >= deadline:
            return choose(cands)
        time.sleep(interval)
