"""Shared test helpers: real artefacts from the Debian packages cached by cloudboot."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from cloudboot.arch import Arch, get_arch
from cloudboot.media import cpio

if TYPE_CHECKING:
    from pyfatfs.PyFatFS import PyFatFS

MARKER = "CLOUDBOOT-TEST-MARKER"


# Every skip's reason starts with this: a test may skip only for what this class of host
# cannot have (macOS, a root login, a kernel driver the host kernel lacks), never for something
# an install would fix (tests/conftest.py turns any other skip into a failure).
HOST_CLASS = "host:"


def host_cannot(reason: str) -> NoReturn:
    """Skip: this class of host cannot run the test, for `reason`."""
    pytest.skip(f"{HOST_CLASS} {reason}")


def host_only(condition: bool, reason: str) -> pytest.MarkDecorator:
    """`skipif` for a host-class reason (see HOST_CLASS)."""
    return pytest.mark.skipif(condition, reason=f"{HOST_CLASS} {reason}")


def not_root() -> bool:
    return os.geteuid() != 0


INSTALL = "python -m cloudboot.debian.hostdeps ensure tests installs it"


def need_tools(*tools: str) -> None:
    """Fail (not skip) when a tool the set-up installs is missing: a hole in the gate."""
    missing = [t for t in tools if shutil.which(t) is None
               and not any(os.path.exists(os.path.join(d, t)) for d in ("/usr/sbin", "/sbin"))]
    if missing:
        pytest.fail(f"missing tools: {', '.join(missing)} ({INSTALL})", pytrace=False)


def debian_kernel(arch: Arch | None = None) -> Path:
    from cloudboot.bootstrap.build import default_kernel

    return default_kernel(arch or get_arch("x86_64"))


def debian_stub(arch: Arch | None = None) -> Path:
    from cloudboot.bootstrap.build import default_stub

    return default_stub(arch or get_arch("x86_64"))


def marker_initramfs(path: Path, marker: str = MARKER) -> Path:
    """A busybox initramfs whose /init prints `marker` with the command line, then powers off."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.fail(f"busybox-static is not installed ({INSTALL})", pytrace=False)
    init = (
        "#!/bin/busybox sh\n"
        "/bin/busybox mount -t proc proc /proc\n"
        f'/bin/busybox echo "{marker} cmdline=$(/bin/busybox cat /proc/cmdline)"\n'
        "/bin/busybox poweroff -f\n"
    ).encode()
    entries = cpio.with_parents([
        cpio.Entry.file("bin/busybox", busybox.read_bytes(), 0o755),
        cpio.Entry.file("init", init, 0o755),
        cpio.Entry.directory("proc"),
        cpio.Entry.chardev("dev/console", 5, 1),
    ])
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        cpio.write(f, entries)
    path.write_bytes(buf.getvalue())
    return path


def require_lane_profile(arch: str):  # noqa: ANN201 - lab.profiles.Profile, imported lazily
    """The arch's lane profile (private QEMU for riscv64/loongarch64) with its firmware found;
    the test fails, naming the arch, when the lane cannot be set up."""
    from lab import qemu_private
    from lab.bootstrap import lane_profile
    from lab.firmware import FirmwareError, select_firmware

    try:
        profile = lane_profile(arch)
        select_firmware(profile)
    except (qemu_private.PrivateQemuError, FirmwareError) as e:
        pytest.fail(f"{arch} lane set-up failed: {e}")
    return profile


def dump_virt_dtb(qemu: str, machine: str, cpu: str, out: Path) -> bytes:
    """The device tree QEMU's `virt` machine hands its guest (`dumpdtb=`), for kexec planners."""
    subprocess.run([qemu, "-machine", f"{machine},dumpdtb={out}", "-cpu", cpu, "-m", "1024",
                    "-nographic"], capture_output=True, check=True, timeout=60)
    return out.read_bytes()


def require_bootstrap_initramfs(lane):  # noqa: ANN001, ANN201 - lab.arch_lanes.Lane, lazily
    """The lane's cloudboot-init initramfs; the test fails, naming the arch, when it cannot be
    built."""
    from lab.arch_lanes import LaneGap

    try:
        return lane.bootstrap_initramfs()
    except LaneGap as e:
        pytest.fail(f"{lane.arch}: no cloudboot-init initramfs for this lane: {e}")


def require_lane(profile_name: str) -> None:
    """Fail, saying what to install, when the host lacks the QEMU binary or the UEFI firmware
    of the profile's lane (system-QEMU lanes: x86_64, aarch64, armv7, vz): the set-up installs
    both for every lane (cloudboot.debian.hostdeps.LANE_PACKAGES)."""
    from lab.firmware import FirmwareError, select_firmware
    from lab.profiles import get_profile

    profile = get_profile(profile_name)
    if shutil.which(profile.qemu_binary) is None:
        pytest.fail(f"{profile.qemu_binary} missing ({INSTALL})", pytrace=False)
    try:
        select_firmware(profile)
    except FirmwareError as e:
        pytest.fail(f"no UEFI firmware for {profile_name}: {e} ({INSTALL})", pytrace=False)


@contextmanager
def pyfat(image: Path, offset: int = 0, read_only: bool = True) -> Iterator[PyFatFS]:
    """A FAT file system (at `offset` bytes into `image`) through pyfatfs, the independent
    Python reader our FAT writer is checked against. Every pyfatfs warning (FATs that differ,
    a FAT type its two rules disagree on, clusters over 32 KiB, a dirty volume) is an error."""
    from pyfatfs.PyFatFS import PyFatFS

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fs = PyFatFS(str(image), offset=offset, read_only=read_only, utc=True)
    try:
        yield fs
    finally:
        fs.close()
