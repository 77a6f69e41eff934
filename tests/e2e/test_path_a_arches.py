"""Path A on the armv7, riscv64 and loongarch64 lanes: firmware → the lane's UKI (its kernel,
systemd-stub and cloudboot-init initramfs, lab/arch_lanes.py) → cloudboot-init → kexec → a real
Debian userspace of that arch, built on this host under qemu-user (lab/images/foreign.py).

One cell per arch, each on the release that has the arch: armv7 Debian 12 (bookworm armhf),
riscv64 Debian 13 (trixie, the first release with riscv64), loongarch64 Debian 14 (forky,
testing: loong64 enters the main archive there). riscv64 and loongarch64 boot on the private
QEMU 10 (lab/qemu_private.py). Each cell is judged by matrix/expected.toml: an expected failure
must fail in its stated category; a [[not_run]] cell is reported not run with its reason.

The direct firmware boot of each target (the ratio's denominator) is in
tests/e2e/test_direct_baseline.py.

Not smoke: each target image takes 40+ minutes of qemu-user CPU to build cold, and a TCG boot of
two kernels on these arches takes minutes on the shared cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.arch_lanes import LaneGap
from lab.cells import Cell
from lab.matrix import judge
from lab.paths.a import run_path_a_disk
from lab.qemu_private import PrivateQemuError

# Set-up builds the lane initramfs (minutes of qemu-user on a cold cache) before the boot.
pytestmark = [pytest.mark.e2e, pytest.mark.boot, pytest.mark.timeout(3600)]

CELLS = [
    Cell("qemu", "armv7", "A", "debian-12", "ext4"),
    Cell("qemu", "riscv64", "A", "debian-13", "ext4"),
    Cell("qemu", "loongarch64", "A", "debian-14", "ext4"),
]
# A lone TCG boot of two kernels plus a cold Python start on these arches takes 1-4 minutes;
# the host is shared by several engineers' guests.
TIMEOUT = 1500.0


@pytest.mark.parametrize("cell", [pytest.param(c, id=c.id) for c in CELLS])
# [[not_run]] cells (no image yet) are skipped with their reason by lab.pytest_plugin.
def test_path_a_arch_from_local_disk(cell: Cell, tmp_path: Path, record_cell) -> None:
    try:
        result = run_path_a_disk(cell, tmp_path, timeout=TIMEOUT)
    except (LaneGap, PrivateQemuError) as e:
        pytest.fail(f"{cell.id}: the lane cannot build or boot its bootstrap: {e}")
    xfail = judge(result)
    record_cell(result)
    times = result.phase_times
    print(f"{cell.id}: {result.status} {result.category or ''} {result.evidence[:200]!r}; "
          f"phase times {times}")
    if xfail:
        pytest.xfail(xfail)
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    assert result.banners == 1, "cloudboot-init must run exactly once"
    assert times["disk-found"] < times["kexec-load"] < times["userspace"]
    print(f"{cell.id}: firmware reset -> userspace marker {times['userspace']:.1f} s, "
          f"kexec-load at {times['kexec-load']:.1f} s")
