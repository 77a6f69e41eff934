"""Protofile writer and the three mkfs paths, on a small tree, with the real tools."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from lab.images.diskimage import MIB, gpt_disk
from lab.images.filesystems import make_filesystem, read_label_uuid
from lab.images.protofile import ProtofileError, protofile, sticky_paths
from tests.helpers import need_tools

UUID = "3f1c2b6e-9a0d-4c1e-8f7a-2b5d6e7f8a90"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("cbtarget\n")
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    (root / "usr" / "bin").mkdir(parents=True)
    su = root / "usr" / "bin" / "su"
    su.write_bytes(b"#!/bin/sh\n")
    os.chmod(su, 0o4755)
    os.symlink("usr/bin", root / "bin")
    os.link(root / "etc" / "hostname", root / "etc" / "hostname.hard")
    os.mkfifo(root / "fifo")
    if os.geteuid() == 0:
        os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.chmod(root / "null", 0o666)
        os.chown(root / "etc" / "hostname", 100, 101)
    return root


def test_protofile_describes_every_kind_of_entry(tree: Path) -> None:
    text = protofile(tree)
    lines = text.splitlines()
    assert lines[0] and lines[1] == "0 0" and lines[2].startswith("d--755 ")
    assert "  bin l--777 " in text and text.count(" usr/bin\n") == 1
    assert f"    su -u-755 0 0 {tree}/usr/bin/su" in text or os.geteuid() != 0
    assert "  tmp d--777 " in text  # the sticky bit has no protofile form ...
    assert ("/tmp", stat.S_IFDIR | 0o1777) in sticky_paths(tree)  # ... so it is reported
    assert "  fifo p--" in text
    if os.geteuid() == 0:
        assert "  null c--666 0 0 1 3" in text
        assert f"    hostname ---644 100 101 {tree}/etc/hostname" in text
    # Every directory, the root included, is closed by its own "$".
    dirs = sum(1 for line in lines[3:] if line.split()[1:2] and line.split()[1][0] == "d")
    assert sum(1 for line in lines if line.strip() == "$") == dirs + 1


@pytest.mark.parametrize("name", ["with space", ":colon-first", "$"])
def test_unrepresentable_names_are_refused_with_their_path(tmp_path: Path, name: str) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / name).write_text("x")
    with pytest.raises(ProtofileError, match="cannot be written"):
        protofile(tmp_path / "d")


def needs(*tools: str) -> None:
    need_tools(*tools)


def xfs_db(image: Path, *commands: str) -> str:
    args = ["xfs_db", "-r"] + [a for c in commands for a in ("-c", c)] + [str(image)]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("fs", ["ext4", "xfs", "btrfs"])
def test_make_filesystem_labels_and_fills_without_mounting(tree: Path, tmp_path: Path,
                                                           fs: str) -> None:
    needs(f"mkfs.{fs}", "blkid")
    out = tmp_path / "fs.img"
    size = make_filesystem(tree, out, fs, "cbroot", UUID)
    assert out.stat().st_size == size and size % MIB == 0
    assert read_label_uuid(out) == (fs, "cbroot", UUID)
    if fs == "xfs":
        needs("xfs_db")
        assert "core.mode = 041777" in xfs_db(out, "path /tmp", "print core.mode")
        assert "core.mode = 0104755" in xfs_db(out, "path /usr/bin/su", "print core.mode")
        assert "hostname" in xfs_db(out, "path /etc", "ls")
    elif fs == "ext4":
        needs("debugfs")
        cat = subprocess.run(["debugfs", "-R", "cat /etc/hostname", str(out)],
                             capture_output=True, text=True, check=True).stdout
        assert cat == "cbtarget\n"
        st = subprocess.run(["debugfs", "-R", "stat /tmp", str(out)],
                            capture_output=True, text=True, check=True).stdout
        assert "Mode:  01777" in st
    else:
        needs("btrfs")
        listing = subprocess.run(["btrfs", "inspect-internal", "dump-tree", "-t", "fs",
                                  str(out)], capture_output=True, text=True, check=True).stdout
        assert "hostname" in listing and "mode 41777" in listing


def test_gpt_disk_places_the_filesystem_at_1mib(tree: Path, tmp_path: Path) -> None:
    needs("mkfs.ext4", "sgdisk", "blkid")
    fs_image = tmp_path / "fs.img"
    make_filesystem(tree, fs_image, "ext4", "cbroot", UUID)
    disk = tmp_path / "disk.raw"
    part = "0b9a3f0e-5d8c-4e2a-9b1f-6c7d8e9fa0b1"
    gpt_disk(fs_image, disk, part_name="cbroot", part_uuid=part,
             disk_uuid="1e2d3c4b-5a69-4788-97a6-b5c4d3e2f101")
    assert disk.stat().st_size == fs_image.stat().st_size + 2 * MIB
    info = subprocess.run(["sgdisk", "-i", "1", str(disk)], capture_output=True, text=True,
                          check=True).stdout
    assert "First sector: 2048 " in info
    assert f"Partition unique GUID: {part.upper()}" in info
    assert "Partition name: 'cbroot'" in info
    probe = subprocess.run(["blkid", "-p", "-O", str(MIB), "-o", "export", str(disk)],
                           capture_output=True, text=True, check=True).stdout
    assert f"UUID={UUID}" in probe and "LABEL=cbroot" in probe
    # The copy keeps holes: the disk uses about as many blocks as the filesystem did.
    assert disk.stat().st_blocks <= fs_image.stat().st_blocks + 256
