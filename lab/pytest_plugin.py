"""pytest plugin: `--matrix-results PATH` collects each cell's result into results.json, and
every run keeps its evidence in a run directory (`--artifacts DIR`, by default
build/matrix/<run-id>/; docs/run-directory.md): each cell's console, events, hypervisor
invocation and Path C variable stores, the run's own results.json and its JUnit XML.

Works with pytest-xdist: the controller names the run directory and hands it to the workers;
every worker copies its cells' evidence in and writes one record per cell into .parts/, and
the controller merges them (with provenance) when the session ends.

Precache: before the first test runs (pytest_runtestloop, so outside every test's timeout and every
boot timeout), the plugin builds/fetches what the selected cells need (lab/commands/precache.py):
cells come from a test's `cell` parameter or its `@pytest.mark.cells(...)` marker. Under xdist each
worker does it for the whole selection; the caches' locks make the work happen once. `--no-precache`
skips it. The `lab_precache` session fixture returns the asset digests, which also go into
results.json's provenance under "assets".
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.cells import Cell, CellResult
from lab.evidence import DEFAULT_RUNS, RunDir, new_run_id
from lab.progress import Progress, ProgressPlugin

_PRECACHE = pytest.StashKey[dict[str, str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--matrix-results", type=Path, default=None,
                     help="write matrix cell results to this results.json")
    parser.addoption("--matrix-merge", action="store_true", default=False,
                     help="with --matrix-results: keep the verdicts of cells this run does "
                          "not boot (a partial run updates the table)")
    parser.addoption("--no-precache", action="store_true", default=False,
                     help="do not build/fetch the selected cells' assets before the run")
    parser.addoption("--repeat", type=int, default=1, metavar="N",
                     help="boot every selected cell N times (pytest-repeat); its verdict "
                          "combines them: pass, fail, or flaky with every attempt kept")
    parser.addoption("--retries", type=int, default=0, metavar="N",
                     help="boot a failed cell again, up to N times (pytest-rerunfailures); a "
                          "pass after a failure is recorded as flaky, with every attempt")
    parser.addoption("--artifacts", type=Path, default=None,
                     help="the run directory for the cells' evidence (default with "
                          "--matrix-results: build/matrix/<run-id>/)")


_RUN = pytest.StashKey[RunDir]()


def run_dir(config: pytest.Config) -> RunDir | None:
    """This session's run directory, or None when it keeps no evidence (a plain test run)."""
    return config.stash.get(_RUN, None)


def _assets_dir(config: pytest.Config) -> Path | None:
    run = run_dir(config)
    return None if run is None else run.path / ".assets"


def item_cells(item: pytest.Item) -> list[Cell]:
    """The cells a test boots: its `cell` parameter and its `cells` marker."""
    out: list[Cell] = []
    callspec = getattr(item, "callspec", None)
    if callspec is not None and isinstance(callspec.params.get("cell"), Cell):
        out.append(callspec.params["cell"])
    for mark in item.iter_markers("cells"):
        out += [c for c in mark.args if isinstance(c, Cell)]
    return out


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test whose `cell` parameter is a `[[not_run]]` cell is skipped with that reason before
    it builds anything (the full matrix run once spent 40 min on an arm64 Debian 13 image for
    a cell the table says cannot run yet)."""
    from lab.matrix import expectation

    callspec = getattr(item, "callspec", None)
    cell = callspec.params.get("cell") if callspec is not None else None
    if isinstance(cell, Cell):
        rule = expectation(cell)
        if rule is not None and rule.kind == "not_run":
            pytest.skip(f"not run: {rule.reason}")


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    config = session.config
    if config.getoption("--no-precache") or config.getoption("collectonly", False):
        return
    cells = list(dict.fromkeys(c for item in session.items for c in item_cells(item)))
    if not cells:
        return
    from cloudboot.fsutil import cache_dir
    from lab.commands.precache import precache
    from lab.images.buildcache import file_lock

    try:
        # One worker at a time: the first builds, the others then find everything cached.
        with file_lock(cache_dir("locks") / "precache.lock"):
            digests = precache(cells)
    except Exception as e:  # the tests meet the same problem and report it per cell
        print(f"[lab.commands.precache] failed, the cells will report it: {type(e).__name__}: {e}",
              file=sys.stderr, flush=True)
        return
    config.stash[_PRECACHE] = digests
    assets = _assets_dir(config)
    if assets is not None:
        assets.mkdir(parents=True, exist_ok=True)
        (assets / f"{os.getpid()}.json").write_text(json.dumps(digests))


@pytest.fixture(scope="session")
def lab_precache(request: pytest.FixtureRequest) -> dict[str, str]:
    """Asset name -> digest of what the precache step built or fetched for this session."""
    return request.config.stash.get(_PRECACHE, {})


def _parts_dir(config: pytest.Config) -> Path | None:
    run = run_dir(config)
    return None if run is None else run.path / ".parts"


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cells(*cells): lab cells the test boots (precached "
                            "before the run)")
    if config.getoption("--repeat") > 1:
        config.option.count = config.getoption("--repeat")
    if config.getoption("--retries") > 0:
        config.option.reruns = config.getoption("--retries")
    worker = getattr(config, "workerinput", None)
    if worker is not None and worker.get("cloudboot_run"):
        path, run_id = worker["cloudboot_run"]
        config.stash[_RUN] = RunDir(Path(path), run_id)
    elif worker is None and (config.getoption("--artifacts") is not None
                             or config.getoption("--matrix-results") is not None):
        run_id = new_run_id()
        path = config.getoption("--artifacts") or DEFAULT_RUNS / run_id
        config.stash[_RUN] = RunDir.create(path, run_id, list(config.invocation_params.args))
    if worker is None and run_dir(config) is not None:  # a matrix run: show how far it got
        workers = getattr(config.option, "numprocesses", None) or 1
        table = config.getoption("--matrix-results")
        doc = json.loads(table.read_text()) if table is not None and table.exists() else None
        config.pluginmanager.register(ProgressPlugin(Progress.for_results(
            doc, workers if isinstance(workers, int) else os.cpu_count() or 1, sys.stderr)),
            "cloudboot-progress")
    assets = _assets_dir(config)
    if assets is not None and _is_controller(config):
        shutil.rmtree(assets, ignore_errors=True)
    parts = _parts_dir(config)
    if parts is not None and _is_controller(config):
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: every worker keeps its cells' evidence in the controller's run."""
    run = run_dir(node.config)
    if run is not None:
        node.workerinput["cloudboot_run"] = (str(run.path), run.id)


@pytest.fixture
def record_cell(request: pytest.FixtureRequest) -> Callable[[CellResult], None]:
    run = run_dir(request.config)

    def record(result: CellResult) -> None:
        if run is not None:
            run.keep(result)  # evidence copied in, paths relative to the run

    return record


@pytest.fixture
def settle_cell(record_cell: Callable[[CellResult], None]) -> Callable[[CellResult], None]:
    """Judge a finished cell by matrix/expected.toml, record it, and report an expected
    failure as xfail (a [[fail]] cell must fail in its stated category: judge asserts it). When
    it returns, the cell was not expected to fail and the test goes on to assert its pass."""

    def settle(result: CellResult) -> None:
        from lab.matrix import judge

        xfail = judge(result)
        record_cell(result)
        if xfail:
            pytest.xfail(xfail)

    return settle


@pytest.fixture
def record_baseline(request: pytest.FixtureRequest) -> Callable[[Cell, float, str], None]:
    """Record a direct firmware boot of `cell`'s target (seconds reset → userspace, kernel
    version) for the matrix's overhead table."""
    parts = _parts_dir(request.config)

    def record(cell: Cell, seconds: float, kernel: str) -> None:
        from lab.matrix import baseline_record

        if parts is not None:
            (parts / f"{cell.id}.baseline").write_text(
                json.dumps(baseline_record(cell, seconds, kernel)))

    return record


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    run = run_dir(config)
    parts = _parts_dir(config)
    if run is None or parts is None or not _is_controller(config) or not parts.exists():
        return
    from lab.matrix import provenance, write_results
    from lab.report.html import write_html
    from lab.report.junit import write_junit

    results = [CellResult.from_json(json.loads(p.read_text()))
               for p in sorted(parts.glob("*.json"))]
    baselines = [json.loads(p.read_text()) for p in sorted(parts.glob("*.baseline"))]
    prov = provenance()
    assets = _assets_dir(config)
    precached: dict[str, str] = config.stash.get(_PRECACHE, {})
    digests = dict(precached)
    if assets is not None and assets.exists():
        for f in sorted(assets.glob("*.json")):
            digests.update(json.loads(f.read_text()))
        shutil.rmtree(assets, ignore_errors=True)
    prov["assets"] = dict(sorted(digests.items()))
    # The run's own results (paths relative to it), then the merged table the docs show.
    write_results(run.path / "results.json", results, prov, baselines=baselines,
                  run={"id": run.id, "dir": "."}, every_cell=False)
    table = config.getoption("--matrix-results")
    if table is not None:
        write_results(table, results, prov, merge=config.getoption("--matrix-merge"),
                      baselines=baselines,
                      run={"id": run.id, "dir": os.path.relpath(run.path, Path(table).parent)})
    write_junit(run.path)
    write_html(run.path)
    flakes = flake_summary([r.to_json() for r in results])
    if flakes:
        config.stash[_FLAKES] = flakes
    shutil.rmtree(parts, ignore_errors=True)
    run.finish()
    print(f"\n[lab] run {run.id}: evidence in {run.path}", file=sys.stderr)


_FLAKES = pytest.StashKey[str]()


def flake_summary(records: list[dict[str, Any]]) -> str | None:
    """How flaky the cells booted more than once were, or None when none was."""
    again = [r for r in records if r.get("attempts")]
    if not again:
        return None
    flaky = sorted(r["cell"] for r in again if r["status"] == "flaky")
    boots = sum(len(r["attempts"]) + 1 for r in again)
    failed = sum(s not in ("pass", "xpass") for r in again
                 for s in [a["status"] for a in r["attempts"]]
                 + [r.get("boot_status") or r["status"]])
    return (f"{len(flaky)} of {len(again)} cells booted more than once are flaky "
            f"({100 * len(flaky) / len(again):.0f} %); {failed} of {boots} boots failed"
            + (": " + ", ".join(flaky) if flaky else ""))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    line = config.stash.get(_FLAKES, None)
    if line:
        terminalreporter.section("flaky cells")
        terminalreporter.line(line)
