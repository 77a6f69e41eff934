"""`cloudboot build` / `cache-disk` end to end through the CLI, bad input included."""

import os
import subprocess

import pytest

from cloudboot.cli.inspect import inspect_path
from cloudboot.cli.main import main
from tests.helpers import debian_kernel, marker_initramfs, need_tools


@pytest.fixture(scope="module")
def initrd(tmp_path_factory):
    return marker_initramfs(tmp_path_factory.mktemp("initrd") / "initrd.gz")


def test_build_writes_iso_and_uki(tmp_path, initrd, capsys):
    iso_path, uki_path = tmp_path / "boot.iso", tmp_path / "boot.efi"
    rc = main(["build", "--arch", "amd64", "--initramfs", str(initrd), "--cmdline",
               "console=ttyS0", "--target", "debian", "--exit", "reboot", "--uki", str(uki_path),
               "-o", str(iso_path)])
    assert rc == 0
    report = inspect_path(uki_path)
    assert report["cmdline"] == "console=ttyS0 cloudboot.target=debian cloudboot.exit=reboot"
    iso_report = inspect_path(iso_path)
    assert iso_report["kind"] == "boot.iso"
    assert any(f["path"] == "/EFI/BOOT/BOOTX64.EFI" for f in iso_report["esp_files"])


def test_reproducible_with_source_date_epoch(tmp_path, initrd, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    for name in ("a.iso", "b.iso"):
        assert main(["build", "--initramfs", str(initrd), "-o", str(tmp_path / name)]) == 0
    assert (tmp_path / "a.iso").read_bytes() == (tmp_path / "b.iso").read_bytes()


def _fails(capsys, argv, message):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("case,message", [
    ("missing-kernel", "no such file"),
    ("not-a-kernel", "not a PE/COFF file"),
    ("wrong-arch", "for x86_64, not for aarch64"),
    ("long-cmdline", "the limit is 2047"),
    ("unwritable", "cannot write"),
    ("missing-initramfs", "--initramfs"),
])
def test_bad_input_leaves_nothing_behind(tmp_path, initrd, capsys, case, message):
    out = tmp_path / "out" / "boot.iso"
    out.parent.mkdir()
    argv = ["build", "--initramfs", str(initrd), "-o", str(out)]
    if case == "missing-kernel":
        argv += ["--kernel", str(tmp_path / "nope")]
    elif case == "not-a-kernel":
        bogus = tmp_path / "vmlinuz"
        bogus.write_bytes(b"hello")
        argv += ["--kernel", str(bogus)]
    elif case == "wrong-arch":
        argv += ["--arch", "arm64", "--kernel", str(debian_kernel()),
                 "--stub", str(debian_kernel())]
    elif case == "long-cmdline":
        argv += ["--cmdline", "x" * 3000]
    elif case == "unwritable":
        os.chmod(out.parent, 0o500)
        if os.access(out.parent, os.W_OK):  # root ignores modes: use a read-only mount point
            argv[-1] = "/proc/boot.iso"
    elif case == "missing-initramfs":
        argv[2] = str(tmp_path / "missing.gz")
    try:
        _fails(capsys, argv, message)
    finally:
        os.chmod(out.parent, 0o755)
    assert list(out.parent.iterdir()) == []


def test_unknown_arch(capsys):
    with pytest.raises(SystemExit) as e:
        main(["build", "--arch", "sparc"])
    assert e.value.code == 2
    assert "unknown architecture 'sparc'" in capsys.readouterr().err


def test_cache_disk_is_idempotent_and_valid(tmp_path, capsys):
    need_tools("sgdisk", "fsck.vfat")
    disk = tmp_path / "menu-cache.raw"
    assert main(["cache-disk", str(disk)]) == 0
    before = disk.read_bytes()
    assert main(["cache-disk", str(disk)]) == 0
    assert "left unchanged" in capsys.readouterr().out
    assert disk.read_bytes() == before
    assert "No problems found" in subprocess.run(["sgdisk", "-v", str(disk)], capture_output=True,
                                                 text=True).stdout
    report = inspect_path(disk)
    (part,) = report["partitions"]
    assert part["name"] == "cloud-boot-cache" and part["fs"]["fstype"] == "vfat"
    assert part["first_lba"] == 2048
    assert {"path": "/EFI/Linux", "size": None} in report["esp_files"]
    esp = tmp_path / "esp"
    esp.write_bytes(before[2048 * 512 : (part["last_lba"] + 1) * 512])
    fsck = subprocess.run(["fsck.vfat", "-n", str(esp)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout


def test_cache_disk_reproducible(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    for n in ("a", "b"):
        assert main(["cache-disk", str(tmp_path / n), "64"]) == 0
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_cache_disk_refuses_foreign_file_and_tiny_size(tmp_path, capsys):
    other = tmp_path / "precious.img"
    other.write_bytes(b"precious data")
    _fails(capsys, ["cache-disk", str(other)], "not a cloudboot cache disk")
    assert other.read_bytes() == b"precious data"
    _fails(capsys, ["cache-disk", str(tmp_path / "tiny.raw"), "16"], "too small for FAT32")
    assert not (tmp_path / "tiny.raw").exists()
