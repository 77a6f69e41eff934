"""The run's page (lab/report/html.py) in a real browser: Debian's headless Chromium, driven by
selenium through Debian's chromedriver, on a run directory made here as docs/run-directory.md
describes it (two lanes with cells that pass, fail, flake and did not run; one idle lane)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from lab import matrix
from lab.__main__ import main as lab_main
from lab.report.html import CONSOLE_TAIL, write_html

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# As docs/run-directory.md shows: the machine's network is closed, so no background traffic.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,1000")
RUN_ID = "20261204T2049Z-abc1234"
PASS, FAIL, FLAKY, NOT_RUN = (f"qemu-x86_64-{p}-debian-12-ext4" for p in "ACBD")
LV_PASS, LV_NOT_RUN = "libvirt-x86_64-A-debian-12-ext4", "libvirt-x86_64-C-debian-12-ext4"
HOSTILE = '</script><script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def _boot(run: Path, folder: str, console: list[str], events: list[dict], **files: str
          ) -> dict[str, str]:
    """Write one boot's files under `run/folder`; returns its artifacts (relative paths)."""
    d = run / folder
    d.mkdir(parents=True)
    (d / "console.log").write_text("".join(f"{8 + i * 0.05:.3f}\t{line}\n"
                                           for i, line in enumerate(console)))
    (d / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    arts = {"console": f"{folder}/console.log", "events": f"{folder}/events.jsonl"}
    for name, text in files.items():
        filename = {"invocation": "invocation.txt", "domain": "domain.xml"}.get(
            name, f"{name}.json")
        (d / filename).write_text(text)
        arts[name] = f"{folder}/{filename}"
    return arts


def _event(phase: str, t: float, **data: object) -> dict:
    return {"kind": "event", "t": t, "phase": phase, "data": {"phase": phase, **data}}


def _cell(cid: str, status: str, **kw: object) -> dict:
    return {"cell": cid, "status": status, "category": None, "evidence": "", "reason": "",
            "accel": "tcg", "seconds": None, "phase_times": {}, "userspace": None,
            "banners": 0, "assets": {}, "finished": "2026-12-04T20:42:29+00:00",
            "run": RUN_ID, "artifacts": {}, "attempts": [], **kw}


def make_run(run: Path) -> Path:
    cells = [
        _cell(PASS, "pass", evidence="guest reached its userspace", seconds=27.4, banners=1,
              phase_times={"init-start": 8.3, "kexec-load": 11.5, "userspace": 24.2},
              artifacts=_boot(run, f"cells/{PASS}", ["cloudboot-init 0.1.0", "Debian 12 up"],
                              [_event("init-start", 8.3)], invocation="qemu-system-x86_64 -m 1G")),
        _cell(FAIL, "fail", category="handoff", seconds=61.0, banners=1,
              evidence="fatal event: Boot#### could not be written",
              phase_times={"init-start": 8.1, "staged": 12.0},
              artifacts=_boot(run, f"cells/{FAIL}",
                              [f"console line {i:04}" for i in range(1, 400)]
                              + ["efivarfs: write Boot0001 refused (EROFS)"],
                              [_event("init-start", 8.1),
                               _event("fatal", 12.4, category="handoff", message="EROFS")],
                              invocation="qemu-system-x86_64 -drive if=pflash",
                              **{"vars-before": "{}", "vars-after": "{}"})),
        _cell(FLAKY, "flaky", boot_status="pass", evidence="guest reached its userspace",
              seconds=20.0, phase_times={"userspace": 19.1}, banners=1,
              artifacts=_boot(run, f"cells/{FLAKY}", ["second boot reached userspace"],
                              [_event("init-start", 8.0)], invocation="qemu B"),
              attempts=[{"attempt": 1, "status": "fail", "category": "timeout", "seconds": 90.0,
                         "evidence": "no output for 60 s",
                         "artifacts": _boot(run, f"cells/{FLAKY}/attempt-1",
                                            ["first boot hung in the firmware"], [],
                                            invocation="qemu B")}]),
        _cell(NOT_RUN, "not-run", reason="Path D needs <b>a registry</b> on this lane"),
        _cell(LV_PASS, "pass", evidence="guest reached its userspace", seconds=30.0,
              phase_times={"userspace": 26.0},
              artifacts=_boot(run, f"cells/{LV_PASS}", ["libvirt guest says:", HOSTILE],
                              [_event("init-start", 8.0, message=HOSTILE)],
                              domain="<domain type='qemu'/>")),
        _cell(LV_NOT_RUN, "not-run", reason="not selected in this run"),
        _cell("vz-aarch64-A-debian-12-ext4", "not-run", reason="vz lane needs macOS"),
    ]
    for c in cells:
        if c["artifacts"]:
            (run / "cells" / c["cell"] / "result.json").write_text(json.dumps(c))
    doc = {"run": {"id": RUN_ID, "dir": "."},
           "provenance": {"commit": "abc1234def5678", "date": "2026-12-04T20:49:00Z",
                          "dirty": True, "accel": "tcg",
                          "host": {"machine": "x86_64", "kernel": "6.1.0", "python": "3.11.7"},
                          "tools": {"qemu": {"qemu-system-x86_64": "7.2.22 (Debian 1:7.2)"},
                                    "firmware": {"ovmf": "2022.11-6+deb12u2"},
                                    "libvirt": "9.0.0"},
                          "assets": {"boot.iso": "sha256:0123"}},
           "cells": cells,
           "baselines": [{"lane": "qemu-x86_64", "distro": "debian-12", "fs": "ext4",
                          "direct": 13.6, "kernel": "6.1.0-50-cloud-amd64"}]}
    (run / "results.json").write_text(json.dumps(doc, indent=1))
    (run / "run.json").write_text(json.dumps({"id": RUN_ID, "retries": 1}))
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = make_run(tmp_path_factory.mktemp("run") / RUN_ID)
    assert write_html(run) == run / "matrix.html"
    return run


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not Path(binary).exists():
            pytest.fail(f"{binary} is missing (python -m cloudboot.debian.hostdeps ensure tests "
                        "installs chromium and chromium-driver)")
    profile = tempfile.mkdtemp(prefix="cloudboot-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(driver: WebDriver, run: Path) -> None:
    driver.get((run / "matrix.html").as_uri())
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors  # a CSP refusal or a script error would show here


def _click(driver: WebDriver, cell: str) -> str:
    driver.find_element(By.CSS_SELECTOR, f'button[data-cell="{cell}"]').click()
    panel = driver.find_element(By.ID, "panel")
    WebDriverWait(driver, 10).until(lambda d: panel.is_displayed())
    WebDriverWait(driver, 10).until(lambda d: cell in panel.text)
    return panel.text


def _file_of(href: str) -> Path:
    url = urlparse(href)
    assert url.scheme == "file", href
    return Path(unquote(url.path))


def test_a_click_on_the_failing_cell_shows_its_console_category_and_files(
        browser: WebDriver, run: Path) -> None:
    _open(browser, run)
    button = browser.find_element(By.CSS_SELECTOR, f'button[data-cell="{FAIL}"]')
    assert button.text == "✗ handoff"
    assert "st-fail" in button.find_element(By.XPATH, "..").get_attribute("class")
    text = _click(browser, FAIL)
    assert "handoff" in text and "Boot#### could not be written" in text
    console = browser.find_element(By.CSS_SELECTOR, "#panel pre.console").text
    assert "efivarfs: write Boot0001 refused (EROFS)" in console
    lines = console.splitlines()
    assert len(lines) == CONSOLE_TAIL and "console line 0101" in lines[0], lines[:2]
    assert "console line 0100" not in console  # the tail only; the full file is linked
    assert f"last {CONSOLE_TAIL} of 400 lines" in text
    assert "fatal" in browser.find_element(By.ID, "panel").text  # the guest events
    browser.save_screenshot(str(run / "matrix.png"))
    assert (run / "matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    links = {a.text: a.get_attribute("href")
             for a in browser.find_elements(By.CSS_SELECTOR, "#panel a")}
    assert {"full console", "console", "events", "invocation", "vars-before", "vars-after",
            "result.json"} <= set(links)
    for href in links.values():
        assert _file_of(href).is_file(), href
    full = _file_of(links["full console"])
    assert full == run / "cells" / FAIL / "console.log"
    browser.get(links["full console"])  # the link opens the real file, every line of it
    assert "console line 0001" in browser.find_element(By.TAG_NAME, "body").text


def test_the_flaky_cell_shows_every_boot_with_its_files(browser: WebDriver, run: Path) -> None:
    _open(browser, run)
    assert browser.find_element(By.CSS_SELECTOR, f'button[data-cell="{FLAKY}"]').text == (
        "≈ flaky 19 s")
    text = _click(browser, FLAKY)
    rows = browser.find_elements(By.XPATH, "//section[h3='attempts']//tr[td]")
    assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == ["fail", "pass"]
    assert "timeout" in rows[0].text and "no output for 60 s" in rows[0].text
    first = {a.text: a.get_attribute("href") for a in rows[0].find_elements(By.TAG_NAME, "a")}
    assert _file_of(first["console"]) == run / "cells" / FLAKY / "attempt-1" / "console.log"
    assert "first boot hung in the firmware" in text  # the failed attempt's console, embedded


def test_a_cell_not_run_says_why(browser: WebDriver, run: Path) -> None:
    _open(browser, run)
    text = _click(browser, NOT_RUN)
    assert "Path D needs <b>a registry</b> on this lane" in text
    notes = browser.find_element(By.ID, "notes").text
    assert "<b>a registry</b>" in notes  # shown as text, not as markup


def test_filters_hide_a_lane_an_arch_and_a_path(browser: WebDriver, run: Path) -> None:
    _open(browser, run)

    def shown(selector: str) -> bool:
        return browser.find_element(By.CSS_SELECTOR, selector).is_displayed()

    qemu, lv = 'section[data-lane="qemu-x86_64"]', 'section[data-lane="libvirt-x86_64"]'
    assert shown(qemu) and shown(lv)
    box = browser.find_element(By.CSS_SELECTOR, 'input[data-filter="lane"][value="libvirt-x86_64"]')
    box.click()
    assert shown(qemu) and not shown(lv)
    box.click()
    assert shown(lv)
    browser.find_element(By.CSS_SELECTOR, 'input[data-filter="arch"][value="x86_64"]').click()
    assert not shown(qemu) and not shown(lv) and not shown('tr[data-lane="qemu-x86_64"]')
    assert shown('li[data-lane="vz-aarch64"]')  # the idle lane is aarch64
    browser.find_element(By.CSS_SELECTOR, 'input[data-filter="arch"][value="x86_64"]').click()
    browser.find_element(By.CSS_SELECTOR, 'input[data-filter="path"][value="B"]').click()
    assert not shown(f'button[data-cell="{FLAKY}"]') and shown(f'button[data-cell="{FAIL}"]')
    rows = f'{qemu} tr[data-booted="0"]'
    assert shown(rows)
    browser.find_element(By.ID, "booted-only").click()
    assert not shown(rows)


def test_console_markup_is_shown_as_text_and_never_runs(browser: WebDriver, run: Path) -> None:
    _open(browser, run)
    text = _click(browser, LV_PASS)
    assert browser.execute_script("return window.__pwned") is None
    console = browser.find_element(By.CSS_SELECTOR, "#panel pre.console").text
    assert HOSTILE in console and HOSTILE.replace('"', '\\"') in text  # console, event data
    assert not browser.find_elements(By.CSS_SELECTOR, "#panel img, #panel script")
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 2  # the data and the code
    assert "<domain" not in browser.page_source.split('id="matrix-data"')[0]


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.csp: str | None = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [(tag, k, v or "") for k, v in attrs if k in ("href", "src", "action")]
        if tag == "meta" and ("http-equiv", "Content-Security-Policy") in attrs:
            self.csp = dict(attrs)["content"]
        assert tag not in ("link", "img", "iframe", "object", "embed"), tag


def test_the_page_is_one_file_whose_links_stay_in_the_run(run: Path) -> None:
    page = (run / "matrix.html").read_text()
    refs = _Refs()
    refs.feed(page)
    assert refs.refs and all(k == "href" for _, k, _ in refs.refs), refs.refs
    for _, _, href in refs.refs:
        assert "://" not in href and not href.startswith("/"), href
        assert (run / unquote(href)).is_file(), href
    assert refs.csp.startswith("default-src 'none';"), refs.csp  # the browser fetches nothing


def test_verdicts_provenance_and_overhead_are_matrix_md_s(run: Path) -> None:
    doc = json.loads((run / "results.json").read_text())
    page = (run / "matrix.html").read_text()
    table = matrix.render(doc)
    row = "| debian-12 | ext4 | ✓ 24 s | ≈ flaky 19 s | ✗ handoff | — [1] |"
    assert row in table
    for text in ("✓ 24 s", "≈ flaky 19 s", "✗ handoff", "— [1]"):
        assert f">{text}</button>" in page
    overhead = matrix.overhead_rows(doc, {})
    assert overhead == [["qemu · x86_64", "debian-12 ext4", "14 s", "24 s", "1.78", "—", "—"]]
    assert "<td>1.78</td>" in page and "Overhead against a direct firmware boot" in page
    for fact in ("abc1234def5678 (dirty)", "7.2.22 (Debian 1:7.2)", "ovmf 2022.11-6+deb12u2",
                 "9.0.0", "tcg", RUN_ID, "vz lane needs macOS"):
        assert fact in page, fact


def test_the_command_writes_the_page(run: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    copy = shutil.copytree(run, tmp_path / "copy")
    (copy / "matrix.html").unlink()
    assert lab_main(["matrix", "html", str(copy)]) == 0
    assert (copy / "matrix.html").read_text().startswith("<!DOCTYPE html>")
    assert lab_main(["matrix", "html", str(tmp_path / "no-such-run")]) == 1
    assert "results.json" in capsys.readouterr().err
