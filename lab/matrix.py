"""The compatibility matrix: expectations, results.json, and the generated MATRIX.md.

`python -m lab.matrix render RESULTS OUT` writes the table; `check RESULTS OUT` fails when OUT
is not what RESULTS renders to (a hand edit, or results newer than the table).
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import os
import platform
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.cells import ALL_DISTROS, FILESYSTEMS, PATHS, TESTING_DISTROS, Cell, CellResult
from lab.evidence import DEFAULT_RUNS, git

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = ROOT / "matrix" / "expected.toml"

# The lanes the lab knows: (hypervisor, arch).
LANES = (
    [("qemu", a) for a in ("x86_64", "aarch64", "riscv64", "loongarch64", "armv7")]
    + [("libvirt", "x86_64"), ("libvirt", "aarch64"), ("openstack", "x86_64"),
       ("openstack", "aarch64"),
       ("vfkit", "aarch64"), ("vz", "aarch64")]
)


@dataclass(frozen=True)
class Expectation:
    kind: str  # "fail" | "known" | "not_run"
    pattern: str
    reason: str
    category: str | None = None


def load_expectations(path: Path = EXPECTED) -> list[Expectation]:
    data = tomllib.loads(path.read_text())
    out = []
    for kind in ("fail", "known", "not_run"):
        for i, entry in enumerate(data.get(kind, [])):
            if "cells" not in entry or "reason" not in entry:
                raise ValueError(f"{path}: [[{kind}]] #{i + 1} needs `cells` and `reason`")
            if kind in ("fail", "known") and "category" not in entry:
                raise ValueError(f"{path}: [[fail]] #{i + 1} needs a `category`")
            out.append(Expectation(kind, entry["cells"], entry["reason"], entry.get("category")))
    # Expected failures are more specific than "not run" rules; check them first.
    return out


def expectation(cell: Cell, expectations: list[Expectation] | None = None) -> Expectation | None:
    for e in expectations if expectations is not None else load_expectations():
        if fnmatch.fnmatchcase(cell.id, e.pattern):
            return e
    return None


def judge(result: CellResult, expectations: list[Expectation] | None = None) -> str | None:
    """Apply matrix/expected.toml to a finished cell; returns a reason to report the test as
    an expected failure (pytest.xfail), or None when the test must assert a pass.

    [[fail]]: the cell must fail in exactly that category (asserted), status becomes "xfail";
    a pass becomes "xpass" and is reported. [[known]]: a failure outside cloudboot that comes
    and goes (e.g. an emulator bug); the result stays "fail" in the table, with the reason.
    """
    e = expectation(result.cell, expectations)
    if e is None or e.kind == "not_run":
        return None
    if e.kind == "fail":
        if result.status == "pass":
            result.status = "xpass"
            return None
        assert result.category == e.category, (
            f"{result.cell.id} must fail as {e.category}: {e.reason}; it failed as "
            f"{result.category}: {result.evidence}")
        result.status, result.reason = "xfail", e.reason
        return e.reason
    if result.status == "fail" and result.category == e.category:
        result.reason = e.reason
        return f"known failure outside cloudboot: {e.reason}"
    return None


def all_cells() -> list[Cell]:
    return [Cell(hv, arch, path, distro, fs) for hv, arch in LANES for path in PATHS
            for distro in ALL_DISTROS for fs in FILESYSTEMS]


def provenance() -> dict[str, Any]:
    from lab.hypervisors.accel import host_accel
    from lab.versions import collect

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git("rev-parse", "HEAD") or "unknown",
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "host": {"machine": platform.machine(), "kernel": platform.release(),
                 "python": platform.python_version()},
        "accel": host_accel().accel,
        "tools": collect(),
    }


def baseline_record(cell: Cell, seconds: float, kernel: str) -> dict[str, Any]:
    """A direct firmware boot of `cell`'s target (its own kernel + initrd as a UKI, no
    cloudboot): the denominator of the overhead table. Keyed by lane, distro and fs."""
    return {"lane": f"{cell.hypervisor}-{cell.arch}", "distro": cell.distro, "fs": cell.fs,
            "direct": round(seconds, 1), "kernel": kernel,
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def _baseline_key(b: dict[str, Any]) -> str:
    return f"{b['lane']}-{b['distro']}-{b['fs']}"


def write_results(path: Path, results: list[CellResult], prov: dict[str, Any], *,
                  merge: bool = False, baselines: list[dict[str, Any]] | None = None,
                  run: dict[str, str] | None = None, every_cell: bool = True) -> None:
    """results.json: every cell of the matrix, the ones not run included, with provenance,
    and the direct firmware boots (`baselines`) the overhead table divides by.

    `merge`: cells and baselines this run did not boot keep their values from the results
    already at `path`, each marked with the run it came from (`from_run`: commit and date), so
    a partial run (new cells, one lane) updates the table without throwing the rest away.
    `run`: the id of the run and where its directory is, relative to `path`'s folder (each
    cell's artifacts are relative to the run directory named by its own `run` id).
    `every_cell=False`: only the cells of `results` (a run directory's own results)."""
    by_id = {r.cell.id: r for r in results}
    earlier: dict[str, dict[str, Any]] = {}
    base = {_baseline_key(b): b for b in baselines or []}
    if merge and path.exists():
        old = json.loads(path.read_text())
        old_prov = old.get("provenance", {})
        origin = {"commit": old_prov.get("commit", "unknown"), "date": old_prov.get("date")}
        for c in old.get("cells", []):
            if c.get("status") != "not-run":
                earlier[c["cell"]] = {**c, "from_run": c.get("from_run") or origin}
                if str(c.get("console_log") or "").startswith("/"):
                    # Recorded before runs kept their evidence: it pointed into a temporary
                    # directory that is gone.
                    earlier[c["cell"]]["console_log"] = None
        for b in old.get("baselines", []):
            base.setdefault(_baseline_key(b), {**b, "from_run": b.get("from_run") or origin})
    expectations = load_expectations()
    cells = []
    for cell in all_cells() if every_cell else []:
        r = by_id.pop(cell.id, None)
        if r is None and cell.id in earlier:
            cells.append(earlier.pop(cell.id))
            continue
        if r is None:
            rule = next((e for e in expectations if e.kind == "not_run"
                         and fnmatch.fnmatchcase(cell.id, e.pattern)), None)
            reason = rule.reason if rule else "not selected in this run"
            r = CellResult(cell=cell, status="not-run", reason=reason)
        cells.append(r.to_json())
    cells.extend(r.to_json() for r in by_id.values())  # cells outside the known universe
    cells.extend(c for cid, c in earlier.items() if cid not in {x["cell"] for x in cells})
    doc = {"provenance": prov, "cells": cells,
           "baselines": [base[k] for k in sorted(base)]}
    if run is not None:
        doc["run"] = run
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


MARKS = {"pass": "✓", "fail": "✗", "xfail": "✗ (expected)", "xpass": "✓ (unexpected)",
         "flaky": "≈ flaky"}


def _from_run_note(r: dict[str, Any], notes: dict[str, int]) -> str:
    """' [n]' naming the earlier run a merged value was kept from, or ''."""
    if not r.get("from_run"):
        return ""
    run = r["from_run"]
    n = notes.setdefault(f"from an earlier run: commit {str(run.get('commit'))[:12]}"
                         + (f", {run['date']}" if run.get("date") else ""), len(notes) + 1)
    return f" [{n}]"


def cell_text(r: dict[str, Any], notes: dict[str, int]) -> str:
    status = r["status"]
    if status == "not-run":
        n = notes.setdefault(r["reason"], len(notes) + 1)
        return f"— [{n}]"
    text = MARKS.get(status, status)
    if status in ("fail", "xfail") and r.get("category"):
        text += f" {r['category']}"
    if status in ("fail", "xfail") and r.get("reason"):
        n = notes.setdefault(r["reason"], len(notes) + 1)
        text += f" [{n}]"
    us = r.get("phase_times", {}).get("userspace")
    if us is not None:
        text += f" {us:.0f} s"
    return text + _from_run_note(r, notes)  # kept from an earlier run by a merging run


OVERHEAD_COLUMNS = ("lane", "target", "direct", "Path A", "A / direct", "Path C", "C / direct")
OVERHEAD_INTRO = ("The target's own kernel, initrd and command line as a UKI started by the "
                  "firmware (no cloudboot), reset → the same userspace marker; Path C's time "
                  "spans both boots.")


def overhead_rows(doc: dict[str, Any], notes: dict[str, int]) -> list[list[str]]:
    """Per lane/distro/fs with a direct firmware boot: Path A and Path C reset → userspace
    against it, as ratios (issue 7's per-arch figure; Path C's time spans both boots), one
    list of OVERHEAD_COLUMNS' texts per baseline (MATRIX.md's table and the run's page)."""
    by_id = {c["cell"]: c for c in doc["cells"]}
    rows = []
    for b in doc.get("baselines", []):
        row = [b["lane"].replace("-", " · ", 1), f"{b['distro']} {b['fs']}",
               f"{b['direct']:.0f} s" + _from_run_note(b, notes)]
        for path in ("A", "C"):
            hv, arch = b["lane"].split("-", 1)
            c = by_id.get(f"{hv}-{arch}-{path}-{b['distro']}-{b['fs']}")
            us = (c or {}).get("phase_times", {}).get("userspace")
            if c is None or c["status"] not in ("pass", "xpass") or us is None:
                row += ["—", "—"]
            else:
                row += [f"{us:.0f} s" + _from_run_note(c, notes), f"{us / b['direct']:.2f}"]
        rows.append(row)
    return rows


def overhead_lines(doc: dict[str, Any], notes: dict[str, int]) -> list[str]:
    """MATRIX.md's overhead section: overhead_rows as a Markdown table."""
    rows = overhead_rows(doc, notes)
    if not rows:
        return []
    return ["## Overhead against a direct firmware boot", "", OVERHEAD_INTRO, "",
            "| " + " | ".join(OVERHEAD_COLUMNS) + " |", "|" + "---|" * len(OVERHEAD_COLUMNS),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


# (run id, artifact path in that run) -> a link the table can give, or None.
Evidence = Callable[[str, str], str | None]


def _with_evidence(text: str, r: dict[str, Any], evidence: Evidence | None,
                   notes: dict[str, int]) -> str:
    """The cell's text linked to its console where its run is published; else a note that
    says where the evidence is (never a link that leads nowhere)."""
    run, console = r.get("run"), r.get("artifacts", {}).get("console")
    if not run or not console or evidence is None:
        return text
    link = evidence(run, console)
    if link is not None:
        return f"[{text}]({link})"
    n = notes.setdefault(f"evidence of run {run} is not published: on the machine that ran "
                         f"it, build/matrix/{run}/ (docs/run-directory.md)", len(notes) + 1)
    return f"{text} [{n}]"


def evidence_links(results: Path, table: Path, doc: dict[str, Any]) -> Evidence:
    """Links from `table` to the runs' evidence: under the results' `run.url` when the runs
    are published there (e.g. by CI), else to a run directory committed in this repository;
    None for a run kept nowhere a reader of `table` can reach."""
    run = doc.get("run", {})
    url = run.get("url")
    runs_root = (results.parent / run["dir"]).parent if "dir" in run else DEFAULT_RUNS

    def link(run_id: str, artifact: str) -> str | None:
        if url:
            return f"{url.rstrip('/')}/{run_id}/{artifact}"
        target = runs_root / run_id / artifact
        tracked = git("ls-files", "--error-unmatch", str(target)) is not None
        return os.path.relpath(target, table.parent) if tracked else None

    return link


def render(doc: dict[str, Any], evidence: Evidence | None = None) -> str:
    prov = doc.get("provenance", {})
    cells = [r for r in doc["cells"]]
    lines = [
        "# Compatibility matrix",
        "",
        "Generated by `nox -s matrix` from `matrix/results.json`; do not edit by hand.",
        "A cell is one boot: hypervisor × arch × path × distro × root filesystem. ✓ shows the",
        "time from firmware reset to the target's own userspace marker; ✗ names the failure",
        "category; — is a cell that was not run, with the reason below the table.",
        "",
    ]
    tools = prov.get("tools", {})
    qemu = tools.get("qemu", {}) if isinstance(tools, dict) else {}
    fw = tools.get("firmware", {}) if isinstance(tools, dict) else {}
    lines += [
        f"- commit: `{prov.get('commit', 'unknown')}`" + (" (dirty)" if prov.get("dirty") else "")
        + (f", {prov['date']}" if prov.get("date") else ""),
        f"- accelerator: {prov.get('accel', 'unknown')}; host: "
        f"{prov.get('host', {}).get('machine', '?')}, Linux {prov.get('host', {}).get('kernel')}",
        "- QEMU: " + (", ".join(f"{k} {v}" for k, v in sorted(qemu.items())) or "unknown"),
        "- firmware: " + (", ".join(f"{k} {v}" for k, v in sorted(fw.items())) or "unknown"),
        "",
    ]
    notes: dict[str, int] = {}
    idle_lanes: dict[str, list[str]] = {}
    for hv, arch in LANES:
        lane = [r for r in cells if r["cell"].startswith(f"{hv}-{arch}-")]
        if not lane:  # a lane newer than these results: nothing to show for it yet
            continue
        if all(r["status"] == "not-run" for r in lane):
            reasons = sorted({r["reason"] for r in lane})
            idle_lanes[f"{hv} · {arch}"] = reasons
            continue
        lines += [f"## {hv} · {arch}", "", "| distro | fs | " + " | ".join(
            f"Path {p}" for p in PATHS) + " |", "|---|---|" + "---|" * len(PATHS)]
        for distro in ALL_DISTROS:
            # A testing release (debian-14) gets rows only in the lanes that run it.
            if distro in TESTING_DISTROS and all(r["status"] == "not-run" for r in lane
                                                 if f"-{distro}-" in r["cell"]):
                continue
            for fs in FILESYSTEMS:
                row = []
                for p in PATHS:
                    r = next((c for c in lane if c["cell"] == f"{hv}-{arch}-{p}-{distro}-{fs}"),
                             None)
                    text = cell_text(r, notes) if r else "—"
                    row.append(_with_evidence(text, r, evidence, notes) if r else text)
                lines.append(f"| {distro} | {fs} | " + " | ".join(row) + " |")
        lines.append("")
    lines += overhead_lines(doc, notes)
    if notes:
        lines += ["Notes:", ""]
        lines += [f"{n}. {reason}" for reason, n in sorted(notes.items(), key=lambda x: x[1])]
        lines.append("")
    if idle_lanes:
        lines += ["## Lanes not run", ""]
        for lane_name, reasons in idle_lanes.items():
            lines.append(f"- **{lane_name}**: " + "; ".join(reasons))
        lines.append("")
    return "\n".join(lines)


def refresh_reasons(doc: dict[str, Any], expectations: list[Expectation] | None = None) -> int:
    """Give every not-run cell the reason its current `[[not_run]]` rule states (rules change
    between runs; verdicts are never touched). Returns how many reasons changed."""
    rules = [e for e in (expectations or load_expectations()) if e.kind == "not_run"]
    changed = 0
    known = {c["cell"] for c in doc["cells"]}
    for cell in all_cells():  # a lane added since the run: its cells are not run, with reasons
        if cell.id not in known:
            doc["cells"].append(CellResult(cell=cell, status="not-run", reason="").to_json())
    for c in doc["cells"]:
        if c["status"] != "not-run":
            continue
        rule = next((e for e in rules if fnmatch.fnmatchcase(c["cell"], e.pattern)), None)
        reason = rule.reason if rule else "not selected in this run"
        if reason != c.get("reason"):
            c["reason"] = reason
            changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.matrix")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("render", "check"):
        s = sub.add_parser(name)
        s.add_argument("results", type=Path)
        s.add_argument("table", type=Path)
    s = sub.add_parser("reasons", help="re-derive not-run reasons from matrix/expected.toml")
    s.add_argument("results", type=Path)
    args = p.parse_args(argv)
    try:
        doc = json.loads(args.results.read_text())
    except (OSError, ValueError) as e:
        print(f"lab.matrix: {args.results}: {e}", file=sys.stderr)
        return 1
    if args.cmd == "reasons":
        n = refresh_reasons(doc)
        tmp = args.results.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        tmp.replace(args.results)
        print(f"lab.matrix: {n} not-run reasons updated in {args.results}")
        return 0
    text = render(doc, evidence_links(args.results, args.table, doc))
    if args.cmd == "render":
        args.table.write_text(text)
        print(f"lab.matrix: wrote {args.table} from {args.results}")
        return 0
    if not args.table.exists() or args.table.read_text() != text:
        print(f"lab.matrix: {args.table} is stale: run `nox -s matrix` (or `python -m lab.matrix "
              f"render {args.results} {args.table}`)", file=sys.stderr)
        return 1
    print(f"lab.matrix: {args.table} matches {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
