"""Path C on QEMU aarch64 (AAVMF, cortex-a57 under TCG): UKI → cloudboot-init stages the arm64
target kernel on the cache ESP, writes Boot####, reboots → AAVMF starts the staged kernel's EFI
stub with `initrd=` from the load option → the arm64 Debian userspace.

bookworm's AAVMF VARS template is all zeros; the run uses trixie's (lab.firmware.with_editable_vars)
so foreign entries can be planted before the boot and everything read back afterwards.
Not smoke: aarch64 TCG boots twice here (several minutes on 2 shared cores).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cells import DISTROS, FILESYSTEMS, Cell
from lab.paths.c import path_c_problems, run_path_c_disk
from tests.helpers import require_lane

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

ARCH = "aarch64"
CELLS = [Cell("qemu", ARCH, "C", d, fs) for d in DISTROS for fs in FILESYSTEMS]
# Two boots (bootstrap + staged kernel) of arm64 under TCG on shared cores.
TIMEOUT = 1500.0


def require_aarch64_lane(profile: str = ARCH) -> None:
    require_lane(profile)


@pytest.mark.timeout(TIMEOUT + 600)
@pytest.mark.parametrize("cell", [pytest.param(c, id=c.id) for c in CELLS])
def test_path_c_arm64_from_local_disk(cell: Cell, tmp_path: Path, settle_cell) -> None:
    require_aarch64_lane()
    run = run_path_c_disk(cell, tmp_path, timeout=TIMEOUT)
    settle_cell(run.result)
    assert not (bad := path_c_problems(run)), bad
    times = run.result.phase_times
    print(f"{cell.id}: firmware reset -> rebooting {times['rebooting']:.1f} s -> userspace "
          f"marker {times['userspace']:.1f} s")
