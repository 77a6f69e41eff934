"""cloudboot.httpmini against a real HTTP server on loopback (the stdlib's http.server)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cloudboot import httpmini

BIG = bytes(range(256)) * 4000


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(BIG), 70001):
                piece = BIG[i : i + 70001]
                self.wfile.write(b"%x;ext=1\r\n" % len(piece) + piece + b"\r\n")
            self.wfile.write(b"0\r\nX-Trailer: 1\r\n\r\n")
        elif self.path == "/close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(BIG)
            self.close_connection = True
        elif self.path == "/redirect":
            self.send_response(307)
            self.send_header("Location", "/sized")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(BIG)))
            self.send_header("X-Echo-Host", self.headers["Host"])
            self.end_headers()
            self.wfile.write(BIG)

    def do_PUT(self) -> None:
        n = int(self.headers["Content-Length"])
        data = self.rfile.read(n)
        self.send_response(201)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[::-1])


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()


def _get(port: int, path: str, method: str = "GET", body: object = None) -> tuple[int, bytes,
                                                                                   object]:
    conn = httpmini.HTTPConnection(f"127.0.0.1:{port}", timeout=10)
    try:
        conn.request(method, path, body=body)  # type: ignore[arg-type]
        resp = conn.getresponse()
        return resp.status, resp.read(), resp
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/sized", "/chunked", "/close"])
def test_bodies_by_length_chunks_and_close(server: int, path: str) -> None:
    status, body, _ = _get(server, path)
    assert status == 200 and body == BIG


def test_headers_and_host(server: int) -> None:
    _, _, resp = _get(server, "/sized")
    assert resp.getheader("x-echo-host") == f"127.0.0.1:{server}"  # type: ignore[attr-defined]
    status, body, resp = _get(server, "/redirect")
    assert status == 307 and body == b"" and resp.getheader("Location") == "/sized"  # type: ignore[attr-defined]


def test_reading_in_pieces(server: int) -> None:
    for path in ("/sized", "/chunked"):
        conn = httpmini.HTTPConnection("127.0.0.1", server, timeout=10)
        conn.request("GET", path)
        resp = conn.getresponse()
        got = bytearray()
        while piece := resp.read(12345):
            got += piece
        conn.close()
        assert bytes(got) == BIG, path


@pytest.mark.parametrize("body", [b"hello world", io.BytesIO(b"hello file")])
def test_put_bytes_and_files(server: int, body: object) -> None:
    status, data, _ = _get(server, "/up", "PUT", body)
    expected = body if isinstance(body, bytes) else b"hello file"
    assert status == 201 and data == expected[::-1]


def test_refused_connection_is_an_oserror() -> None:
    conn = httpmini.HTTPConnection("127.0.0.1", 1, timeout=5)
    with pytest.raises(OSError):
        conn.request("GET", "/")
