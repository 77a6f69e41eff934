"""The bootstrap initramfs, built for real from Debian packages and run for real (chroot, QEMU)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from cloudboot.arch import host_arch
from cloudboot.debian import debpkg
from cloudboot.initramfs import builder, kmods
from tests.helpers import need_tools

ARCH = host_arch()
MAX_COMPRESSED = 8 * 1024 * 1024


def _kernel_root() -> Path:
    try:
        return debpkg.unpacked(ARCH.kernel_package, ARCH.debian)
    except debpkg.PackageError as e:
        pytest.fail(f"the kernel package could not be fetched: {e}", pytrace=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[builder.Report, Path]:
    if shutil.which("apt-get") is None:
        pytest.skip("host: no apt-get (not a Debian host) to fetch the runtime packages")
    out = tmp_path_factory.mktemp("ir") / "initramfs.cpio.gz"
    try:
        report = builder.build(ARCH, out, kernel_root=_kernel_root(),
                               extra_files={"/etc/cloud-boot/marker": b"hello\n"})
    except debpkg.PackageError as e:
        pytest.fail(f"the Debian packages could not be fetched: {e}", pytrace=False)
    print(report.summary())
    return report, out


@pytest.fixture(scope="module")
def unpacked(built: tuple[builder.Report, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("cpio") is None:
        pytest.fail("cpio missing (apt-get install cpio)")
    root = tmp_path_factory.mktemp("root")
    data = gzip.decompress(built[1].read_bytes())
    subprocess.run(["cpio", "-idm", "--quiet"], input=data, cwd=root, check=True)
    return root


def test_report_and_size(built: tuple[builder.Report, Path]) -> None:
    report, out = built
    assert out.stat().st_size == report.compressed_size
    assert report.compressed_size <= MAX_COMPRESSED, report.summary()
    assert report.uncompressed_size > report.compressed_size
    assert report.pyc_size <= builder.PYC_BUDGET
    assert report.python_modules > 50 and report.module_count > 10
    assert report.kernel_version and len(report.sha256) == 64


def test_reproducible(built: tuple[builder.Report, Path], tmp_path: Path) -> None:
    report, out = built
    again = builder.build(ARCH, tmp_path / "again.cpio.gz", kernel_root=_kernel_root(),
                          extra_files={"/etc/cloud-boot/marker": b"hello\n"})
    assert again.sha256 == report.sha256
    assert (tmp_path / "again.cpio.gz").read_bytes() == out.read_bytes()


def test_layout(unpacked: Path, built: tuple[builder.Report, Path]) -> None:
    report = built[0]
    init = (unpacked / "init").read_text()
    assert init.startswith("#!/usr/bin/python3.11 -IS\n")
    assert "from cloudboot.init.main import main" in init
    assert os.access(unpacked / "init", os.X_OK)
    for d in ("dev", "proc", "sys", "run", "tmp", "etc"):
        assert (unpacked / d).is_dir(), d
    st = os.lstat(unpacked / "dev" / "console")
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (5, 1)
    assert (unpacked / "etc/cloud-boot/marker").read_bytes() == b"hello\n"
    assert (unpacked / "usr/lib/cloudboot/cloudboot/init/main.pyc").is_file()
    assert not list((unpacked / "usr/lib/cloudboot").rglob("*.py")), "sources must not ship"
    assert (unpacked / "usr/lib/python3.11/os.pyc").is_file()
    # the dynamic loader sits at the interpreter's PT_INTERP path (a symlink into libc6's dir)
    assert (unpacked / "lib64/ld-linux-x86-64.so.2").exists() or ARCH.name != "x86_64"
    moddir = unpacked / "lib/modules" / report.kernel_version
    order = (moddir / kmods.ORDER_FILE).read_text().split()
    for fs in kmods.FS_MODULES:
        order += (moddir / kmods.fs_order_file(fs)).read_text().split()
    assert len(set(order)) == report.module_count  # a dependency may serve two file systems
    assert all((moddir / rel).is_file() for rel in order)


def test_module_order_dependencies_first(unpacked: Path, built: tuple[builder.Report, Path],
                                         tmp_path: Path) -> None:
    version = built[0].kernel_version
    moddir = unpacked / "lib/modules" / version
    base = [kmods.modname(p) for p in (moddir / kmods.ORDER_FILE).read_text().split()]
    pos = {n: i for i, n in enumerate(base)}
    # virtio needs virtio_ring only from 6.1.192 on; the drivers need both in every kernel.
    assert max(pos["virtio_ring"], pos["virtio"]) < pos["virtio_pci"] < pos["virtio_blk"]
    assert pos["fat"] < pos["vfat"]
    assert pos["cdrom"] < pos["sr_mod"]
    # File-system modules load later, on demand: each group is its own order file, loaded
    # after the base list, so its dependencies are in the base list or earlier in the group.
    assert not {"ext4", "xfs", "btrfs"} & set(base)
    order = {fs: base + [kmods.modname(p) for p in
                         (moddir / kmods.fs_order_file(fs)).read_text().split()]
             for fs in kmods.FS_MODULES}
    builtin = (moddir / "modules.builtin").read_text()
    for fs, names in order.items():
        assert fs in names or f"/{fs}.ko" in builtin, fs  # Debian builds ext4 in
        assert len(names) == len(set(names)), fs
    # The oracle is the real depmod, run on a copy of the packed modules (not the
    # modules.dep the builder wrote itself).
    need_tools("depmod")
    shutil.copytree(moddir, tmp_path / "lib/modules" / version, symlinks=True)
    (tmp_path / "lib/modules" / version / "modules.dep").unlink()
    subprocess.run(["depmod", "-b", str(tmp_path), version], check=True, capture_output=True)
    deps = {}
    for line in (tmp_path / "lib/modules" / version / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[kmods.modname(mod)] = [kmods.modname(d) for d in rest.split()]
    for fs, names in order.items():
        where = {n: i for i, n in enumerate(names)}
        for mod in names:
            for dep in deps.get(mod, []):
                assert where[dep] < where[mod], (fs, mod, dep)


def test_python_runs_in_chroot(unpacked: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("host: chroot needs root")
    code = ("import sys; sys.path.insert(0, '/usr/lib/cloudboot'); import cloudboot.init.main; "
            "import zlib, ctypes, json; print('OK', zlib.crc32(b'cloudboot'), sys.flags.isolated)")
    proc = subprocess.run(["chroot", str(unpacked), "/usr/bin/python3.11", "-IS", "-c", code],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["OK", str(__import__("zlib").crc32(b"cloudboot")), "1"]
    assert proc.stderr == "", proc.stderr  # e.g. no "Could not find platform libraries"


def test_default_initramfs_is_cached(built: tuple[builder.Report, Path]) -> None:
    first = builder.default_initramfs(ARCH)
    stamp = first.stat().st_mtime_ns
    second = builder.default_initramfs(ARCH)
    assert second == first and second.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert first.read_bytes()[:2] == b"\x1f\x8b"
    # same inputs as the module fixture apart from the extra file
    assert abs(first.stat().st_size - built[0].compressed_size) < 4096


STANDIN = textwrap.dedent("""\
    import ctypes
    import json
    import os
    import time


    def main() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        print("CLOUDBOOT-STANDIN " + json.dumps({"t": time.monotonic(), "pid": os.getpid()}),
              flush=True)
        os.sync()
        libc.reboot(0x4321FEDC)  # LINUX_REBOOT_CMD_POWER_OFF
    """)


@pytest.mark.boot
def test_boots_under_qemu(tmp_path: Path) -> None:
    if ARCH.name != "x86_64":
        pytest.skip("host: boots the x86_64 kernel; this host is not x86_64")
    need_tools("qemu-system-x86_64")
    qemu = str(shutil.which("qemu-system-x86_64"))
    kroot = _kernel_root()
    vmlinuz = sorted((kroot / "boot").glob("vmlinuz-*"))
    if not vmlinuz:
        pytest.fail(f"no vmlinuz in {kroot}/boot")
    pkg = tmp_path / "src" / "cbstandin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "main.py").write_text(STANDIN)
    out = tmp_path / "standin.cpio.gz"
    builder.build(ARCH, out, kernel_root=kroot, entry="cbstandin.main",
                  source_roots=[tmp_path / "src"], modules=())
    start = time.monotonic()
    proc = subprocess.run(
        [qemu, "-machine", "q35", "-m", "1024", "-nographic", "-no-reboot", "-nic", "none",
         "-kernel", str(vmlinuz[-1]), "-initrd", str(out),
         "-append", "console=ttyS0 panic=-1 printk.time=1"],
        capture_output=True, text=True, timeout=240, check=False)
    console = proc.stdout
    assert "CLOUDBOOT-STANDIN" in console, console[-3000:]
    event = __import__("json").loads(console.split("CLOUDBOOT-STANDIN ", 1)[1].splitlines()[0])
    assert event["pid"] == 1
    assert "Kernel panic" not in console, console[-3000:]
    print(f"standin marker at {event['t']:.2f} s guest uptime; "
          f"qemu wall {time.monotonic() - start:.1f} s")


def test_guest_disk_code_runs_in_chroot(unpacked: Path, tmp_path: Path) -> None:
    """Run the guest's GPT and superblock readers inside the packed runtime on a real disk image:
    catches modules the import walk cannot see (codecs looked up by name, e.g. UTF-16-LE)."""
    if os.geteuid() != 0:
        pytest.skip("host: chroot needs root")
    need_tools("sgdisk", "mkfs.ext4")
    disk = unpacked / "disk.img"
    try:
        with open(disk, "wb") as f:
            f.truncate(8 << 20)
        subprocess.run(["sgdisk", "-n", "1:2048:0", "-c", "1:cloud-boot-cache", str(disk)],
                       check=True, capture_output=True)
        fs = tmp_path / "fs.img"
        subprocess.run(["mkfs.ext4", "-q", "-L", "cbroot", str(fs), "4M"], check=True)
        with open(disk, "r+b") as f:
            f.seek(2048 * 512)
            f.write(fs.read_bytes())
        code = ("import sys; sys.path.insert(0, '/usr/lib/cloudboot');"
                "from cloudboot.init.storage import gptread, superblock;"
                "p = gptread.read_gpt('/disk.img').partitions[0];"
                "print(p.name, superblock.probe('/disk.img', p.first_lba * 512).label)")
        proc = subprocess.run(["chroot", str(unpacked), "/usr/bin/python3.11", "-IS", "-c", code],
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["cloud-boot-cache", "cbroot"]
    finally:
        disk.unlink(missing_ok=True)
