"""blockdev.list_devices()/resolve() on a fake sysfs tree whose /dev nodes are real images."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cloudboot.init.storage.blockdev import DiskNotFound, list_devices, matcher, resolve
from cloudboot.init.storage.gptread import read_gpt
from tests.helpers import need_tools


@pytest.fixture(autouse=True)
def _tools() -> None:
    need_tools("sgdisk", "mkfs.ext4", "mkfs.vfat", "xorriso")


ROOT_UUID = "5e0f4d8a-1c2b-4a3d-9e8f-7a6b5c4d3e2f"


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def add_sysfs(
    sys_root: Path,
    name: str,
    sectors: int,
    parent: str | None = None,
    partnum: int | None = None,
    partname: str | None = None,
) -> None:
    """Lay out a device the way the kernel does: partitions nest in their disk's directory."""
    devices = sys_root / "devices" / "pci0000:00" / "virtio" / "block"
    d = devices / parent / name if parent else devices / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "size").write_text(f"{sectors}\n")
    (d / "dev").write_text("254:0\n")
    uevent = [f"DEVNAME={name}", f"DEVTYPE={'partition' if parent else 'disk'}"]
    if partnum is not None:
        (d / "partition").write_text(f"{partnum}\n")
        uevent.append(f"PARTN={partnum}")
    if partname:
        uevent.append(f"PARTNAME={partname}")
    (d / "uevent").write_text("\n".join(uevent) + "\n")
    cls = sys_root / "class" / "block"
    cls.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(d, cls), cls / name)


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("machine")
    sys_root, dev = base / "sys", base / "dev"
    dev.mkdir()
    # vda: GPT disk with an ESP (vda1) and a root ext4 (vda2)
    run("truncate", "-s", "48M", str(dev / "vda"))
    run(
        "sgdisk",
        "-n",
        "1:2048:+33M",
        "-t",
        "1:ef00",
        "-c",
        "1:cloud-boot-cache",
        "-n",
        "2:0:+8M",
        "-t",
        "2:8300",
        "-c",
        "2:distro-root",
        str(dev / "vda"),
    )
    run("truncate", "-s", "33M", str(dev / "vda1"))
    run("mkfs.vfat", "-F", "32", "-n", "CB-CACHE", "-i", "0badcafe", str(dev / "vda1"))
    run("truncate", "-s", "8M", str(dev / "vda2"))
    run("mkfs.ext4", "-q", "-L", "cloudimg-rootfs", "-U", ROOT_UUID, str(dev / "vda2"))
    gpt = read_gpt(dev / "vda")
    assert gpt is not None
    for p in gpt.partitions:
        add_sysfs(sys_root, f"vda{p.number}", p.size // 512, "vda", p.number, p.name)
    add_sysfs(sys_root, "vda", 48 * 2048)
    # vdb: a whole-disk ISO (config drive); sr0: a CD drive with no medium
    src = base / "seed"
    src.mkdir()
    (src / "meta_data.json").write_text("{}")
    run("xorriso", "-as", "mkisofs", "-quiet", "-V", "config-2", "-o", str(dev / "vdb"), str(src))
    add_sysfs(sys_root, "vdb", (dev / "vdb").stat().st_size // 512)
    add_sysfs(sys_root, "sr0", 0)
    return sys_root, dev


def test_list_devices(machine: tuple[Path, Path]) -> None:
    sys_root, dev = machine
    devs = {d.name: d for d in list_devices(sys_root, dev)}
    assert list(devs) == ["vda", "vda1", "vda2", "vdb"], "empty sr0 is left out, disks first"
    vda, esp, root, seed = devs["vda"], devs["vda1"], devs["vda2"], devs["vdb"]
    assert not vda.is_partition and vda.fstype is None and vda.size == 48 << 20
    assert esp.is_partition and esp.partnum == 1 and esp.parent == "vda"
    assert esp.devpath == str(dev / "vda1")
    assert (esp.fstype, esp.label, esp.uuid) == ("vfat", "CB-CACHE", "0BAD-CAFE")
    assert esp.partlabel == "cloud-boot-cache"
    gpt = read_gpt(dev / "vda")
    assert gpt is not None and esp.partuuid == gpt.partitions[0].part_guid
    assert (root.fstype, root.label, root.uuid) == ("ext4", "cloudimg-rootfs", ROOT_UUID)
    assert root.partlabel == "distro-root"
    assert (seed.fstype, seed.label, seed.partlabel) == ("iso9660", "config-2", None)


@pytest.mark.parametrize(
    "spec,name",
    [
        ("LABEL=cloudimg-rootfs", "vda2"),
        ('LABEL="config-2"', "vdb"),
        (f"UUID={ROOT_UUID.upper()}", "vda2"),
        ("UUID=0bad-cafe", "vda1"),
        ("PARTLABEL=cloud-boot-cache", "vda1"),
        ("/dev/vda2", "vda2"),
        ("/dev/vdb", "vdb"),
    ],
)
def test_resolve(machine: tuple[Path, Path], spec: str, name: str) -> None:
    sys_root, dev = machine
    assert resolve(spec, timeout=0, sys_root=sys_root, dev_root=dev).name == name


def test_resolve_partuuid_any_case(machine: tuple[Path, Path]) -> None:
    sys_root, dev = machine
    gpt = read_gpt(dev / "vda")
    assert gpt is not None
    spec = f"PARTUUID={gpt.partitions[1].part_guid.upper()}"
    assert resolve(spec, timeout=0, sys_root=sys_root, dev_root=dev).name == "vda2"


def test_resolve_by_link(machine: tuple[Path, Path]) -> None:
    sys_root, dev = machine
    link = dev / "disk" / "by-label" / "cloudimg-rootfs"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to("../../vda2")
    found = resolve("/dev/disk/by-label/cloudimg-rootfs", 0, sys_root=sys_root, dev_root=dev)
    assert found.name == "vda2"


def test_not_found_lists_every_device(machine: tuple[Path, Path]) -> None:
    sys_root, dev = machine
    t0 = time.monotonic()
    with pytest.raises(DiskNotFound) as err:
        resolve("LABEL=nope", timeout=0.3, sys_root=sys_root, dev_root=dev, interval=0.1)
    assert time.monotonic() - t0 >= 0.3, "it polls until the timeout"
    msg = str(err.value)
    assert "LABEL=nope" in msg
    for needle in (
        "vda1",
        "fstype=vfat",
        "label=CB-CACHE",
        "partlabel=cloud-boot-cache",
        "vda2",
        f"uuid={ROOT_UUID}",
        "vdb",
        "label=config-2",
    ):
        assert needle in msg


def test_late_device_is_found(tmp_path: Path) -> None:
    """Disks can appear after init starts (module load, slow controllers): poll for them."""
    sys_root, dev = tmp_path / "sys", tmp_path / "dev"
    dev.mkdir()
    (sys_root / "class" / "block").mkdir(parents=True)

    def plug() -> None:
        time.sleep(0.4)
        img = dev / "vdc.tmp"
        run("truncate", "-s", "8M", str(img))
        run("mkfs.ext4", "-q", "-L", "LATE", str(img))
        img.rename(dev / "vdc")
        add_sysfs(sys_root, "vdc", 8 * 2048)

    t = threading.Thread(target=plug)
    t.start()
    try:
        found = resolve("LABEL=LATE", timeout=10, sys_root=sys_root, dev_root=dev, interval=0.1)
    finally:
        t.join()
    assert found.devpath == str(dev / "vdc") and found.fstype == "ext4"


def test_bad_spec() -> None:
    with pytest.raises(ValueError, match="cloudboot.disk='sda1'"):
        matcher("sda1")
    with pytest.raises(ValueError, match="LABEL="):
        matcher("FOO=bar")


def test_mbr_disk_partuuid(tmp_path: Path) -> None:
    """MBR disks have no GPT: PARTUUID is the disk signature plus the partition number."""
    if shutil.which("sfdisk") is None:
        pytest.fail("sfdisk is not installed (apt-get install fdisk)")
    sys_root, dev = tmp_path / "sys", tmp_path / "dev"
    dev.mkdir()
    run("truncate", "-s", "16M", str(dev / "sda"))
    layout = "label: dos\nlabel-id: 0x1234abcd\nstart=2048, size=8192, type=83\n"
    layout += "start=10240, size=4096, type=83\n"
    subprocess.run(["sfdisk", "-q", str(dev / "sda")], input=layout, text=True, check=True)
    run("truncate", "-s", "4M", str(dev / "sda1"))
    run("mkfs.ext4", "-q", "-L", "alpine", str(dev / "sda1"))
    add_sysfs(sys_root, "sda1", 8192, "sda", 1)
    add_sysfs(sys_root, "sda", 16 * 2048)
    found = resolve("PARTUUID=1234ABCD-01", 0, sys_root=sys_root, dev_root=dev)
    assert found.name == "sda1" and found.label == "alpine" and found.partlabel is None
    disk_id = subprocess.run(
        ["sfdisk", "--disk-id", str(dev / "sda")], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert disk_id == "0x1234abcd"
