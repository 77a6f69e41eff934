"""superblock.probe() on real filesystem images, checked against `blkid -p`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cloudboot.init.storage.superblock import FsInfo, probe

UUID = "0b7c6a2e-5d44-4f7e-9a63-2f1d8c0e4b11"


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (python -m cloudboot.debian.hostdeps ensure "
                        "tests)")


def blkid(path: Path, offset: int = 0) -> dict[str, str]:
    cmd = ["blkid", "-p", "-o", "export", str(path)]
    if offset:
        cmd[2:2] = ["-O", str(offset)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def assert_matches_blkid(info: FsInfo | None, path: Path, offset: int = 0) -> None:
    ref = blkid(path, offset)
    assert info is not None, f"probe found nothing, blkid says {ref}"
    assert info.fstype == ref["TYPE"]
    assert info.label == ref.get("LABEL")
    assert info.uuid == ref.get("UUID")


def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / "vmlinuz-6.1.0-10-cloud-amd64").write_bytes(b"kernel")
    return root


def sparse(path: Path, size: str) -> Path:
    subprocess.run(["truncate", "-s", size, str(path)], check=True)
    return path


@pytest.mark.parametrize(
    "mkfs",
    [
        ["mkfs.ext4", "-q", "-L", "cloudimg-rootfs"],
        ["mkfs.ext4", "-q", "-O", "^metadata_csum,^64bit", "-L", "r"],
        ["mkfs.ext3", "-q", "-L", "old3"],
        ["mkfs.ext2", "-q"],
    ],
    ids=["ext4", "ext4-nocsum", "ext3", "ext2-nolabel"],
)
def test_ext_family(tmp_path: Path, mkfs: list[str]) -> None:
    need(mkfs[0], "blkid")
    img = sparse(tmp_path / "fs.img", "16M")
    subprocess.run([*mkfs, "-U", UUID, "-d", str(tree(tmp_path)), str(img)], check=True)
    info = probe(img)
    assert_matches_blkid(info, img)
    assert info is not None and info.uuid == UUID


def test_ext3_is_not_ext4(tmp_path: Path) -> None:
    need("mkfs.ext3")
    img = sparse(tmp_path / "fs.img", "16M")
    subprocess.run(["mkfs.ext3", "-q", str(img)], check=True)
    assert probe(img) is not None and probe(img).fstype == "ext3"  # type: ignore[union-attr]


def xfs_protofile(root: Path) -> str:
    """An mkfs.xfs protofile describing `root` (dirs, regular files, symlinks)."""
    lines = ["/dev/null", "0 0", "d--755 0 0"]

    def walk(d: Path, depth: int) -> None:
        for p in sorted(d.iterdir()):
            pad = " " * depth
            if p.is_symlink():
                lines.append(f"{pad}{p.name} l--777 0 0 {p.readlink()}")
            elif p.is_dir():
                lines.append(f"{pad}{p.name} d--755 0 0")
                walk(p, depth + 1)
                lines.append(f"{pad}$")
            else:
                lines.append(f"{pad}{p.name} ---644 0 0 {p}")

    walk(root, 1)
    lines.append("$")
    return "\n".join(lines) + "\n"


def make_xfs(tmp_path: Path, root: Path, label: str, img: Path | None = None) -> Path:
    proto = tmp_path / "proto"
    proto.write_text(xfs_protofile(root))
    img = sparse(img or tmp_path / "xfs.img", "300M")
    cmd = ["mkfs.xfs", "-q", "-L", label, "-m", f"uuid={UUID}", "-p", str(proto), str(img)]
    subprocess.run(cmd, check=True)
    return img


def test_xfs(tmp_path: Path) -> None:
    need("mkfs.xfs", "blkid")
    img = make_xfs(tmp_path, tree(tmp_path), "boot")
    info = probe(img)
    assert_matches_blkid(info, img)
    assert info == FsInfo("xfs", "boot", UUID)


def test_btrfs(tmp_path: Path) -> None:
    need("mkfs.btrfs", "blkid")
    img = sparse(tmp_path / "b.img", "128M")
    cmd = ["mkfs.btrfs", "-q", "-L", "opensuse", "-U", UUID, "--rootdir", str(tree(tmp_path))]
    subprocess.run([*cmd, str(img)], check=True)
    info = probe(img)
    assert_matches_blkid(info, img)
    assert info == FsInfo("btrfs", "opensuse", UUID)


@pytest.mark.parametrize("bits,size", [("32", "64M"), ("16", "16M"), ("12", "2M")])
def test_vfat(tmp_path: Path, bits: str, size: str) -> None:
    need("mkfs.vfat", "blkid")
    img = sparse(tmp_path / "v.img", size)
    cmd = ["mkfs.vfat", "-F", bits, "-n", "CB-CACHE", "-i", "1234abcd", str(img)]
    subprocess.run(cmd, check=True, capture_output=True)
    info = probe(img)
    assert_matches_blkid(info, img)
    assert info == FsInfo("vfat", "CB-CACHE", "1234-ABCD")


def test_vfat_root_dir_label_wins(tmp_path: Path) -> None:
    """fatlabel rewrites both copies; a volume entry in the root dir is what blkid shows."""
    need("mkfs.vfat", "fatlabel", "blkid")
    img = sparse(tmp_path / "v.img", "64M")
    subprocess.run(["mkfs.vfat", "-F", "32", str(img)], check=True, capture_output=True)
    assert probe(img) == FsInfo("vfat", None, blkid(img)["UUID"])
    subprocess.run(["fatlabel", str(img), "NEWLABEL"], check=True, capture_output=True)
    assert_matches_blkid(probe(img), img)
    assert probe(img).label == "NEWLABEL"  # type: ignore[union-attr]


def test_iso9660(tmp_path: Path) -> None:
    need("xorriso", "blkid")
    iso = tmp_path / "seed.iso"
    cmd = ["xorriso", "-as", "mkisofs", "-quiet", "-V", "config-2", "-J", "-R"]
    subprocess.run([*cmd, "-o", str(iso), str(tree(tmp_path))], check=True, capture_output=True)
    info = probe(iso)
    assert_matches_blkid(info, iso)
    assert info is not None and info.fstype == "iso9660" and info.label == "config-2"


def test_probe_at_offset_inside_gpt_disk(tmp_path: Path) -> None:
    need("mkfs.ext4", "sgdisk", "blkid")
    fs = sparse(tmp_path / "fs.img", "8M")
    subprocess.run(["mkfs.ext4", "-q", "-L", "inner", "-U", UUID, str(fs)], check=True)
    disk = sparse(tmp_path / "disk.img", "16M")
    subprocess.run(["sgdisk", "-n", "1:2048:+8M", str(disk)], check=True, capture_output=True)
    with open(disk, "r+b") as out:
        out.seek(2048 * 512)
        out.write(fs.read_bytes())
    assert probe(disk) is None, "a bare GPT disk carries no filesystem"
    info = probe(disk, offset=2048 * 512)
    assert_matches_blkid(info, disk, 2048 * 512)
    assert info == FsInfo("ext4", "inner", UUID)


def test_unknown_and_short_data(tmp_path: Path) -> None:
    zeros = tmp_path / "zeros"
    zeros.write_bytes(bytes(1 << 20))
    assert probe(zeros) is None
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"XF")
    assert probe(tiny) is None


def test_missing_device_names_path(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="nope"):
        probe(tmp_path / "nope")
