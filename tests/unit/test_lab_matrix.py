"""The matrix model: expectations, results.json, the generated table and its staleness check."""

import json
from pathlib import Path

import pytest

from lab import matrix
from lab.cells import Cell, CellResult

ROOT = Path(__file__).resolve().parents[2]


def test_expectations_parse_and_match() -> None:
    exps = matrix.load_expectations()
    vfkit = matrix.expectation(Cell("vfkit", "aarch64", "C", "debian-12", "ext4"), exps)
    assert vfkit is not None and vfkit.kind == "not_run" and "macOS" in vfkit.reason
    assert matrix.expectation(Cell("qemu", "x86_64", "A", "debian-12", "ext4"), exps) is None


def test_bad_expectation_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "expected.toml"
    bad.write_text('[[fail]]\ncells = "qemu-*"\nreason = "x"\n')
    with pytest.raises(ValueError, match=r"\[\[fail\]\] #1 needs a `category`"):
        matrix.load_expectations(bad)


def _doc(tmp_path: Path) -> dict:
    ok = CellResult(Cell("qemu", "x86_64", "A", "debian-12", "ext4"), "pass",
                    phase_times={"userspace": 41.2}, accel="tcg")
    bad = CellResult(Cell("qemu", "x86_64", "A", "debian-13", "xfs"), "fail",
                     category="target-kernel", evidence="panic")
    path = tmp_path / "results.json"
    matrix.write_results(path, [ok, bad], {"commit": "abc", "accel": "tcg"})
    return json.loads(path.read_text())


def test_results_cover_every_cell_with_a_status(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    assert len(doc["cells"]) == len(matrix.all_cells())
    by_id = {c["cell"]: c for c in doc["cells"]}
    assert by_id["qemu-x86_64-A-debian-12-ext4"]["status"] == "pass"
    not_run = by_id["vfkit-aarch64-C-debian-12-ext4"]
    assert not_run["status"] == "not-run" and "macOS" in not_run["reason"]
    assert by_id["qemu-x86_64-A-debian-12-xfs"]["reason"] == "not selected in this run"


def test_render_shows_pass_time_failure_category_and_reasons(tmp_path: Path) -> None:
    text = matrix.render(_doc(tmp_path))
    assert "| debian-12 | ext4 | ✓ 41 s |" in text
    assert "✗ target-kernel" in text
    assert "vfkit · aarch64" in text and "Virtualization.framework" in text
    assert "commit: `abc`" in text


def test_check_detects_a_stale_table(tmp_path: Path, capsys) -> None:
    _doc(tmp_path)
    results, table = tmp_path / "results.json", tmp_path / "MATRIX.md"
    assert matrix.main(["render", str(results), str(table)]) == 0
    assert matrix.main(["check", str(results), str(table)]) == 0
    table.write_text(table.read_text().replace("✓ 41 s", "✓ 1 s"))  # a hand edit
    assert matrix.main(["check", str(results), str(table)]) == 1
    assert "stale" in capsys.readouterr().err


def test_committed_matrix_is_rendered_from_committed_results() -> None:
    results, table = ROOT / "matrix" / "results.json", ROOT / "MATRIX.md"
    assert matrix.main(["check", str(results), str(table)]) == 0


def test_judge_expected_and_known_failures(tmp_path: Path) -> None:
    toml = tmp_path / "expected.toml"
    toml.write_text(
        '[[fail]]\ncells = "vfkit-*-A-*"\ncategory = "handoff"\nreason = "VZ traps kexec"\n'
        '[[known]]\ncells = "qemu-*-debian-13-*"\ncategory = "target-kernel"\n'
        'reason = "emulator bug"\n')
    exps = matrix.load_expectations(toml)
    must_fail = CellResult(Cell("vfkit", "aarch64", "A", "debian-12", "ext4"), "fail",
                           category="handoff")
    assert matrix.judge(must_fail, exps) == "VZ traps kexec"
    assert must_fail.status == "xfail"
    wrong = CellResult(Cell("vfkit", "aarch64", "A", "debian-12", "xfs"), "fail",
                       category="init-disk")
    with pytest.raises(AssertionError, match="must fail as handoff"):
        matrix.judge(wrong, exps)
    unexpected_pass = CellResult(Cell("vfkit", "aarch64", "A", "debian-12", "btrfs"), "pass")
    assert matrix.judge(unexpected_pass, exps) is None and unexpected_pass.status == "xpass"
    known = CellResult(Cell("qemu", "x86_64", "A", "debian-13", "xfs"), "fail",
                       category="target-kernel")
    assert "emulator bug" in (matrix.judge(known, exps) or "")
    assert known.status == "fail" and known.reason == "emulator bug"  # the table keeps the ✗
    other = CellResult(Cell("qemu", "x86_64", "A", "debian-13", "ext4"), "fail",
                       category="init-disk")
    assert matrix.judge(other, exps) is None  # any other failure is a real failure


def test_cell_ids_round_trip_with_dashes_in_the_last_field() -> None:
    cell = Cell("qemu", "x86_64", "A", "debian-12", "ext4-oci-plan")
    assert Cell.from_id(cell.id) == cell


def test_a_merging_run_keeps_earlier_verdicts_and_says_where_they_came_from(
        tmp_path: Path) -> None:
    _doc(tmp_path)  # the earlier run: debian-12/ext4 pass, debian-13/xfs fail, at commit abc
    path = tmp_path / "results.json"
    doc = json.loads(path.read_text())
    doc["provenance"]["date"] = "2026-11-01T00:00:00Z"
    path.write_text(json.dumps(doc))
    rerun = CellResult(Cell("qemu", "x86_64", "A", "debian-13", "xfs"), "pass",
                       phase_times={"userspace": 50.0}, accel="tcg")
    matrix.write_results(path, [rerun], {"commit": "def", "accel": "tcg"}, merge=True)
    merged = {c["cell"]: c for c in json.loads(path.read_text())["cells"]}
    assert len(merged) == len(matrix.all_cells())
    kept = merged["qemu-x86_64-A-debian-12-ext4"]
    assert kept["status"] == "pass"
    assert kept["from_run"] == {"commit": "abc", "date": "2026-11-01T00:00:00Z"}
    fresh = merged["qemu-x86_64-A-debian-13-xfs"]
    assert fresh["status"] == "pass" and "from_run" not in fresh
    text = matrix.render(json.loads(path.read_text()))
    assert "from an earlier run: commit abc, 2026-11-01T00:00:00Z" in text
    # without merge the same run forgets what it did not boot
    matrix.write_results(path, [rerun], {"commit": "def", "accel": "tcg"})
    plain = {c["cell"]: c for c in json.loads(path.read_text())["cells"]}
    assert plain["qemu-x86_64-A-debian-12-ext4"]["status"] == "not-run"


def test_reasons_follow_the_rules_and_never_touch_verdicts(tmp_path: Path) -> None:
    _doc(tmp_path)
    path = tmp_path / "results.json"
    doc = json.loads(path.read_text())
    by_id = {c["cell"]: c for c in doc["cells"]}
    by_id["vfkit-aarch64-C-debian-12-ext4"]["reason"] = "stale words"
    by_id["qemu-x86_64-A-debian-12-ext4"]["reason"] = "kept"
    path.write_text(json.dumps(doc))
    assert matrix.main(["reasons", str(path)]) == 0
    fresh = {c["cell"]: c for c in json.loads(path.read_text())["cells"]}
    assert "macOS" in fresh["vfkit-aarch64-C-debian-12-ext4"]["reason"]
    assert fresh["qemu-x86_64-A-debian-12-ext4"]["status"] == "pass"
    assert fresh["qemu-x86_64-A-debian-12-ext4"]["reason"] == "kept"


def test_overhead_table_divides_path_a_and_c_by_the_direct_boot(tmp_path: Path) -> None:
    a = CellResult(Cell("qemu", "riscv64", "A", "debian-13", "ext4"), "pass",
                   phase_times={"userspace": 150.0}, accel="tcg")
    c = CellResult(Cell("qemu", "riscv64", "C", "debian-13", "ext4"), "fail",
                   category="target-kernel", phase_times={"userspace": 10.0}, accel="tcg")
    base = matrix.baseline_record(a.cell, 120.0, "6.12.57-riscv64")
    path = tmp_path / "results.json"
    matrix.write_results(path, [a, c], {"commit": "abc", "accel": "tcg"}, baselines=[base])
    doc = json.loads(path.read_text())
    assert doc["baselines"][0]["lane"] == "qemu-riscv64"
    text = matrix.render(doc)
    # a failed cell has no ratio, whatever its phase times say
    assert "| qemu · riscv64 | debian-13 ext4 | 120 s | 150 s | 1.25 | — | — |" in text
    # a merging run without a direct boot keeps the earlier one, marked with its run
    matrix.write_results(path, [a], {"commit": "def", "accel": "tcg"}, merge=True)
    merged = json.loads(path.read_text())
    assert merged["baselines"][0]["from_run"]["commit"] == "abc"
    assert "120 s [" in matrix.render(merged)


def test_no_direct_boot_means_no_overhead_section(tmp_path: Path) -> None:
    _doc(tmp_path)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert "Overhead against" not in matrix.render(doc)


def test_committed_results_hold_no_absolute_path() -> None:
    """Evidence is named relative to its run directory (docs/run-directory.md), never by a
    path that only meant something on the machine and in the session that wrote it."""
    def strings(doc: object) -> list[str]:
        if isinstance(doc, dict):
            return [s for v in doc.values() for s in strings(v)]
        if isinstance(doc, list):
            return [s for v in doc for s in strings(v)]
        return [doc] if isinstance(doc, str) else []

    doc = json.loads((ROOT / "matrix" / "results.json").read_text())
    assert [s for s in strings(doc) if s.startswith("/")] == []
