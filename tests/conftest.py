"""What every test run shares: its own cache, the skip rule, and skips summed up by reason.

The cache: a test never reads the user's `~/.cache/cloudboot`. Unless the runner names one in
`CLOUDBOOT_CACHE` (CI gives an empty directory; `nox -s matrix` gives the user's cache, so
the matrix reuses images built over hours), the suite uses `build/test-cache/` in this
checkout: a fresh clone starts empty, and a re-run in the same checkout is warm.

The skip rule: a test may skip only for what this class of host cannot have, and says so with
a reason that starts `host:` (tests/helpers.py `host_cannot`, `host_only`); a matrix cell that
matrix/expected.toml declares `[[not_run]]` skips with `not run:`. Any other skip is reported
as a failure: it is something an install would fix, a hole in the gate.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if not os.environ.get("CLOUDBOOT_CACHE"):
    os.environ["CLOUDBOOT_CACHE"] = str(ROOT / "build" / "test-cache")

pytest_plugins = ["lab.pytest_plugin", "pytester"]

ALLOWED_SKIPS = ("host:", "not run:")


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # noqa: ANN201
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not reason.startswith(ALLOWED_SKIPS):
            report.outcome = "failed"
            report.longrepr = (f"skipped for a reason that is not a fact of this class of host "
                               f"(an install would fix it, or the test should make its input): "
                               f"{reason}")


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's TerminalReporter
    """One line per skip reason with its count, so a reader sees at once what did not run."""
    reasons = Counter(_skip_reason(r) for r in terminalreporter.stats.get("skipped", [])
                      if not hasattr(r, "wasxfail"))
    if not reasons:
        return
    terminalreporter.section("skips by reason")
    for reason, n in reasons.most_common():
        terminalreporter.line(f"{n:4} × {reason}")


@pytest.fixture
def qemu_without_cpu_quirks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Golden command lines and domain XML are the same on every host: each QEMU binary is
    taken to be a release with no TCG CPU quirk (lab.profiles.TCG_CPU_QUIRKS)."""
    from lab import profiles

    monkeypatch.setattr(profiles, "installed_qemu_version", lambda binary: (10, 0))
