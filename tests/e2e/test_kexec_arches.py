"""Path A's hand-off on armv7, riscv64 and loongarch64: kexec_load(2) with our own layout.

Their Debian kernels have CONFIG_KEXEC but no CONFIG_KEXEC_FILE, so cloudboot-init falls back
to the per-arch planners (cloudboot/init/kexec/arm32.py, kexec_riscv64.py,
kexec_loongarch64.py). The proof needs no Debian userspace: a small ext4 disk holds
/boot/vmlinuz-<ver> = the lane's own kernel and /boot/initrd.img-<ver> = the lane's probe
initramfs (static busybox printing PROBE_MARKER). The lane's bootstrap UKI boots through real
UEFI firmware with cloudboot.disk= pointing at it; the console must show cloudboot's
`kexec-load` event, then a second kernel banner (the kexec'd kernel), then PROBE_MARKER from
that kernel's /init with the lane's arch and kernel release.

Times are from the firmware reset (QEMU `cont`): kexec-load, second banner, marker. Marked
e2e + boot, not smoke: TCG boots of these lanes take minutes on shared cores. riscv64 and
loongarch64 need cloudboot-init on those arches (a per-arch Python in the bootstrap
initramfs); until `Lane.bootstrap_initramfs()` stops raising LaneGap they fail with its reason.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from lab.arch_lanes import PROBE_MARKER, Lane, build_lane_iso, get_lane, probe_initramfs
from lab.firmware import select_firmware
from lab.hypervisors.qemu import QemuVM
from lab.hypervisors.vmspec import Disk, VMError, VMSpec
from tests.helpers import require_bootstrap_initramfs, require_lane_profile

# The cold set-up builds the lane's bootstrap initramfs (foreign Python, kernel modules):
# 15+ min for riscv64 on a loaded host, cached afterwards; the boot itself is TIMEOUT.
pytestmark = [pytest.mark.e2e, pytest.mark.boot, pytest.mark.timeout(3600)]

ARCHES = ("armv7", "riscv64", "loongarch64")
UNAME = {"armv7": "armv7l", "riscv64": "riscv64", "loongarch64": "loongarch64"}
KEXEC_LOAD = re.compile(r'CLOUDBOOT-EVENT (\{.*"phase":\s*"kexec-load".*\})')
FATAL = re.compile(r'CLOUDBOOT-EVENT (\{.*"phase":\s*"fatal".*\})')
LINUX_BANNER = re.compile(r"Linux version (\S+)")
# A lone TCG run takes 20-90 s (the armmp target decompresses itself twice); the host is
# shared by several engineers booting guests.
TIMEOUT = 900.0


def target_disk(lane: Lane, out: Path, label: str) -> Path:
    """ext4 (no partition table: cloudboot.disk=LABEL= finds it) with the lane's kernel and
    the probe initramfs under /boot, named as Debian names them."""
    release = lane.kernel_release()
    tree = out.parent / f"{out.name}.tree"
    (tree / "boot").mkdir(parents=True)
    (tree / "boot" / f"vmlinuz-{release}").write_bytes(lane.kernel().read_bytes())
    probe_initramfs(lane, tree / "boot" / f"initrd.img-{release}")
    with open(out, "wb") as f:
        f.truncate(96 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(tree), str(out)],
                   check=True, capture_output=True, timeout=120)
    return out


def _kexec_run(arch: str, tmp_path: Path, cpus: int = 1) -> tuple[str, float, float, float]:
    """Boot the lane's bootstrap UKI at a disk holding its own kernel + the probe initramfs;
    returns (console text after the kexec, t kexec-load, t target banner, t probe marker)."""
    lane = get_lane(arch)
    initramfs = require_bootstrap_initramfs(lane)
    profile = require_lane_profile(arch)
    label = f"cbk{arch[:5]}"
    disk = target_disk(lane, tmp_path / "target.ext4", label)
    cmdline = (f"console={profile.console} panic=-1 cloudboot.reboot_delay=0 "
               f"cloudboot.disk=LABEL={label}")
    iso = build_lane_iso(lane, cmdline, tmp_path / "boot.iso", initramfs)
    fw = select_firmware(profile)
    spec = VMSpec(profile=profile, firmware=fw, vars_path=fw.fresh_vars(tmp_path), accel="tcg",
                  disks=[Disk(iso, interface="virtio-blk", readonly=True),
                         Disk(disk, interface="virtio-blk", snapshot=True)],
                  cpus=cpus, no_reboot=True, hard_timeout=TIMEOUT + 60,
                  name=f"kexec-{arch}-smp{cpus}")
    marker = re.compile(rf"{PROBE_MARKER} arch=(\S+) kernel=(\S+)")
    with QemuVM(spec, tmp_path / "vm") as vm:
        try:
            m = vm.wait_for(rf"(?:{marker.pattern}|{FATAL.pattern})\s*\n", timeout=TIMEOUT)
        except VMError as e:
            pytest.fail(f"{arch}: no probe marker after kexec: {e}\n{vm.console_tail(60)}")
        lines = vm.lines()
        text = vm.text()
    fatal = FATAL.search(text)
    assert fatal is None, f"{arch}: {json.loads(fatal.group(1))}\n{text[-4000:]}"
    t_kexec = next((ln.t for ln in lines if KEXEC_LOAD.search(ln.text)), None)
    assert t_kexec is not None, f"{arch}: no kexec-load event\n{text[-4000:]}"
    t_second = next((ln.t for ln in lines if ln.t >= t_kexec and LINUX_BANNER.search(ln.text)),
                    None)
    t_marker = next(ln.t for ln in lines if marker.search(ln.text))
    assert t_second is not None, f"{arch}: no kernel banner after kexec-load: it never ran"
    assert t_kexec < t_second < t_marker, (t_kexec, t_second, t_marker)
    assert m.group(1) == UNAME[arch], m.group(0)
    assert m.group(2) == lane.kernel_release(), (m.group(2), lane.kernel_release())
    event = json.loads(KEXEC_LOAD.search(text).group(1))  # type: ignore[union-attr]
    print(f"{arch} (-smp {cpus}): firmware reset -> kexec-load {t_kexec:.1f} s (load "
          f"{event.get('seconds')} s) -> target banner {t_second:.1f} s -> probe marker "
          f"{t_marker:.1f} s (kernel {m.group(2)}, {profile.qemu_binary})")
    after = "".join(ln.text + "\n" for ln in lines if ln.t >= t_kexec)
    return after, t_kexec, t_second, t_marker


@pytest.mark.parametrize("arch", ARCHES)
def test_kexec_load_into_the_lane_kernel(arch: str, tmp_path: Path) -> None:
    _kexec_run(arch, tmp_path)


def test_armv7_kexec_with_two_cpus_online(tmp_path: Path) -> None:
    """arm32's machine_kexec_prepare refuses (EINVAL) when more than one CPU is possible and
    the platform cannot hot-unplug them; QEMU virt has PSCI CPU_OFF, so the second CPU goes
    down and the target brings both up again."""
    after, *_ = _kexec_run("armv7", tmp_path, cpus=2)
    assert re.search(r"Brought up 1 node, 2 CPUs", after), after[-3000:]
