"""Path C on QEMU aarch64 (AAVMF, cortex-a57 under TCG): UKI → cloudboot-init stages the arm64
target kernel on the cache ESP, writes Boot####, reboots → AAVMF starts the staged kernel's EFI
stub with `initrd=` from the load option → the arm64 Debian userspace.

bookworm's AAVMF VARS template is all zeros; the run uses trixie's (lab.firmware.with_editable_vars)
so foreign entries can be planted before the boot and everything read back afterwards.
Not smoke: aarch64 TCG boots twice here (several minutes on 2 shared cores).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cloudboot.efi.loadopt import staged_paths
from cloudboot.init.bootentry import build_option
from lab.cells import DISTROS, FILESYSTEMS, Cell
from lab.firmware import FirmwareError, select_firmware
from lab.matrix import judge
from lab.path_c import PathCRun, run_path_c_disk
from lab.profiles import get_profile

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

ARCH = "aarch64"
CELLS = [Cell("qemu", ARCH, "C", d, fs) for d in DISTROS for fs in FILESYSTEMS]
# Two boots (bootstrap + staged kernel) of arm64 under TCG on shared cores.
TIMEOUT = 1500.0


def require_aarch64_lane(profile: str = ARCH) -> None:
    if shutil.which("qemu-system-aarch64") is None:
        pytest.skip("qemu-system-aarch64 missing (apt-get install qemu-system-arm)")
    try:
        select_firmware(get_profile(profile))
    except FirmwareError as e:
        pytest.skip(f"no AAVMF firmware (apt-get install qemu-efi-aarch64): {e}")


def assert_path_c_run(run: PathCRun) -> None:
    """What a passing Path C cell must show (as tests/e2e/test_path_c.py checks on x86_64)."""
    result = run.result
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    # The second pass was the firmware starting the staged kernel, not cloudboot-init again.
    assert result.banners == 1, "cloudboot-init must run exactly once"
    times = result.phase_times
    assert times["staged"] <= times["bootvar-written"] <= times["rebooting"] < times["userspace"]

    ours = [e for e in run.vars_after["entries"] if e.get("cloudboot")]
    assert len(ours) == 1, run.vars_after
    entry = ours[0]
    assert entry["description"].startswith("cloud-boot ")
    assert run.vars_after["boot_order"][0] == entry["number"]
    assert len(set(run.vars_after["boot_order"])) == len(run.vars_after["boot_order"])
    esp = run.esp
    assert esp is not None
    target = entry["description"].removeprefix("cloud-boot ")
    kernel_path, initrd_path = staged_paths(target)
    assert entry["device_path"] == build_option(target, esp, "").path_text(), entry
    assert f"HD({esp.number},GPT,{esp.part_guid}," in entry["device_path"]
    assert entry["optional_data"].startswith(f"initrd={initrd_path} ")
    assert "root=UUID=" in entry["optional_data"]

    assert run.foreign_before, "no foreign entries were planted"
    for name, data in run.foreign_before.items():
        assert run.raw_after.get(name) == data, f"{name} was changed"
        assert int(name[4:], 16) in run.order_after, f"{name} fell out of BootOrder"

    staged = run.event("staged")
    assert staged is not None
    files = {p.lower(): size for p, size in run.esp_files.items()}
    kfile = kernel_path.replace("\\", "/").lower()
    ifile = initrd_path.replace("\\", "/").lower()
    assert kfile in files and ifile in files, run.esp_files
    assert files[kfile] == staged["kernel_bytes"]
    assert files[ifile] == staged["initrd_bytes"]
    assert files[kfile] > 1 << 20 and files[ifile] > 1 << 20
    assert not any(p.endswith(".cbtmp") for p in files), "a temporary file was left behind"
    assert run.fsck is not None
    assert run.fsck.returncode == 0, run.fsck.stdout + run.fsck.stderr


@pytest.mark.timeout(TIMEOUT + 600)
@pytest.mark.parametrize("cell", [pytest.param(c, id=c.id) for c in CELLS])
def test_path_c_arm64_from_local_disk(cell: Cell, tmp_path: Path, record_cell) -> None:
    require_aarch64_lane()
    run = run_path_c_disk(cell, tmp_path, timeout=TIMEOUT)
    xfail = judge(run.result)
    record_cell(run.result)
    if xfail:
        pytest.xfail(xfail)
    assert_path_c_run(run)
    times = run.result.phase_times
    print(f"{cell.id}: firmware reset -> rebooting {times['rebooting']:.1f} s -> userspace "
          f"marker {times['userspace']:.1f} s")
