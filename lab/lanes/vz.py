"""vz cells: Apple's Virtualization.framework as far as QEMU aarch64 can imitate it.

The `vz` profile (lab/profiles.py, VZ_APPROXIMATIONS) gives the guest its console on hvc0 only,
virtio disks only, no NIC while the firmware runs, and kexec refused
(`sysctl.kernel.kexec_load_disabled=1`). Path A must therefore fail in `handoff` (the expected
failure in matrix/expected.toml), and Path C, VZ's production path, must pass: it runs through
lab/paths/c.py with the cell's profile.

Its target image is the lab's Debian image with hvc0 made to work (lab/images/vz.py).
"""

from __future__ import annotations

from pathlib import Path

from lab.bootstrap import build_bootstrap_iso
from lab.cells import Cell, CellResult, Stopwatch, file_digest
from lab.firmware import select_firmware
from lab.hypervisors.accel import select_accel
from lab.hypervisors.qemu import boot
from lab.hypervisors.vmspec import Disk, VMSpec
from lab.images.vz import HYPERVISOR, vz_image
from lab.profiles import get_profile
from lab.verdict import check_userspace, verdict


def run_vz_path_a(cell: Cell, workdir: Path, *, extra_cmdline: str = "",
                  timeout: float = 900.0) -> CellResult:
    """boot.iso (Path A, kexec) + the target disk under the vz profile."""
    if cell.hypervisor != HYPERVISOR:
        raise ValueError(f"{cell.id}: not a vz cell")
    watch = Stopwatch()
    workdir.mkdir(parents=True, exist_ok=True)
    image = vz_image(cell.release, cell.fs, cell.arch)
    profile = get_profile(cell.profile_name)
    full = " ".join([f"console={profile.console} panic=-1 cloudboot.reboot_delay=0",
                     *profile.guest_cmdline, f"cloudboot.disk=LABEL={image.fs_label}",
                     extra_cmdline]).strip()
    iso = build_bootstrap_iso(cell.arch, full, workdir / "boot.iso")
    fw = select_firmware(profile)
    accel = select_accel(profile).accel
    spec = VMSpec(
        profile=profile, firmware=fw, vars_path=fw.fresh_vars(workdir), accel=accel,
        disks=[Disk(iso, interface="virtio-blk", readonly=True),
               Disk(image.path, interface="virtio-blk", snapshot=True)],
        no_reboot=True, hard_timeout=timeout + 60, name=cell.id,
    )
    outcome = boot(spec, workdir / "vm", timeout)
    result = verdict(cell, outcome, accel=accel, seconds=watch.seconds())
    result.assets = {"boot.iso": file_digest(iso), "target-image": image.key}
    if result.status == "pass":
        check_userspace(result, image)
    return result
