"""Path C cells on the QEMU lane: stage on the cache ESP, Boot####, reboot, firmware → target.

x86_64 (OVMF), aarch64 (AAVMF; bookworm's all-zero VARS template is replaced by trixie's so the
host can plant and read entries) and the `vz` profile (hypervisor "vz": AAVMF, console on hvc0
only, kexec refused) share this code; the cell picks the profile (`Cell.profile_name`).

One QEMU process sees both passes (no -no-reboot): the bootstrap stages the target kernel and
restarts the machine, and OVMF then starts the staged kernel's EFI stub from our Boot####.
Before the boot the fresh VARS copy gets foreign boot entries (virt-firmware); afterwards the
VARS file, the cache disk's FAT and `fsck.vfat -n` are read on the host so the test can check
what the guest really wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from virt.firmware.efi import devpath  # type: ignore[import-untyped]
from virt.firmware.varstore import edk2  # type: ignore[import-untyped]

from cloudboot.arch import Arch
from cloudboot.efi import varstore
from cloudboot.efi.guid import EFI_GLOBAL_VARIABLE
from cloudboot.efi.loadopt import staged_paths
from cloudboot.init.pathc.bootentry import build_option, uki_path
from cloudboot.init.storage.gptread import GptPartition, read_gpt
from cloudboot.media import cachedisk
from cloudboot.media.fatread import FatReader
from lab import console, hypervisors
from lab.bootstrap import build_bootstrap_iso, lane_profile
from lab.cells import Cell, CellResult, Stopwatch, file_digest
from lab.console import DECIDED, BootOutcome
from lab.firmware import Firmware, select_firmware, with_editable_vars
from lab.hypervisors import qemu
from lab.hypervisors.accel import select_accel
from lab.hypervisors.qemu import QemuVM
from lab.hypervisors.vmspec import Disk, UserNet, VMError, VMSpec
from lab.images import debian
from lab.images.vz import target_image
from lab.paths.a import bootstrap_machine
from lab.profiles import Profile, get_profile
from lab.verdict import check_userspace, verdict

# A reset the platform never performs would hold a cell for its whole timeout: this long a
# silence after the kernel's restart line ends the boot (firmware prints within seconds of a
# reset, also under loaded TCG). Seen on loongarch64: QEMU 10.0.2 virt + forky's 7.2 kernel.
RESET_SILENCE = 240.0
RESTARTING = re.compile(r"reboot: Restarting system\s*\Z")


def wait_decided(vm: QemuVM, timeout: float) -> bool:
    """Wait for the boot to decide itself (lab.console.DECIDED); True, with QEMU killed, when
    the guest's reset stalled instead. VMError on timeout or when QEMU exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            vm.wait_for(DECIDED, timeout=min(15.0, max(0.0, deadline - time.monotonic())))
            return False
        except VMError:
            if not vm.is_running() or time.monotonic() >= deadline:
                raise
            if RESTARTING.search(vm.text()) and vm.quiet_for() >= RESET_SILENCE:
                vm.kill()
                return True


def reset_stalled(run: PathCRun) -> bool:
    """The boot ended because the guest's reset never happened (wait_decided)."""
    return run.result.category == "handoff" and \
        "guest reset never happened" in run.result.evidence


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
    killed_at: str | None = None  # the event phase at which the lab cut the power

    def event(self, phase: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("phase") == phase), None)

    @property
    def ours(self) -> list[dict[str, Any]]:
        """cloudboot's Boot#### entries in the VARS file after the boot."""
        return [e for e in self.vars_after.get("entries", []) if e.get("cloudboot")]

    def read_back(self, scratch: Path) -> PathCRun:
        """What the guest left: the VARS file, the cache ESP's files, `fsck.vfat -n`."""
        self.vars_after = varstore.describe(self.vars_path)
        self.raw_after, self.order_after = raw_boot_vars(self.vars_path)
        self.esp = cache_esp(self.cache_path)
        self.esp_files = read_esp(self.cache_path, self.esp)
        self.fsck = fsck_esp(self.cache_path, self.esp, scratch)
        return self


def plant_foreign_entries(vars_path: Path, arch: Arch | str = "x86_64") -> None:
    """Boot entries someone else wrote (Boot0000, Boot0001…: a distro's shim and GRUB for
    `arch`), written by virt-firmware's Python API the way `virt-fw-vars --inplace
    --append-boot-filepath` writes them (an independent writer, not our own codec; imported,
    so no CLI on PATH is needed)."""
    if not edk2.Edk2VarStore.probe(str(vars_path)):
        raise RuntimeError(f"{vars_path}: virt-firmware finds no edk2 variable store in it")
    try:
        store = edk2.Edk2VarStore(str(vars_path))
        varlist = store.get_varlist()
        for f in FOREIGN_FILES_BY_ARCH.get(str(arch), FOREIGN_FILES):
            index = varlist.add_boot_entry("file " + f.split("\\")[-1],
                                           devpath.DevicePath.filepath(f))
            varlist.append_boot_order(index)
        store.write_varstore(str(vars_path), varlist)
    except SystemExit:  # virt-firmware logs the reason and exits on a store it cannot use
        raise RuntimeError(f"{vars_path}: virt-firmware could not add boot entries (it logged "
                           "why on stderr)") from None


def _vars_evidence(vars_path: Path) -> dict[str, Any]:
    """The store decoded as `cloudboot inspect` shows it, without the host's path to it."""
    state = varstore.describe(vars_path)
    state.pop("path", None)
    return state


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


@dataclass
class PathCMachine:
    """One Path C guest across several boots: the same VARS file and cache disk every time,
    as a real machine keeps them (the fault cases: a power cut mid-staging and the boot
    after, a reset and the boot after, BootNext consumed)."""

    cell: Cell
    workdir: Path
    image: debian.TargetImage
    profile: Profile
    firmware: Firmware
    accel: str
    vars_path: Path
    cache: Path
    foreign_before: dict[str, bytes] = field(default_factory=dict)
    order_before: list[int] = field(default_factory=list)
    boots: int = 0
    vars_state: dict[str, Any] = field(default_factory=dict)  # the store as the next boot finds it

    @classmethod
    def create(cls, cell: Cell, workdir: Path, *, cache_mib: int = cachedisk.DEFAULT_SIZE_MIB,
               image: debian.TargetImage | None = None,
               plant_foreign: bool = True) -> PathCMachine:
        """A fresh VARS copy with foreign entries planted (`plant_foreign`: benchmarks leave
        them out, the baseline has none and each dead one costs the firmware ~3 s), a new
        cache disk. `image`: the target disk when the cell's fs field is not a plain
        filesystem ("ext4-oci-plan")."""
        workdir.mkdir(parents=True, exist_ok=True)
        image = image or target_image(cell)  # the vz variant for vz cells (lab/lanes/vz.py)
        # riscv64/loongarch64 run on the private QEMU 10 (lab/bootstrap.lane_profile).
        profile = get_profile(cell.profile_name) if cell.profile_name != cell.arch.name \
            else lane_profile(cell.arch)
        fw = with_editable_vars(select_firmware(profile))
        vars_path = fw.fresh_vars(workdir)
        if plant_foreign:
            plant_foreign_entries(vars_path, cell.arch)
        cache = workdir / "menu-cache.raw"
        cachedisk.create(cache, cache_mib)
        foreign, order = raw_boot_vars(vars_path)
        return cls(cell, workdir, image, profile, fw, select_accel(profile).accel, vars_path,
                   cache, foreign, order, vars_state=_vars_evidence(vars_path))

    def cmdline(self, extra: str = "", *, disk: bool = True) -> str:
        """Console, the target disk (unless a plan picks it), Path C's exit, and `extra`."""
        p = self.profile
        parts = [f"console={p.console} panic=-1 cloudboot.reboot_delay=0", *p.guest_cmdline,
                 f"cloudboot.disk=LABEL={self.image.fs_label}" if disk else "",
                 "cloudboot.exit=reboot", extra]
        return " ".join(x for x in parts if x)

    def iso(self, cmdline: str, plan_file: Path | None = None) -> Path:
        """boot.iso for this command line (and embedded plan), built once per machine."""
        key = hashlib.sha256(cmdline.encode() + (plan_file.read_bytes() if plan_file else b""))
        out = self.workdir / f"boot-{key.hexdigest()[:12]}.iso"
        if not out.exists():
            build_bootstrap_iso(self.cell.arch, cmdline, out, plan_file)
        return out

    def spec(self, iso: Path, timeout: float, *, extra_args: list[str] | None = None,
             nic: UserNet | None = None) -> VMSpec:
        return VMSpec(
            profile=self.profile, firmware=self.firmware, vars_path=self.vars_path,
            accel=self.accel,  # type: ignore[arg-type]
            disks=[Disk(iso, interface="virtio-blk", readonly=True),
                   Disk(self.cache, interface="virtio-blk"),
                   Disk(self.image.path, interface="virtio-blk", snapshot=True)],
            no_reboot=False,  # Path C reboots on purpose
            hard_timeout=timeout + 90, name=self.cell.id, extra_args=extra_args or [],
            nic=nic)

    def finish(self, outcome: BootOutcome, iso: Path, seconds: float,
               killed_at: str | None = None) -> PathCRun:
        """The verdict and everything the host reads back after a boot."""
        result = verdict(self.cell, outcome, accel=self.accel, seconds=seconds)
        result.assets = {"boot.iso": file_digest(iso), "target-image": self.image.key}
        if result.status == "pass":
            check_userspace(result, self.image)
        run = PathCRun(result, self.vars_path, self.cache, self.foreign_before,
                       self.order_before, killed_at=killed_at)
        run.events = [e.data for e in outcome.events.events if e.phase != "userspace"]
        run.read_back(self.workdir / "esp.img")
        # Evidence beside the console (the run directory keeps both): the store before this
        # boot and after it, decoded.
        after = _vars_evidence(self.vars_path)
        for name, state in (("vars-before.json", self.vars_state), ("vars-after.json", after)):
            (outcome.console_log.parent / name).write_text(json.dumps(state, indent=1) + "\n")
        self.vars_state = after
        return run

    def boot(self, iso: Path, *, timeout: float = 600.0, kill_at: str | None = None,
             type_at: tuple[re.Pattern[str], str] | None = None,
             nic: UserNet | None = None) -> PathCRun:
        """Boot once on QEMU, until the boot decides itself. `kill_at`: SIGKILL QEMU the
        moment that guest event phase is printed (a power cut). `type_at`: when the pattern
        appears on the serial console, type the text into the guest's hvc0 (a virtconsole on
        a socket). `nic`: a user-mode NIC (network plans); none by default."""
        self.boots += 1
        watch = Stopwatch()
        sock = Path(tempfile.mkdtemp(prefix="cb-hvc-")) / "hvc0.sock"
        extra = ["-chardev", f"socket,id=hvc,path={sock},server=on,wait=off",
                 "-device", "virtio-serial-pci,id=vser9",
                 "-device", "virtconsole,chardev=hvc,name=menu.0"] if type_at else []
        spec = self.spec(iso, timeout, extra_args=extra, nic=nic)
        timed_out, killed = False, None
        try:
            with QemuVM(spec, self.workdir / f"vm{self.boots}") as vm:
                try:
                    if kill_at is not None:
                        vm.wait_for(re.compile(rf'"phase":\s*"({re.escape(kill_at)}|fatal)"'),
                                    timeout=timeout)
                        if f'"{kill_at}"' in vm.text():
                            vm.kill()
                            killed = kill_at
                    else:
                        if type_at is not None:
                            vm.wait_for(type_at[0], timeout=timeout)
                            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                                s.connect(str(sock))
                                s.sendall(type_at[1].encode())
                        if not wait_decided(vm, timeout):
                            with contextlib.suppress(VMError):
                                vm.wait_exit(30)
                except VMError:
                    timed_out = vm.is_running() or vm.timed_out
                text = vm.text()
        finally:
            shutil.rmtree(sock.parent, ignore_errors=True)
        outcome = BootOutcome(text, console.parse_log(vm.console_log), timed_out,
                              vm.console_log)
        return self.finish(outcome, iso, watch.seconds(), killed)


def run_path_c_disk(cell: Cell, workdir: Path, *, extra_cmdline: str = "",
                    timeout: float = 600.0, plant_foreign: bool = True) -> PathCRun:
    """boot.iso (cloudboot.exit=reboot) + cache disk + the Debian target disk, one boot."""
    m = PathCMachine.create(cell, workdir, plant_foreign=plant_foreign)
    iso = m.iso(m.cmdline(extra_cmdline))
    if cell.hypervisor != "libvirt":
        return m.boot(iso, timeout=timeout)
    # As a libvirt domain: it restarts in place on the guest's reboot (on_reboot=restart),
    # its nvram is this machine's VARS file, and domainxml keeps libvirt's bootindex off every
    # device so the firmware follows the BootOrder the guest wrote.
    watch = Stopwatch()
    outcome = hypervisors.boot("libvirt", m.spec(iso, timeout), workdir / "vm", timeout)
    return m.finish(outcome, iso, watch.seconds())


def path_c_problems(run: PathCRun) -> list[str]:
    """What is wrong with a Path C run that should have passed; [] when nothing is.

    cloudboot-init ran once (the second pass was the firmware starting the staged kernel);
    the phases came in order; one entry of ours, first in BootOrder, no duplicates, pointing
    with HD() at the cache ESP as the host reads it, options `initrd=… root=…`; every
    foreign entry byte for byte as planted and still in BootOrder; the staged files on the
    FAT with the sizes the guest reported, no temporary file left, and fsck clean."""
    r = run.result
    if r.status != "pass":
        return [f"{r.category}: {r.evidence}"]
    bad: list[str] = []
    if r.banners != 1:
        bad.append(f"cloudboot-init ran {r.banners} times, not once")
    t = r.phase_times
    order = [t.get(p) for p in ("staged", "bootvar-written", "rebooting", "userspace")]
    # Host arrival times: lines read in one batch share a timestamp, hence <=.
    if None in order or not (order[0] <= order[1] <= order[2] < order[3]):  # type: ignore[operator]
        bad.append(f"phases out of order: {order}")
    if len(run.ours) != 1:
        return bad + [f"{len(run.ours)} cloudboot entries, not 1: {run.vars_after}"]
    entry, boot_order = run.ours[0], run.vars_after.get("boot_order") or []
    if not boot_order or boot_order[0] != entry["number"]:
        bad.append(f"Boot{entry['number']} is not first in BootOrder {boot_order}")
    if len(set(boot_order)) != len(boot_order):
        bad.append(f"duplicates in BootOrder {boot_order}")
    target = entry["description"].removeprefix("cloud-boot ")
    kernel, initrd = staged_paths(target)
    staged = run.event("staged") or {}
    form = staged.get("form", "split")  # "uki": one UKI, no load options (ukistage.py)
    if run.esp is None or entry["device_path"] != build_option(target, run.esp, "",
                                                               form=form).path_text():
        bad.append(f"device path {entry['device_path']} is not the cache ESP's {run.esp}")
    if form == "uki":
        if entry["optional_data"]:
            bad.append(f"options {entry['optional_data']!r} (a staged UKI needs none)")
    elif not entry["optional_data"].startswith(f"initrd={initrd} ") or \
            "root=" not in entry["optional_data"]:
        bad.append(f"options {entry['optional_data']!r}")
    if not run.foreign_before:
        bad.append("no foreign entries were planted")
    for name, data in run.foreign_before.items():
        if run.raw_after.get(name) != data:
            bad.append(f"{name} was changed")
        if int(name[4:], 16) not in run.order_after:
            bad.append(f"{name} fell out of BootOrder")
    files = {p.lower(): size for p, size in run.esp_files.items()}
    expect = [(uki_path(target), "uki_bytes")] if form == "uki" else \
        [(kernel, "kernel_bytes"), (initrd, "initrd_bytes")]
    for path, key in expect:
        got = files.get(path.replace("\\", "/").lower())
        if got is None or got != staged.get(key) or got < 1 << 20:
            bad.append(f"{path}: {got} bytes on the ESP, the guest staged {staged.get(key)}")
    if any(p.endswith(".cbtmp") for p in files):
        bad.append("a temporary file was left behind")
    if run.fsck is None or run.fsck.returncode != 0:
        bad.append("fsck.vfat: " + ("not run" if run.fsck is None
                                    else run.fsck.stdout + run.fsck.stderr))
    return bad


MENU_PROMPT = re.compile(r"\[number, name or prefix; Enter = [^\]]+\]")


def run_menu_boot(cell: Cell, workdir: Path, plan_file: Path, targets: list[Path],
                  keys: str, *, cmdline: str = "", timeout: float = 500.0) -> CellResult:
    """Boot boot.iso with an embedded plan whose menu is shown; when the prompt appears on the
    serial console, type `keys` into the guest's hvc0 (a virtconsole on a host socket)."""
    watch = Stopwatch()
    sock = Path(tempfile.mkdtemp(prefix="cb-hvc-")) / "hvc0.sock"
    spec, iso = bootstrap_machine(
        cell, workdir, cmdline, targets, timeout=timeout, plan_file=plan_file,
        extra_args=["-chardev", f"socket,id=hvc,path={sock},server=on,wait=off",
                    "-device", "virtio-serial-pci,id=vser9",
                    "-device", "virtconsole,chardev=hvc,name=menu.0"])

    def type_at_the_menu(vm: QemuVM) -> None:
        vm.wait_for(MENU_PROMPT, timeout=timeout)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(sock))
            s.sendall(keys.encode())

    try:
        outcome = qemu.boot(spec, workdir / "vm", timeout, interact=type_at_the_menu)
    finally:
        shutil.rmtree(sock.parent, ignore_errors=True)
    result = verdict(cell, outcome, accel=spec.accel, seconds=watch.seconds())
    result.assets = {"boot.iso": file_digest(iso)}
    return result
