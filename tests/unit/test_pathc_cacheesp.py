"""Cache ESP selection (Path C) on real GPT images made with sgdisk and `cloudboot cache-disk`;
the cache disk's FAT32 read (and written) by pyfatfs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cloudboot.init.pathc import cacheesp
from cloudboot.init.storage.gptread import read_gpt
from cloudboot.media import cachedisk
from tests.helpers import need_tools, pyfat

if shutil.which("sgdisk") is None:
    pytest.fail("sgdisk (gdisk) is not installed", pytrace=False)

ESP = "EF00"
LINUX = "8300"


def gpt_image(path: Path, parts: list[tuple[str, str]], size_mib: int = 40) -> Path:
    """A sparse disk image with one 8 MiB partition per (type code, name)."""
    path.write_bytes(b"")
    subprocess.run(["truncate", "-s", f"{size_mib}M", str(path)], check=True)
    args = ["sgdisk", "-o"]
    for i, (code, name) in enumerate(parts, 1):
        args += [f"-n{i}:0:+8M", f"-t{i}:{code}"] + ([f"-c{i}:{name}"] if name else [])
    subprocess.run([*args, str(path)], check=True, capture_output=True)
    return path


def cands(*images: Path) -> list[cacheesp.Candidate]:
    return [c for img in images for c in cacheesp.candidates_on(str(img))]


def test_named_partition_wins_over_other_esps(tmp_path: Path) -> None:
    target = gpt_image(tmp_path / "target.raw", [(ESP, "EFI System"), (LINUX, "root")])
    cache = tmp_path / "cache.raw"
    cachedisk.create(cache, 64)
    chosen = cacheesp.choose(cands(target, cache))
    assert chosen.warning is None
    assert chosen.candidate.disk == str(cache)
    assert chosen.partition.name == cacheesp.PARTITION_NAME
    # The partition facts are the real table's, as the Boot#### device path needs them.
    real = read_gpt(cache)
    assert real is not None
    assert chosen.partition == real.partitions[0]
    assert chosen.devpath == f"{cache}1"


def test_named_partition_of_any_type_counts(tmp_path: Path) -> None:
    disk = gpt_image(tmp_path / "d.raw", [(LINUX, "root"), ("0700", "cloud-boot-cache")])
    chosen = cacheesp.choose(cands(disk))
    assert chosen.partition.number == 2 and chosen.warning is None


def test_single_unnamed_esp_is_used_with_a_warning(tmp_path: Path) -> None:
    disk = gpt_image(tmp_path / "d.raw", [(LINUX, "root"), (ESP, "")])
    chosen = cacheesp.choose(cands(disk))
    assert chosen.partition.number == 2
    assert chosen.warning is not None and "cloud-boot-cache" in chosen.warning
    assert f"{disk}2" in chosen.warning


def test_several_unnamed_esps_are_an_error_naming_them(tmp_path: Path) -> None:
    a = gpt_image(tmp_path / "a.raw", [(ESP, "EFI System")])
    b = gpt_image(tmp_path / "b.raw", [(LINUX, "root"), (ESP, "esp")])
    with pytest.raises(cacheesp.CacheEspError) as err:
        cacheesp.choose(cands(a, b))
    msg = str(err.value)
    assert f"{a}1" in msg and f"{b}2" in msg and "2 ESPs" in msg


def test_no_esp_tells_how_to_make_a_cache_disk(tmp_path: Path) -> None:
    disk = gpt_image(tmp_path / "d.raw", [(LINUX, "root")])
    blank = tmp_path / "blank.raw"
    blank.write_bytes(bytes(1 << 20))  # no partition table at all
    assert cands(disk, blank) == []
    with pytest.raises(cacheesp.CacheEspError) as err:
        cacheesp.choose([])
    assert "cloudboot cache-disk" in str(err.value) and "attach" in str(err.value)


def test_partition_node_names(tmp_path: Path) -> None:
    disk = gpt_image(tmp_path / "nvme0n1", [(ESP, "cloud-boot-cache")])
    assert cacheesp.candidates_on(str(disk))[0].devpath == f"{disk}p1"


def test_find_on_a_machine_without_disks(tmp_path: Path) -> None:
    (tmp_path / "class" / "block").mkdir(parents=True)
    with pytest.raises(cacheesp.CacheEspError, match="no cache ESP"):
        cacheesp.find(tmp_path, tmp_path / "dev", timeout=0)


def test_cache_disk_esp_reads_in_pyfatfs(tmp_path: Path) -> None:
    disk = tmp_path / "cache.raw"
    cachedisk.create(disk, 64)
    table = read_gpt(disk)
    assert table is not None
    (part,) = table.partitions
    with pyfat(disk, part.first_lba * 512) as fs:
        boot = fs.fs.bpb_header
        assert fs.fs.fat_type == 32 and boot["BS_FilSysType"] == b"FAT32   "
        # The label init and humans see: in the boot sector and as the root's volume entry.
        assert boot["BS_VolLab"] == cachedisk.VOLUME_LABEL.encode().ljust(11)
        specials = fs.fs.root_dir.get_entries()[2]
        assert [str(e.get_short_name()) for e in specials if e.is_volume_id()] == [
            cachedisk.VOLUME_LABEL]
        # The file system fills its partition exactly, and knows where that starts.
        assert boot["BPB_TotSec32"] == part.last_lba - part.first_lba + 1
        assert boot["BPB_HiddSec"] == part.first_lba
        assert fs.fs.bytes_per_cluster <= cachedisk.MAX_CLUSTER_BYTES
        assert fs.listdir("/") == ["EFI"] and fs.listdir("/EFI") == ["Linux"]
        assert fs.listdir("/EFI/Linux") == []


def test_another_fat_writer_can_stage_into_the_cache_esp(tmp_path: Path) -> None:
    """In the guest, Linux's vfat stages kernels into what `cache-disk` made; here pyfatfs
    plays that writer (allocating from our FAT), then pyfatfs and mtools read the file back."""
    need_tools("mcopy")
    disk = tmp_path / "cache.raw"
    cachedisk.create(disk, 64)
    table = read_gpt(disk)
    assert table is not None
    (part,) = table.partitions
    kernel = os.urandom(300_000)
    staged = "debian-13_x86_64-vmlinuz.efi"
    name = f"/EFI/Linux/{staged}"
    with pyfat(disk, part.first_lba * 512, read_only=False) as fs:
        fs.writebytes(name, kernel)
    with pyfat(disk, part.first_lba * 512) as fs:
        assert fs.readbytes(name) == kernel and fs.listdir("/EFI/Linux") == [staged]
    assert read_gpt(disk) == table  # the writer stayed inside its partition
    esp = tmp_path / "esp.img"
    esp.write_bytes(disk.read_bytes()[part.first_lba * 512 : (part.last_lba + 1) * 512])
    out = tmp_path / "out.efi"
    subprocess.run(["mcopy", "-n", "-i", str(esp), f"::{name}", str(out)], check=True,
                   env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    assert out.read_bytes() == kernel
    # (No fsck here: pyfatfs 1.1 leaves FSInfo's free count stale, which fsck reports.)
