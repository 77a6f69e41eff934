"""The bootstrap a cell boots: boot.iso with the UKI of its arch, and the profile the lab
runs the arch with (the private QEMU 10 for riscv64 and loongarch64)."""

from __future__ import annotations

from pathlib import Path

from cloudboot.arch import Arch, as_arch
from cloudboot.bootstrap.build import BuildRequest, build
from lab import qemu_private
from lab.profiles import Profile, get_profile


def build_bootstrap_iso(arch: Arch | str, cmdline: str, out: Path,
                        plan_file: Path | None = None) -> Path:
    """boot.iso with the bootstrap UKI of `arch`: the build's defaults (the host's apt), or,
    for the armv7/riscv64/loongarch64 lanes, the lane's kernel, systemd-stub and
    cloudboot-init initramfs (lab/arch_lanes.py; raises LaneGap where one is missing)."""
    from lab import arch_lanes

    a = as_arch(arch)
    if a.name in arch_lanes.LANES:
        lane = arch_lanes.get_lane(a.name)
        build(BuildRequest(arch=a, output=out, cmdline=cmdline, plan_file=plan_file,
                           kernel=lane.kernel(), stub=lane.stub(),
                           initramfs=lane.bootstrap_initramfs()))
        return out
    build(BuildRequest(arch=a, output=out, cmdline=cmdline, plan_file=plan_file))
    return out


def lane_profile(arch: Arch | str) -> Profile:
    """The profile of `arch` as the lab runs it: riscv64 and loongarch64 on the private QEMU 10
    with their EDK2 fetched first (lab/qemu_private.py); the others unchanged."""
    profile = get_profile(arch)
    if not qemu_private.needs_private(profile.arch.name):
        return profile
    qemu_private.ensure_firmware(profile.fw_arch)
    return qemu_private.runnable(profile)
