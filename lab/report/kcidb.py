"""A matrix run as KernelCI's KCIDB v5 JSON (`python -m lab matrix export --kcidb FILE`).

Reads a run directory's results.json (docs/run-directory.md) and writes the newest v5 schema
kcidb-io ships (v5.3 in kcidb-io 141), checked with kcidb-io's own validator before writing.

What each object is:
- checkout `<origin>:<run id>`: the run's code (provenance.commit, tree "cloudboot"). A merged
  matrix/results.json holds cells of earlier runs (`from_run`); they tested another commit, so
  each earlier run is a checkout of its own (its id is `run`, or `<date>-<commit7>` derived
  from `from_run` like lab.evidence.new_run_id): the same cell exported twice gets one id.
- build `<origin>:<run id>:<arch>`: what cloudboot built for that arch at that commit
  (initramfs, UKI, boot.iso, the Path B/D loaders). A boot.iso differs from cell to cell, so
  the media digests stay with each test (misc.assets). `architecture` is the kernel's ARCH
  name, as KernelCI's builds give it; config, compiler and command are left out (there is no
  kernel config and the build command is not recorded). status PASS when a cell of that arch
  booted media from it (its digests prove the build existed), else left out (unknown).
- test `<origin>:<run id>:<cell id>`, path `cloudboot.<hypervisor>.<arch>.path_<p>.<distro>-<fs>`:
  every part of the cell id, so one path is one cell and the dashboard's history of a path is
  that cell's history; `cloudboot` is the dashboard's path group (its first component), the
  arch is also the build's, the lane is environment.misc.platform (the dashboard's hardware).
  Characters a path may not hold ([^A-Za-z0-9_-]) become "_".

Status (KCIDB: FAIL, ERROR, MISS, PASS, DONE, SKIP):
- pass, xpass -> PASS (an xpass says in its comment that a failure was expected);
- flaky -> PASS (it did pass); the failed boots are named in the comment, every earlier boot
  is in misc.attempts and the last boot's own verdict in misc.boot_status;
- fail -> FAIL, but category `lab` -> ERROR: our own infrastructure broke, so the boot code's
  state is unknown (KCIDB: "didn't complete due to a failure in its code");
- xfail -> FAIL: the boot did fail, and the test proved it failed in the declared category.
  The expectation is triage, which KCIDB carries as an issue (`<origin>:expected-<hash of
  category and reason>`, stable across runs) with an incident linking the test to it; a
  `[[known]]` failure (a fail with a reason) gets a `known-` issue the same way;
- not-run -> SKIP with the reason as comment. KCIDB's MISS is "didn't run due to a failure in
  the test harness" and the KernelCI dashboard counts MISS among failures; a not-run cell is
  one matrix/expected.toml says does not apply (no port, needs macOS, not wired yet), which is
  SKIP's "not applicable". MISS is only given to a status this exporter does not know.

start_time and duration are the last boot's (finished - seconds); not-run cells have none.
log_url: `<--log-base>/<console artifact>` for cells of the directory's own run whose console
file is there; without a base (relative paths are not URLs) or for cells of earlier runs
(their files are in another run directory) there is none. Old cells' absolute `console_log`
paths point into deleted temporary directories and are never exported.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jsonschema
import kcidb_io

from lab.cells import Cell

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "build" / "matrix"
SCHEMA = max((v for v in kcidb_io.schema.LATEST.history if v.major == 5), key=lambda v: v.minor)
TREE = "cloudboot"
# Our arch names -> the kernel's ARCH, which KernelCI's builds carry as `architecture`.
KERNEL_ARCH = {"x86_64": "x86_64", "aarch64": "arm64", "armv7": "arm", "riscv64": "riscv",
               "loongarch64": "loongarch"}
QEMU_BINARY = {"armv7": "qemu-system-arm"}  # else qemu-system-<arch>
# A word of the firmware package's name for each arch (provenance.tools.firmware*).
FIRMWARE_WORD = {"x86_64": "ovmf", "aarch64": "aarch64", "armv7": "efi-arm", "riscv64": "riscv64",
                 "loongarch64": "loongarch64"}
PASSED = ("pass", "xpass")
MEDIA = ("boot.iso", "boot-media", "loader")  # cell assets that are our build's outputs
EXCERPT_LINES, EXCERPT_CHARS = 40, 16384
_ORIGIN = re.compile(r"^[a-z0-9_]+$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_NODE = re.compile(r"[^A-Za-z0-9_-]")


class InvalidKCIDB(ValueError):
    """The export does not satisfy kcidb-io's schema (a bug here, or data it cannot carry)."""


def validate(data: dict[str, Any]) -> None:
    try:
        SCHEMA.validate(data)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path)
        raise InvalidKCIDB(f"KCIDB {SCHEMA}: {where or 'top level'}: {e.message}") from e


def _text(s: Any) -> str:
    return str(s).replace("\0", "")  # KCIDB strings are ^[^\0]*$


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """KCIDB has no nulls; an empty value says nothing either."""
    return {k: v for k, v in d.items() if v is not None and v != "" and v != {} and v != []}


def _time(text: Any) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _run_id(commit: Any, date: Any) -> str:
    """The id of a run the results only know by commit and date (lab.evidence.new_run_id's
    form, `<UTC time>-<short commit>`)."""
    t = _time(date) if date else None
    stamp = t.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ") if t else "undated"
    short = str(commit)[:7] if commit and _COMMIT.match(str(commit)) else "nogit"
    return f"{stamp}-{short}"


def _url(base: str, rel: str) -> str:
    return base.rstrip("/") + "/" + quote(rel, safe="/")


def check_base(base: str) -> str:
    parts = urlsplit(base)
    if not parts.scheme or not (parts.netloc or parts.scheme == "file"):
        raise ValueError(f"--log-base {base!r} is not an absolute URL (scheme://host/...): "
                         "KCIDB's log_url must be one")
    return base


class _Run:
    """One run the results hold cells of; `own` is the directory's own run (files here)."""

    def __init__(self, run_id: str, commit: Any, date: Any, own: bool) -> None:
        self.id, self.commit, self.date, self.own = run_id, commit, date, own
        self.starts: list[dt.datetime] = []


class _Exporter:
    def __init__(self, run_dir: Path, origin: str, log_base: str | None,
                 git_url: str | None) -> None:
        if not _ORIGIN.match(origin):
            raise ValueError(f"origin {origin!r}: KCIDB origins are [a-z0-9_]+")
        if git_url is not None and not git_url.startswith("https://"):
            raise ValueError(f"git URL {git_url!r}: KCIDB wants an https:// URL")
        self.origin, self.git_url = origin, git_url
        self.base = check_base(log_base) if log_base is not None else None
        results = run_dir if run_dir.is_file() else run_dir / "results.json"
        self.doc = json.loads(results.read_text())
        self.prov: dict[str, Any] = self.doc.get("provenance") or {}
        run_doc = self.doc.get("run") or {}
        run_json = results.parent / "run.json"
        self.run_json: dict[str, Any] = (json.loads(run_json.read_text())
                                         if run_json.is_file() else {})
        top_id = (run_doc.get("id") or self.run_json.get("id")
                  or _run_id(self.prov.get("commit"), self.prov.get("date")))
        self.files = results.parent / run_doc.get("dir", ".")  # artifacts are relative to it
        self.top = _Run(top_id, self.prov.get("commit"), self.prov.get("date"), own=True)
        self.runs: dict[str, _Run] = {top_id: self.top}
        self.builds: dict[str, dict[str, Any]] = {}
        self.issues: dict[str, dict[str, Any]] = {}
        self.incidents: list[dict[str, Any]] = []

    def run_of(self, c: dict[str, Any]) -> _Run:
        earlier = c.get("from_run") or {}
        rid = c.get("run") or (_run_id(earlier.get("commit"), earlier.get("date"))
                               if earlier else self.top.id)
        if rid not in self.runs:
            self.runs[rid] = _Run(rid, earlier.get("commit"), earlier.get("date"), own=False)
        return self.runs[rid]

    def export(self) -> dict[str, Any]:
        tests = [self.test(c) for c in self.doc.get("cells", [])]
        checkouts = [self.checkout(r) for r in self.runs.values()]  # runs the cells named
        data: dict[str, Any] = {"version": {"major": SCHEMA.major, "minor": SCHEMA.minor},
                                "checkouts": checkouts, "builds": list(self.builds.values()),
                                "tests": tests, "issues": list(self.issues.values()),
                                "incidents": self.incidents}
        return _clean(data)

    def checkout(self, run: _Run) -> dict[str, Any]:
        dirty = self.prov.get("dirty") if run.own else None
        started = _time(self.run_json.get("started")) if run.own else None
        start = started or (min(run.starts) if run.starts else _time(run.date))
        finished = _time(self.run_json.get("finished")) if run.own else None
        comment = f"cloudboot matrix run {run.id}" + (" (uncommitted changes)" if dirty else "")
        return _clean({
            "id": f"{self.origin}:{run.id}", "origin": self.origin, "tree_name": TREE,
            "git_repository_url": self.git_url,
            "git_commit_hash": run.commit if _COMMIT.match(str(run.commit)) else None,
            "patchset_hash": "" if dirty is False else None,  # "" = no patches on the commit
            "comment": comment, "valid": True,
            "start_time": start.isoformat() if start else None,
            "origin_tests_finish_time": finished.isoformat() if finished else None,
            "misc": _clean({"run": run.id, "dirty": dirty,
                            "argv": self.run_json.get("argv") if run.own else None}),
        })

    def build(self, run: _Run, cell: Cell, assets: dict[str, Any]) -> str:
        bid = f"{self.origin}:{run.id}:{cell.arch}"
        b = self.builds.get(bid)
        if b is None:
            arch = cell.arch
            inputs = ({k: v for k, v in (self.prov.get("assets") or {}).items()
                       if k.startswith(f"{arch}:") or k.endswith(f"_{arch.debian}.deb")}
                      if run.own else {})
            b = self.builds[bid] = _clean({
                "id": bid, "origin": self.origin, "checkout_id": f"{self.origin}:{run.id}",
                "architecture": KERNEL_ARCH.get(arch.name, _NODE.sub("_", arch.name).lower()),
                "comment": f"cloudboot bootstrap media for {arch}: initramfs, UKI, boot.iso "
                           "and the Path B/D loaders",
                "misc": _clean({"arch": arch.name, "debian_arch": arch.debian,
                                "assets": inputs}),
            })
        if any(k in MEDIA for k in assets):
            b["status"] = "PASS"
        return bid

    def environment(self, cell: Cell, c: dict[str, Any], run: _Run) -> dict[str, Any]:
        """Where the cell booted; the tools' versions when it booted in this directory's run
        (earlier runs' provenance is not kept) and on the lab's QEMU (vfkit is Apple's)."""
        ran = c.get("status") != "not-run"
        tools: dict[str, Any] = (self.prov.get("tools") or {}) if run.own and ran else {}
        if cell.hypervisor == "vfkit":
            tools = {}
        binary = QEMU_BINARY.get(cell.arch.name, f"qemu-system-{cell.arch}")
        qemu = next((v for k, v in (tools.get("qemu") or {}).items()
                     if k.split(" ")[0] == binary), None)
        word = FIRMWARE_WORD.get(cell.arch.name, cell.arch.name)
        firmware = {k: v for part in ("firmware", "firmware_private")
                    for k, v in (tools.get(part) or {}).items() if word in k}
        libvirt = tools.get("libvirt") if cell.hypervisor in ("libvirt", "openstack") else None
        accel = (c.get("accel") or (self.prov.get("accel") if run.own else None)) if ran else None
        vz = cell.hypervisor == "vz"
        comment = (f"{cell.hypervisor} {cell.arch}" + (f" ({accel})" if accel else "")
                   + (": Apple VZ's behaviours on QEMU (the lab's vz profile)" if vz else ""))
        return {"comment": comment, "misc": _clean({
            "platform": f"{cell.hypervisor}-{cell.arch}", "hypervisor": cell.hypervisor,
            "arch": cell.arch.name, "accelerator": accel,
            "profile": cell.profile_name if vz else None, "qemu": qemu, "libvirt": libvirt,
            "firmware": firmware, "host": self.prov.get("host") if tools else None})}

    def link(self, run: _Run, rel: Any) -> str | None:
        """The URL of an artifact of this directory's own run, when it is here to be served."""
        if self.base is None or not run.own or not isinstance(rel, str):
            return None
        return _url(self.base, rel) if (self.files / rel).is_file() else None

    def excerpt(self, run: _Run, rel: Any) -> str | None:
        if not run.own or not isinstance(rel, str) or not (self.files / rel).is_file():
            return None
        lines = (self.files / rel).read_text(errors="replace").splitlines()[-EXCERPT_LINES:]
        return _text("\n".join(lines) + "\n")[-EXCERPT_CHARS:]

    def triage(self, test_id: str, kind: str, category: Any, reason: str) -> None:
        """An expected (matrix/expected.toml) or known failure: a KCIDB issue and incident."""
        key = hashlib.sha256(f"{category}\n{reason}".encode()).hexdigest()[:16]
        iid = f"{self.origin}:{kind}-{key}"
        self.issues.setdefault(iid, _clean({
            "id": iid, "version": 0, "origin": self.origin, "comment": _text(reason),
            "misc": {"source": "matrix/expected.toml", "kind": kind, "category": category}}))
        self.incidents.append({"id": f"{test_id}:{kind}-{key}", "origin": self.origin,
                               "issue_id": iid, "issue_version": 0, "test_id": test_id,
                               "present": True})

    def test(self, c: dict[str, Any]) -> dict[str, Any]:
        cell = Cell.from_id(c["cell"])
        run = self.run_of(c)
        s, cat = c.get("status"), c.get("category")
        evidence, reason = _text(c.get("evidence") or ""), _text(c.get("reason") or "")
        attempts = c.get("attempts") or []
        tid = f"{self.origin}:{run.id}:{cell.id}"
        artifacts: dict[str, Any] = c.get("artifacts") or {}
        test: dict[str, Any] = {
            "id": tid, "origin": self.origin,
            "build_id": self.build(run, cell, c.get("assets") or {}),
            "path": ".".join(_NODE.sub("_", p) for p in (
                TREE, cell.hypervisor, cell.arch.name, f"path_{cell.path.lower()}",
                f"{cell.distro}-{cell.fs}")),
            "environment": self.environment(cell, c, run)}
        if s in (*PASSED, "flaky"):
            test["status"] = "PASS"
            test["comment"] = evidence
            if s == "xpass":
                test["comment"] = f"passed, though matrix/expected.toml expects a failure: " \
                    f"{evidence}"
            if s == "flaky":  # the record's own fields are the last boot's (boot_status)
                last = {"attempt": len(attempts) + 1, "status": c.get("boot_status") or "pass",
                        "category": cat}
                failed = [a for a in [*attempts, last] if a.get("status") not in PASSED]
                test["comment"] = (
                    f"flaky: {len(failed)} of {len(attempts) + 1} boots failed ("
                    + "; ".join(f"attempt {a.get('attempt')}: {a.get('status')} "
                                f"{a.get('category') or ''}".strip() for a in failed) + ")")
        elif s in ("fail", "xfail") and cat == "lab":
            test["status"] = "ERROR"
            test["comment"] = f"lab (our infrastructure) failed, the boot is untested: {evidence}"
        elif s == "xfail":
            test["status"] = "FAIL"
            test["comment"] = f"expected failure ({cat}): {reason} | observed: {evidence}"
            self.triage(tid, "expected", cat, reason)
        elif s == "fail":
            test["status"] = "FAIL"
            test["comment"] = f"{cat}: {evidence}" + (f" (known: {reason})" if reason else "")
            if reason:
                self.triage(tid, "known", cat, reason)
        elif s == "not-run":
            test["status"], test["comment"] = "SKIP", f"not run: {reason}"
        else:
            test["status"] = "MISS"
            test["comment"] = f"cloudboot status {s!r} is not one this exporter knows"
        finished, seconds = _time(c.get("finished")), c.get("seconds")
        if s != "not-run" and finished and isinstance(seconds, int | float):
            start = finished - dt.timedelta(seconds=seconds)
            run.starts.append(start)
            test["start_time"] = start.isoformat(timespec="milliseconds")
            test["duration"] = float(seconds)
        test["log_url"] = self.link(run, artifacts.get("console"))
        if test["status"] in ("FAIL", "ERROR"):
            test["log_excerpt"] = self.excerpt(run, artifacts.get("console"))
        outputs = [{"name": Path(rel).name, "url": url} for name, rel in sorted(artifacts.items())
                   if name != "console" and (url := self.link(run, rel))]
        test["output_files"] = outputs
        test["misc"] = _clean({
            "cell": cell.id, "run": run.id, "status": s, "boot_status": c.get("boot_status"),
            "category": cat, "evidence": evidence,
            "reason": reason, "phase_times": c.get("phase_times"),
            "userspace": c.get("userspace"),
            "banners": c.get("banners") if s != "not-run" else None,
            "assets": c.get("assets"), "artifacts": artifacts,
            "attempts": [_clean({**a, "log_url": self.link(run, (a.get("artifacts") or {})
                                                            .get("console"))})
                         for a in attempts]})
        test["comment"] = _text(test["comment"])
        return _clean(test)


def export(run_dir: Path, origin: str = "cloudboot", log_base: str | None = None,
           git_url: str | None = None) -> dict[str, Any]:
    """The run at `run_dir` (a run directory, a folder with results.json, or the file) as
    KCIDB data. `log_base`: the URL the run directory is published at."""
    return _Exporter(Path(run_dir), origin, log_base, git_url).export()


def write(run_dir: Path, out: Path, *, origin: str = "cloudboot", log_base: str | None = None,
          git_url: str | None = None) -> dict[str, Any]:
    """Export, validate with kcidb-io (InvalidKCIDB if not valid) and write `out` ("-":
    stdout), whole or not at all."""
    data = export(run_dir, origin, log_base, git_url)
    validate(data)
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    if str(out) == "-":
        sys.stdout.write(text)
    else:
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text)
        tmp.replace(out)
    return data


def latest_run(runs: Path = RUNS) -> Path:
    found = sorted(p.parent for p in runs.glob("*/results.json"))  # run ids sort by time
    if not found:
        raise ValueError(f"no run directory with a results.json under {runs}: name one")
    return found[-1]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m lab matrix export",
                                description="a matrix run as KCIDB v5 JSON (KernelCI)")
    p.add_argument("--kcidb", type=Path, required=True, metavar="FILE",
                   help="where to write the KCIDB JSON (- for stdout)")
    p.add_argument("--log-base", metavar="URL", help="the URL the run directory is published "
                   "at; log_url = URL/<artifact path> (without it, no log_url)")
    p.add_argument("--origin", default="cloudboot", help="the KCIDB origin (default cloudboot)")
    p.add_argument("--git-url", metavar="URL", help="the https:// URL of the cloudboot git "
                   "repository, for the checkout")
    p.add_argument("run_dir", nargs="?", type=Path,
                   help=f"the run directory (default: the newest under {RUNS})")
    args = p.parse_args(argv)
    try:
        run_dir = args.run_dir or latest_run()
        data = write(run_dir, args.kcidb, origin=args.origin, log_base=args.log_base,
                     git_url=args.git_url)
    except (ValueError, OSError) as e:
        print(f"lab matrix export: {e}", file=sys.stderr)
        return 1
    counts: dict[str, int] = {}
    for t in data.get("tests", []):
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    print(f"[lab matrix export] {args.kcidb}: KCIDB {SCHEMA} from {run_dir}: "
          f"{len(data.get('checkouts', []))} checkouts, {len(data.get('builds', []))} builds, "
          f"{len(data.get('tests', []))} tests ("
          + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")", file=sys.stderr)
    return 0
