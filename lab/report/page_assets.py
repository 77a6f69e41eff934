"""The page's own style and script, inlined into matrix.html (lab/report/html.py) and allowed
by its Content-Security-Policy by their hashes: no network, no file beside the page needed to
render it."""

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5em 2em; color: #1b1f24; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin: 1.2em 0 .4em; }
table { border-collapse: collapse; margin: .3em 0; } th { background: #f0f2f5; }
th, td { border: 1px solid #c9ced6; padding: 2px 8px; text-align: left; vertical-align: top; }
td.cell { padding: 0; } td.cell button { all: unset; display: block; padding: 2px 8px;
  cursor: pointer; min-width: 6em; } td.cell button:focus { outline: 2px solid #0969da; }
.st-pass { background: #c9f0cf; } .st-fail { background: #f8c4c4; }
.st-xfail { background: #f3dfc1; } .st-xpass { background: #c7dbf7; }
.st-flaky { background: #f7ec95; } .st-not-run { background: #eef0f2; color: #6a737d; }
td.selected { box-shadow: inset 0 0 0 3px #0969da; }
.legend span { display: inline-block; padding: 0 8px; margin-right: 4px; border-radius: 3px; }
#filters fieldset { display: inline-block; margin: 0 .6em .4em 0; border: 1px solid #c9ced6; }
#filters label { margin-right: .6em; white-space: nowrap; }
#panel { position: fixed; top: 0; right: 0; bottom: 0; width: min(56em, 60vw); overflow: auto;
  background: #fff; border-left: 2px solid #8c959f; padding: 0 1em 1em; }
#panel h3 { margin: 1em 0 .3em; font-size: 1em; } #panel-close { float: right; margin: 1em 0; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 1em; margin: 0; }
dt { font-weight: 600; } dd { margin: 0; white-space: pre-wrap; word-break: break-word; }
pre.console { background: #0d1117; color: #e6edf3; padding: .6em; overflow: auto;
  max-height: 60vh; font-size: 12px; white-space: pre; }
td.json { font-family: monospace; font-size: 12px; word-break: break-all; }
.missing { color: #6a737d; } ul.links { margin: .2em 0; padding-left: 1.2em; }
[hidden] { display: none !important; }
"""

JS = """
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("matrix-data").textContent);
  const panel = document.getElementById("panel"), body = document.getElementById("panel-body");
  const $$ = sel => [...document.querySelectorAll(sel)];
  let current = null;
  function el(tag, cls, ...kids) {  // text goes in as text nodes, never as markup
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const k of kids) if (k != null) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  function link(l) {
    if (!l.href) return el("span", "missing", `${l.name}: ${l.path} (not in this run directory)`);
    const a = el("a", null, l.name);
    a.setAttribute("href", l.href);
    return a;
  }
  const links = list => el("ul", "links", ...list.map(l => el("li", null, link(l))));
  const section = (title, ...kids) => el("section", null, el("h3", null, title), ...kids);
  function kv(rows) {
    const dl = el("dl");
    for (const [k, v] of rows) {
      if (v == null || v === "") continue;
      dl.append(el("dt", null, k), el("dd", null, typeof v === "object" ? JSON.stringify(v) : v));
    }
    return dl;
  }
  function table(head, rows) {
    const t = el("table", null, el("tr", null, ...head.map(h => el("th", null, h))));
    const td = c => c instanceof Node ? c : el("td", null, c);
    for (const r of rows) t.append(el("tr", null, ...r.map(td)));
    return t;
  }
  function consoleBlock(title, c) {
    const n = c.total > c.lines.length ? `last ${c.lines.length} of ${c.total}` : `${c.total}`;
    return section(title, el("p", null, `${n} lines · `, link({...c, name: "full console"})),
      el("pre", "console", c.lines.join("\\n")));
  }
  function show(id) {
    const c = data.cells[id];
    if (!c) return;
    current = id;
    $$("td.selected").forEach(td => td.classList.remove("selected"));
    const btn = document.querySelector(`button[data-cell="${CSS.escape(id)}"]`);
    if (btn) btn.parentElement.classList.add("selected");
    const kids = [el("h2", null, id), kv([["verdict", c.text], ["status", c.status],
      ["category", c.category], ["evidence", c.evidence], ["reason", c.reason],
      ["accelerator", c.accel], ["seconds", c.seconds], ["run", c.run], ["finished", c.finished],
      ["kept from", c.from_run], ["userspace", c.userspace], ["banners", c.banners]])];
    const phases = Object.entries(c.phase_times || {}).sort((a, b) => a[1] - b[1]);
    if (phases.length) kids.push(section("phase times", table(["phase", "s after reset"], phases)));
    if (c.attempts.length) {
      kids.push(section("attempts", table(["#", "status", "category", "s", "evidence", "files"],
        c.attempts.map(a => [a.attempt, a.status, a.category || "", a.seconds ?? "",
          a.evidence || "", el("td", null, links(a.links))]))));
    }
    if (c.links.length) kids.push(section("files", links(c.links)));
    if (c.events) {
      const rows = c.events.map(e => [e.t ?? "", e.kind || "", e.phase || "",
        el("td", "json", JSON.stringify(e.data ?? e.raw ?? ""))]);
      kids.push(section(`guest events (${rows.length})`, table(["t", "kind", "phase", "data"],
        rows)));
    }
    if (c.console) kids.push(consoleBlock("console", c.console));
    for (const a of c.attempts.filter(a => a.console)) {
      kids.push(consoleBlock(`console of attempt ${a.attempt} (${a.status})`, a.console));
    }
    body.replaceChildren(...kids);
    panel.hidden = false;
    $$("pre.console").forEach(pre => { pre.scrollTop = pre.scrollHeight; });  // the end first
    panel.scrollTop = 0;
    if (decodeURIComponent(location.hash.slice(1)) !== id) location.hash = encodeURIComponent(id);
  }
  function close() {
    panel.hidden = true;
    current = null;
    $$("td.selected").forEach(td => td.classList.remove("selected"));
  }
  document.addEventListener("click", ev => {
    const b = ev.target.closest("button[data-cell]");
    if (b) show(b.dataset.cell);
  });
  document.getElementById("panel-close").addEventListener("click", close);
  document.addEventListener("keydown", ev => { if (ev.key === "Escape") close(); });
  function fromHash() {
    const id = decodeURIComponent(location.hash.slice(1));
    if (id && id !== current) show(id);
  }
  window.addEventListener("hashchange", fromHash);
  const checked = kind => new Set($$(`input[data-filter="${kind}"]`).filter(i => i.checked)
    .map(i => i.value));
  function apply() {
    const lanes = checked("lane"), arches = checked("arch"), paths = checked("path");
    const bootedOnly = document.getElementById("booted-only").checked;
    const shown = s => lanes.has(s.dataset.lane) && arches.has(s.dataset.arch);
    $$("[data-lane]").forEach(s => { s.hidden = !shown(s); });
    $$("[data-path]").forEach(c => { c.hidden = !paths.has(c.dataset.path); });
    $$("tr[data-booted]").forEach(r => { r.hidden = bootedOnly && r.dataset.booted === "0"; });
  }
  document.getElementById("filters").addEventListener("change", apply);
  apply();
  fromHash();
})();
"""
