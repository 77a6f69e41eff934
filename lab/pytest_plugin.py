"""pytest plugin: `--matrix-results PATH` collects each cell's result into results.json.

Works with pytest-xdist: every worker writes one JSON file per cell into PATH.d/, and the
controller merges them (with provenance) when the session ends.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.cells import CellResult


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--matrix-results", type=Path, default=None,
                     help="write matrix cell results to this results.json")


def _parts_dir(config: pytest.Config) -> Path | None:
    path = config.getoption("--matrix-results")
    return None if path is None else Path(str(path) + ".d")


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
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


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    parts = _parts_dir(config)
    if parts is None or not _is_controller(config) or not parts.exists():
        return
    from lab.matrix import provenance, write_results

    results = [CellResult.from_json(json.loads(p.read_text())) for p in sorted(parts.glob("*"))]
    write_results(config.getoption("--matrix-results"), results, provenance())
    shutil.rmtree(parts, ignore_errors=True)
