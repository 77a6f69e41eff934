"""The arm64 bootstrap initramfs, built on this host from Debian's arm64 packages, and its
Python runtime run for real under qemu-user (binfmt_misc) in a chroot."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cloudboot.arch import get_arch, host_arch
from cloudboot.debian import debpkg
from cloudboot.initramfs import builder, elf
from lab.images import foreign

ARM64 = get_arch("arm64")
EM_AARCH64 = 183


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("apt-get") is None or shutil.which("cpio") is None:
        pytest.fail("apt-get or cpio missing: cannot fetch or unpack the arm64 runtime")
    try:
        path = builder.default_initramfs(ARM64)  # what `cloudboot build --arch arm64` packs
    except debpkg.PackageError as e:
        pytest.fail(f"arm64 packages could not be fetched: {e}", pytrace=False)
    root = tmp_path_factory.mktemp("arm64-initramfs")
    subprocess.run(["cpio", "-idm", "--quiet"], input=gzip.decompress(path.read_bytes()),
                   cwd=root, check=True)
    return root


def _elves(root: Path) -> list[Path]:
    out = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            with open(p, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    out.append(p)
    return out


def test_every_binary_is_arm64(unpacked: Path) -> None:
    elves = _elves(unpacked)
    # interpreter, loader, libc, extensions and kernel modules
    assert len(elves) > 20
    wrong = [str(p.relative_to(unpacked)) for p in elves
             if elf.read_elf(p).machine != EM_AARCH64]
    assert not wrong, f"non-arm64 ELF files in the arm64 initramfs: {wrong[:10]}"
    python = elf.read_elf(unpacked / "usr/bin/python3.11")
    assert python.interp == "/lib/ld-linux-aarch64.so.1"
    assert (unpacked / python.interp.lstrip("/")).exists()
    assert list((unpacked / "lib/modules").glob("*-arm64/kernel"))


def test_python_runs_under_qemu_user(unpacked: Path) -> None:
    if host_arch() == ARM64:
        pytest.skip("host: arm64 is the host's own architecture here")
    if os.geteuid() != 0:
        pytest.skip("host: chroot and binfmt_misc need root")
    try:
        foreign.ensure_binfmt(ARM64)
    except foreign.ForeignError as e:
        pytest.fail(f"cannot run arm64 binaries here: {e}", pytrace=False)
    # The guest picks its kexec_file_load number from the running machine: 294 on arm64.
    code = ("import sys, platform; sys.path.insert(0, '/usr/lib/cloudboot'); "
            "import cloudboot.init.main, zlib, ctypes; from cloudboot.arch import host_arch; "
            "print(platform.machine(), host_arch().kexec_file_load_nr, zlib.crc32(b'cb'))")
    proc = subprocess.run(["chroot", str(unpacked), "/usr/bin/python3.11", "-IS", "-c", code],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["aarch64", "294", str(__import__("zlib").crc32(b"cb"))]
    assert proc.stderr == "", proc.stderr
