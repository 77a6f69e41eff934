"""vz cells: Apple's Virtualization.framework as far as QEMU aarch64 can imitate it.

The `vz` profile (lab/profiles.py, VZ_APPROXIMATIONS) gives the guest its console on hvc0 only,
virtio disks only, no NIC while the firmware runs, and kexec refused
(`sysctl.kernel.kexec_load_disabled=1`). Path A must therefore fail in `handoff` (the expected
failure in matrix/expected.toml), and Path C, VZ's production path, must pass: it runs through
lab/path_c.py with the cell's profile.

The vz target image is the lab's Debian image plus one drop-in: hvc0 is VZ's only console, and
Debian's cloud kernel has its driver (virtio_console) as a module that udev loads only after
the userspace marker unit has run (it is ordered early). So on vz the marker first loads
virtio_console and waits, at most 10 s, until hvc0 is an active console. Without that, the
target's userspace would be invisible on VZ; the staged kernel and initrd stay Debian's own.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from cloudboot.fsutil import cache_dir
from lab.accel import select_accel
from lab.cells import Cell, CellResult, Stopwatch, file_digest
from lab.firmware import select_firmware
from lab.hypervisors.qemu import Disk, VMSpec
from lab.images import debian, userspace
from lab.images.buildcache import build_once, progress
from lab.images.recipe import FileSpec
from lab.profiles import get_profile
from lab.runner import boot, build_bootstrap_iso, check_userspace, verdict

HYPERVISOR = "vz"

_WRAPPER_PATH = "usr/local/sbin/cloudboot-userspace-vz"
_WRAPPER = f"""#!/bin/sh
# vz (lab/vz.py): hvc0 is the only console and virtio_console is a module udev loads later:
# load it now and wait (at most 10 s) until hvc0 is an active console, then report.
case " $(cat /proc/cmdline) " in
*" console=hvc0"*)
    modprobe virtio_console 2>/dev/null
    i=0
    while [ "$i" -lt 100 ]; do
        grep -qw hvc0 /sys/class/tty/console/active 2>/dev/null && break
        sleep 0.1
        i=$((i + 1))
    done ;;
esac
exec /{userspace.SCRIPT_PATH}
"""
VZ_FILES = (
    FileSpec(_WRAPPER_PATH, 0o755, _WRAPPER),
    FileSpec(f"etc/systemd/system/{userspace.UNIT_NAME}.d/vz.conf", 0o644,
             f"[Service]\nExecStart=\nExecStart=/{_WRAPPER_PATH}\n"),
)


def vz_image(release: str, fs: str, arch: str = "aarch64") -> debian.TargetImage:
    """The lab's Debian target image with the vz console drop-in, cached like the others."""
    base = debian.recipe(release, fs, arch)
    r = dataclasses.replace(base, files=base.files + VZ_FILES)
    final = cache_dir("images") / f"{release}-{fs}-{r.arch}-vz-{r.key()[:16]}"
    build_once(final, lambda tmp: debian._build_image(r, tmp))
    progress(f"image {release}/{fs}/{r.arch} (vz): {final / 'disk.raw'}")
    data = json.loads((final / "image.json").read_text())
    return debian.TargetImage.from_json(data, final)


def target_image(cell: Cell) -> debian.TargetImage:
    """The target disk a cell boots: the vz variant for vz cells."""
    if cell.hypervisor == HYPERVISOR:
        return vz_image(cell.release, cell.fs, cell.arch)
    return debian.build(cell.release, cell.fs, cell.arch)


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
