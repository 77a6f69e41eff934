"""gptread.read_gpt() on disks partitioned by sgdisk, checked against `sgdisk -i`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from cloudboot.init.storage.gptread import SECTOR, read_gpt

DISK_GUID = "11111111-2222-3333-4444-555555555555"


def sgdisk(*args: str) -> str:
    return subprocess.run(["sgdisk", *args], capture_output=True, text=True, check=True).stdout


def sgdisk_info(disk: Path, number: int) -> dict[str, str]:
    out = sgdisk("-i", str(number), str(disk))
    info = dict(re.findall(r"^([^:\n]+): (.*)$", out, re.M))
    info["Partition name"] = info["Partition name"].strip("'")
    info["Partition GUID code"] = info["Partition GUID code"].split()[0]
    info["First sector"] = info["First sector"].split()[0]
    info["Last sector"] = info["Last sector"].split()[0]
    return info


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    img = tmp_path / "disk.img"
    subprocess.run(["truncate", "-s", "20M", str(img)], check=True)
    sgdisk(
        "-U", DISK_GUID,
        "-n", "1:2048:+4M", "-t", "1:ef00", "-c", "1:cloud-boot-cache",
        "-n", "3:0:+2M", "-t", "3:8300", "-c", "3:root ü",
        str(img),
    )  # fmt: skip
    return img


def test_matches_sgdisk(disk: Path) -> None:
    gpt = read_gpt(disk)
    assert gpt is not None and not gpt.from_backup
    assert gpt.disk_guid == DISK_GUID
    assert [p.number for p in gpt.partitions] == [1, 3], "slot numbers survive a gap"
    for part in gpt.partitions:
        ref = sgdisk_info(disk, part.number)
        assert part.type_guid.upper() == ref["Partition GUID code"]
        assert part.part_guid.upper() == ref["Partition unique GUID"]
        assert part.name == ref["Partition name"]
        assert part.first_lba == int(ref["First sector"])
        assert part.last_lba == int(ref["Last sector"])
    esp = gpt.by_number(1)
    assert esp is not None and esp.name == "cloud-boot-cache"
    assert esp.type_guid == "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
    assert esp.start == 2048 * SECTOR and esp.size == 4 << 20


def test_damaged_primary_falls_back_to_backup(disk: Path) -> None:
    good = read_gpt(disk)
    with open(disk, "r+b") as f:
        f.seek(SECTOR + 40)  # inside the primary header: its CRC no longer matches
        f.write(b"\xff" * 8)
    gpt = read_gpt(disk)
    assert gpt is not None and gpt.from_backup
    assert good is not None and gpt.partitions == good.partitions
    assert gpt.disk_guid == DISK_GUID


def test_damaged_primary_entries_fall_back_to_backup(disk: Path) -> None:
    with open(disk, "r+b") as f:
        f.seek(2 * SECTOR + 56)  # the first entry's name: entries CRC breaks, header is fine
        f.write("XXXX".encode("utf-16-le"))
    gpt = read_gpt(disk)
    assert gpt is not None and gpt.from_backup
    assert gpt.partitions[0].name == "cloud-boot-cache"


def test_both_headers_damaged(disk: Path) -> None:
    size = disk.stat().st_size
    with open(disk, "r+b") as f:
        for pos in (SECTOR, size - SECTOR):
            f.seek(pos)
            f.write(b"\0" * 8)
    assert read_gpt(disk) is None


def test_not_gpt(tmp_path: Path) -> None:
    img = tmp_path / "plain"
    img.write_bytes(bytes(64 * 1024))
    assert read_gpt(img) is None
    with pytest.raises(OSError, match="missing"):
        read_gpt(tmp_path / "missing")
