"""Which accelerator works here: KVM is tried for real by booting firmware, else TCG.

An openable /dev/kvm proves little: on some hosts KVM runs a kernel but dies on firmware code
("KVM internal error ... emulation failure"). So the probe boots the host arch's UEFI firmware
under KVM with no disks and no NIC and waits for the boot manager ("BdsDxe") on the serial
console, watching QMP for an internal-error state to fail fast. The answer is cached per host
boot (keyed by /proc/sys/kernel/random/boot_id); CLOUDBOOT_ACCEL=kvm|tcg overrides it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from cloudboot.arch import host_arch
from cloudboot.fsutil import atomic_output, cache_dir
from lab.firmware import FirmwareError, select_firmware
from lab.hypervisors.qemu import QemuVM, VMError, VMSpec
from lab.profiles import Profile, get_profile

ENV = "CLOUDBOOT_ACCEL"
PROBE_TIMEOUT = 30.0  # KVM reaches BdsDxe in well under 5 s where it works
_PROBE_MARK = "BdsDxe"


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
        try:
            vm.start()
            return _watch(vm, timeout)
        except VMError as e:
            first = str(e).splitlines()[0]
            return AccelChoice("tcg", f"KVM probe failed: {first}", "probe")
        finally:
            vm.shutdown()


def _watch(vm: QemuVM, timeout: float) -> AccelChoice:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _PROBE_MARK in vm.text():
            return AccelChoice("kvm", f"firmware reached {_PROBE_MARK} under KVM", "probe")
        if not vm.is_running():
            return AccelChoice("tcg", "QEMU exited while booting firmware under KVM", "probe")
        status = vm.status()
        if status in ("internal-error", "guest-panicked", "shutdown"):
            stderr = vm.stderr_log.read_text(errors="replace").strip().splitlines()
            detail = f" ({stderr[0]})" if stderr else ""
            return AccelChoice("tcg", f"KVM guest stopped in state {status}{detail}", "probe")
        time.sleep(0.2)
    return AccelChoice("tcg", f"firmware printed no {_PROBE_MARK} within {timeout:.0f} s "
                              "under KVM", "probe")


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
            return AccelChoice(data["accel"], data["reason"], "cache")
    choice = probe_kvm()
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(asdict(choice)))
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
