"""A small HTTP/1.1 client over a socket, for the guest: the subset of http.client we use.

http.client imports the email package (header parsing) and with it a few hundred KiB of
bytecode, which the bootstrap initramfs pays for in size and in cold-start time under
emulation. One request per connection (`Connection: close`); bodies by Content-Length,
chunked transfer coding, or until the peer closes. Standard library only.
"""

from __future__ import annotations

import socket
from typing import IO, Any

MAX_LINE = 65536
MAX_HEADERS = 200


class HTTPException(Exception):
    pass


class HTTPResponse:
    def __init__(self, sock: socket.socket, method: str) -> None:
        self._file = sock.makefile("rb")
        line = self._line()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise HTTPException(f"bad status line {line!r}")
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        self.headers: list[tuple[str, str]] = []
        while True:
            h = self._line()
            if not h:
                break
            if len(self.headers) >= MAX_HEADERS:
                raise HTTPException("too many headers")
            name, sep, value = h.partition(":")
            if not sep:
                raise HTTPException(f"bad header line {h!r}")
            self.headers.append((name.strip(), value.strip()))
        te = (self.getheader("Transfer-Encoding") or "").lower()
        length = self.getheader("Content-Length")
        self._chunked = "chunked" in te
        self._left: int | None = None
        if method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            self._left = 0
        elif not self._chunked and length is not None:
            try:
                self._left = int(length)
            except ValueError:
                raise HTTPException(f"bad Content-Length {length!r}") from None
        self._chunk_left = 0
        self._done = self._left == 0

    def _line(self) -> str:
        raw = self._file.readline(MAX_LINE + 1)
        if len(raw) > MAX_LINE:
            raise HTTPException("header line too long")
        if not raw:
            raise HTTPException("connection closed while reading the response head")
        return raw.decode("iso-8859-1").rstrip("\r\n")

    def getheader(self, name: str, default: str | None = None) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return default

    def getheaders(self) -> list[tuple[str, str]]:
        return list(self.headers)

    def read(self, amt: int | None = None) -> bytes:
        if self._done:
            return b""
        if self._chunked:
            return self._read_chunked(amt)
        if self._left is not None:
            n = self._left if amt is None else min(amt, self._left)
            data = self._file.read(n)
            if len(data) < n and amt is None:
                raise HTTPException(f"connection closed after {len(data)} of {n} bytes")
            self._left -= len(data)
            self._done = self._left == 0 or not data
            return data
        data = self._file.read() if amt is None else self._file.read(amt)
        if not data:
            self._done = True
        return data

    def _read_chunked(self, amt: int | None) -> bytes:
        out = bytearray()
        while amt is None or len(out) < amt:
            if self._chunk_left == 0:
                size_line = self._line().split(";", 1)[0].strip()
                try:
                    self._chunk_left = int(size_line, 16)
                except ValueError:
                    raise HTTPException(f"bad chunk size {size_line!r}") from None
                if self._chunk_left == 0:
                    while self._line():  # trailers end with an empty line
                        pass
                    self._done = True
                    break
            want = self._chunk_left if amt is None else min(self._chunk_left, amt - len(out))
            data = self._file.read(want)
            if not data:
                raise HTTPException("connection closed inside a chunk")
            out += data
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                self._file.readline(3)  # the CRLF after the chunk
        return bytes(out)

    def close(self) -> None:
        self._file.close()


class HTTPConnection:
    default_port = 80

    def __init__(self, host: str, port: int | None = None, timeout: float | None = None) -> None:
        self.host, self.port = _split(host, port, self.default_port)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._method = "GET"

    def _open(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=self.timeout)

    def request(self, method: str, url: str, body: bytes | IO[bytes] | None = None,
                headers: dict[str, str] | None = None) -> None:
        self.close()
        self.sock = self._open()
        self._method = method.upper()
        hdrs = {"Host": self.host if self.port == self.default_port else
                f"{self.host}:{self.port}", "Connection": "close",
                "Accept-Encoding": "identity"}
        hdrs.update(headers or {})
        stream = None
        if isinstance(body, bytes | bytearray):
            hdrs["Content-Length"] = str(len(body))
        elif body is not None:  # a file: its length from seeking, then sent in pieces
            stream = body
            start = stream.tell()
            hdrs["Content-Length"] = str(stream.seek(0, 2) - start)
            stream.seek(start)
        head = f"{self._method} {url} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        first = head.encode("iso-8859-1")
        self.sock.sendall(first + body if isinstance(body, bytes | bytearray) else first)
        while stream is not None and (piece := stream.read(1 << 16)):
            self.sock.sendall(piece)

    def getresponse(self) -> HTTPResponse:
        if self.sock is None:
            raise HTTPException("getresponse() before request()")
        return HTTPResponse(self.sock, self._method)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class HTTPSConnection(HTTPConnection):
    default_port = 443

    def __init__(self, host: str, port: int | None = None, timeout: float | None = None,
                 context: Any = None) -> None:
        super().__init__(host, port, timeout)
        if context is None:
            raise HTTPException("HTTPS needs an ssl context (the guest packs no TLS by default)")
        self.context = context

    def _open(self) -> socket.socket:
        raw = super()._open()
        return self.context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[no-any-return]


def _split(host: str, port: int | None, default: int) -> tuple[str, int]:
    if port is not None:
        return host, port
    if host.startswith("["):  # [v6]:port
        addr, _, rest = host[1:].partition("]")
        return addr, int(rest[1:]) if rest.startswith(":") else default
    name, sep, p = host.rpartition(":")
    if sep and p.isdigit():
        return name, int(p)
    return host, default
