"""pytest plugin: `--matrix-results PATH` collects each cell's result into results.json.

Works with pytest-xdist: every worker writes one JSON file per cell into PATH.d/, and the
controller merges them (with provenance) when the session ends.

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

import pytest

from lab.cells import Cell, CellResult

_PRECACHE = pytest.StashKey[dict[str, str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--matrix-results", type=Path, default=None,
                     help="write matrix cell results to this results.json")
    parser.addoption("--matrix-merge", action="store_true", default=False,
                     help="with --matrix-results: keep the verdicts of cells this run does "
                          "not boot (a partial run updates the table)")
    parser.addoption("--no-precache", action="store_true", default=False,
                     help="do not build/fetch the selected cells' assets before the run")


def _assets_dir(config: pytest.Config) -> Path | None:
    path = config.getoption("--matrix-results")
    return None if path is None else Path(str(path) + ".assets.d")


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
    path = config.getoption("--matrix-results")
    return None if path is None else Path(str(path) + ".d")


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cells(*cells): lab cells the test boots (precached "
                            "before the run)")
    assets = _assets_dir(config)
    if assets is not None and _is_controller(config):
        shutil.rmtree(assets, ignore_errors=True)
    parts = _parts_dir(config)
    if parts is not None and _is_controller(config):
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True)


@pytest.fixture
def record_cell(request: pytest.FixtureRequest) -> Callable[[CellResult], None]:
    parts = _parts_dir(request.config)

    def record(result: CellResult) -> None:
        if parts is not None:
            (parts / f"{result.cell.id}.json").write_text(json.dumps(result.to_json()))

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
    parts = _parts_dir(config)
    if parts is None or not _is_controller(config) or not parts.exists():
        return
    from lab.matrix import provenance, write_results

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
    write_results(config.getoption("--matrix-results"), results, prov,
                  merge=config.getoption("--matrix-merge"), baselines=baselines)
    shutil.rmtree(parts, ignore_errors=True)
