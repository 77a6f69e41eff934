"""A long matrix run's progress: tests done of the total, which are running, the time spent
and an estimate of what is left from the cells' recorded times (matrix/results.json). On a
terminal it is one line that updates in place; elsewhere (CI logs) a plain line per finished
test, so a log shows how far a run got."""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import pytest

_CELL_ID = re.compile(r"\[([^\]]*?)\]$")
DEFAULT_SECONDS = 90.0  # a cell nobody has timed: about one Path A boot under TCG


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


@dataclass
class Progress:
    """Fed by the pytest plugin in the controlling process (with xdist, the workers' reports
    arrive there)."""

    workers: int = 1
    recorded: dict[str, float] = field(default_factory=dict)  # cell id -> seconds
    out: TextIO = sys.stderr
    tty: bool = False
    total: int = 0
    done: int = 0
    failed: int = 0
    started: dict[str, float] = field(default_factory=dict)  # nodeid -> monotonic start
    # Where a plain line goes when `out` is no terminal (pytest's reporter: it starts a new
    # line after the test dots instead of writing into them).
    plain: Callable[[str], None] | None = None
    t0: float = field(default_factory=time.monotonic)

    @classmethod
    def for_results(cls, doc: dict[str, Any] | None, workers: int, out: TextIO) -> Progress:
        recorded = {c["cell"]: float(c["seconds"]) for c in (doc or {}).get("cells", [])
                    if isinstance(c.get("seconds"), int | float)}
        return cls(workers=max(1, workers), recorded=recorded, out=out,
                   tty=out.isatty())

    def expected(self, nodeid: str) -> float:
        m = _CELL_ID.search(nodeid)
        if m and m.group(1) in self.recorded:
            return self.recorded[m.group(1)]
        return statistics.median(self.recorded.values()) if self.recorded else DEFAULT_SECONDS

    def start(self, nodeid: str) -> None:
        self.started[nodeid] = time.monotonic()
        if self.tty:
            self._show()

    def finish(self, nodeid: str, failed: bool) -> None:
        self.started.pop(nodeid, None)
        self.done += 1
        self.failed += failed
        self._show()

    def line(self) -> str:
        now = time.monotonic()
        running = sorted(self.started)
        left = self.total - self.done - len(running)
        remaining = sum(max(0.0, self.expected(n) - (now - t)) for n, t in self.started.items())
        remaining += left * (statistics.median(self.recorded.values()) if self.recorded
                             else DEFAULT_SECONDS)
        names = ", ".join(_CELL_ID.search(n).group(1) if _CELL_ID.search(n) else n  # type: ignore[union-attr]
                          for n in running[:3]) + (" …" if len(running) > 3 else "")
        return (f"[lab] {self.done}/{self.total} done"
                + (f" ({self.failed} failed)" if self.failed else "")
                + f", {len(running)} running" + (f" ({names})" if names else "")
                + f", {_minutes(now - self.t0)} elapsed, "
                + f"ETA {_minutes(remaining / self.workers)}")

    def _show(self) -> None:
        if not self.total:
            return
        if self.tty:
            self.out.write("\r\x1b[K" + self.line())
            self.out.flush()
        elif self.plain is not None:
            self.plain(self.line())
        else:
            self.out.write(self.line() + "\n")
            self.out.flush()

    def close(self) -> None:
        if self.tty and self.total:
            self.out.write("\n")
            self.out.flush()


class ProgressPlugin:
    """Registered in the controlling process of a matrix run (xdist forwards the workers'
    reports there); feeds a Progress."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.failed: set[str] = set()

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and not self.progress.tty:
            # Its own line even after xdist's test dots (write_line does not break that line).
            self.progress.plain = lambda line: reporter.write(f"\n{line}\n", flush=True)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.items:  # without xdist; with it the controller collects nothing
            self.progress.total = len(session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.progress.total = max(self.progress.total, len(ids))

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.progress.start(nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.failed.add(report.nodeid)
        if report.when == "teardown":
            self.progress.finish(report.nodeid, report.nodeid in self.failed)

    def pytest_sessionfinish(self) -> None:
        self.progress.close()
