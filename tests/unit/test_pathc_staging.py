"""Staging on the cache ESP (Path C): kernel checks, verified writes, retention, a full FAT.

The staging logic runs on a real directory; the vfat round trip loop-mounts a real FAT image
read-write (as root), which needs the host kernel's vfat driver.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import subprocess
from pathlib import Path

import pytest

from cloudboot.init import pid1
from cloudboot.init.pathc import staging
from tests.helpers import need_tools


def pe_image(machine: int = 0x8664, size: int = 300_000) -> bytes:
    """A minimal PE (MZ header -> 'PE\\0\\0' + COFF machine), padded: what the check reads."""
    head = bytearray(0x80)
    head[:2] = b"MZ"
    struct.pack_into("<I", head, 0x3C, 0x40)
    head[0x40:0x44] = b"PE\0\0"
    struct.pack_into("<H", head, 0x44, machine)
    body = hashlib.sha256(b"kernel").digest() * ((size - len(head)) // 32 + 1)
    return bytes(head) + body[: size - len(head)]


def test_kernel_checks() -> None:
    pe = pe_image()
    assert staging.kernel_for_firmware(pe, 0x8664) == pe
    assert staging.kernel_for_firmware(gzip.compress(pe), 0x8664) == pe  # gzip is peeled
    with pytest.raises(staging.StagingError, match="not an EFI-stub image"):
        staging.kernel_for_firmware(b"\x7fELF" + bytes(4000), 0x8664)
    with pytest.raises(staging.StagingError, match="not an EFI-stub image"):
        staging.kernel_for_firmware(gzip.compress(bytes(5000)), 0x8664)
    with pytest.raises(staging.StagingError, match="arm64"):
        staging.kernel_for_firmware(pe_image(0xAA64), 0x8664)


def test_stage_writes_verified_files(tmp_path: Path) -> None:
    esp = tmp_path / "esp"
    esp.mkdir()
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(os.urandom(3 << 20))
    kernel = pe_image()
    got = staging.stage(esp, "debian 12/ext4", kernel, initrd)
    assert got.safe == "debian12ext4"
    assert got.kernel.efi_path == "\\EFI\\Linux\\debian12ext4-vmlinuz.efi"
    assert got.initrd is not None and got.initrd.efi_path == "\\EFI\\Linux\\debian12ext4-initrd"
    k = esp / "EFI/Linux/debian12ext4-vmlinuz.efi"
    i = esp / "EFI/Linux/debian12ext4-initrd"
    assert k.read_bytes() == kernel and got.kernel.size == len(kernel)
    assert got.kernel.sha256 == hashlib.sha256(kernel).hexdigest()
    assert i.read_bytes() == initrd.read_bytes()
    assert got.initrd.sha256 == hashlib.sha256(initrd.read_bytes()).hexdigest()
    assert sorted(p.name for p in (esp / "EFI/Linux").iterdir()) == [i.name, k.name]
    # Staging the same target again replaces it in place.
    again = staging.stage(esp, "debian 12/ext4", pe_image(size=200_000), None)
    assert k.stat().st_size == 200_000 and again.initrd is None


def test_leftover_temporary_files_are_removed(tmp_path: Path) -> None:
    d = tmp_path / "EFI/Linux"
    d.mkdir(parents=True)
    (d / ("x-vmlinuz.efi" + staging.TMP_SUFFIX)).write_bytes(b"half")
    staging.stage(tmp_path, "x", pe_image(), None)
    assert [p.name for p in d.iterdir()] == ["x-vmlinuz.efi"]


def test_retention_keeps_three_and_spares_referenced(tmp_path: Path) -> None:
    for n, name in enumerate(["a", "b", "c"]):
        staging.stage(tmp_path, name, pe_image(), None)
        os.utime(tmp_path / f"EFI/Linux/{name}-vmlinuz.efi", (1000 + n, 1000 + n))
    # "a" is the oldest but a Boot#### points at it: "b" goes instead.
    refs = staging.referenced_names(["\\EFI\\Linux\\A-vmlinuz.efi", "\\EFI\\BOOT\\BOOTX64.EFI"])
    assert refs == {"a"}
    got = staging.stage(tmp_path, "d", pe_image(), None, referenced=refs)
    assert got.dropped == ["b"]
    assert set(staging.staged_targets(tmp_path)) == {"a", "c", "d"}
    got = staging.stage(tmp_path, "e", pe_image(), None)
    assert got.dropped == ["a"]
    assert set(staging.staged_targets(tmp_path)) == {"c", "d", "e"}


def test_remove_all_removes_only_staged_files(tmp_path: Path) -> None:
    staging.stage(tmp_path, "a", pe_image(), None)
    (tmp_path / "EFI/BOOT").mkdir()
    (tmp_path / "EFI/BOOT/BOOTX64.EFI").write_bytes(b"x")
    (tmp_path / "EFI/Linux/other.efi").write_bytes(b"y")
    assert staging.remove_all(tmp_path) == ["\\EFI\\Linux\\a-vmlinuz.efi"]
    assert (tmp_path / "EFI/BOOT/BOOTX64.EFI").exists()
    assert (tmp_path / "EFI/Linux/other.efi").exists()


# --- a real FAT, loop-mounted read-write ------------------------------------------------------
def _vfat_available() -> str | None:
    if os.geteuid() != 0:
        return "host: needs root to loop-mount a FAT image"
    need_tools("losetup", "mkfs.vfat", "fsck.vfat")
    subprocess.run(["modprobe", "vfat"], capture_output=True, check=False)
    if "vfat" not in Path("/proc/filesystems").read_text().split():
        return (f"host: the host kernel ({os.uname().release}) has no vfat driver; the guest-side "
                "vfat staging is covered by the Path C e2e cells")
    if not Path("/dev/loop-control").exists():
        return "host: no loop devices (/dev/loop-control missing)"
    return None


@pytest.fixture
def fat(tmp_path: Path):  # type: ignore[no-untyped-def]
    why = _vfat_available()
    if why:
        pytest.skip(why)
    img = tmp_path / "esp.img"
    subprocess.run(["truncate", "-s", "40M", str(img)], check=True)
    subprocess.run(["mkfs.vfat", "-F", "32", "-n", "CB-CACHE", str(img)], check=True,
                   capture_output=True)
    loop = subprocess.run(["losetup", "-f", "--show", str(img)], check=True,
                          capture_output=True, text=True).stdout.strip()
    mnt = tmp_path / "mnt"
    try:
        yield img, loop, mnt
    finally:
        if pid1.is_mountpoint(str(mnt)):
            subprocess.run(["umount", str(mnt)], check=False)
        subprocess.run(["losetup", "-d", loop], check=False)


def test_stage_on_real_vfat(fat, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    img, loop, mnt = fat
    initrd = tmp_path / "initrd"
    initrd.write_bytes(os.urandom(5 << 20))
    staging.mount_rw(loop, mnt)
    try:
        got = staging.stage(mnt, "debian-12", pe_image(size=4 << 20), initrd)
    finally:
        staging.unmount(mnt)
    assert got.kernel.size == 4 << 20
    check = subprocess.run(["fsck.vfat", "-n", str(img)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    listing = subprocess.run(["mdir", "-i", str(img), "-b", "::/EFI/Linux"],
                             capture_output=True, text=True,
                             env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout
    assert "debian-12-vmlinuz.efi" in listing and "debian-12-initrd" in listing


def test_full_fat_is_refused_clearly(fat, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _img, loop, mnt = fat
    staging.mount_rw(loop, mnt)
    try:
        with pytest.raises(staging.StagingError, match="is full"):
            staging.stage(mnt, "big", pe_image(size=60 << 20), None)
        assert not list((mnt / "EFI/Linux").iterdir())
    finally:
        staging.unmount(mnt)


def test_full_file_system_is_refused_clearly(tmp_path: Path) -> None:
    """A real small file system (a 4 MiB tmpfs) that cannot take the kernel."""
    if os.geteuid() != 0:
        pytest.skip("host: needs root to mount a tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    pid1.mount("tmpfs", str(mnt), "tmpfs", 0, "size=4m")
    try:
        staging.stage(mnt, "old", pe_image(size=1 << 20), None)  # dropped to make room
        with pytest.raises(staging.StagingError, match="is full") as err:
            staging.stage(mnt, "big", pe_image(size=6 << 20), None)
        assert "cloudboot.reset=1" in str(err.value)
        assert not any(p.name.endswith(staging.TMP_SUFFIX) for p in (mnt / "EFI/Linux").iterdir())
        # What fits after the old target is dropped is staged.
        got = staging.stage(mnt, "mid", pe_image(size=2 << 20), None, referenced=set())
        assert got.kernel.size == 2 << 20
    finally:
        pid1.umount(str(mnt))
