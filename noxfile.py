"""Sessions: tests (unit + fast boot smoke), e2e, matrix, bench, lint.

Each session first installs the host packages it needs (python -m cloudboot.debian.hostdeps).
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
PYTHON = "python3"


def _setup(session: nox.Session, job: str) -> None:
    session.install("-e", ".[dev]")
    session.run("python", "-m", "cloudboot.debian.hostdeps", "ensure", job)
    if job in ("tests", "matrix"):
        # After hostdeps (libvirt-dev, pkg-config): the binding builds from source. If it
        # cannot, the libvirt cells report "not run" with the reason instead of failing.
        session.run("python", "-m", "pip", "install", "-q", "-e", ".[libvirt]",
                    success_codes=[0, 1])


def _user_cache() -> dict[str, str]:
    """The matrix, e2e and bench sessions keep their images in the user's cache (built once,
    hours for the foreign arches); the tests session leaves CLOUDBOOT_CACHE alone, so the
    suite uses its own (tests/conftest.py)."""
    if os.environ.get("CLOUDBOOT_CACHE"):
        return {}
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return {"CLOUDBOOT_CACHE": os.path.join(base, "cloudboot")}


def _workers() -> str:
    return os.environ.get("CLOUDBOOT_WORKERS", str(max(1, min(os.cpu_count() or 1, 4))))


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit tests plus the fast boot smoke subset."""
    _setup(session, "tests")
    session.run("pytest", "-n", _workers(), "--dist", "loadgroup", "-m", "not e2e or smoke",
                *session.posargs)


@nox.session(python=PYTHON)
def e2e(session: nox.Session) -> None:
    """Every end-to-end lab cell that this host can run."""
    _setup(session, "matrix")
    session.run("pytest", "-n", _workers(), "--dist", "loadgroup", "-m", "e2e", "tests/e2e",
                *session.posargs, env=_user_cache())


@nox.session(python=PYTHON)
def matrix(session: nox.Session) -> None:
    """Run the matrix cells, write matrix/results.json and regenerate MATRIX.md."""
    _setup(session, "matrix")
    session.run("pytest", "-n", _workers(), "--dist", "loadgroup", "-m", "e2e", "tests/e2e",
                "--matrix-results", "matrix/results.json", *session.posargs,
                success_codes=[0, 1], env=_user_cache())
    session.run("python", "-m", "lab.matrix", "render", "matrix/results.json", "MATRIX.md")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks; they print ratios against the natural baseline."""
    _setup(session, "tests")
    for script in sorted(os.listdir("benchmarks")):
        if script.startswith("bench_") and script.endswith(".py"):
            session.run("python", f"benchmarks/{script}", *session.posargs, env=_user_cache())


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("ruff", "check", ".")
    session.run("mypy")
