"""Metadata URL overrides: a real HTTP server on loopback, cloudboot-init off PID 1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cloudboot.init import main as init_main
from cloudboot.init.net import metadata

ROUTES: dict[str, tuple[int, bytes]] = {
    "/flat": (200, json.dumps({"cloudboot": {"target": "b", "dns": ["192.0.2.1"]}}).encode()),
    "/openstack": (200, json.dumps({"uuid": "x", "meta": {
        "cloudboot.target": "b", "other": "ignored", "cloudboot_menu": "0"}}).encode()),
    "/garbage": (200, b"<html>not json</html>"),
    "/big": (200, b"{" + b" " * (1 << 20) + b"}"),
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    seen: list[str | None] = []

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            status, body = ROUTES.get(self.path, (404, b"no"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    s = ThreadingHTTPServer(("127.0.0.1", 0), H)
    s.seen = seen  # type: ignore[attr-defined]
    threading.Thread(target=s.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{s.server_address[1]}"
    s.shutdown()


def test_flat_and_openstack_shapes(server: str) -> None:
    md = metadata.fetch(server + "/flat", "tok")
    assert md.error is None
    assert md.overrides == {"cloudboot.target": "b", "cloudboot.dns": "192.0.2.1"}
    assert metadata.extract(json.loads(ROUTES["/openstack"][1]), openstack=True) == {
        "cloudboot.target": "b", "cloudboot.menu": "0"}


@pytest.mark.parametrize("path,error", [
    ("/missing", "HTTP 404"), ("/garbage", "unusable metadata"), ("/big", "larger than"),
])
def test_failures_are_reported_not_raised(server: str, path: str, error: str) -> None:
    md = metadata.fetch(server + path)
    assert md.overrides == {} and md.error is not None and error in md.error


def test_unreachable_and_slow_are_warnings() -> None:
    md = metadata.fetch("http://127.0.0.1:9/x", timeout=2)
    assert md.error is not None and "Connection refused" in md.error


PLAN = '''
default_target = "a"
target "a" {
  disk {
    device = "LABEL=a"
  }
}
target "b" {
  disk {
    device = "LABEL=b"
  }
}
'''


def _selected(tmp_path: Path, cmdline: str, capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    plan = tmp_path / "plan.hcl"
    plan.write_text(PLAN)
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    init_main.main(["--cmdline", cmdline, "--plan", str(plan), "--root", str(root),
                    "--dry-run"])
    out = capsys.readouterr().out
    events = [json.loads(line.split(" ", 1)[1]) for line in out.splitlines()
              if line.startswith("CLOUDBOOT-EVENT ")]
    return {e["phase"]: e for e in events} | {"_out": out}


def test_metadata_overrides_the_command_line_target(server: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    ev = _selected(tmp_path, f"cloudboot.target=a cloudboot.metadata.url={server}/flat",
                   capsys)
    assert ev["metadata"]["keys"] == ["cloudboot.dns", "cloudboot.target"]
    assert ev["target-selected"]["target"] == "b" and ev["target-selected"]["device"] == "LABEL=b"


def test_metadata_404_is_a_warning_and_the_boot_goes_on(server: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    ev = _selected(tmp_path, f"cloudboot.metadata.url={server}/missing", capsys)
    assert "HTTP 404" in ev["metadata"]["error"]
    assert "warning: metadata ignored" in ev["_out"]
    assert ev["target-selected"]["target"] == "a"
