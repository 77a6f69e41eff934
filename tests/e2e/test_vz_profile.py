"""vz cells: the QEMU `vz` profile that reproduces Apple Virtualization.framework's behaviour
(hvc0-only console, virtio-only disks, no firmware NIC, kexec refused; lab/profiles.py
VZ_APPROXIMATIONS).

- vz-aarch64-A-debian-12-ext4 must fail in `handoff`: kexec_file_load is refused (matrix
  expected.toml [[fail]]); the test asserts that category and that the refusal is the reason.
- vz-aarch64-C-debian-12-ext4 must pass: Path C is the VZ production path.
Not smoke: aarch64 under TCG.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cells import Cell
from lab.lanes.vz import run_vz_path_a
from lab.matrix import expectation, judge
from lab.paths.c import path_c_problems, run_path_c_disk
from tests.e2e.test_path_c_arm64 import TIMEOUT, require_aarch64_lane

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

PATH_A = Cell("vz", "aarch64", "A", "debian-12", "ext4")
PATH_C = Cell("vz", "aarch64", "C", "debian-12", "ext4")


@pytest.mark.timeout(TIMEOUT + 600)
@pytest.mark.cells(PATH_A)
def test_vz_path_a_fails_in_handoff_because_kexec_is_refused(tmp_path: Path,
                                                             record_cell) -> None:
    require_aarch64_lane("vz")
    rule = expectation(PATH_A)
    assert rule is not None and rule.kind == "fail" and rule.category == "handoff", rule
    result = run_vz_path_a(PATH_A, tmp_path, timeout=900)
    console = Path(result.console_log or "").read_text() if result.console_log else ""
    # The guest got as far as the hand-off, and it was the kexec refusal that stopped it.
    assert "disk-found" in result.phase_times or "materialised" in result.phase_times, \
        result.evidence
    assert "kexec-load" not in result.phase_times, "kexec must not load under the vz profile"
    assert result.userspace is None
    # arm64: kexec_file_load is ENOSYS in Debian's kernel, kexec_load then gets EPERM.
    assert "refused: EPERM" in result.evidence, result.evidence
    # The refusal comes from the profile's sysctl, baked into the UKI's command line.
    assert b"sysctl.kernel.kexec_load_disabled=1" in (tmp_path / "boot.iso").read_bytes()
    # Every line came through hvc0, cloudboot-init's from before virtio_console loaded too.
    assert result.banners == 1 and '"phase":"init-start"' in console
    reason = judge(result)  # asserts the exact category, marks the result xfail
    record_cell(result)
    assert (result.status, result.category) == ("xfail", "handoff"), result.evidence
    assert reason == rule.reason


@pytest.mark.timeout(TIMEOUT + 600)
@pytest.mark.cells(PATH_C)
def test_vz_path_c_is_the_production_path(tmp_path: Path, record_cell) -> None:
    require_aarch64_lane("vz")
    run = run_path_c_disk(PATH_C, tmp_path, timeout=TIMEOUT)
    assert judge(run.result) is None
    record_cell(run.result)
    assert not (bad := path_c_problems(run)), bad
    # Every console line came through hvc0: the kernels were told so, and no UART exists.
    us = run.result.userspace or {}
    assert "console=hvc0" in str(us.get("cmdline", "")), us
    times = run.result.phase_times
    print(f"{PATH_C.id}: firmware reset -> rebooting {times['rebooting']:.1f} s -> userspace "
          f"marker {times['userspace']:.1f} s")
