"""Small file-system helpers shared by host tools: outputs that are never half-written."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path: Path, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    On any error the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OSError(f"{path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise OSError(f"{path}: cannot write in {directory}: permission denied")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    except OSError as e:
        raise OSError(f"{path}: cannot write in {directory}: {e.strerror}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, mode)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def cache_root() -> Path:
    """Where downloaded packages and built assets live (CLOUDBOOT_CACHE overrides)."""
    env = os.environ.get("CLOUDBOOT_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "cloudboot"


def cache_dir(*parts: str) -> Path:
    d = cache_root().joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (created if missing): one process at a time past here."""
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def stamped_memo(path: Path, stamp: str, key: str, compute: Callable[[], object]) -> object:
    """`compute()`'s answer for `key`, kept in the JSON file `path` until `stamp` changes (e.g.
    when apt refreshes its package lists). Written whole and renamed: readers never see half."""
    try:
        memo = json.loads(path.read_text())
    except (OSError, ValueError):
        memo = {}
    if memo.get("stamp") != stamp:
        memo = {"stamp": stamp}
    if key not in memo:
        memo[key] = compute()
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, indent=1))
        os.replace(tmp, path)
    return memo[key]
