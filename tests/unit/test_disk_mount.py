"""mount_ro() of real ext4/xfs/btrfs images on loop devices, then kernel discovery on them."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloudboot.init.storage import discover, superblock
from cloudboot.init.storage.mount import MountError, mount_ro, umount

Attach = Callable[..., str]


def _loop_reason() -> str | None:
    if os.geteuid() != 0:
        return "host: mounting needs root"
    if not Path("/dev/loop-control").exists():
        return "host: no loop device support (/dev/loop-control missing)"
    return None


pytestmark = pytest.mark.skipif(_loop_reason() is not None, reason=_loop_reason() or "")


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def attach() -> Iterator[Attach]:
    """Attach image files to loop devices; detach them all afterwards."""
    loops: list[str] = []

    def _attach(img: Path, readonly: bool = True) -> str:
        proc = subprocess.run(
            ["losetup", "-f", "--show", *(["-r"] if readonly else []), str(img)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            pytest.skip(f"host: loop devices unavailable: {proc.stderr.strip()}")
        loops.append(proc.stdout.strip())
        return loops[-1]

    yield _attach
    for dev in loops:
        subprocess.run(["losetup", "-d", dev], check=False)


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "mnt"
    target.mkdir()
    yield target
    if os.path.ismount(target):
        umount(target, lazy=True)


def put(root: Path, rel: str, data: str = "x") -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(data)


def debian_tree(root: Path) -> Path:
    for v in ("6.1.0-9-cloud-amd64", "6.1.0-10-cloud-amd64"):
        put(root, f"boot/vmlinuz-{v}", f"kernel {v}")
        put(root, f"boot/initrd.img-{v}", "i")
    os.symlink("boot/vmlinuz-6.1.0-10-cloud-amd64", root / "vmlinuz")
    put(root, "etc/kernel/cmdline", "root=LABEL=root ro")
    return root


def assert_read_only(target: Path) -> None:
    with pytest.raises(OSError) as err:
        (target / "probe-write").write_text("no")
    assert err.value.errno == errno.EROFS
    opts = next(ln.split()[3] for ln in Path("/proc/mounts").read_text().splitlines()
                if ln.split()[1] == str(target))  # fmt: skip
    assert "ro" in opts.split(",")


def test_ext4(tmp_path: Path, attach: Attach, mnt: Path) -> None:
    img = tmp_path / "root.img"
    run("truncate", "-s", "16M", str(img))
    run("mkfs.ext4", "-q", "-L", "root", "-d", str(debian_tree(tmp_path / "t")), str(img))
    dev = attach(img)
    info = superblock.probe(dev)
    assert info is not None and info.fstype == "ext4" and info.label == "root"
    assert mount_ro(dev, mnt, info.fstype) == "noload"
    try:
        assert_read_only(mnt)
        best = discover.pick(mnt)
        assert best.kernel == mnt / "boot/vmlinuz-6.1.0-10-cloud-amd64"
        assert best.kernel.read_text() == "kernel 6.1.0-10-cloud-amd64"
        assert discover.default_cmdline(mnt) == "root=LABEL=root ro"
    finally:
        umount(mnt)
    assert not os.path.ismount(mnt)


def test_ext2_via_noload_free_path(tmp_path: Path, attach: Attach, mnt: Path) -> None:
    img = tmp_path / "boot.img"
    run("truncate", "-s", "8M", str(img))
    run("mkfs.ext2", "-q", "-d", str(debian_tree(tmp_path / "t")), str(img))
    dev = attach(img)
    mount_ro(dev, mnt, "ext2")
    try:
        assert discover.pick(mnt).version == "6.1.0-10-cloud-amd64"
    finally:
        umount(mnt)


def xfs_protofile(root: Path) -> str:
    lines = ["/dev/null", "0 0", "d--755 0 0"]

    def walk(d: Path) -> None:
        for p in sorted(d.iterdir()):
            if p.is_symlink():
                lines.append(f"{p.name} l--777 0 0 {os.readlink(p)}")
            elif p.is_dir():
                lines.append(f"{p.name} d--755 0 0")
                walk(p)
                lines.append("$")
            else:
                lines.append(f"{p.name} ---644 0 0 {p}")

    walk(root)
    return "\n".join([*lines, "$"]) + "\n"


def test_xfs_boot_partition_with_bls(tmp_path: Path, attach: Attach, mnt: Path) -> None:
    """AlmaLinux 9 style: a separate XFS /boot, kernels at its top, BLS entries."""
    boot = tmp_path / "boot"
    v = "5.14.0-427.13.1.el9_4.x86_64"
    put(boot, f"vmlinuz-{v}", "kernel")
    put(boot, f"initramfs-{v}.img", "initrd")
    put(boot, f"loader/entries/abc-{v}.conf",
        f"title AlmaLinux\nversion {v}\nlinux /vmlinuz-{v}\ninitrd /initramfs-{v}.img\n"
        "options root=UUID=1 ro console=ttyS0\n")  # fmt: skip
    proto = tmp_path / "proto"
    proto.write_text(xfs_protofile(boot))
    img = tmp_path / "xfs.img"
    run("truncate", "-s", "300M", str(img))
    run("mkfs.xfs", "-q", "-L", "boot", "-p", str(proto), str(img))
    dev = attach(img)
    assert mount_ro(dev, mnt, "xfs") == "norecovery"
    try:
        assert_read_only(mnt)
        best = discover.pick(mnt)
        assert (best.source, best.version) == ("bls", v)
        assert best.initrd == mnt / f"initramfs-{v}.img"
        assert best.options == "root=UUID=1 ro console=ttyS0"
    finally:
        umount(mnt)


def test_btrfs_opensuse_tree_and_subvolume(tmp_path: Path, attach: Attach, mnt: Path) -> None:
    """Absolute Image-V links into /usr/lib/modules must resolve inside the mounted fs."""
    if shutil.which("btrfs") is None:
        pytest.fail("btrfs-progs' btrfs tool is missing")
    v = "6.4.0-150600.23.25-default"
    img = tmp_path / "btrfs.img"
    run("truncate", "-s", "128M", str(img))
    run("mkfs.btrfs", "-q", "-L", "suse", str(img))
    # Build a real subvolume the way openSUSE does; needs one read-write mount.
    dev = attach(img, readonly=False)
    subprocess.run(["mount", dev, str(mnt)], check=True)
    try:
        run("btrfs", "subvolume", "create", str(mnt / "@"))
        root = mnt / "@"
        put(root, f"usr/lib/modules/{v}/Image", "suse kernel")
        put(root, f"boot/initrd-{v}", "i")
        os.symlink(f"/usr/lib/modules/{v}/Image", root / f"boot/Image-{v}")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    opts = mount_ro(dev, mnt, "btrfs")
    assert opts in ("rescue=nologreplay", "nologreplay")
    try:
        assert_read_only(mnt)
        best = discover.pick(mnt)  # the top level: the root is found inside @
        assert best.kernel == mnt / f"@/usr/lib/modules/{v}/Image"
    finally:
        umount(mnt)
    assert mount_ro(dev, mnt, "btrfs", subvol="@").endswith("subvol=@")
    try:
        best = discover.pick(mnt)
        assert best.kernel == mnt / f"usr/lib/modules/{v}/Image"
        assert best.kernel.read_text() == "suse kernel"
        assert best.initrd == mnt / f"boot/initrd-{v}"
    finally:
        umount(mnt)


def test_errors_name_device_and_type(tmp_path: Path, attach: Attach, mnt: Path) -> None:
    img = tmp_path / "blank.img"
    run("truncate", "-s", "8M", str(img))
    dev = attach(img)
    with pytest.raises(MountError) as err:
        mount_ro(dev, mnt, "ext4")
    msg = str(err.value)
    assert dev in msg and "ext4" in msg and "EINVAL" in msg
    with pytest.raises(MountError, match="unsupported filesystem type 'ntfs'"):
        mount_ro(dev, mnt, "ntfs")
    with pytest.raises(MountError, match="EINVAL") as err:
        umount(mnt)
    assert str(mnt) in str(err.value)
