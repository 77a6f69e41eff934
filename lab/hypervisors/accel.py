"""Which accelerator works here: KVM is tried for real by booting firmware, else TCG.

An openable /dev/kvm proves little: on some hosts KVM runs a kernel but dies on firmware code
("KVM internal error ... emulation failure"), or QEMU aborts before the first instruction
("failed to set MSR ..."). So the probe boots the host arch's UEFI firmware under KVM with no
disks and no NIC and waits for the boot manager ("BdsDxe") on the serial console, watching QMP
for an internal-error state to fail fast. A failing verdict carries what QEMU itself printed
(its stderr, trimmed to the lines that say why), not how the lab noticed. The answer is cached
per host boot (keyed by /proc/sys/kernel/random/boot_id); CLOUDBOOT_ACCEL=kvm|tcg overrides it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from cloudboot.arch import host_arch
from cloudboot.fsutil import atomic_output, cache_dir
from lab.firmware import FirmwareError, select_firmware
from lab.hypervisors.qemu import QemuVM
from lab.hypervisors.vmspec import VMError, VMSpec
from lab.profiles import Profile, get_profile

ENV = "CLOUDBOOT_ACCEL"
PROBE_TIMEOUT = 30.0  # KVM reaches BdsDxe in well under 5 s where it works
_PROBE_MARK = "BdsDxe"
# Bump when the verdict's wording changes: a cached verdict of an older probe is probed again
# (version 1 reported "cannot connect QMP" where QEMU had said why).
_CACHE_VERSION = 2
# What follows "KVM internal error" on stderr: register and code dumps, no reason in them.
_DUMP = re.compile(r"^(extra data\[\d+\]:|Code=|[A-Z][A-Z0-9]{1,3}\s*=|[A-Z]{2,4}\d?=)")
_MAX_LINES = 3
_MAX_LINE = 200


@dataclass(frozen=True)
class AccelChoice:
    accel: Literal["kvm", "tcg"]
    reason: str
    source: str  # "env", "probe", "cache" or "arch"


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown-boot"


def qemu_message(stderr: str) -> str:
    """The lines of QEMU's stderr that say why it stopped: its own error lines and KVM's
    internal-error report, without the register dump after it, the signal it was stopped
    with, or warnings when there is an error to show ("" when QEMU said nothing)."""
    lines = [line.strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line and not _DUMP.match(line)
             and "terminating on signal" not in line]
    errors = [line for line in lines if ": warning: " not in line]
    picked = (errors or lines)[:_MAX_LINES]
    return "; ".join(line if len(line) <= _MAX_LINE else line[:_MAX_LINE - 1] + "…"
                     for line in picked)


def probe_kvm(timeout: float = PROBE_TIMEOUT) -> AccelChoice:
    """Boot the host arch's firmware under KVM; "kvm" only if the boot manager shows up."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return AccelChoice("tcg", "/dev/kvm is missing or not read-writable", "probe")
    try:
        profile = get_profile(host_arch().name)
        firmware = select_firmware(profile)
    except (ValueError, FirmwareError) as e:
        return AccelChoice("tcg", f"no firmware to probe KVM with: {e}", "probe")
    with tempfile.TemporaryDirectory(prefix="cloudboot-kvm-probe-") as tmp:
        spec = VMSpec(profile, firmware, firmware.fresh_vars(Path(tmp)), accel="kvm",
                      memory_mib=256, hard_timeout=timeout + 15, name="kvm-probe")
        vm = QemuVM(spec, Path(tmp))
        outcome: tuple[str, str] | None
        try:
            try:
                vm.start()
            except VMError as e:
                # How the lab noticed (e.g. QMP refused): shown only if QEMU itself said nothing.
                outcome = ("QEMU stopped at launch under KVM", str(e).splitlines()[0])
            else:
                outcome = _watch(vm, timeout)
        finally:
            vm.shutdown()
        if outcome is None:
            return AccelChoice("kvm", f"firmware reached {_PROBE_MARK} under KVM", "probe")
        what, noticed = outcome
        rc = vm.proc.returncode if vm.proc is not None else None
        if rc is not None and rc < 0 and what.startswith("QEMU "):
            what += f" ({_signal_name(-rc)})"
        said = qemu_message(vm.stderr_log.read_text(errors="replace"))
        if not said:
            console = [line for line in vm.console_tail(5).splitlines() if line.strip()]
            said = "QEMU printed nothing on stderr" + (f" ({noticed})" if noticed else "")
            said += f"; console: {console[-1]}" if console else "; console empty"
        return AccelChoice("tcg", f"{what}: {said}", "probe")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _watch(vm: QemuVM, timeout: float) -> tuple[str, str] | None:
    """None when the firmware reached the boot manager, else (what happened, how the lab saw
    it); the caller adds what QEMU printed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _PROBE_MARK in vm.text():
            return None
        try:
            status = vm.status() if vm.is_running() else "exited"
        except Exception:  # QMP went away with QEMU between the two questions
            status = "exited"
        if status == "exited":
            with contextlib.suppress(VMError):
                vm.wait_exit(10)
            return ("QEMU exited while booting firmware under KVM", "")
        if status in ("internal-error", "guest-panicked", "shutdown"):
            return (f"the KVM guest stopped in state {status}", "")
        time.sleep(0.2)
    return (f"firmware printed no {_PROBE_MARK} within {timeout:.0f} s under KVM", "")


def _cache_file() -> Path:
    return cache_dir("accel") / f"{boot_id()}-{host_arch().name}.json"


def host_accel(refresh: bool = False) -> AccelChoice:
    """KVM or TCG for guests of the host's own architecture (env, then cache, then probe)."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced:
        if forced not in ("kvm", "tcg"):
            raise ValueError(f"{ENV}={forced!r}: expected kvm or tcg")
        return AccelChoice("kvm" if forced == "kvm" else "tcg", f"forced by {ENV}", "env")
    path = _cache_file()
    if not refresh:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(path.read_text())
            if data.get("version") == _CACHE_VERSION:
                return AccelChoice(data["accel"], data["reason"], "cache")
    choice = probe_kvm()
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps({"version": _CACHE_VERSION, **asdict(choice)}))
    return choice


def select_accel(profile: Profile, refresh: bool = False) -> AccelChoice:
    """The accelerator for `profile` on this host: foreign architectures always get TCG."""
    if profile.arch.name != host_arch().name:
        forced = os.environ.get(ENV, "").strip().lower()
        if forced == "kvm":
            raise ValueError(f"{ENV}=kvm, but {profile.name} guests cannot use KVM on a "
                             f"{host_arch().name} host")
        return AccelChoice("tcg", f"{profile.arch.name} guest on a {host_arch().name} host",
                           "arch")
    return host_accel(refresh)
