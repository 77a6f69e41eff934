"""The run's page: `<run>/matrix.html` from `<run>/results.json` (docs/run-directory.md).

One self-contained file: inline CSS and JS, the data as JSON in a `<script
type="application/json">` block, nothing fetched (its Content-Security-Policy is `default-src
'none'`; only the page's own script, by its hash, may run). The grid is MATRIX.md's
(lab/matrix.py `render`: a table per lane, distro × fs rows by Path A–D, the same verdict texts
and note numbers), plus a lane's extra cells (e.g. `ext4-oci-plan`) below its rows. A click
on a cell opens its verdict, phase times, attempts, guest events and console: Chromium refuses
fetch() of file:// siblings, so each console's last CONSOLE_TAIL lines and the events are
embedded, and every artifact is a plain relative link (a file not in the directory is named,
not linked). Every text reaches the page through html.escape or the DOM's text nodes.

`python -m lab matrix html RUN_DIR` (or `python -m lab.report.html RUN_DIR`) writes it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import re
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from lab.cells import ALL_DISTROS, FILESYSTEMS, PATHS, TESTING_DISTROS, Cell
from lab.matrix import LANES, OVERHEAD_COLUMNS, OVERHEAD_INTRO, cell_text, overhead_rows
from lab.report.page_assets import CSS, JS

CONSOLE_TAIL = 300  # console lines embedded per cell (an earlier attempt's: ATTEMPT_TAIL)
ATTEMPT_TAIL = 100
LINE_MAX = 1000  # characters kept of one console line
EVENTS_MAX = 2000
STATUSES = ("pass", "fail", "xfail", "xpass", "flaky", "not-run")
RUN_FILES = ("results.json", "run.json", "junit.xml", "kcidb.json")
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f]")

def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _clean(line: str) -> str:
    line = _CONTROL.sub("", line.rstrip("\r\n"))
    return line if len(line) <= LINE_MAX else line[:LINE_MAX] + " …"


def _inside(run_dir: Path, rel: object) -> Path | None:
    """`rel` as a file of the run directory, or None: absolute paths, `..` and files that
    are not there give no link (a run directory is opened anywhere, so links stay inside)."""
    if not isinstance(rel, str) or not rel:
        return None
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or "\\" in rel:
        return None
    path = run_dir.joinpath(*p.parts)
    return path if path.is_file() else None


def _link(run_dir: Path, name: str, rel: object) -> dict[str, Any]:
    if _inside(run_dir, rel) is None:
        return {"name": name, "href": None, "path": str(rel)}
    return {"name": name, "href": quote(str(rel), safe="/"), "path": str(rel)}


def console_tail(path: Path, n: int = CONSOLE_TAIL) -> tuple[list[str], int]:
    """The last `n` lines of a console.log ("<seconds>\\t<text>" each) as display lines, with
    terminal escapes and control characters dropped, and how many lines the file has."""
    tail: deque[str] = deque(maxlen=n)
    total = 0
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        for raw in f:
            total += 1
            t, sep, text = raw.partition("\t")
            try:
                line = f"{float(t):8.2f}  {text}" if sep else raw
            except ValueError:
                line = raw
            tail.append(_clean(line))
    return list(tail), total


def read_events(path: Path, limit: int = EVENTS_MAX) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in filter(str.strip, f):
            if len(out) >= limit:
                break
            try:
                ev = json.loads(line)
                out.append(ev if isinstance(ev, dict) else {"kind": "unparsed", "raw": line})
            except ValueError:
                out.append({"kind": "unparsed", "raw": _clean(line)})
    return out


def _console(run_dir: Path, artifacts: dict[str, Any], n: int) -> dict[str, Any] | None:
    path = _inside(run_dir, artifacts.get("console"))
    if path is None:
        return None
    lines, total = console_tail(path, n)
    return {"lines": lines, "total": total, **_link(run_dir, "console", artifacts["console"])}


def _links(run_dir: Path, artifacts: dict[str, Any]) -> list[dict[str, Any]]:
    return [_link(run_dir, name, rel) for name, rel in sorted(artifacts.items())]


def cell_record(run_dir: Path, r: dict[str, Any], text: str) -> dict[str, Any]:
    """What the page's panel shows of one cell (results.json's record, its files read)."""
    artifacts = r.get("artifacts") or {}
    links = _links(run_dir, artifacts)
    own = f"cells/{r['cell']}/result.json"
    if "result" not in artifacts and _inside(run_dir, own):
        links.append(_link(run_dir, "result.json", own))
    events_path = _inside(run_dir, artifacts.get("events"))
    attempts = []
    for a in r.get("attempts") or []:
        arts = a.get("artifacts") or {}
        own_console = arts.get("console") == artifacts.get("console")
        attempts.append({"attempt": a.get("attempt"), "status": a.get("status"),
                         "category": a.get("category"), "seconds": a.get("seconds"),
                         "evidence": a.get("evidence"), "links": _links(run_dir, arts),
                         "console": None if own_console else _console(run_dir, arts,
                                                                       ATTEMPT_TAIL)})
    if r.get("boot_status"):  # the record's own fields are the last boot's
        attempts.append({"attempt": len(attempts) + 1, "status": r["boot_status"],
                         "category": r.get("category"), "seconds": r.get("seconds"),
                         "evidence": r.get("evidence"), "links": links, "console": None})
    keys = ("status", "category", "evidence", "reason", "accel", "seconds", "phase_times",
            "userspace", "run", "finished", "from_run", "banners")
    return {**{k: r.get(k) for k in keys}, "text": text, "links": links, "attempts": attempts,
            "console": _console(run_dir, artifacts, CONSOLE_TAIL),
            "events": read_events(events_path) if events_path else None}


@dataclass
class Grid:
    lanes: list[dict[str, Any]]  # {"hv", "arch", "rows": [(distro, fs, [cell or None per path])]}
    idle: dict[str, list[str]]  # "hv · arch" → why none of its cells ran
    overhead: list[list[str]]  # lab.matrix.overhead_rows
    texts: dict[str, str]  # cell id → its MATRIX.md verdict text


def grid(doc: dict[str, Any], notes: dict[str, int]) -> Grid:
    """The lanes' tables as lab.matrix.render lays out MATRIX.md, in its order (so the notes
    get MATRIX.md's numbers), then the overhead rows, then each lane's extra rows (cells
    outside distro × fs, e.g. `ext4-oci-plan`, which MATRIX.md leaves out)."""
    cells = doc["cells"]
    lanes: list[dict[str, Any]] = []
    idle: dict[str, list[str]] = {}
    extras: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for hv, arch in LANES:
        lane = {c["cell"]: c for c in cells if c["cell"].startswith(f"{hv}-{arch}-")}
        if not lane:  # a lane newer than these results
            continue
        if all(c["status"] == "not-run" for c in lane.values()):
            idle[f"{hv} · {arch}"] = sorted({c.get("reason", "") for c in lane.values()})
            continue
        rows = []
        for distro in ALL_DISTROS:
            if distro in TESTING_DISTROS and all(c["status"] == "not-run" for c in lane.values()
                                                 if f"-{distro}-" in c["cell"]):
                continue
            for fs in FILESYSTEMS:
                rows.append((distro, fs, [lane.get(f"{hv}-{arch}-{p}-{distro}-{fs}")
                                          for p in PATHS]))
        lanes.append({"hv": hv, "arch": arch, "rows": rows})
        grid_ids = {f"{hv}-{arch}-{p}-{d}-{fs}" for p in PATHS for d in ALL_DISTROS
                    for fs in FILESYSTEMS}
        extras.append((lanes[-1], {i: c for i, c in lane.items() if i not in grid_ids}))
    texts: dict[str, str] = {}

    def name(row: list[dict[str, Any] | None]) -> None:
        for c in row:
            if c is not None:
                texts[c["cell"]] = cell_text(c, notes)

    for row in (row for entry in lanes for *_, row in entry["rows"]):
        name(row)
    overhead = overhead_rows(doc, notes)
    for entry, rest in extras:
        hv, arch = entry["hv"], entry["arch"]
        for distro, fs in sorted({(x.distro, x.fs) for x in map(Cell.from_id, rest)}):
            row = [rest.get(f"{hv}-{arch}-{p}-{distro}-{fs}") for p in PATHS]
            name(row)
            entry["rows"].append((distro, fs, row))
    return Grid(lanes, idle, overhead, texts)


def _lane_attrs(lane: str) -> str:
    """data-lane/data-arch of "hv · arch" (or "hv-arch"), which the page's filters test."""
    hv, _, arch = lane.replace(" · ", "-", 1).partition("-")
    return f'data-lane="{_e(hv + "-" + arch)}" data-arch="{_e(arch)}"'


def _grid_html(g: Grid) -> list[str]:
    out = []
    for lane in g.lanes:
        hv, arch = lane["hv"], lane["arch"]
        out += [f'<section {_lane_attrs(hv + "-" + arch)}><h2>{_e(hv)} · {_e(arch)}</h2>',
                "<table><tr><th>distro</th><th>fs</th>"
                + "".join(f'<th data-path="{p}">Path {p}</th>' for p in PATHS) + "</tr>"]
        for distro, fs, row in lane["rows"]:
            booted = any(c is not None and c["status"] != "not-run" for c in row)
            tds = []
            for p, c in zip(PATHS, row, strict=True):
                if c is None:
                    tds.append(f'<td data-path="{p}" class="none">—</td>')
                    continue
                cid = _e(c["cell"])
                tds.append(f'<td data-path="{p}" class="cell st-{_e(c["status"])}"><button '
                           f'type="button" data-cell="{cid}" title="{cid}">'
                           f'{_e(g.texts[c["cell"]])}</button></td>')
            out.append(f'<tr data-booted="{int(booted)}"><td>{_e(distro)}</td><td>{_e(fs)}</td>'
                       + "".join(tds) + "</tr>")
        out.append("</table></section>")
    return out


def _dl(rows: list[tuple[str, object]]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows
                            if v not in (None, "")) + "</dl>"


def _provenance_html(doc: dict[str, Any], run_json: dict[str, Any]) -> list[str]:
    prov = doc.get("provenance") or {}
    host = prov.get("host") or {}
    rows: list[tuple[str, object]] = [
        ("run", (doc.get("run") or {}).get("id")),
        ("commit", str(prov.get("commit", "unknown")) + (" (dirty)" if prov.get("dirty") else "")),
        ("date", prov.get("date")), ("accelerator", prov.get("accel", "unknown")),
        ("host", f"{host.get('machine', '?')}, Linux {host.get('kernel', '?')}, "
                 f"Python {host.get('python', '?')}")]
    names = {"qemu": "QEMU", "firmware_private": "firmware (private)"}
    tools = prov.get("tools") or {}
    for key in sorted(tools) if isinstance(tools, dict) else []:
        v = tools[key]
        rows.append((names.get(key, key), ", ".join(f"{k} {x}" for k, x in sorted(v.items()))
                     if isinstance(v, dict) else v))
    for key, v in sorted(run_json.items()):
        if key not in ("id", "commit"):
            rows.append((f"run {key}", v if isinstance(v, str) else json.dumps(v)))
    assets = prov.get("assets") or {}
    out = ['<section id="provenance"><h2>Provenance</h2>', _dl(rows)]
    if assets:
        out.append(f"<details><summary>assets ({len(assets)})</summary><table>"
                   + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>"
                             for k, v in sorted(assets.items())) + "</table></details>")
    return out + ["</section>"]


def _overhead_html(rows: list[list[str]]) -> list[str]:
    if not rows:
        return []
    return ['<section id="overhead"><h2>Overhead against a direct firmware boot</h2>',
            f"<p>{_e(OVERHEAD_INTRO)}</p><table><tr>"
            + "".join(f"<th>{_e(c)}</th>" for c in OVERHEAD_COLUMNS) + "</tr>",
            *(f"<tr {_lane_attrs(r[0])}>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>"
              for r in rows), "</table></section>"]


def _filters_html(lanes: list[str]) -> str:
    def boxes(kind: str, values: list[str], label: str = "{}") -> str:
        return "".join(f'<label><input type="checkbox" data-filter="{kind}" value="{_e(v)}" '
                       f'checked> {_e(label.format(v.replace("-", " · ", 1)))}</label>'
                       for v in values)
    arches = sorted({lane.partition("-")[2] for lane in lanes})
    return ('<form id="filters"><fieldset><legend>lane</legend>' + boxes("lane", lanes)
            + "</fieldset><fieldset><legend>arch</legend>" + boxes("arch", arches)
            + "</fieldset><fieldset><legend>path</legend>"
            + boxes("path", list(PATHS), "Path {}") + "</fieldset><fieldset><legend>rows"
            '</legend><label><input type="checkbox" id="booted-only"> only rows with a boot'
            "</label></fieldset></form>")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def render_page(doc: dict[str, Any], run_dir: Path) -> str:
    """matrix.html's text for results.json's `doc`, reading the cells' files under run_dir."""
    notes: dict[str, int] = {}
    g = grid(doc, notes)
    by_id = {c["cell"]: c for c in doc["cells"]}
    data = {"run": doc.get("run"),
            "cells": {cid: cell_record(run_dir, by_id[cid], text) for cid, text in g.texts.items()}}
    blob = (json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
            .replace(">", "\\u003e").replace("&", "\\u0026"))
    try:
        run_json = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        run_json = {}
    run_id = (doc.get("run") or {}).get("id") or run_json.get("id") or run_dir.name
    lanes = [f"{x['hv']}-{x['arch']}" for x in g.lanes]
    lanes += [n.replace(" · ", "-", 1) for n in g.idle]
    lanes += [r[0].replace(" · ", "-", 1) for r in g.overhead]
    counts = {s: 0 for s in STATUSES}
    for c in doc["cells"]:
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    summary = ", ".join(f'<span class="st-{_e(s)}">{n} {_e(s)}</span>' for s, n in counts.items())
    files = [f'<a href="{quote(f)}">{_e(f)}</a>' for f in RUN_FILES if (run_dir / f).is_file()]
    csp = (f"default-src 'none'; style-src {_sha256(CSS)}; script-src {_sha256(JS)}; "
           "img-src 'none'; form-action 'none'")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>cloudboot matrix · {_e(run_id)}</title><style>{CSS}</style></head><body>",
        f"<h1>cloudboot matrix · run {_e(run_id)}</h1>",
        "<p>A cell is one boot: hypervisor × arch × path × distro × root filesystem. ✓ shows "
        "the time from firmware reset to the target's own userspace marker; ✗ names the "
        "failure category; — was not run (reason in the notes). Click a cell for its console, "
        "events and files.</p>",
        f'<p class="legend">{len(doc["cells"])} cells: {summary}</p>',
        f"<p>Files: {' · '.join(files)}</p>" if files else "",
        _filters_html(list(dict.fromkeys(lanes))),
        *_grid_html(g), *_overhead_html(g.overhead)]
    if notes:
        parts.append('<section id="notes"><h2>Notes</h2><ol>' + "".join(
            f'<li value="{n}">{_e(text)}</li>' for text, n in sorted(notes.items(),
                                                                   key=lambda x: x[1]))
            + "</ol></section>")
    if g.idle:
        parts.append('<section id="idle"><h2>Lanes not run</h2><ul>' + "".join(
            f"<li {_lane_attrs(name)}><b>{_e(name)}</b>: {_e('; '.join(reasons))}</li>"
            for name, reasons in g.idle.items()) + "</ul></section>")
    parts += [*_provenance_html(doc, run_json),
              '<aside id="panel" hidden><button type="button" id="panel-close">close ✕'
              '</button><div id="panel-body"></div></aside>',
              f'<script type="application/json" id="matrix-data">{blob}</script>',
              f"<script>{JS}</script>", "</body></html>", ""]
    return "\n".join(parts)


def write_html(run_dir: Path) -> Path:
    """Write `<run_dir>/matrix.html` from `<run_dir>/results.json`; returns its path."""
    run_dir = Path(run_dir)
    doc = json.loads((run_dir / "results.json").read_text())
    out = run_dir / "matrix.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(render_page(doc, run_dir), encoding="utf-8", errors="replace")
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab matrix html",
                                description="write RUN_DIR/matrix.html from its results.json")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    args = p.parse_args(argv)
    try:
        out = write_html(args.run_dir)
    except (OSError, ValueError, KeyError) as e:
        print(f"lab matrix html: {args.run_dir}: {e}", file=sys.stderr)
        return 1
    print(f"lab matrix html: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
