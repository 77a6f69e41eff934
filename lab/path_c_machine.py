"""One Path C guest across several boots: the same VARS file and cache disk every time, as a
real machine keeps them. The fault cases of issue 5 need that: kill the VM mid-staging and
boot again, reset and boot again, BootNext consumed and the next boot back in the bootstrap.

Each `boot()` builds (or reuses) a boot.iso for its command line, starts QEMU with the
bootstrap ISO, the cache disk and the Debian target, and returns a `PathCBoot` with the
verdict, the events and what the host reads back from the VARS file and the cache ESP.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudboot.efi import varstore
from cloudboot.init.gptread import GptPartition
from cloudboot.media import cachedisk
from lab import console
from lab.accel import select_accel
from lab.cells import Cell, CellResult, Stopwatch, file_digest
from lab.firmware import Firmware, select_firmware, with_editable_vars
from lab.hypervisors.qemu import Disk, QemuVM, UserNet, VMError, VMSpec
from lab.images import debian
from lab.path_c import (
    FOREIGN_FILES,
    FOREIGN_FILES_BY_ARCH,
    cache_esp,
    fsck_esp,
    plant_foreign_entries,
    raw_boot_vars,
    read_esp,
)
from lab.profiles import Profile, get_profile
from lab.runner import DECIDED, BootOutcome, build_bootstrap_iso, check_userspace, verdict


@dataclass
class PathCBoot:
    result: CellResult
    events: list[dict[str, Any]]
    vars_after: dict[str, Any]
    raw_after: dict[str, bytes]
    order_after: list[int]
    esp: GptPartition | None
    esp_files: dict[str, int]
    fsck_rc: int | None
    fsck_text: str
    killed_at: str | None = None

    def event(self, phase: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("phase") == phase), None)

    @property
    def ours(self) -> list[dict[str, Any]]:
        return [e for e in self.vars_after["entries"] if e.get("cloudboot")]


@dataclass
class PathCMachine:
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

    @classmethod
    def create(cls, cell: Cell, workdir: Path, *, cache_mib: int = cachedisk.DEFAULT_SIZE_MIB,
               plant_foreign: bool = True,
               image: debian.TargetImage | None = None) -> PathCMachine:
        """`image`: the target disk, when the cell's fs field is not a plain filesystem
        (e.g. "ext4-oci-plan"); else built from the cell."""
        workdir.mkdir(parents=True, exist_ok=True)
        image = image or debian.build(cell.release, cell.fs, cell.arch)
        profile = get_profile(cell.profile_name)
        fw = with_editable_vars(select_firmware(profile))
        vars_path = fw.fresh_vars(workdir)
        if plant_foreign:
            plant_foreign_entries(vars_path, FOREIGN_FILES_BY_ARCH.get(cell.arch, FOREIGN_FILES))
        cache = workdir / "menu-cache.raw"
        cachedisk.create(cache, cache_mib)
        foreign, order = raw_boot_vars(vars_path)
        return cls(cell, workdir, image, profile, fw, select_accel(profile).accel, vars_path,
                   cache, foreign, order)

    def cmdline(self, extra: str = "", *, disk: bool = True) -> str:
        """The bootstrap's command line: console, the target disk (unless `disk` is False,
        e.g. a plan picks it), Path C's exit, and `extra`."""
        p = self.profile
        parts = [f"console={p.console} panic=-1 cloudboot.reboot_delay=0", *p.guest_cmdline,
                 f"cloudboot.disk=LABEL={self.image.fs_label}" if disk else "",
                 "cloudboot.exit=reboot", extra]
        return " ".join(x for x in parts if x)

    def esp_partition(self) -> GptPartition:
        return cache_esp(self.cache)

    def iso(self, cmdline: str, plan_file: Path | None = None) -> Path:
        key = hashlib.sha256(cmdline.encode() + (plan_file.read_bytes() if plan_file else b""))
        out = self.workdir / f"boot-{key.hexdigest()[:12]}.iso"
        if not out.exists():
            build_bootstrap_iso(self.cell.arch, cmdline, out, plan_file)
        return out

    def boot(self, iso: Path, *, timeout: float = 600.0, kill_at: str | None = None,
             type_at: tuple[re.Pattern[str], str] | None = None,
             nic: UserNet | None = None) -> PathCBoot:
        """Boot once, until the boot decides itself. `kill_at`: SIGKILL QEMU the moment that
        guest event phase is printed (a power cut). `type_at`: when the pattern appears on
        the serial console, type the text into the guest's hvc0 (a virtconsole on a socket).
        `nic`: a user-mode NIC (network plans); none by default."""
        self.boots += 1
        watch = Stopwatch()
        extra: list[str] = []
        sock = Path(tempfile.mkdtemp(prefix="cb-hvc-")) / "hvc0.sock"
        if type_at is not None:
            extra = ["-chardev", f"socket,id=hvc,path={sock},server=on,wait=off",
                     "-device", "virtio-serial-pci,id=vser9",
                     "-device", "virtconsole,chardev=hvc,name=menu.0"]
        spec = VMSpec(
            profile=self.profile, firmware=self.firmware, vars_path=self.vars_path,
            accel=self.accel,  # type: ignore[arg-type]
            disks=[Disk(iso, interface="virtio-blk", readonly=True),
                   Disk(self.cache, interface="virtio-blk"),
                   Disk(self.image.path, interface="virtio-blk", snapshot=True)],
            no_reboot=False, hard_timeout=timeout + 90, name=f"{self.cell.id}-{self.boots}",
            extra_args=extra, nic=nic)
        timed_out, killed = False, None
        vmdir = self.workdir / f"vm{self.boots}"
        with QemuVM(spec, vmdir) as vm:
            try:
                if kill_at is not None:
                    vm.wait_for(re.compile(rf'"phase":\s*"{re.escape(kill_at)}"|"fatal"'),
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
                    vm.wait_for(DECIDED, timeout=timeout)
                    with contextlib.suppress(VMError):
                        vm.wait_exit(30)
            except VMError:
                timed_out = vm.is_running() or vm.timed_out
            text = vm.text()
        outcome = BootOutcome(text, console.parse_log(vm.console_log), timed_out,
                              vm.console_log)
        result = verdict(self.cell, outcome, accel=self.accel, seconds=watch.seconds())
        result.assets = {"boot.iso": file_digest(iso), "target-image": self.image.key}
        if result.status == "pass":
            check_userspace(result, self.image)
        sock.unlink(missing_ok=True)
        sock.parent.rmdir()
        raw, order = raw_boot_vars(self.vars_path)
        esp = cache_esp(self.cache)
        fsck = fsck_esp(self.cache, esp, self.workdir / "esp.img")
        return PathCBoot(result, [e.data for e in outcome.events.events
                                  if e.phase != "userspace"],
                         varstore.describe(self.vars_path), raw, order, esp,
                         read_esp(self.cache, esp), fsck.returncode, fsck.stdout + fsck.stderr,
                         killed)
