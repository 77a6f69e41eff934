"""Path A on QEMU aarch64 (AAVMF, cortex-a57 under TCG): firmware → UKI (Debian's arm64 cloud
kernel + the arm64 Python initramfs) → cloudboot-init → kexec → an arm64 Debian userspace.

The target images are built for arm64 on this x86_64 host: debootstrap --foreign, then the
second stage under qemu-user-static through binfmt_misc (lab/images/foreign.py).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from lab.bootstrap import build_bootstrap_iso
from lab.cells import DISTROS, FILESYSTEMS, Cell, Stopwatch
from lab.firmware import FirmwareError, select_firmware
from lab.hypervisors.qemu import boot
from lab.hypervisors.vmspec import Disk, VMSpec
from lab.images import debian
from lab.matrix import expectation
from lab.paths.a import run_path_a_disk
from lab.profiles import get_profile
from lab.verdict import check_userspace, verdict

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

ARCH = "aarch64"
# No smoke cell: a cold arm64 set-up (two foreign debootstraps under qemu-user plus the arm64
# runtime packages) takes far longer than the CI's fast subset allows; see the issue 7 note.
SMOKE: set[str] = set()
CELLS = [Cell("qemu", ARCH, "A", d, fs) for d in DISTROS for fs in FILESYSTEMS]
# "smp: Brought up 1 node, 2 CPUs": printed once by each kernel that came up with both CPUs.
SMP_UP = re.compile(r"smp: Brought up \d+ nodes?, (\d+) CPUs?")
KERNEL_CMDLINE = re.compile(r"Kernel command line: (.*)")
KEXEC_LOAD = re.compile(r'"phase":\s*"kexec-load"')


def _require_lane() -> None:
    if shutil.which("qemu-system-aarch64") is None:
        pytest.fail("qemu-system-aarch64 missing (apt-get install qemu-system-arm)")
    try:
        select_firmware(get_profile(ARCH))
    except FirmwareError as e:
        pytest.fail(f"no AAVMF firmware (apt-get install qemu-efi-aarch64): {e}")


@pytest.mark.parametrize("cell", [
    pytest.param(c, id=c.id, marks=[pytest.mark.smoke] if c.id in SMOKE else []) for c in CELLS
])
def test_path_a_arm64_from_local_disk(cell: Cell, tmp_path: Path, record_cell) -> None:
    _require_lane()
    # TCG aarch64 on 2 shared cores: a boot with two kernels and a cold arm64 Python start
    # took up to ~3 minutes here under load; the timeout leaves room for more.
    result = run_path_a_disk(cell, tmp_path, timeout=900)
    expected = expectation(cell)
    if expected is not None and expected.kind == "fail":
        assert result.status == "fail" and result.category == expected.category, result.evidence
        result.status, result.reason = "xfail", expected.reason
    record_cell(result)
    if result.status == "xfail":
        return
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    assert result.banners == 1, "cloudboot-init must run exactly once"
    times = result.phase_times
    assert times["disk-found"] < times["kexec-load"] < times["userspace"]
    print(f"{cell.id}: firmware reset -> userspace marker {times['userspace']:.1f} s, "
          f"kexec-load at {times['kexec-load']:.1f} s")


def test_kexec_with_two_cpus_online(tmp_path: Path) -> None:
    """arm64 kexec with a secondary CPU online, no nr_cpus=1: both kernels bring up 2 CPUs.

    The earlier system forced nr_cpus=1 after machine_kexec's BUG_ON under Apple's hypervisor
    (secondary CPUs that cannot be taken offline). On QEMU's virt machine PSCI CPU_OFF works, so
    the bootstrap kernel parks its secondary and the target kernel starts it again.
    """
    _require_lane()
    cell = Cell("qemu", ARCH, "A", "debian-12", "smp2")
    image = debian.build("bookworm", "ext4", ARCH)
    profile = get_profile(ARCH)
    watch = Stopwatch()
    cmdline = (f"console={profile.console} panic=-1 cloudboot.reboot_delay=0 "
               f"cloudboot.disk=LABEL={image.fs_label}")
    iso = build_bootstrap_iso(ARCH, cmdline, tmp_path / "boot.iso")
    fw = select_firmware(profile)
    spec = VMSpec(profile=profile, firmware=fw, vars_path=fw.fresh_vars(tmp_path), accel="tcg",
                  disks=[Disk(iso, interface="virtio-blk", readonly=True),
                         Disk(image.path, interface="virtio-blk", snapshot=True)],
                  cpus=2, no_reboot=True, hard_timeout=960, name=cell.id)
    outcome = boot(spec, tmp_path / "vm", timeout=900)
    result = verdict(cell, outcome, accel="tcg", seconds=watch.seconds())
    if result.status == "pass":
        check_userspace(result, image)
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    cmdlines = KERNEL_CMDLINE.findall(outcome.text)
    assert len(cmdlines) == 2 and not any("nr_cpus" in c or "maxcpus" in c for c in cmdlines), \
        cmdlines
    # Before the kexec the bootstrap kernel ran on 2 CPUs; after it, the target kernel did too.
    split = KEXEC_LOAD.search(outcome.text)
    assert split is not None, "no kexec-load event on the console"
    before, after = outcome.text[:split.start()], outcome.text[split.end():]
    assert [int(n) for n in SMP_UP.findall(before)] == [2], SMP_UP.findall(before)
    assert [int(n) for n in SMP_UP.findall(after)] == [2], SMP_UP.findall(after)
    print(f"{cell.id}: firmware reset -> userspace marker "
          f"{result.phase_times['userspace']:.1f} s with -smp 2")
