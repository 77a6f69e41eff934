"""Build-once cache entries: a file lock per key, a temporary directory, one rename at the end.

Parallel pytest workers asking for the same key wait on the lock and then reuse the result.
A killed build leaves only a `.<key>.tmp-*` directory, removed by the next builder of that key.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloudboot.fsutil import file_lock

__all__ = ["build_once", "file_lock", "mounts_under", "progress", "remove_tree"]

COMPLETE = ".complete"


def progress(message: str, started: float | None = None) -> None:
    """One progress line on stderr, with the seconds since `started` when given."""
    suffix = f" ({time.monotonic() - started:.1f} s)" if started is not None else ""
    print(f"[lab.images] {message}{suffix}", file=sys.stderr, flush=True)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` (a failed chroot step can leave /proc mounted)."""
    root = os.path.realpath(path)
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            point = line.split()[1].replace("\\040", " ")
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return found


def remove_tree(path: Path) -> None:
    """rmtree that first detaches leftover mounts, so it never descends into /proc or /dev."""
    if not path.exists():
        return
    for point in sorted(mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)
    left = mounts_under(path)
    if left:
        raise RuntimeError(f"refusing to delete {path}: still mounted: {', '.join(left)}")
    shutil.rmtree(path)


def build_once(final: Path, build: Callable[[Path], Any]) -> Path:
    """Return `final`, a directory made by `build(tmpdir)` exactly once across processes."""
    if (final / COMPLETE).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(final.parent / f".{final.name}.lock"):
        if (final / COMPLETE).exists():
            return final
        for stale in final.parent.glob(f".{final.name}.tmp-*"):
            remove_tree(stale)
        if final.exists():  # incomplete leftover from an older layout
            remove_tree(final)
        tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
        tmp.mkdir()
        try:
            build(tmp)
            (tmp / COMPLETE).write_text(f"{time.time():.0f}\n")
            os.rename(tmp, final)
        except BaseException:
            remove_tree(tmp)
            raise
    return final
