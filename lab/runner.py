"""Run a cell on the QEMU lane: build the media, boot, read the console, give a verdict."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

from cloudboot.arch import get_arch
from cloudboot.bootstrap.build import BuildRequest, build
from lab import console, qemu_private
from lab.accel import select_accel
from lab.cells import Cell, CellResult, Stopwatch, file_digest
from lab.failures import classify
from lab.firmware import select_firmware
from lab.hypervisors.qemu import Disk, QemuVM, VMError, VMSpec
from lab.images import debian
from lab.profiles import Profile, get_profile

BANNER = re.compile(r"cloudboot-init \S+ starting")
# Stop watching as soon as the run has decided itself one way or the other.
DECIDED = re.compile(r"CLOUDBOOT-USERSPACE|\"phase\":\s*\"fatal\"|Kernel panic - not syncing|"
                     r"Shell> |grub> |\(initramfs\)")


@dataclass
class BootOutcome:
    text: str
    events: console.ConsoleEvents
    timed_out: bool
    console_log: Path


def build_bootstrap_iso(arch: str, cmdline: str, out: Path,
                        plan_file: Path | None = None) -> Path:
    """boot.iso with the bootstrap UKI of `arch`: the build's defaults (the host's apt), or,
    for the armv7/riscv64/loongarch64 lanes, the lane's kernel, systemd-stub and
    cloudboot-init initramfs (lab/arch_lanes.py; raises LaneGap where one is missing)."""
    from lab import arch_lanes

    name = get_arch(arch).name
    if name in arch_lanes.LANES:
        lane = arch_lanes.get_lane(name)
        build(BuildRequest(arch=get_arch(arch), output=out, cmdline=cmdline,
                           plan_file=plan_file, kernel=lane.kernel(), stub=lane.stub(),
                           initramfs=lane.bootstrap_initramfs()))
        return out
    build(BuildRequest(arch=get_arch(arch), output=out, cmdline=cmdline, plan_file=plan_file))
    return out


def lane_profile(arch: str) -> Profile:
    """The profile of `arch` as the lab runs it: riscv64 and loongarch64 on the private QEMU 10
    with their EDK2 fetched first (lab/qemu_private.py); the others unchanged."""
    profile = get_profile(arch)
    if not qemu_private.needs_private(profile.arch.name):
        return profile
    qemu_private.ensure_firmware(profile.fw_arch)
    return qemu_private.runnable(profile)


def boot(spec: VMSpec, workdir: Path, timeout: float) -> BootOutcome:
    """Boot until the run decides itself (userspace, fatal, panic) or `timeout` passes."""
    timed_out = False
    with QemuVM(spec, workdir) as vm:
        try:
            vm.wait_for(DECIDED, timeout=timeout)
            # Let the guest finish the line and power off (or print the rest of its error).
            with contextlib.suppress(VMError):
                vm.wait_exit(30)
        except VMError:
            timed_out = vm.is_running() or vm.timed_out
        text = vm.text()
    # The log file carries the time each line arrived (for per-phase times).
    return BootOutcome(text, console.parse_log(vm.console_log), timed_out, vm.console_log)


def run_bootstrap(cell: Cell, workdir: Path, cmdline: str, targets: list[Path], *,
                  timeout: float = 420.0,
                  plan_file: Path | None = None) -> tuple[CellResult, Path]:
    """Boot boot.iso (our UKI, `cmdline`) with `targets` attached as virtio disks."""
    watch = Stopwatch()
    workdir.mkdir(parents=True, exist_ok=True)
    profile = lane_profile(cell.arch)
    # A fatal error powers the guest off at once: the lab has read what it needs by then.
    full = f"console={profile.console} panic=-1 cloudboot.reboot_delay=0 {cmdline}".strip()
    iso = build_bootstrap_iso(cell.arch, full, workdir / "boot.iso", plan_file)
    fw = select_firmware(profile)
    accel = select_accel(profile).accel
    spec = VMSpec(
        profile=profile, firmware=fw, vars_path=fw.fresh_vars(workdir), accel=accel,
        disks=[Disk(iso, interface="virtio-blk", readonly=True)]
        + [Disk(t, interface="virtio-blk", snapshot=True) for t in targets],
        no_reboot=True, hard_timeout=timeout + 60, name=cell.id,
    )
    outcome = boot(spec, workdir / "vm", timeout)
    result = verdict(cell, outcome, accel=accel, seconds=watch.seconds())
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


# A guest that reached its userspace and then crashed did not really work.
CRASH = re.compile(r"Kernel panic - not syncing.*|Oops: .*|BUG: .*")


def verdict(cell: Cell, outcome: BootOutcome, *, accel: str, seconds: float) -> CellResult:
    us = outcome.events.userspace
    v = classify(outcome.text, outcome.events.events, us is not None, outcome.timed_out)
    result = CellResult(
        cell=cell, status="pass" if v.passed else "fail", category=v.category,
        evidence=v.evidence, accel=accel, seconds=seconds,
        phase_times=outcome.events.phase_times(),
        userspace=us.data if us else None,
        banners=len(BANNER.findall(outcome.text)),
        console_log=str(outcome.console_log),
    )
    if us is not None:
        crash = CRASH.search(outcome.text, outcome.text.find(us.line.strip()[:40]))
        if crash:
            result.status, result.category = "fail", "target-kernel"
            result.evidence = f"crashed after reaching userspace: {crash.group(0).strip()}"
    return result


def check_userspace(result: CellResult, image: debian.TargetImage) -> None:
    """A pass must prove which distro, kernel and command line came up."""
    us = result.userspace or {}
    problems = []
    if us.get("id") != image.os_id or us.get("version_id") != image.version_id:
        problems.append(f"userspace is {us.get('id')} {us.get('version_id')}, expected "
                        f"{image.os_id} {image.version_id}")
    if us.get("kernel") != image.kernel_version:
        problems.append(f"kernel {us.get('kernel')}, expected the target's "
                        f"{image.kernel_version}")
    if f"root=UUID={image.fs_uuid}" not in str(us.get("cmdline", "")):
        problems.append(f"command line {us.get('cmdline')!r} lacks root=UUID={image.fs_uuid}")
    if problems:
        result.status, result.category = "fail", "target-userspace"
        result.evidence = "; ".join(problems)
