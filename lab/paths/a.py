"""Path A on a cell: boot.iso (the UKI: cloudboot-init, kexec) with the target disks attached,
on QEMU or as a libvirt domain; the verdict as for every lane."""

from __future__ import annotations

from pathlib import Path

from lab import hypervisors
from lab.bootstrap import build_bootstrap_iso, lane_profile
from lab.cells import Cell, CellResult, Stopwatch, file_digest
from lab.firmware import select_firmware
from lab.hypervisors.accel import select_accel
from lab.hypervisors.vmspec import Disk, VMSpec
from lab.images import debian
from lab.verdict import check_userspace, verdict


def bootstrap_machine(cell: Cell, workdir: Path, cmdline: str, targets: list[Path], *,
                      timeout: float, plan_file: Path | None = None,
                      extra_args: list[str] | None = None) -> tuple[VMSpec, Path]:
    """The machine a Path A boot starts: boot.iso (our UKI; the console, then `cmdline`, with
    an embedded plan when given) read-only, `targets` as throw-away virtio disks."""
    workdir.mkdir(parents=True, exist_ok=True)
    profile = lane_profile(cell.arch)
    # A fatal error powers the guest off at once: the lab has read what it needs by then.
    full = f"console={profile.console} panic=-1 cloudboot.reboot_delay=0 {cmdline}".strip()
    iso = build_bootstrap_iso(cell.arch, full, workdir / "boot.iso", plan_file)
    fw = select_firmware(profile)
    spec = VMSpec(
        profile=profile, firmware=fw, vars_path=fw.fresh_vars(workdir),
        accel=select_accel(profile).accel,
        disks=[Disk(iso, interface="virtio-blk", readonly=True)]
        + [Disk(t, interface="virtio-blk", snapshot=True) for t in targets],
        no_reboot=True, hard_timeout=timeout + 60, name=cell.id, extra_args=extra_args or [],
    )
    return spec, iso


def run_bootstrap(cell: Cell, workdir: Path, cmdline: str, targets: list[Path], *,
                  timeout: float = 420.0,
                  plan_file: Path | None = None) -> tuple[CellResult, Path]:
    """Boot boot.iso (our UKI, `cmdline`) with `targets` attached as virtio disks, on the
    cell's hypervisor."""
    watch = Stopwatch()
    spec, iso = bootstrap_machine(cell, workdir, cmdline, targets, timeout=timeout,
                                  plan_file=plan_file)
    outcome = hypervisors.boot(cell.hypervisor, spec, workdir / "vm", timeout)
    result = verdict(cell, outcome, accel=spec.accel, seconds=watch.seconds())
    result.assets = {"boot.iso": file_digest(iso)}
    return result, iso


def run_path_a_disk(cell: Cell, workdir: Path, *, extra_cmdline: str = "",
                    timeout: float = 420.0) -> CellResult:
    """Path A from a local disk: boot.iso (UKI) + the target disk, cloudboot.disk=LABEL=…"""
    image = debian.build(cell.release, cell.fs, cell.arch)
    cmdline = f"cloudboot.disk=LABEL={image.fs_label} {extra_cmdline}".strip()
    result, _ = run_bootstrap(cell, workdir, cmdline, [image.path], timeout=timeout)
    result.assets["target-image"] = image.key
    if result.status == "pass":
        check_userspace(result, image)
    return result
