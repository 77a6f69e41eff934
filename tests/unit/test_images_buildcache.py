"""build_once: one build per key across processes, nothing half-built left behind."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from lab.images.buildcache import COMPLETE, build_once, mounts_under, remove_tree


def _build_slowly(final: str, counter: str) -> None:
    def build(tmp: Path) -> None:
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        (tmp / "payload").write_text("done\n")

    build_once(Path(final), build)


def test_parallel_callers_build_once(tmp_path: Path) -> None:
    final, counter = tmp_path / "entry", tmp_path / "builds.txt"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_build_slowly, args=(str(final), str(counter)))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert len(counter.read_text().splitlines()) == 1
    assert (final / "payload").read_text() == "done\n" and (final / COMPLETE).exists()
    assert not list(tmp_path.glob(".entry.tmp-*"))


def test_failed_build_leaves_nothing_and_the_next_caller_retries(tmp_path: Path) -> None:
    final = tmp_path / "entry"

    def broken(tmp: Path) -> None:
        (tmp / "half").write_text("x")
        raise RuntimeError("mkfs failed")

    with pytest.raises(RuntimeError, match="mkfs failed"):
        build_once(final, broken)
    assert not final.exists() and not list(tmp_path.glob(".entry.tmp-*"))
    # A stale temporary directory of a killed builder is cleared by the next build.
    (tmp_path / ".entry.tmp-999999").mkdir()
    build_once(final, lambda tmp: (tmp / "ok").write_text("1"))
    assert (final / "ok").exists() and not list(tmp_path.glob(".entry.tmp-*"))


def test_remove_tree_detaches_mounts_first(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("host: mounting a tmpfs needs root")
    victim = tmp_path / "tree" / "proc"
    victim.mkdir(parents=True)
    assert os.system(f"mount -t tmpfs none {victim}") == 0
    (victim / "keep").write_text("x")
    assert mounts_under(tmp_path / "tree") == [str(victim)]
    remove_tree(tmp_path / "tree")
    assert not (tmp_path / "tree").exists() and mounts_under(tmp_path) == []
