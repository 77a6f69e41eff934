"""Run a cell on the libvirt lane: the QEMU lane's media and verdict, booted through libvirtd.

Only the boot differs from lab.runner: the same boot.iso, the same VMSpec (turned into domain
XML), the same console markers, verdict() and check_userspace(). Path C (run_path_c_disk) is
lab.path_c's cell through libvirt: the domain restarts in place on the guest's reboot
(on_reboot=restart), its nvram is the per-cell VARS copy with foreign entries planted, and
domainxml keeps libvirt's bootindex off every device so OVMF follows the BootOrder the guest
wrote (see lab.hypervisors.domainxml).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from lab import console
from lab.accel import select_accel
from lab.cells import Cell, CellResult, Stopwatch, file_digest
from lab.firmware import select_firmware
from lab.hypervisors.libvirt import Connection, LibvirtUnavailable, LibvirtVM, connect
from lab.hypervisors.qemu import Disk, VMError, VMSpec
from lab.images import debian
from lab.path_c import PathCMachine, PathCRun
from lab.profiles import get_profile
from lab.runner import DECIDED, BootOutcome, build_bootstrap_iso, check_userspace, verdict

_connection: Connection | None = None


def libvirt_connection() -> Connection:
    """One connection per process (the session daemon is shared by every worker)."""
    global _connection
    if _connection is None or not _connection.conn.isAlive():
        _connection = connect()
    return _connection


def unavailable_reason() -> str | None:
    """Why the libvirt lane cannot run here, or None when it can."""
    try:
        libvirt_connection()
    except LibvirtUnavailable as e:
        return str(e)
    return None


def boot(spec: VMSpec, workdir: Path, timeout: float) -> BootOutcome:
    """Boot until the run decides itself (userspace, fatal, panic) or `timeout` passes."""
    timed_out = False
    with LibvirtVM(spec, workdir, libvirt_connection()) as vm:
        try:
            vm.wait_for(DECIDED.pattern, timeout=timeout)
            with contextlib.suppress(VMError):  # let the guest finish and power off
                vm.wait_exit(30)
        except VMError:
            timed_out = vm.is_running() or vm.timed_out
        text = vm.text()
    return BootOutcome(text, console.parse_log(vm.console_log), timed_out, vm.console_log)


def run_bootstrap(cell: Cell, workdir: Path, cmdline: str, targets: list[Path], *,
                  timeout: float = 420.0) -> tuple[CellResult, Path]:
    """Boot boot.iso (our UKI, `cmdline`) with `targets` as virtio disks, through libvirt."""
    watch = Stopwatch()
    workdir.mkdir(parents=True, exist_ok=True)
    profile = get_profile(cell.arch)
    full = f"console={profile.console} panic=-1 cloudboot.reboot_delay=0 {cmdline}".strip()
    iso = build_bootstrap_iso(cell.arch, full, workdir / "boot.iso")
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


def run_path_a_disk(cell: Cell, workdir: Path, *, timeout: float = 420.0) -> CellResult:
    """Path A from a local disk through libvirt, judged exactly like the QEMU lane."""
    image = debian.build(cell.release, cell.fs, cell.arch)
    result, _ = run_bootstrap(cell, workdir, f"cloudboot.disk=LABEL={image.fs_label}",
                              [image.path], timeout=timeout)
    result.assets["target-image"] = image.key
    if result.status == "pass":
        check_userspace(result, image)
    return result


def run_path_c_disk(cell: Cell, workdir: Path, *, timeout: float = 600.0) -> PathCRun:
    """Path C through libvirt: the QEMU lane's machine (boot.iso with cloudboot.exit=reboot,
    cache disk, Debian target, foreign entries planted) booted as a libvirt domain; the nvram
    file, the cache ESP and `fsck.vfat -n` are read back on the host afterwards."""
    watch = Stopwatch()
    m = PathCMachine.create(cell, workdir)
    iso = m.iso(m.cmdline())
    outcome = boot(m.spec(iso, timeout), workdir / "vm", timeout)
    return m.finish(outcome, iso, watch.seconds())
