"""A timed console recorder for lanes whose console is not QEMU's stdio (libvirt's pty, vfkit's
log file): one reader thread, the same console.log format as the QEMU lane ("<seconds>\\t<text>",
ANSI escapes and \\r removed) so lab.console.parse_log and the verdict work unchanged, and
console.raw with the bytes as the guest sent them.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from lab.hypervisors.qemu import ConsoleLine

_ANSI = re.compile(rb"\x1b(\[[0-9;?=]*[ -/]*[@-~]|[@-Z\\-_])")


def clean(line: bytes) -> str:
    """Console bytes as text: ANSI escapes and carriage returns dropped, bad UTF-8 replaced."""
    return _ANSI.sub(b"", line).replace(b"\r", b"").decode("utf-8", errors="replace")


class ConsoleRecorder:
    """Reads chunks from `read` (b"" means the console is gone) until EOF, stamping each line
    with the time its first byte arrived, counted from start()."""

    def __init__(self, log: Path, raw: Path, name: str = "console") -> None:
        self.log_path = log
        self.raw_path = raw
        self.name = name
        self.t0 = 0.0
        self._lines: list[ConsoleLine] = []
        self._parts: list[str] = []
        self._partial = b""
        self._partial_t: float | None = None
        self._cursor = 0
        self._eof = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self, read: Callable[[], bytes]) -> None:
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(read,), daemon=True,
                                        name=f"{self.name}-console")
        self._thread.start()

    def join(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def eof(self) -> bool:
        with self._cond:
            return self._eof

    def lines(self) -> list[ConsoleLine]:
        with self._cond:
            return list(self._lines)

    def text(self) -> str:
        with self._cond:
            return self._text_locked()

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-n:])

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float,
                 from_start: bool = False) -> re.Match[str] | None:
        """The first match after the previous one (or anywhere with from_start); None when
        the console ended or `timeout` passed first."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = rx.search(self._text_locked(), 0 if from_start else self._cursor)
                if m:
                    self._cursor = m.end()
                    return m
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))

    def _text_locked(self) -> str:
        return "".join(self._parts) + (clean(self._partial) if self._partial else "")

    def _run(self, read: Callable[[], bytes]) -> None:
        with open(self.log_path, "w", encoding="utf-8") as log, open(self.raw_path, "wb") as raw:
            while True:
                chunk = read()
                now = time.monotonic() - self.t0
                if not chunk:
                    break
                raw.write(chunk)
                raw.flush()
                with self._cond:
                    self._feed(chunk, now, log)
                    self._cond.notify_all()
            with self._cond:
                if self._partial:
                    self._emit(self._partial, self._partial_t or 0.0, log)
                    self._partial = b""
                self._eof = True
                self._cond.notify_all()

    def _feed(self, chunk: bytes, now: float, log: TextIO) -> None:
        if self._partial_t is None:
            self._partial_t = now
        *complete, rest = (self._partial + chunk).split(b"\n")
        for line in complete:
            self._emit(line, self._partial_t, log)
            self._partial_t = now
        self._partial = rest
        if not rest:
            self._partial_t = None

    def _emit(self, line: bytes, t: float, log: TextIO) -> None:
        text = clean(line)
        self._lines.append(ConsoleLine(t, text))
        self._parts.append(text + "\n")
        log.write(f"{t:.3f}\t{text}\n")
        log.flush()
