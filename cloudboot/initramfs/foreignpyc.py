"""Compile .pyc with the TARGET's Python when it is not the host's (a foreign arch and version).

The marshal format of code objects and the .pyc magic change with every Python minor version,
so a 3.13 or 3.14 guest needs bytecode written by a 3.13 or 3.14 interpreter. The target's own
interpreter runs under qemu-user with the unpacked Debian packages merged into a sysroot
(`-L`), ONE process for the whole batch (`pycdriver.py`): under TCG each interpreter start costs
about 2 s, so a process per module would cost minutes.

The host's Python 3.11 cannot parse a 3.12+ stdlib either (PEP 701 f-strings in
traceback.py), so the import-closure walk runs there too (`closuredriver.py`, the same
`closure.Finder`). The sysroot is a hard-link farm of the `Tree` (same file system as the
package cache, so it costs no copy), created per build and removed after it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudboot.fsutil import cache_dir
from cloudboot.initramfs.closure import Closure, ClosureError, Module, Root, Seed
from cloudboot.initramfs.pyruntime import Tree

PYC_DRIVER = Path(__file__).with_name("pycdriver.py")
CLOSURE_DRIVER = Path(__file__).with_name("closuredriver.py")
USRMERGE_DIRS = ("lib", "lib64", "bin", "sbin")


class ForeignPycError(RuntimeError):
    pass


@dataclass(frozen=True)
class Job:
    source: Path  # host path of the .py
    shown: str  # the guest path compiled into the code object (tracebacks)
    optimize: int  # 0: keep asserts and docstrings, 2: -OO


@dataclass(frozen=True)
class Batch:
    magic: bytes  # as the target interpreter reports it
    version: str  # the target's sys.version (first word)
    pycs: list[bytes]  # one per job, same order
    seconds: float  # wall time of the emulated run


def make_sysroot(tree: Tree, dest: Path) -> Path:
    """Every file of the unpacked packages at its guest path under `dest` (hard links).

    Symlinks are recreated as they are (relative ones resolve inside the sysroot); a usrmerged
    tree (trixie and later ship /usr only) gets /lib -> usr/lib etc., as base-files would give.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for guest, host in sorted(tree.files.items()):
        target = dest / guest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if host.is_symlink():
                os.symlink(os.readlink(host), target)
            else:
                try:
                    os.link(host, target)
                except OSError:
                    shutil.copy2(host, target)
        except FileExistsError:
            continue  # a directory of another package already sits there
    if tree.usrmerged:
        for d in USRMERGE_DIRS:
            if (dest / "usr" / d).is_dir() and not os.path.lexists(dest / d):
                os.symlink(f"usr/{d}", dest / d)
    return dest


def check_emulator(emulator: Path | None, what: str) -> Path:
    if emulator is None:
        raise ForeignPycError(f"{what}: the target Python is foreign (not the host's version or "
                              "arch) and no qemu-user emulator was given to run it")
    if not (emulator.is_file() and os.access(emulator, os.X_OK)):
        raise ForeignPycError(f"{what}: qemu-user emulator {emulator} is not an executable file")
    return emulator


def run_python(tree: Tree, emulator: Path, sysroot: Path, args: Sequence[str],
               timeout: float) -> subprocess.CompletedProcess[str]:
    """The target interpreter (`python -I -S -B args…`) under `emulator`, `sysroot` as -L."""
    interp = sysroot / tree.runtime.interpreter.lstrip("/")
    cmd = [str(emulator), "-L", str(sysroot), str(interp), "-I", "-S", "-B", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
    except subprocess.TimeoutExpired:
        raise ForeignPycError(f"{' '.join(cmd[:4])} …: no result within {timeout:.0f} s") from None


class TargetPython:
    """The target's interpreter runnable on this host: a sysroot for the life of the block.

        with TargetPython(tree) as py:
            found = py.closure(...)
            batch = py.compile(jobs)
    """

    def __init__(self, tree: Tree, emulator: Path | None = None,
                 timeout: float = 1800.0) -> None:
        self.tree = tree
        self.what = f"python{tree.runtime.version} ({tree.arch.debian})"
        self.emulator = check_emulator(emulator or tree.runtime.emulator, self.what)
        self.timeout = timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.work = Path()
        self._sysroot: Path | None = None
        self.runs = 0  # driver runs (emulated interpreter starts) so far

    def __enter__(self) -> TargetPython:
        self._tmp = tempfile.TemporaryDirectory(prefix="pyc-", dir=cache_dir("pysysroot"))
        self.work = Path(self._tmp.name)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self._sysroot = None

    @property
    def sysroot(self) -> Path:
        """The hard-link farm, made on first use (a build served from cache needs none)."""
        if self._tmp is None:
            raise ForeignPycError(f"{self.what}: TargetPython used outside its with-block")
        if self._sysroot is None:
            self._sysroot = make_sysroot(self.tree, self.work / "root")
        return self._sysroot

    def run_driver(self, driver: Path, spec: object) -> tuple[dict[str, Any], float]:
        """Run a driver script on a JSON spec; its last stdout line is its JSON answer."""
        sysroot = self.sysroot
        spec_file = self.work / f"{driver.stem}.json"
        spec_file.write_text(json.dumps(spec))
        start = time.monotonic()
        self.runs += 1
        proc = run_python(self.tree, self.emulator, sysroot, [str(driver), str(spec_file)],
                          self.timeout)
        seconds = time.monotonic() - start
        lines = proc.stdout.strip().splitlines()
        try:
            result = json.loads(lines[-1]) if lines else None
        except ValueError:
            result = None
        if not isinstance(result, dict):
            sigill = proc.returncode in (-4, 132)
            raise ForeignPycError(
                f"{self.what} under {self.emulator} did not run {driver.name} (exit status "
                f"{proc.returncode}): {(proc.stderr or proc.stdout).strip()[-600:]}"
                + (" (illegal instruction: this qemu-user is too old for the target's "
                   "binaries; QEMU >= 8.1 runs forky's LoongArch userspace)" if sigill else ""))
        if proc.returncode != 0 and not result.get("error") and not result.get("errors"):
            raise ForeignPycError(f"{self.what}: {driver.name} exited {proc.returncode}: "
                                  f"{proc.stderr.strip()[-400:]}")
        return result, seconds

    def closure(self, entries: Iterable[str], roots: Iterable[Root], builtins: Iterable[str],
                exclude: Iterable[str], follow_lazy: Iterable[str],
                seeds: Iterable[Seed] = ()) -> Closure:
        """`closure.find_closure`, run by the target interpreter (it parses its own stdlib)."""
        spec = {
            "import_root": str(Path(__file__).resolve().parents[2]),
            "entries": list(entries),
            "roots": [{"host": str(r.host), "guest": r.guest, "extensions": r.extensions,
                       "only": None if r.only is None else sorted(r.only)} for r in roots],
            "builtins": sorted(builtins), "exclude": sorted(exclude),
            "follow_lazy": sorted(follow_lazy),
            "seeds": [list(seed) for seed in seeds],
        }
        result, _ = self.run_driver(CLOSURE_DRIVER, spec)
        if result.get("error"):
            raise ClosureError(f"{self.what}: {result['error']}")
        found = Closure()
        for name, kind, host, guest in result["modules"]:
            found.modules[name] = Module(name, kind, None if host is None else Path(host), guest)
        for key in ("missing", "optional_missing", "excluded", "lazy_skipped"):
            setattr(found, key, {k: set(v) for k, v in result[key].items()})
        found.via = dict(result["via"])
        return found

    def compile(self, jobs: Sequence[Job]) -> Batch:
        """Every job compiled by the target interpreter in one process."""
        out = self.work / "out"
        out.mkdir(exist_ok=True)
        outs = [out / f"{i}.pyc" for i in range(len(jobs))]
        spec = {"jobs": [[str(j.source), j.shown, j.optimize, str(o)]
                         for j, o in zip(jobs, outs, strict=True)]}
        result, seconds = self.run_driver(PYC_DRIVER, spec)
        if result.get("errors"):
            raise ForeignPycError(f"{self.what} cannot compile {len(result['errors'])} "
                                  "module(s): " + "; ".join(result["errors"][:5]))
        if result.get("count") != len(jobs):
            raise ForeignPycError(f"{self.what}: the compile driver wrote {result.get('count')}"
                                  f" of {len(jobs)} .pyc files")
        return Batch(magic=bytes.fromhex(str(result["magic"])),
                     version=str(result.get("version", "")),
                     pycs=[o.read_bytes() for o in outs], seconds=seconds)


def compile_batch(tree: Tree, emulator: Path | None, jobs: Sequence[Job],
                  timeout: float = 1800.0) -> Batch:
    """Compile every job with the target interpreter in one emulated process."""
    with TargetPython(tree, emulator, timeout) as py:
        return py.compile(jobs)
