"""The run as JUnit XML (`junit.xml` in the run directory), which GitHub, GitLab and Jenkins
show natively: one testcase per cell that ran, named by the cell's id, classname
`cloudboot.<hypervisor>.<arch>.path_<p>`, with lane, arch, path, target and fs as properties;
a failure's message starts with its category; system-out holds the console's tail and the
path of the whole console in the run directory. Expected failures (`xfail`) and cells not
run are skipped, each with its reason; a flaky cell passes, its attempts listed in system-out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from junitparser import Failure, JUnitXml, Properties, Property, Skipped, TestCase, TestSuite

from lab.cells import Cell

TAIL_LINES = 80
# What XML 1.0 cannot carry (a console holds any byte): replaced, so the file always parses.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _tail(run_dir: Path, record: dict[str, Any]) -> str:
    rel = record.get("artifacts", {}).get("console")
    if not rel or not (run_dir / rel).is_file():
        return ""
    lines = (run_dir / rel).read_text(errors="replace").splitlines()[-TAIL_LINES:]
    text = "\n".join(line.split("\t", 1)[-1] for line in lines)  # without the time stamps
    return f"console ({rel}, last {len(lines)} lines):\n{text}\n"


def testcase(run_dir: Path, record: dict[str, Any]) -> TestCase:
    cell = Cell.from_id(record["cell"])
    case = TestCase(record["cell"], f"cloudboot.{cell.hypervisor}.{cell.arch}.path_{cell.path}",
                    record.get("seconds") or 0.0)
    status, category = record["status"], record.get("category")
    if status == "fail":
        case.result = [Failure(_xml_text(f"{category or 'unknown'}: "
                                         f"{record.get('evidence', '')}"), category or "fail")]
    elif status == "xfail":
        case.result = [Skipped(_xml_text(f"expected failure ({category}): "
                                         f"{record.get('reason', '')}"))]
    elif status == "not-run":
        case.result = [Skipped(_xml_text(f"not run: {record.get('reason', '')}"))]
    out = _tail(run_dir, record)
    for a in record.get("attempts", []):
        out += (f"attempt {a['attempt']}: {a['status']}"
                + (f" ({a['category']})" if a.get("category") else "") + "\n")
    if status == "flaky":
        out += f"flaky: passed after {len(record.get('attempts', []))} earlier attempt(s)\n"
    if out:
        case.system_out = _xml_text(out)
    return case


def write_junit(run_dir: Path) -> Path:
    """junit.xml for the run directory's results.json."""
    doc = json.loads((run_dir / "results.json").read_text())
    prov = doc.get("provenance", {})
    suite = TestSuite("cloudboot-matrix")
    suite.timestamp = prov.get("date")
    suite.add_property("commit", str(prov.get("commit")))
    suite.add_property("accel", str(prov.get("accel")))
    run_id = doc.get("run", {}).get("id")
    for record in doc["cells"]:
        # A run's own results list every cell of the matrix; only this run's are its tests.
        if record.get("run") != run_id:
            continue  # a cell this run did not select, or one kept from an earlier run
        case = testcase(run_dir, record)
        cell = Cell.from_id(record["cell"])
        props = Properties()  # per testcase, as pytest's record_property writes them
        for name, value in (("lane", f"{cell.hypervisor}-{cell.arch}"),
                            ("hypervisor", cell.hypervisor), ("arch", cell.arch.name),
                            ("path", cell.path), ("target", cell.distro), ("fs", cell.fs),
                            ("status", record["status"])):
            props.add_property(Property(name, value))
        case.append(props)
        suite.add_testcase(case)
    xml = JUnitXml()
    xml.add_testsuite(suite)
    out = run_dir / "junit.xml"
    xml.write(str(out), pretty=True)
    return out
