"""Enumerate block devices from sysfs and resolve `cloudboot.disk=` specs without udev.

Both roots are parameters so tests can use a fake sysfs tree with image files as /dev nodes.
"""

from __future__ import annotations

import os
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cloudboot.init.storage import gptread, superblock
from cloudboot.init.storage.superblock import FsInfo


class DiskNotFound(LookupError):
    """No block device matched a spec before the timeout."""


@dataclass(frozen=True)
class BlockDevice:
    name: str  # kernel name, e.g. "vda1"
    devpath: str  # the node to open, e.g. "/dev/vda1"
    size: int  # bytes
    is_partition: bool
    partnum: int | None = None
    parent: str | None = None  # kernel name of the whole disk, for partitions
    partlabel: str | None = None
    partuuid: str | None = None
    fs: FsInfo | None = None

    @property
    def fstype(self) -> str | None:
        return self.fs.fstype if self.fs else None

    @property
    def label(self) -> str | None:
        return self.fs.label if self.fs else None

    @property
    def uuid(self) -> str | None:
        return self.fs.uuid if self.fs else None

    def describe(self) -> str:
        return (
            f"{self.devpath} size={self.size} fstype={self.fstype or '-'} "
            f"label={self.label or '-'} uuid={self.uuid or '-'} "
            f"partlabel={self.partlabel or '-'} partuuid={self.partuuid or '-'}"
        )


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _uevent(entry: Path) -> dict[str, str]:
    text = _read(entry / "uevent") or ""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _parent_name(entry: Path, name: str) -> str | None:
    # Real sysfs nests a partition inside its disk's directory; fake trees may not.
    real = Path(os.path.realpath(entry))
    if real.name == name and (real.parent / "dev").exists():
        return real.parent.name
    m = re.fullmatch(r"(.*\d)p\d+|(.*[^\d])\d+", name)
    return (m.group(1) or m.group(2)) if m else None


def list_devices(
    sys_root: str | Path = "/sys", dev_root: str | Path = "/dev", probe: bool = True
) -> list[BlockDevice]:
    """Every block device of non-zero size, whole disks before their partitions, by name."""
    class_dir = Path(sys_root) / "class" / "block"
    try:
        names = sorted(os.listdir(class_dir))
    except FileNotFoundError:
        return []
    gpts: dict[str, gptread.Gpt | None] = {}
    found = []
    for name in names:
        entry = class_dir / name
        sectors = _read(entry / "size")
        if sectors is None or not sectors.isdigit() or int(sectors) == 0:
            continue  # empty loop devices, CD drives without media
        uevent = _uevent(entry)
        devpath = str(Path(dev_root) / uevent.get("DEVNAME", name))
        partnum_text = _read(entry / "partition")
        is_part = partnum_text is not None
        partnum = int(partnum_text) if partnum_text and partnum_text.isdigit() else None
        parent = _parent_name(entry, name) if is_part else None
        partlabel = uevent.get("PARTNAME") or None
        partuuid = None
        if is_part and parent and partnum:
            if parent not in gpts:
                gpts[parent] = _safe_gpt(str(Path(dev_root) / parent))
            gpt = gpts[parent]
            part = gpt.by_number(partnum) if gpt else None
            if part is not None:
                partlabel, partuuid = part.name or partlabel, part.part_guid
            elif gpt is None:
                partuuid = mbr_partuuid(str(Path(dev_root) / parent), partnum)
        fs = _safe_probe(devpath) if probe else None
        found.append(
            BlockDevice(
                name, devpath, int(sectors) * 512, is_part, partnum, parent, partlabel, partuuid, fs
            )
        )
    found.sort(key=lambda d: (d.parent or d.name, d.is_partition, d.partnum or 0, d.name))
    return found


def _safe_gpt(devpath: str) -> gptread.Gpt | None:
    try:
        return gptread.read_gpt(devpath)
    except OSError:
        return None


def mbr_partuuid(disk: str, partnum: int) -> str | None:
    """The kernel's PARTUUID for an MBR partition: disk signature and number, "1234abcd-02"."""
    try:
        with open(disk, "rb") as f:
            mbr = f.read(512)
    except OSError:
        return None
    if len(mbr) < 512 or mbr[510:512] != b"\x55\xaa":
        return None
    if any(mbr[446 + 16 * i + 4] == 0xEE for i in range(4)):
        return None  # protective MBR of a GPT disk whose GPT did not read
    signature = struct.unpack_from("<I", mbr, 440)[0]
    return f"{signature:08x}-{partnum:02x}" if signature else None


def _safe_probe(devpath: str) -> FsInfo | None:
    try:
        return superblock.probe(devpath)
    except OSError:
        return None  # node missing yet, or no medium


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def matcher(spec: str, dev_root: str | Path = "/dev") -> Callable[[BlockDevice], bool]:
    """A predicate for one `cloudboot.disk=` spec; ValueError if the spec has no known form."""
    key, sep, value = spec.partition("=")
    value = _unquote(value.strip())
    kind = key.strip().upper() if sep else ""
    if kind == "LABEL":
        return lambda d: d.label == value
    if kind == "UUID":
        return lambda d: d.uuid is not None and d.uuid.lower() == value.lower()
    if kind == "PARTLABEL":
        return lambda d: d.partlabel == value
    if kind == "PARTUUID":
        return lambda d: d.partuuid is not None and d.partuuid.lower() == value.lower()
    if spec.startswith("/dev/"):
        rel = spec[len("/dev/") :]
        root = Path(dev_root)

        def by_path(d: BlockDevice) -> bool:
            if d.devpath == str(root / rel) or d.name == rel:
                return True
            # /dev/disk/by-*/… or other links: compare what they point at
            link = root / rel
            return os.path.lexists(link) and os.path.realpath(link) == os.path.realpath(d.devpath)

        return by_path
    raise ValueError(
        f"cloudboot.disk={spec!r}: expected /dev/…, LABEL=, UUID=, PARTLABEL= or PARTUUID="
    )


def resolve(
    spec: str,
    timeout: float = 10.0,
    sys_root: str | Path = "/sys",
    dev_root: str | Path = "/dev",
    interval: float = 0.25,
) -> BlockDevice:
    """Find the device `spec` names, polling until `timeout` seconds because disks appear late.

    If several match, the first in list_devices() order wins (a disk before its partitions).
    Raises DiskNotFound listing every device seen, ValueError for a malformed spec.
    """
    match = matcher(spec, dev_root)
    deadline = time.monotonic() + timeout
    while True:
        devices = list_devices(sys_root, dev_root)
        hits = [d for d in devices if match(d)]
        if hits:
            return hits[0]
        if time.monotonic() >= deadline:
            break
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
    seen = "\n  ".join(d.describe() for d in devices) or "(no block devices at all)"
    raise DiskNotFound(
        f"no block device matches cloudboot.disk={spec} after {timeout:g}s "
        f"(sysfs {sys_root}); devices seen:\n  {seen}"
    )
