"""First proof per lane: the bootstrap UKI of armv7, riscv64 and loongarch64 through real UEFI.

armv7 runs on the system QEMU 7.2 with bookworm's AAVMF32; riscv64 and loongarch64 run on the
private QEMU 10 from bookworm-backports (lab/qemu_private.py) with trixie's / forky's EDK2.

- `test_bootstrap_reaches_init_start`: firmware → UKI (lane kernel + systemd-stub + cloudboot's
  initramfs) → cloudboot-init's `init-start` event. riscv64 carries trixie's python3.13 and
  loongarch64 forky's python3.14 (bytecode compiled by those interpreters under qemu-user;
  lab/arch_lanes.py); without a root disk, the events after init-start are printed too.
- `test_lane_kernel_reaches_userspace`: the same firmware → stub → kernel chain with a probe
  initramfs (the arch's static busybox): proves each lane's firmware, stub, kernel and console.

Times are from the firmware reset (QEMU `cont`) and printed for the issue note. Not smoke: the
cold set-up downloads kernels of three arches and TCG boots take minutes on shared cores.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import pytest

from lab.arch_lanes import PROBE_MARKER, build_lane_iso, get_lane, probe_initramfs
from lab.firmware import select_firmware
from lab.hypervisors.qemu import QemuVM
from lab.hypervisors.vmspec import Disk, VMError, VMSpec
from lab.profiles import Profile
from tests.helpers import require_bootstrap_initramfs, require_lane_profile

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

ARCHES = ("armv7", "riscv64", "loongarch64")
INIT_START = re.compile(r'CLOUDBOOT-EVENT \{.*"phase":\s*"init-start"')
# Waited for up to the end of the line: time_of() sees complete lines only (without "\n").
INIT_START_LINE = re.compile(INIT_START.pattern + r".*\n")
EVENT = re.compile(r"CLOUDBOOT-EVENT (\{.*\})\s*\n")
# With no cloudboot.disk and no network plan cloudboot-init ends in one `fatal` event.
FATAL_LINE = re.compile(r'CLOUDBOOT-EVENT \{.*"phase":\s*"fatal".*\n')
LINUX_BANNER = re.compile(r"Linux version (\S+)")
# Generous: a lone TCG boot of these lanes takes 6-60 s; four engineers share two cores.
TIMEOUT = 600.0


def _boot(profile: Profile, iso: Path, workdir: Path, name: str) -> QemuVM:
    fw = select_firmware(profile)
    spec = VMSpec(profile=profile, firmware=fw, vars_path=fw.fresh_vars(workdir), accel="tcg",
                  disks=[Disk(iso, interface="virtio-blk", readonly=True)], no_reboot=True,
                  hard_timeout=TIMEOUT + 60, name=name)
    return QemuVM(spec, workdir / "vm")


def _cmdline(profile: Profile) -> str:
    return f"console={profile.console} panic=-1 cloudboot.reboot_delay=0"


@pytest.mark.parametrize("arch", ARCHES)
def test_bootstrap_reaches_init_start(arch: str, tmp_path: Path) -> None:
    lane = get_lane(arch)
    initramfs = require_bootstrap_initramfs(lane)
    profile = require_lane_profile(arch)
    iso = build_lane_iso(lane, _cmdline(profile), tmp_path / "boot.iso", initramfs)
    with _boot(profile, iso, tmp_path, f"bootstrap-{arch}") as vm:
        try:
            vm.wait_for(INIT_START_LINE, timeout=TIMEOUT)
        except VMError as e:
            pytest.fail(f"{arch}: no init-start: {e}\n{vm.console_tail()}")
        t_init = vm.time_of(INIT_START)
        t_linux = vm.time_of(LINUX_BANNER)
        banner = LINUX_BANNER.search(vm.text())
        # How far cloudboot-init gets with no disk and no plan (informative, not a verdict).
        with contextlib.suppress(VMError):
            vm.wait_for(FATAL_LINE, timeout=TIMEOUT / 2)
        events = [json.loads(m.group(1)) for m in EVENT.finditer(vm.text())]
    assert t_init is not None and t_linux is not None and t_linux < t_init
    assert banner is not None
    start = next(e for e in events if e["phase"] == "init-start")
    assert start["arch"] == arch and start["pid1"] is True, start
    after = ", ".join(f"{e['phase']}@{e['t']:.1f}s" +
                      (f" ({e.get('category')}: {e.get('message')})" if e["phase"] == "fatal"
                       else "") for e in events)
    print(f"{arch}: firmware reset -> kernel banner {t_linux:.1f} s -> init-start "
          f"{t_init:.1f} s (kernel {banner.group(1)}, {profile.qemu_binary}, initramfs "
          f"{initramfs.stat().st_size / 2**20:.1f} MiB); events: {after}")


@pytest.mark.parametrize("arch", ARCHES)
def test_lane_kernel_reaches_userspace(arch: str, tmp_path: Path) -> None:
    lane = get_lane(arch)
    profile = require_lane_profile(arch)
    initrd = probe_initramfs(lane, tmp_path / "probe.cpio")
    iso = build_lane_iso(lane, f"console={profile.console} panic=-1", tmp_path / "boot.iso",
                         initrd)
    marker = re.compile(rf"{PROBE_MARKER} arch=(\S+) kernel=(\S+)")
    with _boot(profile, iso, tmp_path, f"probe-{arch}") as vm:
        try:
            m = vm.wait_for(marker.pattern + r"\s*\n", timeout=TIMEOUT)
        except VMError as e:
            pytest.fail(f"{arch}: the probe never ran: {e}\n{vm.console_tail()}")
        t_probe = vm.time_of(marker)
        t_linux = vm.time_of(LINUX_BANNER)
    expected_uname = {"armv7": "armv7l", "riscv64": "riscv64", "loongarch64": "loongarch64"}
    assert m.group(1) == expected_uname[arch], m.group(0)
    assert m.group(2) == lane.kernel_release(), (lane.kernel(), m.group(2))
    assert t_probe is not None and t_linux is not None and t_linux < t_probe
    print(f"{arch}: firmware reset -> kernel banner {t_linux:.1f} s -> probe /init "
          f"{t_probe:.1f} s (kernel {m.group(2)}, {profile.qemu_binary})")


# armv7 Path A no longer stops at the hand-off: the armmp kernel refuses kexec_file_load
# (ENOSYS), and cloudboot-init falls back to kexec_load(2) with its own layout
# (cloudboot/init/kexec/arm32.py), proven by tests/e2e/test_kexec_arches.py.
