"""The ctypes system calls of cloudboot-init, run for real on the host as non-PID-1 with
arguments the kernel must refuse (so nothing is ever loaded or rebooted)."""

from __future__ import annotations

import errno
import gzip
import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from cloudboot.init import kexec, modules, pid1
from tests.helpers import debian_kernel

ROOT = os.geteuid() == 0


def test_kexec_file_load_bad_fd_gives_errno_not_crash() -> None:
    assert not pid1.is_pid1()
    with pytest.raises(kexec.KexecRefused) as err:
        kexec.kexec_file_load(987654, None, "console=ttyS0")
    # EPERM without CAP_SYS_BOOT (containers), EBADF with it; ENOSYS if filtered.
    assert err.value.errno in (errno.EBADF, errno.EPERM, errno.ENOSYS)
    assert err.value.name == errno.errorcode[err.value.errno]
    assert "kexec_file_load refused: E" in str(err.value)


def test_kexec_file_load_rejects_a_non_kernel(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a kernel" * 100)
    fd = os.open(junk, os.O_RDONLY)
    try:
        with pytest.raises(kexec.KexecRefused) as err:
            kexec.kexec_file_load(fd, fd, "x")
    finally:
        os.close(fd)
    assert err.value.errno in (errno.ENOEXEC, errno.EPERM, errno.EINVAL, errno.ENOSYS)


def test_bare_kernel_unwraps_gzip_into_workdir(tmp_path: Path) -> None:
    real = debian_kernel()  # the host arch's Debian kernel, fetched into the suite's cache
    assert kexec.bare_kernel(real, tmp_path / "run") == real  # a bzImage loads as it is
    wrapped = tmp_path / "vmlinuz-gz"
    wrapped.write_bytes(gzip.compress(real.read_bytes(), compresslevel=1))
    out = kexec.bare_kernel(wrapped, tmp_path / "run")
    assert out == tmp_path / "run" / "vmlinuz-gz.unwrapped"
    assert out.read_bytes() == real.read_bytes()


def test_finit_module_bad_fd_gives_errno() -> None:
    with pytest.raises(OSError) as err:
        modules.finit_module(987654)
    assert err.value.errno in (errno.EBADF, errno.EPERM, errno.ENOSYS)


def test_load_all_reports_failures_and_keeps_going(tmp_path: Path) -> None:
    moddir = tmp_path / "lib/modules/6.1.0-test"
    (moddir / "kernel").mkdir(parents=True)
    (moddir / "kernel/junk.ko").write_bytes(b"\x7fELF-but-not-really" * 10)
    (moddir / "cloudboot.order").write_text(
        "# dependency order\n\nkernel/missing.ko\nkernel/junk.ko opt=1\n")
    assert modules.read_order(moddir / "cloudboot.order") == [
        (moddir / "kernel/missing.ko", ""), (moddir / "kernel/junk.ko", "opt=1")]
    report = modules.load_all(moddir / "cloudboot.order")
    assert report.loaded == [] and report.already == []
    names = [name for name, _ in report.failed]
    assert names == ["missing.ko", "junk.ko"]
    assert report.failed[0][1].startswith("ENOENT")
    # the kernel parsed and refused the junk (or we lack CAP_SYS_MODULE)
    assert report.failed[1][1].split(":")[0] in ("ENOEXEC", "EPERM", "EINVAL", "ENOSYS",
                                                  "EBADMSG", "EKEYREJECTED")
    summary = report.summary()
    assert summary["failed"] == 2 and len(summary["failures"]) == 2


def test_missing_order_file_is_nothing_to_load(tmp_path: Path) -> None:
    report = modules.load_all(tmp_path / "cloudboot.order")
    assert (report.loaded, report.failed) == ([], [])


@pytest.mark.skipif(not ROOT, reason="host: mount(2) and mknod(2) need root")
def test_mount_umount_tmpfs(tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    pid1.mount("tmpfs", str(target), "tmpfs", pid1.MS_NOSUID, "mode=0700,size=1m")
    try:
        assert pid1.is_mountpoint(str(target))
        assert stat.S_IMODE(target.stat().st_mode) == 0o700
    finally:
        pid1.umount(str(target))
    assert not pid1.is_mountpoint(str(target))
    with pytest.raises(OSError, match=r"mount -t nosuchfs none .*/mnt"):
        pid1.mount("none", str(target), "nosuchfs")


@pytest.mark.skipif(not ROOT, reason="host: mknod(2) needs root")
def test_fallback_dev_nodes(tmp_path: Path) -> None:
    assert pid1.ensure_dev_nodes(tmp_path) == []
    st = (tmp_path / "console").stat()
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 5 and os.minor(st.st_rdev) == 1
    assert pid1.ensure_dev_nodes(tmp_path) == []  # idempotent


def test_spawn_and_reaper() -> None:
    old = signal.getsignal(signal.SIGCHLD)
    pid1.install_reaper()
    try:
        # an orphan-like child nobody waits for is reaped by the handler
        stray = subprocess.Popen(["/bin/true"])
        pid = pid1.spawn(["/bin/sh", "-c", "exit 3"], {"PATH": "/bin"}, console="/dev/null")
        assert pid1.wait_child(pid) == 3
        stray.wait()
    finally:
        signal.signal(signal.SIGCHLD, old)
