"""Guest events and log lines on every console (DESIGN §5 "Guest events").

Machine lines: `CLOUDBOOT-EVENT {"phase":"…","t":1.234,…}` (compact JSON, one per phase).
Human lines:   `cloudboot: …`.
Each line is written with one write(2) per console and never buffered, so the lab sees it
even when the next step kexecs or reboots. A console that fails to write is skipped, never
fatal. Standard library only: runs as PID 1 in the bootstrap initramfs.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

PREFIX = "CLOUDBOOT-EVENT "
LOG_PREFIX = "cloudboot: "
PHASES = frozenset(
    {
        "init-start",
        "cmdline",
        "modules-loaded",
        "fs-modules-loaded",
        "net-up",
        "dns",
        "metadata",
        "plan-fetched",
        "disk-found",
        "mounted",
        "target-selected",
        "materialised",
        "kexec-load",
        "staged",
        "bootvar-written",
        "rebooting",
        "menu",
        "menu-choice",
        "reset",
        # Printed by the native loaders (loader/lib/console.c cb_event), Paths B and D.
        "loader-start",
        "loader-handoff",
        "fatal",
    }
)
# Besides /dev/console: the consoles a hypervisor may be watching.
EXTRA_CONSOLES = ("ttyS0", "ttyAMA0", "hvc0", "tty0")


class _Sink:
    """One output: a raw fd we own, or a text stream (tests, --dry-run on the host)."""

    def __init__(self, name: str, fd: int | None = None, stream: IO[str] | None = None) -> None:
        self.name, self.fd, self.stream = name, fd, stream

    def write(self, line: str) -> bool:
        try:
            if self.fd is not None:
                data = line.encode("utf-8", "replace")
                while data:  # a tty may take a line in pieces
                    n = os.write(self.fd, data)
                    data = data[n:]
            elif self.stream is not None:
                self.stream.write(line)
                self.stream.flush()
            return True
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def _open_tty(path: Path) -> int | None:
    # O_NONBLOCK so open() does not wait for a serial carrier; writes are blocking again after.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with contextlib.suppress(OSError):
        os.set_blocking(fd, True)
    return fd


def _console_target(sys_dir: Path) -> str | None:
    """The tty /dev/console writes to: the last name in /sys/class/tty/console/active."""
    try:
        names = (sys_dir / "class/tty/console/active").read_text().split()
    except OSError:
        return None
    return names[-1] if names else None


def console_sinks(
    names: Iterable[str] = EXTRA_CONSOLES, dev: Path = Path("/dev"), sys_dir: Path = Path("/sys")
) -> list[_Sink]:
    """Open /dev/console and every named console that exists, skipping the one that
    /dev/console already is (so each physical console gets each line once)."""
    sinks: list[_Sink] = []
    fd = _open_tty(dev / "console")
    if fd is not None:
        sinks.append(_Sink("console", fd=fd))
    behind = _console_target(sys_dir) if fd is not None else None
    seen = {behind}
    for name in names:
        if name in seen or not (dev / name).exists():
            continue
        seen.add(name)
        fd = _open_tty(dev / name)
        if fd is not None:
            sinks.append(_Sink(name, fd=fd))
    return sinks


class Events:
    """Writes events and log lines to every sink; time is measured from `t0`."""

    def __init__(
        self,
        streams: Iterable[IO[str]] = (),
        *,
        t0: float | None = None,
        debug: bool = False,
    ) -> None:
        self.t0 = time.monotonic() if t0 is None else t0
        self.debug_enabled = debug
        self.sinks: list[_Sink] = [_Sink(getattr(s, "name", "stream"), stream=s) for s in streams]
        self.history: list[dict[str, Any]] = []  # every event emitted, for tests and summaries
        self._transcript: list[str] = []  # lines so far, replayed to a console that opens late
        self._console_behind: str | None = None  # the tty our /dev/console sink writes to

    def use_consoles(self, names: Iterable[str] = EXTRA_CONSOLES, dev: Path = Path("/dev"),
                     sys_dir: Path = Path("/sys")) -> None:
        """Switch output to the guest's consoles (PID 1), keeping the current sinks if none
        could be opened."""
        found = console_sinks(names, dev, sys_dir)
        if found:
            for s in self.sinks:
                s.close()
            self.sinks = found
            if any(s.name == "console" for s in found):
                self._console_behind = _console_target(sys_dir)

    def wait_for_late_consoles(self, driver: Path, wait: float = 2.0) -> None:
        """Once virtio_console (`driver`, its sysfs folder) is loaded, open hvc0 and replay the
        lines before it (VZ's only console). Its port shows up shortly after the driver binds:
        wait for it, briefly; return at once when no virtio console is bound."""
        deadline = time.monotonic() + wait
        while True:
            added = self.add_late_consoles()
            if added:
                self.log(f"console {', '.join(added)} appeared with its driver: earlier lines "
                         "replayed there")
                return
            if time.monotonic() > deadline or not any(driver.glob("virtio*")):
                return
            if "hvc0" in self.console_names or Path("/dev/hvc0").exists():
                return
            time.sleep(0.05)

    def add_late_consoles(self, names: Iterable[str] = EXTRA_CONSOLES, dev: Path = Path("/dev"),
                          sys_dir: Path = Path("/sys")) -> list[str]:
        """Open the consoles that appeared since use_consoles() and replay the earlier lines
        to them; returns their names. hvc0's driver (virtio_console) is a module in Debian's
        cloud kernel, and under Apple VZ hvc0 is the only console: without this, everything
        before the modules load would be lost there."""
        # Our /dev/console fd stays bound to the tty it had when opened (ttynull, when the
        # console= device did not exist yet), so a late console is opened by its own name.
        covered = {s.name for s in self.sinks}
        if "console" in covered and self._console_behind:
            covered.add(self._console_behind)
        added = []
        for name in names:
            if name in covered or not (dev / name).exists():
                continue
            fd = _open_tty(dev / name)
            if fd is None:
                continue
            sink = _Sink(name, fd=fd)
            for line in self._transcript:
                sink.write(line + "\n")
            self.sinks.append(sink)
            covered.add(name)
            added.append(name)
        return added

    @property
    def console_names(self) -> list[str]:
        return [s.name for s in self.sinks]

    def elapsed(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    def _line(self, line: str) -> None:
        if len(self._transcript) < 2000:
            self._transcript.append(line)
        for sink in self.sinks:
            sink.write(line + "\n")

    def emit(self, phase: str, **fields: Any) -> dict[str, Any]:
        """Print one CLOUDBOOT-EVENT line; returns the event as a dict."""
        if phase not in PHASES:
            raise ValueError(f"unknown event phase {phase!r}")
        event: dict[str, Any] = {"phase": phase, "t": self.elapsed()}
        event.update({k: v for k, v in fields.items() if k not in ("phase", "t")})
        self.history.append(event)
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=True, default=str)
        self._line(PREFIX + text)
        return event

    def fatal(self, category: str, message: str, **fields: Any) -> dict[str, Any]:
        return self.emit("fatal", category=category, message=message, **fields)

    def banner(self, version: str) -> None:
        # The lab counts this exact line to prove a boot path ran cloudboot-init once.
        self._line(f"cloudboot-init {version} starting")

    def log(self, message: str) -> None:
        for part in message.splitlines() or [""]:
            self._line(LOG_PREFIX + part)

    def debug(self, message: str) -> None:
        if self.debug_enabled:
            self.log("debug: " + message)

    def close(self) -> None:
        for s in self.sinks:
            s.close()
        self.sinks = []


def parse_line(line: str) -> dict[str, Any] | None:
    """The event in one console line, or None; tolerant of a console's leading noise."""
    at = line.find(PREFIX)
    if at < 0:
        return None
    try:
        event = json.loads(line[at + len(PREFIX) :].strip())
    except ValueError:
        return None
    return event if isinstance(event, dict) and "phase" in event else None
