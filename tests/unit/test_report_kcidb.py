"""KCIDB export (lab/report/kcidb.py): a run directory (docs/run-directory.md) as KernelCI's
KCIDB v5 JSON, held against kcidb-io's own schema validator."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kcidb_io
import pytest

from lab.__main__ import main as lab_main
from lab.report import kcidb

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = "20261205T101500Z-0123abc"
COMMIT = "0123abc" + "4" * 33
BASE = "https://lab.example.org/runs/" + RUN_ID
# The oracle: kcidb-io's newest v5 schema, found here independently of the exporter.
V5 = max((v for v in kcidb_io.schema.LATEST.history if v.major == 5), key=lambda v: v.minor)

PASS = "qemu-x86_64-A-debian-12-ext4"
FAIL = "qemu-x86_64-C-debian-13-xfs"
LAB = "libvirt-x86_64-A-debian-12-ext4"
XFAIL = "vz-aarch64-A-debian-12-ext4"
FLAKY = "qemu-aarch64-C-debian-12-ext4"
NOT_RUN = "vfkit-aarch64-C-debian-12-ext4"
XPASS = "qemu-x86_64-D-debian-12-ext4"
KNOWN = "qemu-riscv64-A-debian-13-ext4"
EXPECTED = {PASS: "PASS", FAIL: "FAIL", LAB: "ERROR", XFAIL: "FAIL", FLAKY: "PASS",
            NOT_RUN: "SKIP", XPASS: "PASS", KNOWN: "FAIL"}
XFAIL_REASON = "Apple VZ refuses kexec (the vz profile sets kexec_load_disabled)"


def _files(run: Path, folder: str, tail: str) -> dict[str, str]:
    """A booted cell's evidence in `folder` (relative to the run): console, events, argv."""
    d = run / folder
    d.mkdir(parents=True, exist_ok=True)
    (d / "console.log").write_text("".join(f"{i * 0.5:.3f}\tline {i}\n" for i in range(60))
                                   + f"30.000\t{tail}\n")
    (d / "events.jsonl").write_text(json.dumps({"kind": "event", "t": 8.3, "phase": "init-start",
                                                "data": {"phase": "init-start", "t": 0.0}})
                                    + "\n")
    (d / "invocation.txt").write_text("qemu-system-x86_64 -machine q35\n")
    return {"console": f"{folder}/console.log", "events": f"{folder}/events.jsonl",
            "invocation": f"{folder}/invocation.txt"}


def _cell(run: Path, cid: str, status: str, category: str | None = None, *,
          evidence: str = "guest reached its userspace", reason: str = "",
          attempts: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    booted = status != "not-run"
    return {"cell": cid, "status": status, "category": category, "evidence": evidence,
            "reason": reason, "accel": "tcg" if booted else None,
            "seconds": 30.5 if booted else None,
            "phase_times": {"init-start": 8.3, "userspace": 24.2} if booted else {},
            "userspace": ({"id": "debian", "version_id": "12", "kernel": "6.1.0-50-cloud-amd64",
                           "cmdline": "root=UUID=x ro"} if status in ("pass", "flaky") else None),
            "banners": 1 if booted else 0,
            "assets": {"boot.iso": "sha256:" + "ab" * 32} if booted else {},
            "console_log": None, "finished": "2026-12-05T10:20:00+00:00", "run": RUN_ID,
            "artifacts": _files(run, f"cells/{cid}", evidence) if booted else {},
            "attempts": attempts or [], **extra}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run = tmp_path / RUN_ID
    (run / "cells").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({
        "id": RUN_ID, "argv": ["-m", "e2e"], "started": "2026-12-05T10:15:00+00:00",
        "finished": "2026-12-05T10:40:00+00:00"}))
    first = _files(run, f"cells/{FLAKY}/attempt-1", "no userspace within 600 s")
    cells = [
        _cell(run, PASS, "pass"),
        _cell(run, FAIL, "fail", "init-disk", evidence="fatal event: no disk LABEL=root"),
        _cell(run, LAB, "fail", "lab", evidence="libvirtd did not start"),
        _cell(run, XFAIL, "xfail", "handoff", evidence="fatal event: kexec_load refused: EPERM",
              reason=XFAIL_REASON),
        _cell(run, FLAKY, "flaky", boot_status="pass", attempts=[
            {"attempt": 1, "status": "fail", "category": "timeout", "seconds": 600.0,
             "evidence": "no userspace within 600 s", "artifacts": first}]),
        _cell(run, NOT_RUN, "not-run", reason="needs macOS and Apple's Virtualization.framework"),
        _cell(run, XPASS, "xpass"),
        _cell(run, KNOWN, "fail", "target-kernel", evidence="Kernel panic - not syncing",
              reason="QEMU 10.0 riscv64 TCG bug (known)"),
    ]
    (run / "results.json").write_text(json.dumps({
        "run": {"id": RUN_ID, "dir": "."},
        "provenance": {"commit": COMMIT, "date": "2026-12-05T10:40:00Z", "dirty": False,
                       "accel": "tcg", "host": {"machine": "x86_64"},
                       "tools": {"qemu": {"qemu-system-x86_64": "7.2.22 (Debian)",
                                          "qemu-system-aarch64": "7.2.22 (Debian)"},
                                 "firmware": {"ovmf": "2022.11-6"}, "libvirt": "9.0.0"},
                       "assets": {"x86_64:initramfs:i.cpio.gz": "sha256:" + "cd" * 32}},
        "cells": cells, "baselines": []}))
    return run


def _by_cell(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["misc"]["cell"]: t for t in data["tests"]}


def _check_formats(data: dict[str, Any]) -> None:
    """URLs absolute and times RFC 3339 with a zone, whether or not jsonschema has its format
    checkers installed (they are optional: without them the schema's `format` passes all)."""
    def urls(o: Any) -> list[str]:
        if isinstance(o, dict):
            return [v for k, v in o.items() if k in ("log_url", "url") and isinstance(v, str)
                    ] + [u for k, v in o.items() if k != "misc" for u in urls(v)]
        return [u for v in o for u in urls(v)] if isinstance(o, list) else []

    for url in urls(data):
        parts = urlsplit(url)
        assert parts.scheme == "https" and parts.netloc, url
    for kind in ("checkouts", "tests"):
        for o in data.get(kind, []):
            for key in ("start_time", "origin_tests_finish_time"):
                if key in o:
                    assert dt.datetime.fromisoformat(o[key]).tzinfo is not None, o


def test_the_export_is_valid_kcidb_of_the_newest_v5(run: Path) -> None:
    data = kcidb.export(run, log_base=BASE)
    assert data["version"] == {"major": 5, "minor": V5.minor}
    assert V5.minor >= 3, "kcidb-io 141 ships v5.3: an older one cannot check what we write"
    V5.validate(data)  # raises when the export is not valid KCIDB
    kcidb.validate(data)
    _check_formats(data)
    assert len(data["tests"]) == len(EXPECTED)


@pytest.mark.parametrize("breakage", ["test without origin", "test status", "build id origin",
                                      "test path", "null field", "unknown field"])
def test_the_same_validator_rejects_a_broken_copy(run: Path, breakage: str) -> None:
    bad = copy.deepcopy(kcidb.export(run, log_base=BASE))
    test = bad["tests"][0]
    if breakage == "test without origin":
        del test["origin"]
    elif breakage == "test status":
        test["status"] = "pass"
    elif breakage == "build id origin":
        bad["builds"][0]["id"] = "no origin prefix"
    elif breakage == "test path":
        test["path"] = "cloudboot.qemu x86_64"
    elif breakage == "null field":
        test["duration"] = None
    else:
        test["hypervisor"] = "qemu"
    with pytest.raises(jsonschema.ValidationError):
        V5.validate(bad)
    with pytest.raises(kcidb.InvalidKCIDB):
        kcidb.validate(bad)


def test_ids_are_unique_and_every_link_names_an_object(run: Path) -> None:
    data = kcidb.export(run, log_base=BASE)
    ids = {kind: [o["id"] for o in data.get(kind, [])]
           for kind in ("checkouts", "builds", "tests", "issues", "incidents")}
    for kind, values in ids.items():
        assert len(values) == len(set(values)), kind
    assert all(t["build_id"] in ids["builds"] for t in data["tests"])
    assert all(b["checkout_id"] in ids["checkouts"] for b in data["builds"])
    assert all(i["test_id"] in ids["tests"] and i["issue_id"] in ids["issues"]
               for i in data["incidents"])
    assert ids["checkouts"] == [f"cloudboot:{RUN_ID}"]
    assert f"cloudboot:{RUN_ID}:{PASS}" in ids["tests"]


def test_status_mapping(run: Path) -> None:
    tests = _by_cell(kcidb.export(run))
    assert {cid: t["status"] for cid, t in tests.items()} == EXPECTED
    assert tests[LAB]["comment"].startswith("lab (our infrastructure)")
    assert XFAIL_REASON in tests[XFAIL]["comment"] and "EPERM" in tests[XFAIL]["comment"]
    assert tests[NOT_RUN]["comment"] == "not run: needs macOS and Apple's Virtualization.framework"
    assert "expects a failure" in tests[XPASS]["comment"]
    assert tests[FLAKY]["comment"] == "flaky: 1 of 2 boots failed (attempt 1: fail timeout)"
    assert [a["status"] for a in tests[FLAKY]["misc"]["attempts"]] == ["fail"]
    assert tests[FLAKY]["misc"]["boot_status"] == "pass"


def test_expected_and_known_failures_are_issues_with_incidents(run: Path) -> None:
    data = kcidb.export(run)
    issues = {i["id"]: i for i in data["issues"]}
    linked = {i["test_id"].rsplit(":", 1)[-1]: issues[i["issue_id"]] for i in data["incidents"]}
    assert set(linked) == {XFAIL, KNOWN}
    assert linked[XFAIL]["comment"] == XFAIL_REASON
    assert linked[XFAIL]["id"].startswith("cloudboot:expected-")
    assert linked[KNOWN]["id"].startswith("cloudboot:known-")
    again = kcidb.export(run)  # an issue is the expectation's, the same in every run
    assert [i["id"] for i in again["issues"]] == list(issues)


def test_paths_name_lane_arch_path_and_target(run: Path) -> None:
    tests = _by_cell(kcidb.export(run))
    assert tests[PASS]["path"] == "cloudboot.qemu.x86_64.path_a.debian-12-ext4"
    assert tests[XFAIL]["path"] == "cloudboot.vz.aarch64.path_a.debian-12-ext4"
    paths = [t["path"] for t in tests.values()]
    assert len(set(paths)) == len(paths)
    assert all(re.fullmatch(V5.test_path_re.pattern, p) for p in paths)


def test_builds_per_arch_without_invented_fields(run: Path) -> None:
    data = kcidb.export(run)
    builds = {b["id"]: b for b in data["builds"]}
    assert set(builds) == {f"cloudboot:{RUN_ID}:{a}" for a in ("x86_64", "aarch64", "riscv64")}
    b = builds[f"cloudboot:{RUN_ID}:aarch64"]
    assert b["architecture"] == "arm64" and b["status"] == "PASS"
    assert b["checkout_id"] == f"cloudboot:{RUN_ID}"
    for b in builds.values():
        assert not {"config_name", "config_url", "compiler", "command"} & set(b)
    x86 = builds[f"cloudboot:{RUN_ID}:x86_64"]
    assert x86["misc"]["assets"] == {"x86_64:initramfs:i.cpio.gz": "sha256:" + "cd" * 32}
    checkout = data["checkouts"][0]
    assert checkout["git_commit_hash"] == COMMIT and checkout["origin"] == "cloudboot"
    assert checkout["start_time"] == "2026-12-05T10:15:00+00:00"
    assert checkout["origin_tests_finish_time"] == "2026-12-05T10:40:00+00:00"


def test_times_misc_and_environment(run: Path) -> None:
    tests = _by_cell(kcidb.export(run))
    t = tests[PASS]
    assert t["duration"] == 30.5
    assert dt.datetime.fromisoformat(t["start_time"]) + dt.timedelta(seconds=30.5) == \
        dt.datetime.fromisoformat("2026-12-05T10:20:00+00:00")
    assert "start_time" not in tests[NOT_RUN] and "duration" not in tests[NOT_RUN]
    assert t["misc"]["phase_times"] == {"init-start": 8.3, "userspace": 24.2}
    assert t["misc"]["userspace"]["id"] == "debian"
    assert tests[FAIL]["misc"]["category"] == "init-disk"
    assert tests[LAB]["misc"]["category"] == "lab"
    env = t["environment"]["misc"]
    assert env == {"platform": "qemu-x86_64", "hypervisor": "qemu", "arch": "x86_64",
                   "accelerator": "tcg", "qemu": "7.2.22 (Debian)",
                   "firmware": {"ovmf": "2022.11-6"}, "host": {"machine": "x86_64"}}
    assert tests[LAB]["environment"]["misc"]["libvirt"] == "9.0.0"
    assert tests[XFAIL]["environment"]["misc"]["profile"] == "vz"
    assert tests[NOT_RUN]["environment"]["misc"] == {
        "platform": "vfkit-aarch64", "hypervisor": "vfkit", "arch": "aarch64"}


def test_log_url_with_a_base(run: Path) -> None:
    data = kcidb.export(run, log_base=BASE + "/")
    tests = _by_cell(data)
    assert tests[PASS]["log_url"] == f"{BASE}/cells/{PASS}/console.log"
    assert {f["name"]: f["url"] for f in tests[PASS]["output_files"]} == {
        "events.jsonl": f"{BASE}/cells/{PASS}/events.jsonl",
        "invocation.txt": f"{BASE}/cells/{PASS}/invocation.txt"}
    assert tests[FLAKY]["misc"]["attempts"][0]["log_url"] == \
        f"{BASE}/cells/{FLAKY}/attempt-1/console.log"
    assert "log_url" not in tests[NOT_RUN]
    assert tests[FAIL]["log_excerpt"].endswith("30.000\tfatal event: no disk LABEL=root\n")
    assert "log_excerpt" not in tests[PASS]
    (run / "cells" / XPASS / "console.log").unlink()  # no dead links
    assert "log_url" not in _by_cell(kcidb.export(run, log_base=BASE))[XPASS]


def test_without_a_base_there_is_no_log_url(run: Path) -> None:
    data = kcidb.export(run)
    for t in data["tests"]:
        assert "log_url" not in t and "output_files" not in t
    assert _by_cell(data)[PASS]["misc"]["artifacts"]["console"] == f"cells/{PASS}/console.log"
    V5.validate(data)


@pytest.mark.parametrize("base", ["runs/" + RUN_ID, "/srv/runs", "lab.example.org/runs"])
def test_a_base_that_is_not_an_absolute_url_is_refused(run: Path, base: str) -> None:
    with pytest.raises(ValueError, match="not an absolute URL"):
        kcidb.export(run, log_base=base)


def test_origin_and_git_url_are_kcidb_shaped(run: Path) -> None:
    with pytest.raises(ValueError, match=r"\[a-z0-9_\]"):
        kcidb.export(run, origin="Cloud-Boot")
    with pytest.raises(ValueError, match="https://"):
        kcidb.export(run, git_url="git@example.org:cloudboot.git")
    data = kcidb.export(run, origin="my_lab", git_url="https://git.example.org/cloudboot.git")
    V5.validate(data)
    assert data["checkouts"][0]["git_repository_url"] == "https://git.example.org/cloudboot.git"
    assert all(t["id"].startswith("my_lab:") and t["origin"] == "my_lab" for t in data["tests"])


def test_cells_of_an_earlier_run_are_its_own_checkout_without_links(run: Path) -> None:
    doc = json.loads((run / "results.json").read_text())
    old = "qemu-armv7-A-debian-12-ext4"
    doc["cells"].append({"cell": old, "status": "pass", "seconds": 60.0,
                         "finished": "2026-11-22T13:20:06+00:00",
                         "from_run": {"commit": "2eef" + "c" * 36,
                                      "date": "2026-11-22T13:57:21Z"},
                         "artifacts": {"console": f"cells/{old}/console.log"},
                         "assets": {"boot.iso": "sha256:" + "ef" * 32}})
    (run / "results.json").write_text(json.dumps(doc))
    data = kcidb.export(run, log_base=BASE)
    V5.validate(data)
    earlier = "cloudboot:20261122T135721Z-2eefccc"
    assert {c["id"] for c in data["checkouts"]} == {f"cloudboot:{RUN_ID}", earlier}
    t = _by_cell(data)[old]
    assert t["id"] == f"{earlier}:{old}" and t["build_id"] == f"{earlier}:armv7"
    assert "log_url" not in t  # its files are in that run's directory, not this one
    build = next(b for b in data["builds"] if b["id"] == f"{earlier}:armv7")
    assert build["architecture"] == "arm" and build["checkout_id"] == earlier


def test_the_committed_matrix_results_export_and_validate(tmp_path: Path) -> None:
    shutil.copy(ROOT / "matrix" / "results.json", tmp_path / "results.json")
    doc = json.loads((tmp_path / "results.json").read_text())
    data = kcidb.export(tmp_path, log_base=BASE)
    V5.validate(data)
    _check_formats(data)
    assert len(data["tests"]) == len(doc["cells"])
    assert all(t["log_url"].startswith(BASE + "/") for t in data["tests"] if "log_url" in t)
    commits = {c.get("git_commit_hash") for c in data["checkouts"]}
    assert doc["provenance"]["commit"] in commits
    assert {c["from_run"]["commit"] for c in doc["cells"] if c.get("from_run")} <= commits
    statuses = {t["status"] for t in data["tests"]}
    assert statuses <= {"PASS", "FAIL", "ERROR", "SKIP"}


def test_the_command_writes_a_valid_file(run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "kcidb.json"
    assert lab_main(["matrix", "export", "--kcidb", str(out), "--log-base", BASE, str(run)]) == 0
    data = json.loads(out.read_text())
    V5.validate(data)
    assert _by_cell(data)[PASS]["log_url"] == f"{BASE}/cells/{PASS}/console.log"
    assert f"{len(EXPECTED)} tests" in capsys.readouterr().err
    assert lab_main(["matrix", "export", "--kcidb", str(out), "--log-base", "runs/x",
                     str(run)]) == 1
    assert "not an absolute URL" in capsys.readouterr().err
    assert json.loads(out.read_text()) == data  # a refused export leaves the file alone
