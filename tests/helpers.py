"""Shared test helpers: real artefacts from the Debian packages cached by cloudboot."""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
from pathlib import Path

import pytest

from cloudboot.arch import Arch, get_arch
from cloudboot.media import cpio

MARKER = "CLOUDBOOT-TEST-MARKER"


def need_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (run the README set-up)")


def debian_kernel(arch: Arch | None = None) -> Path:
    from cloudboot.build import default_kernel

    return default_kernel(arch or get_arch("x86_64"))


def debian_stub(arch: Arch | None = None) -> Path:
    from cloudboot.build import default_stub

    return default_stub(arch or get_arch("x86_64"))


def marker_initramfs(path: Path, marker: str = MARKER) -> Path:
    """A busybox initramfs whose /init prints `marker` with the command line, then powers off."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.skip("busybox-static is not installed")
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
    from lab.firmware import FirmwareError, select_firmware
    from lab.runner import lane_profile

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


def skip_without_lane(profile_name: str) -> None:
    """Skip, saying what to install, when the host lacks the QEMU binary or the UEFI firmware
    of the profile's lane (system-QEMU lanes: x86_64, aarch64, armv7, vz)."""
    from lab.firmware import FirmwareError, select_firmware
    from lab.profiles import get_profile

    profile = get_profile(profile_name)
    if shutil.which(profile.qemu_binary) is None:
        pytest.skip(f"{profile.qemu_binary} missing (python -m cloudboot.hostdeps ensure matrix)")
    try:
        select_firmware(profile)
    except FirmwareError as e:
        pytest.skip(f"no UEFI firmware for {profile_name}: {e}")
