"""Foreign-arch root trees: the debootstrap steps and running real arm64 binaries via binfmt."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cloudboot.arch import get_arch, host_arch
from cloudboot.debian import debpkg
from lab.images import foreign

ARM64 = get_arch("arm64")


def test_host_arch_is_one_debootstrap_run(tmp_path: Path) -> None:
    cmds = foreign.debootstrap_commands("bookworm", host_arch(), tmp_path / "t", "http://m",
                                        ("udev", "zstd"), tmp_path / "c", tmp_path / "s")
    assert len(cmds) == 1
    assert cmds[0][0] == "debootstrap" and "--foreign" not in cmds[0]
    assert f"--arch={host_arch().debian}" in cmds[0] and "--include=udev,zstd" in cmds[0]


@pytest.mark.skipif(host_arch() == ARM64, reason="host: arm64 is the host's own architecture here")
def test_foreign_arch_is_first_stage_then_chrooted_second_stage(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    first, second = foreign.debootstrap_commands("trixie", ARM64, tree, "http://m", ("udev",),
                                                 tmp_path / "c", tmp_path / "s")
    assert "--foreign" in first and "--arch=arm64" in first
    assert first[-4:] == ["trixie", str(tree), "http://m", str(tmp_path / "s")]
    # The second stage mounts /proc in the tree: it runs in a private mount namespace.
    assert second[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert second[-4:] == ["chroot", str(tree), "/debootstrap/debootstrap", "--second-stage"]


def test_handler_state_reads_the_kernel_format(tmp_path: Path) -> None:
    # The layout of a /proc/sys/fs/binfmt_misc/<name> file (fs/binfmt_misc.c).
    (tmp_path / "qemu-aarch64").write_text(
        "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n"
        "offset 0\nmagic 7f454c460201010000000000000000000200b700\n")
    state = foreign.handler_state("qemu-aarch64", tmp_path)
    assert state["status"] == "enabled"
    assert state["interpreter"] == "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"
    assert state["flags"] == "PF"
    assert foreign.handler_state("qemu-riscv64", tmp_path) == {}


def test_unknown_arch_has_no_handler() -> None:
    with pytest.raises(ValueError):
        foreign.ensure_binfmt("sparc64")


@pytest.fixture(scope="module")
def arm64_loader() -> Path:
    """The arm64 dynamic loader from Debian's libc6:arm64: a self-contained arm64 ELF."""
    if host_arch() == ARM64:
        pytest.skip("host: arm64 is the host's own architecture here")
    if os.geteuid() != 0:
        pytest.skip("host: enabling binfmt_misc handlers needs root")
    if shutil.which("update-binfmts") is None or not Path("/usr/libexec/qemu-binfmt").is_dir():
        pytest.fail("qemu-user-static and binfmt-support are not installed "
                    "(python -m cloudboot.debian.hostdeps ensure matrix)")
    try:
        root = debpkg.unpacked("libc6", "arm64")
    except debpkg.PackageError as e:
        pytest.fail(f"libc6:arm64 could not be fetched: {e}", pytrace=False)
    return root / "lib/ld-linux-aarch64.so.1"


def test_arm64_binary_runs_through_binfmt(arm64_loader: Path) -> None:
    interp = foreign.ensure_binfmt(ARM64)
    assert os.path.exists(interp)
    assert foreign.handler_state("qemu-aarch64")["status"] == "enabled"
    # Executed directly: only binfmt_misc can make an x86_64 kernel run it.
    proc = subprocess.run([str(arm64_loader.resolve()), "--version"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ld.so (Debian GLIBC") and "stable release" in proc.stdout
