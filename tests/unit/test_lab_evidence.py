"""The run directory (docs/run-directory.md): a cell's evidence copied out of its VM's work
directory, paths relative to the run, retries kept as attempts, the run's JUnit XML; and the
pytest plugin doing all of it for a real pytest session (pytester, with retries)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml, Skipped

from lab.cells import Cell, CellResult
from lab.evidence import RunDir, combine
from lab.matrix import write_results
from lab.progress import Progress
from lab.pytest_plugin import flake_summary
from lab.report.junit import write_junit

GOLDEN = Path(__file__).parent / "golden" / "consoles" / "x86_64-path-a-pass.log"
CELL = Cell("qemu", "x86_64", "A", "debian-12", "ext4")


def vm_dir(tmp_path: Path, name: str = "vm", console: str | None = None) -> Path:
    """A VM work directory as the QEMU lane leaves it (console.log, command.txt, stderr,
    the disks and sockets a reader does not need)."""
    vm = tmp_path / name
    vm.mkdir(parents=True)
    if console is None:
        shutil.copyfile(GOLDEN, vm / "console.log")
    else:
        (vm / "console.log").write_text(console)
    (vm / "command.txt").write_text("qemu-system-x86_64 -machine q35 -nodefaults\n")
    (vm / "qemu.stderr").write_text("")
    (vm / "console.raw").write_bytes(b"\x1b[2J" * 10)
    (vm / "overlay.qcow2").write_bytes(b"\0" * 4096)
    return vm


def result(vm: Path, status: str = "pass", category: str | None = None) -> CellResult:
    return CellResult(cell=CELL, status=status, category=category,  # type: ignore[arg-type]
                      evidence="guest reached its userspace" if status == "pass" else "x",
                      console_log=str(vm / "console.log"), seconds=27.4)


def _strings(doc: object) -> list[str]:
    if isinstance(doc, dict):
        return [s for v in doc.values() for s in _strings(v)]
    if isinstance(doc, list):
        return [s for v in doc for s in _strings(v)]
    return [doc] if isinstance(doc, str) else []


def test_keep_copies_the_evidence_and_names_it_relative_to_the_run(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "run", "20261204T000000Z-abc1234", ["-m", "e2e"])
    record = run.keep(result(vm_dir(tmp_path)))
    cell = run.path / "cells" / CELL.id
    assert record["run"] == run.id and record["attempts"] == []
    assert record["artifacts"] == {"console": f"cells/{CELL.id}/console.log",
                                   "events": f"cells/{CELL.id}/events.jsonl",
                                   "invocation": f"cells/{CELL.id}/invocation.txt",
                                   "qemu-stderr": f"cells/{CELL.id}/qemu.stderr"}
    assert record["console_log"] == record["artifacts"]["console"]
    assert (cell / "console.log").read_bytes() == GOLDEN.read_bytes()
    assert not (cell / "console.raw").exists() and not (cell / "overlay.qcow2").exists()
    assert json.loads((cell / "result.json").read_text()) == record
    # The guest's events, one per line, as the console showed them.
    events = [json.loads(line) for line in (cell / "events.jsonl").read_text().splitlines()]
    phases = [e["phase"] for e in events]
    assert phases[0] == "init-start" and phases[-1] == "userspace"
    assert "kexec-load" in phases and events[-1]["kind"] == "userspace"
    assert all(isinstance(e["t"], float) for e in events)
    assert events[-1]["data"]["id"] == "debian"
    assert not [s for s in _strings(record) if s.startswith("/")]


def test_a_retry_keeps_every_attempt_and_a_late_pass_is_flaky(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "run", "r1", [])
    run.keep(result(vm_dir(tmp_path, "vm1", "1.0\tfirst boot\n"), "fail", "timeout"))
    second = run.keep(result(vm_dir(tmp_path, "vm2", "2.0\tsecond boot\n"), "fail", "handoff"))
    third = run.keep(result(vm_dir(tmp_path, "vm3")))
    assert second["status"] == "fail" and second["boot_status"] == "fail"
    assert third["status"] == "flaky" and third["boot_status"] == "pass"
    assert [(a["attempt"], a["status"], a["category"]) for a in third["attempts"]] == [
        (1, "fail", "timeout"), (2, "fail", "handoff")]
    cell = run.path / "cells" / CELL.id
    assert (cell / "attempt-1" / "console.log").read_text() == "1.0\tfirst boot\n"
    assert (cell / "attempt-2" / "console.log").read_text() == "2.0\tsecond boot\n"
    assert third["attempts"][0]["artifacts"]["console"] == f"cells/{CELL.id}/attempt-1/console.log"
    assert (cell / "console.log").read_bytes() == GOLDEN.read_bytes()  # the last attempt's
    summary = flake_summary([third])
    assert summary is not None and "1 of 1 cells" in summary and "2 of 3 boots failed" in summary


@pytest.mark.parametrize(("statuses", "verdict"), [
    (["pass", "pass"], "pass"), (["fail", "fail"], "fail"), (["fail", "pass"], "flaky"),
    (["pass", "fail"], "flaky"), (["xfail", "xfail"], "xfail"), (["pass", "xpass"], "xpass")])
def test_combined_verdict(statuses: list[str], verdict: str) -> None:
    assert combine(statuses) == verdict


def test_junit_has_one_testcase_per_cell_of_the_run(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "run", "r1", [])
    records = [run.keep(result(vm_dir(tmp_path, "a")))]
    failing = CellResult(cell=Cell("qemu", "x86_64", "C", "debian-12", "ext4"), status="fail",
                         category="init-disk", evidence="no disk LABEL=cbroot",
                         console_log=str(vm_dir(tmp_path, "c", "1.0\tbad \x07 byte\x00\n")
                                         / "console.log"))
    records.append(run.keep(failing))
    records.append(run.keep(CellResult(cell=Cell("vz", "aarch64", "A", "debian-12", "ext4"),
                                       status="xfail", category="handoff",
                                       reason="VZ traps kexec")))
    records.append(run.keep(CellResult(cell=Cell("libvirt", "x86_64", "A", "debian-12",
                                                 "ext4"), status="not-run",
                                       reason="libvirtd cannot start here")))
    write_results(run.path / "results.json", [CellResult.from_json(r) for r in records],
                  {"commit": "abc", "date": "2026-12-04T00:00:00Z", "accel": "tcg"},
                  run={"id": run.id, "dir": "."})
    xml = JUnitXml.fromfile(str(write_junit(run.path)))
    cases = {c.name: c for suite in xml for c in suite}
    assert set(cases) == {r["cell"] for r in records}  # not the cells this run did not select
    passed = cases[CELL.id]
    assert passed.is_passed and "console (cells/" in passed.system_out
    assert "reboot: Power down" in passed.system_out  # the tail, without the time stamps
    assert "\t" not in passed.system_out.split("\n", 1)[1]
    fail = cases["qemu-x86_64-C-debian-12-ext4"]
    assert isinstance(fail.result[0], Failure)
    assert fail.result[0].message.startswith("init-disk: no disk LABEL=cbroot")
    assert "bad \ufffd byte\ufffd" in fail.system_out  # control bytes cannot be XML
    assert fail.classname == "cloudboot.qemu.x86_64.path_C"
    text = (run.path / "junit.xml").read_text()
    assert '<property name="target" value="debian-12"' in text
    assert '<property name="lane" value="qemu-x86_64"' in text
    for name in ("vz-aarch64-A-debian-12-ext4", "libvirt-x86_64-A-debian-12-ext4"):
        assert isinstance(cases[name].result[0], Skipped)
    assert "VZ traps kexec" in cases["vz-aarch64-A-debian-12-ext4"].result[0].message


PLUGIN_TEST = '''
import pytest
from pathlib import Path
from lab.cells import Cell, CellResult

CELL = Cell("qemu", "x86_64", "A", "debian-12", "ext4")
BOOTS = Path(__file__).parent / "boots"


def test_cell(tmp_path, record_cell):
    n = len(BOOTS.read_text()) if BOOTS.exists() else 0
    BOOTS.write_text("x" * (n + 1))
    vm = tmp_path / "vm"
    vm.mkdir()
    (vm / "console.log").write_text(f"1.0\\tboot {n + 1}\\n")
    (vm / "command.txt").write_text("qemu-system-x86_64\\n")
    status = "pass" if n else "fail"  # the first boot fails, the retry passes
    record_cell(CellResult(cell=CELL, status=status, category=None if n else "timeout",
                           console_log=str(vm / "console.log")))
    assert status == "pass"
'''


def test_the_plugin_keeps_a_run_for_a_real_session(pytester: pytest.Pytester) -> None:
    """A pytest session with --matrix-results, --artifacts and --retries 1: the run directory
    holds both boots, results.json names the flaky cell, junit.xml one testcase."""
    pytester.makepyfile(test_cells=PLUGIN_TEST)
    results, run_path = pytester.path / "results.json", pytester.path / "run"
    out = pytester.runpytest_subprocess("-p", "lab.pytest_plugin", "-p", "no:cacheprovider",
                                        "--no-precache", "--matrix-results", str(results),
                                        "--artifacts", str(run_path), "--retries", "1")
    assert out.parseoutcomes() == {"passed": 1, "rerun": 1}
    doc = json.loads((run_path / "results.json").read_text())
    (record,) = [c for c in doc["cells"] if c["cell"] == CELL.id]
    assert record["status"] == "flaky" and [a["status"] for a in record["attempts"]] == ["fail"]
    assert (run_path / record["attempts"][0]["artifacts"]["console"]).read_text() == \
        "1.0\tboot 1\n"
    assert (run_path / record["artifacts"]["console"]).read_text() == "1.0\tboot 2\n"
    assert doc["run"]["dir"] == "." and json.loads(results.read_text())["run"]["dir"] == "run"
    assert not [s for s in _strings(doc) if s.startswith(("/", str(pytester.path)))]
    (suite,) = list(JUnitXml.fromfile(str(run_path / "junit.xml")))
    assert [c.name for c in suite] == [CELL.id]
    out.stdout.fnmatch_lines(["*1 of 1 cells booted more than once are flaky*"])
    out.stdout.fnmatch_lines(["[[]lab[]] 1/1 done, 0 running, * elapsed, ETA *"])
    assert json.loads((run_path / "run.json").read_text())["finished"]


def test_progress_line_counts_and_estimates_from_recorded_times() -> None:
    import io

    out = io.StringIO()
    p = Progress.for_results({"cells": [{"cell": CELL.id, "seconds": 600.0},
                                        {"cell": "qemu-x86_64-C-debian-12-ext4",
                                         "seconds": 300.0}]}, workers=2, out=out)
    p.total = 3
    p.start(f"tests/e2e/test_path_a.py::test_x[{CELL.id}]")
    p.start("tests/e2e/test_path_c.py::test_y[qemu-x86_64-C-debian-12-ext4]")
    p.finish("tests/e2e/test_path_c.py::test_y[qemu-x86_64-C-debian-12-ext4]", failed=True)
    line = out.getvalue().splitlines()[-1]  # not a terminal: one plain line per finished test
    assert line.startswith("[lab] 1/3 done (1 failed), 1 running (qemu-x86_64-A-debian-12-ext4)")
    # Left: the running Path A cell (~600 s recorded) and one untimed test (the median, 450 s),
    # over 2 workers: 525 s, about 9 min.
    assert line.endswith("ETA 9 min"), line


REPEAT_TEST = '''
import pytest
from lab.cells import Cell, CellResult

CELLS = [Cell("qemu", "x86_64", p, "debian-12", "ext4") for p in "AC"]


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.id)
def test_cell(cell, tmp_path, record_cell):
    vm = tmp_path / "vm"
    vm.mkdir()
    (vm / "console.log").write_text("1.0\\tboot\\n")
    record_cell(CellResult(cell=cell, status="pass", console_log=str(vm / "console.log")))
'''


def test_repeats_on_two_workers_keep_every_boot(pytester: pytest.Pytester) -> None:
    """--repeat 3 with xdist: a cell's boots finish on either worker, one keeper at a time."""
    pytester.makepyfile(test_cells=REPEAT_TEST)
    run_path = pytester.path / "run"
    out = pytester.runpytest_subprocess("-p", "lab.pytest_plugin", "-p", "no:cacheprovider",
                                        "--no-precache", "-n", "2", "--repeat", "3",
                                        "--artifacts", str(run_path))
    assert out.parseoutcomes()["passed"] == 6
    doc = json.loads((run_path / "results.json").read_text())
    assert sorted((c["cell"], c["status"], len(c["attempts"])) for c in doc["cells"]) == [
        ("qemu-x86_64-A-debian-12-ext4", "pass", 2), ("qemu-x86_64-C-debian-12-ext4", "pass", 2)]
    for c in doc["cells"]:
        for a in c["attempts"]:
            assert (run_path / a["artifacts"]["console"]).is_file()
