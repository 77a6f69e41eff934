"""The run directory (docs/run-directory.md): where a matrix run keeps each cell's evidence.

A runner leaves its files in the VM's work directory, which pytest deletes with its temporary
directory; `RunDir.keep(result)` copies what a reader needs (console, hypervisor invocation,
the hypervisor's own output, Path C's variable store before and after) into
`cells/<cell-id>/`, writes the guest events as JSON lines and returns the cell's record with
every path relative to the run directory. A retried cell keeps each attempt's files in
`attempt-<k>/`, the last one also at the top.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudboot.fsutil import file_lock
from lab.cells import CellResult
from lab.console import parse_log

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUNS = ROOT / "build" / "matrix"
# File in the VM's work directory -> (artifact name, file name in the cell's folder).
KEPT = {
    "console.log": ("console", "console.log"),
    "command.txt": ("invocation", "invocation.txt"),
    "domain.xml": ("domain", "domain.xml"),
    "vfkit.txt": ("vfkit", "vfkit.txt"),
    "qemu.stderr": ("qemu-stderr", "qemu.stderr"),
    "qemu.log": ("qemu-log", "qemu.log"),
    "vars-before.json": ("vars-before", "vars-before.json"),
    "vars-after.json": ("vars-after", "vars-after.json"),
}
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def git(*args: str) -> str | None:
    """git's answer about this checkout, or None (no git, not a checkout, git refused)."""
    try:
        r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                           check=False)
    except OSError:
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def new_run_id() -> str:
    """`<UTC time>-<short commit>`: sorts by time, says which code ran."""
    commit = git("rev-parse", "--short=7", "HEAD") or "nogit"
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + commit


@dataclass(frozen=True)
class RunDir:
    path: Path
    id: str

    @classmethod
    def create(cls, path: Path, run_id: str, argv: list[str]) -> RunDir:
        run = cls(Path(path), run_id)
        (run.path / "cells").mkdir(parents=True, exist_ok=True)
        run.write_json("run.json", {"id": run_id, "argv": argv,
                                    "started": dt.datetime.now(dt.UTC).isoformat(
                                        timespec="seconds")})
        return run

    def write_json(self, name: str, doc: Any) -> Path:
        """`name` in the run directory, written whole and renamed (never seen half-written)."""
        out = self.path / name
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        tmp.replace(out)
        return out

    def finish(self) -> None:
        doc = json.loads((self.path / "run.json").read_text())
        doc["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.write_json("run.json", doc)

    def cell_dir(self, cell_id: str) -> Path:
        return self.path / "cells" / _SAFE.sub("_", cell_id)

    def relative(self, path: Path) -> str:
        return path.relative_to(self.path).as_posix()

    def keep(self, result: CellResult) -> dict[str, Any]:
        """Copy `result`'s evidence in; the cell's record, paths relative to this directory.
        A cell recorded again (a retry, a repeat) moves the earlier files to attempt-<k>/."""
        cell = self.cell_dir(result.cell.id)
        cell.parent.mkdir(parents=True, exist_ok=True)
        # Repeats of one cell may finish on two xdist workers at once (loadgroup's grouping
        # does not take on pytest 9): one keeper at a time per cell.
        with file_lock(cell.parent / f".{cell.name}.lock"):
            record = self._keep(result, cell)
            # The session's part for this cell (merged into results.json at its end), written
            # under the same lock so the last keeper's record is the one that stays.
            parts = self.path / ".parts"
            parts.mkdir(exist_ok=True)
            (parts / f"{result.cell.id}.json").write_text(json.dumps(record))
            return record

    def _keep(self, result: CellResult, cell: Path) -> dict[str, Any]:
        attempts: list[dict[str, Any]] = []
        earlier = cell / "result.json"
        if earlier.exists():
            previous = json.loads(earlier.read_text())
            attempts = previous.pop("attempts", [])
            k = len(attempts) + 1
            target = cell / f"attempt-{k}"
            target.mkdir()
            moved = {}
            for name, rel in previous.get("artifacts", {}).items():
                src = self.path / rel
                if src.exists():
                    shutil.move(src, target / src.name)
                    moved[name] = self.relative(target / src.name)
            attempts.append({"attempt": k,
                             "status": previous.get("boot_status") or previous["status"],
                             "category": previous.get("category"),
                             "seconds": previous.get("seconds"),
                             "evidence": previous.get("evidence", ""), "artifacts": moved})
        cell.mkdir(parents=True, exist_ok=True)
        artifacts = self._copy(result, cell)
        record = result.to_json()
        record.update(run=self.id, artifacts=artifacts, attempts=attempts,
                      console_log=artifacts.get("console"))
        if attempts:  # `status` is the cell's verdict over every boot, `boot_status` the last's
            record["boot_status"] = result.status
            record["status"] = combine([a["status"] for a in attempts] + [result.status])
        self.write_json(self.relative(cell / "result.json"), record)
        return record

    def _copy(self, result: CellResult, cell: Path) -> dict[str, str]:
        if not result.console_log:
            return {}
        vm = Path(result.console_log).parent
        artifacts: dict[str, str] = {}
        for src_name, (name, dst_name) in KEPT.items():
            src = vm / src_name
            if src.is_file():
                shutil.copyfile(src, cell / dst_name)
                artifacts[name] = self.relative(cell / dst_name)
        console = vm / "console.log"
        if console.is_file():
            with open(cell / "events.jsonl", "w") as out:
                for e in parse_log(console).events:
                    out.write(json.dumps({"kind": "userspace" if e.phase == "userspace"
                                          else "event", "t": e.t, "phase": e.phase,
                                          "data": e.data}, sort_keys=True) + "\n")
            artifacts["events"] = self.relative(cell / "events.jsonl")
        return artifacts


def combine(statuses: list[str]) -> str:
    """One verdict for a cell booted several times (retries, repeats): every boot passed ->
    pass; passes and failures both -> flaky; no boot passed -> the last one's verdict."""
    passed = [s in ("pass", "xpass") for s in statuses]
    if all(passed):
        return statuses[-1]
    return "flaky" if any(passed) else statuses[-1]
