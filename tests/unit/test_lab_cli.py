"""`python -m lab boot | matrix | precache` as a user runs them (real subprocesses)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.__main__ import matrix_command, selected_cells
from lab.cells import Cell
from lab.commands.boot import RUNNERS, ConsoleFollower, not_run_reason
from lab.matrix import expectation

ROOT = Path(__file__).resolve().parents[2]


def lab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_a_cell_expected_not_to_run_exits_2_with_the_reason(tmp_path: Path) -> None:
    out = lab("boot", "--hypervisor", "vfkit", "--arch", "aarch64", "--path", "C",
              "--distro", "debian-12", "--workdir", str(tmp_path / "w"))
    assert out.returncode == 2, out
    rule = expectation(Cell("vfkit", "aarch64", "C", "debian-12", "ext4"))
    assert rule is not None
    assert f"vfkit-aarch64-C-debian-12-ext4: not run: {rule.reason}" in out.stdout
    assert not (tmp_path / "w").exists(), "nothing may be created for a cell that cannot run"


def test_a_cell_without_a_runner_names_the_table() -> None:
    reason = not_run_reason(Cell("qemu-nope", "x86_64", "A", "debian-12", "ext4"))
    assert reason is not None and "no lab runner" in reason and "RUNNERS" in reason
    out = lab("boot", "--hypervisor", "qemu-nope", "--arch", "amd64", "--path", "A",
              "--distro", "debian-12")
    assert out.returncode == 2 and "no lab runner for hypervisor qemu-nope" in out.stdout


def test_bad_arguments_say_what_is_wrong() -> None:
    out = lab("boot", "--hypervisor", "qemu", "--arch", "sparc64", "--path", "A",
              "--distro", "debian-12")
    assert out.returncode == 2 and "--arch sparc64" in out.stderr
    out = lab("boot", "--hypervisor", "qemu", "--arch", "x86_64", "--path", "E",
              "--distro", "debian-12")
    assert out.returncode == 2 and "invalid choice: 'E'" in out.stderr


def test_every_runner_is_for_a_lane_cell_that_expected_toml_lets_run() -> None:
    for hv, arch, path in RUNNERS:
        cell = Cell(hv, arch, path, "debian-12", "ext4")
        rule = expectation(cell)
        assert rule is None or rule.kind != "not_run", (cell.id, rule)


def test_matrix_check_is_lab_matrix_check() -> None:
    ours = lab("matrix", "--check")
    theirs = subprocess.run([sys.executable, "-m", "lab.matrix", "check",
                             str(ROOT / "matrix" / "results.json"), str(ROOT / "MATRIX.md")],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (ours.returncode, ours.stdout, ours.stderr) == (
        theirs.returncode, theirs.stdout, theirs.stderr)


def test_matrix_runs_pytest_on_the_e2e_cells_with_results() -> None:
    cmd = matrix_command(smoke=True, extra=["-k", "ext4"])
    assert cmd[1:3] == ["-m", "pytest"]
    assert cmd[cmd.index("-m", 3) + 1] == "e2e and smoke"
    assert "tests/e2e" in cmd and cmd[-2:] == ["-k", "ext4"]
    assert cmd[cmd.index("--matrix-results") + 1].endswith("matrix/results.json")
    assert matrix_command(smoke=False, extra=[])[cmd.index("-m", 3) + 1] == "e2e"


def test_precache_selection() -> None:
    assert selected_cells(False, ["vz-aarch64-C-debian-12-ext4"]) == [
        Cell("vz", "aarch64", "C", "debian-12", "ext4")]
    smoke = selected_cells(True, [])
    assert {c.id for c in smoke} == {"qemu-x86_64-A-debian-12-ext4",
                                     "qemu-x86_64-C-debian-12-ext4"}
    everything = {c.id for c in selected_cells(False, [])}
    assert {"vz-aarch64-A-debian-12-ext4", "vz-aarch64-C-debian-12-ext4"} <= everything


def test_console_follower_streams_lines_as_they_arrive(tmp_path: Path) -> None:
    vm = tmp_path / "vm"
    vm.mkdir()
    out = io.StringIO()
    follower = ConsoleFollower(tmp_path, out, poll=0.05)
    follower.start()
    with open(vm / "console.log", "w") as log:
        log.write("0.100\tfirst line\n0.2")
        log.flush()
        deadline = time.monotonic() + 10
        while "first line" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert out.getvalue() == "[   0.100] first line\n"  # the half line waits
        log.write("00\tsecond line\n")
    follower.stop.set()
    follower.join(5)
    assert out.getvalue() == "[   0.100] first line\n[   0.200] second line\n"


@pytest.mark.e2e
@pytest.mark.boot
def test_lab_boot_one_real_cell(tmp_path: Path) -> None:
    """The x86_64 Path A cell through `python -m lab boot`: console live, verdict, exit 0."""
    work = tmp_path / "cell"
    out = lab("boot", "--hypervisor", "qemu", "--arch", "x86_64", "--path", "A",
              "--distro", "debian-12", "--fs", "ext4", "--workdir", str(work), timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "CLOUDBOOT-EVENT" in out.stdout and "CLOUDBOOT-USERSPACE" in out.stdout
    assert "== qemu-x86_64-A-debian-12-ext4: pass" in out.stdout
    assert f"artefacts: {work}" in out.stdout
    verdict = json.loads((work / "verdict.json").read_text())
    assert verdict["status"] == "pass" and verdict["phase_times"]["userspace"] > 0
    assert "[lab boot]" in out.stderr


def test_readme_lists_every_vz_approximation() -> None:
    from lab.profiles import VZ_APPROXIMATIONS

    readme = (ROOT / "README.md").read_text()
    missing = [a for a in VZ_APPROXIMATIONS if f"- {a}" not in readme]
    assert not missing, f"README's lab section lacks: {missing}"
