"""Build the Debian target images and boot them directly (QEMU -kernel, no cloudboot).

Slow on a cold cache (debootstrap: minutes per release); with cached images each boot takes
~10-20 s under TCG. Marked `boot`: deselect with `-m "not boot"`.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from lab.images import debian
from lab.images.fixtures import boot_direct, target_image_fixture

# The direct boots validate the image recipes; the bookworm/ext4 one is in the smoke subset.
pytestmark = [pytest.mark.boot, pytest.mark.e2e]

bookworm_ext4 = target_image_fixture("bookworm", "ext4")


@pytest.mark.smoke
def test_image_metadata_matches_the_disk(bookworm_ext4: debian.TargetImage) -> None:
    image = bookworm_ext4
    assert (image.release, image.fs, image.os_id, image.version_id) == \
        ("bookworm", "ext4", "debian", "12")
    assert image.kernel_version.endswith("-cloud-amd64")
    assert image.kernel.name == f"vmlinuz-{image.kernel_version}" and image.kernel.is_file()
    assert image.initrd.stat().st_size > 1_000_000
    assert not image.path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    info = subprocess.run(["sgdisk", "-i", "1", str(image.path)], capture_output=True,
                          text=True, check=True).stdout
    assert f"Partition unique GUID: {image.part_uuid.upper()}" in info
    assert "Partition name: 'cbroot'" in info
    # Asking again returns the cached image, not a rebuild.
    assert debian.build("bookworm", "ext4") == image


@pytest.mark.parametrize(("release", "fs"), [
    pytest.param("bookworm", "ext4", marks=pytest.mark.smoke), ("bookworm", "xfs"),
    ("bookworm", "btrfs"), ("trixie", "ext4"),
])
def test_direct_boot_reports_userspace_and_powers_off(release: str, fs: str,
                                                      tmp_path: Path) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.fail("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    image = debian.build(release, fs)
    boot = boot_direct(image, append="cb.test=\"x y\"", log=tmp_path / "console.log")
    assert boot.marker is not None, f"no marker; console tail:\n{boot.console[-3000:]}"
    assert boot.marker["id"] == "debian"
    assert boot.marker["version_id"] == image.version_id
    assert boot.marker["kernel"] == image.kernel_version
    assert "root=LABEL=cbroot" in boot.marker["cmdline"]
    assert 'cb.test="x y"' in boot.marker["cmdline"]
    assert boot.powered_off, f"exit {boot.returncode} after {boot.seconds:.0f} s"
    print(f"{release}/{fs}: powered off after {boot.seconds:.1f} s")


@pytest.mark.smoke
def test_blank_disk_has_the_label_and_no_kernel() -> None:
    disk = debian.build_blank("ext4", "cbroot")
    probe = subprocess.run(["blkid", "-p", "-O", str(1024 * 1024), "-o", "export", str(disk)],
                           capture_output=True, text=True, check=True).stdout
    assert "LABEL=cbroot" in probe and "TYPE=ext4" in probe
    # e2fsprogs' unix I/O reads "file?offset=N": list /boot inside the partition.
    listing = subprocess.run(["debugfs", "-R", "ls -l /boot", f"{disk}?offset={1024 * 1024}"],
                             capture_output=True, text=True, check=True).stdout
    assert listing.count("\n") >= 2 and "vmlinuz" not in listing
