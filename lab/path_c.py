"""Path C cells on the QEMU lane: stage on the cache ESP, Boot####, reboot, firmware → target.

x86_64 (OVMF), aarch64 (AAVMF; bookworm's all-zero VARS template is replaced by trixie's so the
host can plant and read entries) and the `vz` profile (hypervisor "vz": AAVMF, console on hvc0
only, kexec refused) share this code; the cell picks the profile (`Cell.profile_name`).

One QEMU process sees both passes (no -no-reboot): the bootstrap stages the target kernel and
restarts the machine, and OVMF then starts the staged kernel's EFI stub from our Boot####.
Before the boot the fresh VARS copy gets foreign boot entries (virt-fw-vars); afterwards the
VARS file, the cache disk's FAT and `fsck.vfat -n` are read on the host so the test can check
what the guest really wrote.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudboot.efi import varstore
from cloudboot.efi.guid import EFI_GLOBAL_VARIABLE
from cloudboot.init.gptread import GptPartition, read_gpt
from cloudboot.media import cachedisk
from cloudboot.media.fatread import FatReader
from lab import console
from lab.accel import select_accel
from lab.cells import Cell, CellResult, Stopwatch, file_digest
from lab.firmware import select_firmware, with_editable_vars
from lab.hypervisors.qemu import Disk, QemuVM, VMError, VMSpec
from lab.profiles import get_profile
from lab.runner import (
    DECIDED,
    BootOutcome,
    boot,
    build_bootstrap_iso,
    check_userspace,
    verdict,
)
from lab.vz import target_image

FOREIGN_FILES = ("\\EFI\\foreign\\shimx64.efi", "\\EFI\\foreign\\grubx64.efi")
FOREIGN_FILES_BY_ARCH = {
    "x86_64": FOREIGN_FILES,
    "aarch64": ("\\EFI\\foreign\\shimaa64.efi", "\\EFI\\foreign\\grubaa64.efi"),
}


@dataclass
class PathCRun:
    result: CellResult
    vars_path: Path
    cache_path: Path
    foreign_before: dict[str, bytes]  # Boot#### -> raw variable data before the boot
    order_before: list[int]
    vars_after: dict[str, Any] = field(default_factory=dict)  # varstore.describe()
    raw_after: dict[str, bytes] = field(default_factory=dict)  # Boot#### -> raw data after
    order_after: list[int] = field(default_factory=list)
    esp: GptPartition | None = None
    esp_files: dict[str, int] = field(default_factory=dict)  # FAT path -> size
    fsck: subprocess.CompletedProcess[str] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # CLOUDBOOT-EVENT data

    def event(self, phase: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("phase") == phase), None)


def plant_foreign_entries(vars_path: Path, files: tuple[str, ...] = FOREIGN_FILES) -> None:
    """Boot entries someone else wrote (Boot0000, Boot0001…), through virt-firmware."""
    if shutil.which("virt-fw-vars") is None:
        raise RuntimeError("virt-fw-vars (pip package virt-firmware) is not installed")
    for f in files:
        subprocess.run(["virt-fw-vars", "--inplace", str(vars_path),
                        "--append-boot-filepath", f], check=True, capture_output=True, text=True)


def raw_boot_vars(vars_path: Path) -> tuple[dict[str, bytes], list[int]]:
    store = varstore.VarStore(vars_path)
    raw = {}
    for number in store.boot_entries():
        name = f"Boot{number:04X}"
        got = store.get(name, EFI_GLOBAL_VARIABLE)
        if got is not None:
            raw[name] = got[1]
    return raw, store.boot_order() or []


def cache_esp(cache: Path) -> GptPartition:
    table = read_gpt(cache)
    assert table is not None, f"{cache}: no GPT"
    part = next((p for p in table.partitions if p.name == cachedisk.PARTITION_NAME), None)
    assert part is not None, f"{cache}: no partition named {cachedisk.PARTITION_NAME}"
    return part


def read_esp(cache: Path, part: GptPartition) -> dict[str, int]:
    with open(cache, "rb") as f:
        return {e.path: e.size for e in FatReader(f, part.start).walk() if not e.is_dir}


def fsck_esp(cache: Path, part: GptPartition, scratch: Path) -> subprocess.CompletedProcess[str]:
    """`fsck.vfat -n` on a copy of the partition (it takes no offset)."""
    with open(cache, "rb") as src, open(scratch, "wb") as dst:
        src.seek(part.start)
        left = part.size
        while left:
            chunk = src.read(min(left, 1 << 22))
            if not chunk:
                break
            dst.write(chunk)
            left -= len(chunk)
    try:
        return subprocess.run(["fsck.vfat", "-n", str(scratch)], capture_output=True, text=True,
                              check=False)
    finally:
        scratch.unlink()


def run_path_c_disk(cell: Cell, workdir: Path, *, extra_cmdline: str = "",
                    timeout: float = 600.0) -> PathCRun:
    """boot.iso (cloudboot.exit=reboot) + cache disk + the Debian target disk."""
    watch = Stopwatch()
    workdir.mkdir(parents=True, exist_ok=True)
    image = target_image(cell)  # the vz variant for vz cells (lab/vz.py)
    profile = get_profile(cell.profile_name)
    full = " ".join([f"console={profile.console} panic=-1 cloudboot.reboot_delay=0",
                     *profile.guest_cmdline,
                     f"cloudboot.disk=LABEL={image.fs_label} cloudboot.exit=reboot",
                     extra_cmdline]).strip()
    iso = build_bootstrap_iso(cell.arch, full, workdir / "boot.iso")
    cache = workdir / "menu-cache.raw"
    cachedisk.create(cache)
    fw = with_editable_vars(select_firmware(profile))
    accel = select_accel(profile).accel
    vars_path = fw.fresh_vars(workdir)
    plant_foreign_entries(vars_path, FOREIGN_FILES_BY_ARCH.get(cell.arch, FOREIGN_FILES))
    foreign, order = raw_boot_vars(vars_path)
    spec = VMSpec(
        profile=profile, firmware=fw, vars_path=vars_path, accel=accel,
        disks=[Disk(iso, interface="virtio-blk", readonly=True),
               Disk(cache, interface="virtio-blk"),
               Disk(image.path, interface="virtio-blk", snapshot=True)],
        no_reboot=False,  # Path C reboots on purpose
        hard_timeout=timeout + 90, name=cell.id,
    )
    outcome = boot(spec, workdir / "vm", timeout)
    result = verdict(cell, outcome, accel=accel, seconds=watch.seconds())
    result.assets = {"boot.iso": file_digest(iso), "target-image": image.key}
    if result.status == "pass":
        check_userspace(result, image)
    run = PathCRun(result, vars_path, cache, foreign, order)
    run.events = [e.data for e in outcome.events.events if e.phase != "userspace"]
    run.vars_after = varstore.describe(vars_path)
    run.raw_after, run.order_after = raw_boot_vars(vars_path)
    run.esp = cache_esp(cache)
    run.esp_files = read_esp(cache, run.esp)
    run.fsck = fsck_esp(cache, run.esp, workdir / "esp.img")
    return run


MENU_PROMPT = re.compile(r"\[number, name or prefix; Enter = [^\]]+\]")


def run_menu_boot(cell: Cell, workdir: Path, plan_file: Path, targets: list[Path],
                  keys: str, *, cmdline: str = "", timeout: float = 500.0) -> CellResult:
    """Boot boot.iso with an embedded plan whose menu is shown; when the prompt appears on the
    serial console, type `keys` into the guest's hvc0 (a virtconsole on a host socket)."""
    watch = Stopwatch()
    workdir.mkdir(parents=True, exist_ok=True)
    profile = get_profile(cell.arch)
    full = f"console={profile.console} panic=-1 cloudboot.reboot_delay=0 {cmdline}".strip()
    iso = build_bootstrap_iso(cell.arch, full, workdir / "boot.iso", plan_file)
    fw = select_firmware(profile)
    accel = select_accel(profile).accel
    sock = Path(tempfile.mkdtemp(prefix="cb-hvc-")) / "hvc0.sock"
    spec = VMSpec(
        profile=profile, firmware=fw, vars_path=fw.fresh_vars(workdir), accel=accel,
        disks=[Disk(iso, interface="virtio-blk", readonly=True)]
        + [Disk(t, interface="virtio-blk", snapshot=True) for t in targets],
        no_reboot=True, hard_timeout=timeout + 60, name=cell.id,
        extra_args=["-chardev", f"socket,id=hvc,path={sock},server=on,wait=off",
                    "-device", "virtio-serial-pci,id=vser9",
                    "-device", "virtconsole,chardev=hvc,name=menu.0"],
    )
    timed_out = False
    with QemuVM(spec, workdir / "vm") as vm:
        try:
            vm.wait_for(MENU_PROMPT, timeout=timeout)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(sock))
                s.sendall(keys.encode())
                vm.wait_for(DECIDED, timeout=timeout)
            with contextlib.suppress(VMError):
                vm.wait_exit(30)
        except VMError:
            timed_out = vm.is_running() or vm.timed_out
        text = vm.text()
    outcome = BootOutcome(text, console.parse_log(vm.console_log), timed_out, vm.console_log)
    result = verdict(cell, outcome, accel=accel, seconds=watch.seconds())
    result.assets = {"boot.iso": file_digest(iso)}
    return result
