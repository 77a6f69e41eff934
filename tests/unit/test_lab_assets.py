"""lab/assets.py against a real local HTTP server (http.server in a thread) and real processes."""

from __future__ import annotations

import hashlib
import http.server
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.assets import CLOUD_IMAGES, Asset, AssetError, exclusive, fetch

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = os.urandom(3 * (1 << 20) + 123)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    def __init__(self, delay: float = 0.0) -> None:
        self.hits: list[str] = []
        self.delay = delay
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.hits.append(self.path)
                body = PAYLOAD if self.path.startswith("/good") else b"not the payload"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # Slow, in pieces: a second process arrives while the first still downloads.
                step = max(1, len(body) // 8)
                for i in range(0, len(body), step):
                    self.wfile.write(body[i:i + step])
                    time.sleep(outer.delay / 8)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server(delay=1.5)
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def test_verified_file_is_read_only_and_content_addressed(server: Server, tmp_path: Path) -> None:
    asset = Asset("payload.bin", f"{server.base}/good", SHA, len(PAYLOAD))
    path = fetch(asset, directory=tmp_path, report=lambda _m: None)
    assert path == tmp_path / SHA / "payload.bin"
    assert path.read_bytes() == PAYLOAD
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    # Cached: no second request.
    assert fetch(asset, directory=tmp_path, report=lambda _m: None) == path
    assert server.hits == ["/good"]
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.glob("*.lock"))


def test_bad_hash_is_discarded_with_url_and_both_hashes(server: Server, tmp_path: Path) -> None:
    asset = Asset("payload.bin", f"{server.base}/bad", SHA)
    with pytest.raises(AssetError) as err:
        fetch(asset, directory=tmp_path, report=lambda _m: None)
    text = str(err.value)
    actual = hashlib.sha256(b"not the payload").hexdigest()
    assert f"{server.base}/bad" in text and SHA in text and actual in text
    assert "discarded" in text
    # Nothing left behind: no final file, no temporary file, no lock.
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_wrong_size_is_refused(server: Server, tmp_path: Path) -> None:
    asset = Asset("payload.bin", f"{server.base}/good", SHA, len(PAYLOAD) - 1)
    with pytest.raises(AssetError, match="pinned"):
        fetch(asset, directory=tmp_path, report=lambda _m: None)
    assert not (tmp_path / SHA / "payload.bin").exists()


def test_two_processes_download_once(server: Server, tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from lab.assets import Asset, fetch; "
            f"a = Asset('payload.bin', {server.base + '/good'!r}, {SHA!r}, {len(PAYLOAD)}); "
            "print(fetch(a, directory=Path(sys.argv[1]), report=lambda m: None))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert {o[0].strip() for o in outs} == {str(tmp_path / SHA / "payload.bin")}
    assert server.hits == ["/good"], "the asset was downloaded more than once"
    assert (tmp_path / SHA / "payload.bin").read_bytes() == PAYLOAD


def test_a_dead_owners_lock_is_taken_over(tmp_path: Path) -> None:
    lock, target = tmp_path / "x.lock", tmp_path / "x"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"{dead.pid}\n")
    with exclusive(lock, target, timeout=5) as mine:
        assert mine and lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()


def test_a_live_owners_lock_times_out_with_its_pid(tmp_path: Path) -> None:
    lock, target = tmp_path / "x.lock", tmp_path / "x"
    lock.write_text(f"{os.getpid()}\n")  # held by a live process (us)
    with pytest.raises(AssetError, match=f"held by process {os.getpid()}"), \
            exclusive(lock, target, timeout=0.5):
        pass


def test_unpinned_cloud_images_are_refused_with_the_reason(tmp_path: Path) -> None:
    asset = CLOUD_IMAGES["debian-12-genericcloud-amd64"]
    with pytest.raises(AssetError, match="no pinned sha256.*does not resolve"):
        fetch(asset, directory=tmp_path)


def test_asset_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="64 lowercase hex"):
        Asset("a", "http://x/a", "ABC")
    with pytest.raises(ValueError, match="plain file name"):
        Asset("../a", "http://x/a", SHA)
