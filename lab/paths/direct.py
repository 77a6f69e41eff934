"""The natural baseline of every boot-path benchmark: the target's own kernel, initrd and
command line as a UKI that the firmware starts directly (no cloudboot in between), booted
to the same userspace marker on the same host in the same run."""

from __future__ import annotations

from pathlib import Path

from cloudboot.arch import Arch, as_arch
from cloudboot.bootstrap.build import BuildRequest, build
from lab.arch_lanes import LANES, get_lane
from lab.bootstrap import lane_profile
from lab.firmware import select_firmware
from lab.hypervisors.accel import select_accel
from lab.hypervisors.qemu import boot
from lab.hypervisors.vmspec import Disk, VMSpec
from lab.images import debian


def direct_firmware_boot(image: debian.TargetImage, work: Path, arch: Arch | str = "x86_64",
                         timeout: float = 360.0) -> float:
    """Seconds from firmware reset to the target's CLOUDBOOT-USERSPACE line.

    armv7, riscv64 and loongarch64 take the systemd-stub of their lane (lab/arch_lanes.py)
    and riscv64/loongarch64 the private QEMU 10 (lab.bootstrap.lane_profile)."""
    arch = as_arch(arch)
    profile = lane_profile(arch)
    stub = get_lane(arch.name).stub() if arch.name in LANES else None
    work.mkdir(parents=True, exist_ok=True)
    iso = work / "direct.iso"
    build(BuildRequest(arch=arch, output=iso, kernel=image.kernel, stub=stub,
                       initramfs=image.initrd,
                       cmdline=f"root=UUID={image.fs_uuid} ro console={profile.console} "
                               "panic=-1"))
    fw = select_firmware(profile)
    spec = VMSpec(profile=profile, firmware=fw, vars_path=fw.fresh_vars(work),
                  accel=select_accel(profile).accel, no_reboot=True, hard_timeout=timeout + 40,
                  disks=[Disk(iso, readonly=True), Disk(image.path, snapshot=True)],
                  name=f"direct-{arch}")
    outcome = boot(spec, work / "vm-direct", timeout)
    us = outcome.events.userspace
    if us is None or us.t is None:
        raise RuntimeError(f"direct boot did not reach userspace; see {outcome.console_log}")
    return us.t
