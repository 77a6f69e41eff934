"""A QEMU VM run from a typed VMSpec (lab/hypervisors/vmspec.py), with QMP and a timestamped
console.

Lifecycle: `command()` builds the argv (vmspec.build_command, golden-tested); `start()` launches
QEMU paused (-S), connects QMP, starts a console reader thread and resumes the guest, so console
timestamps count from the guest's reset. `shutdown()` asks nicely (system_powerdown, then quit)
before killing.

The console is QEMU's stdio chardev on a pipe: nothing is lost before the reader attaches, and
each line is stamped with time.monotonic() - t0 when its first byte arrived. The log file
(console.log) holds one line per console line: "<seconds>\\t<text>", ANSI escapes and \\r removed;
console.raw keeps the bytes as the guest sent them.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qemu.qmp.legacy import QEMUMonitorProtocol

from lab.console import DECIDED, BootOutcome, parse_log
from lab.hypervisors.vmspec import VMError, VMSpec, build_command

_ANSI = re.compile(rb"\x1b(\[[0-9;?=]*[ -/]*[@-~]|[@-Z\\-_])")
_TAIL_LINES = 40


def _refused(e: BaseException) -> bool:
    """Whether `e` (or what it wraps: qemu.qmp's ConnectError keeps it in .exc) is ECONNREFUSED."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [e]
    while todo:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, ConnectionRefusedError):
            return True
        todo += [getattr(x, "exc", None), x.__cause__, x.__context__]
    return False


@dataclass(frozen=True)
class ConsoleLine:
    t: float  # seconds since the guest was resumed
    text: str


class QemuVM:
    """One QEMU process for `spec`, its run files in `workdir`."""

    def __init__(self, spec: VMSpec, workdir: Path) -> None:
        self.spec = spec
        self.workdir = Path(workdir)
        self.qmp_socket = self.workdir / "qmp.sock"
        if len(str(self.qmp_socket.absolute())) > 100:  # AF_UNIX paths stop at 107 bytes
            self.qmp_socket = Path(tempfile.mkdtemp(prefix="cb-qmp-")) / "qmp.sock"
        self.console_log = self.workdir / "console.log"
        self.console_raw = self.workdir / "console.raw"
        self.stderr_log = self.workdir / "qemu.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.qmp: QEMUMonitorProtocol | None = None
        self.t0 = 0.0
        self.timed_out = False  # the hard timeout killed QEMU
        self._last_output = 0.0  # seconds after t0 when the console last printed
        self._lines: list[ConsoleLine] = []
        self._partial = b""
        self._partial_t: float | None = None
        self._cursor = 0  # offset into text() where the next wait_for starts
        self._text_parts: list[str] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._eof = False
        self._watchdog: threading.Timer | None = None

    # -- command line -----------------------------------------------------------------------
    def _connect_qmp(self, deadline: float) -> QEMUMonitorProtocol:
        """Connect to QMP. QEMU binds the socket (the file appears) before it listens, so a
        connect in between is refused: retried while QEMU runs (seen once in a full matrix
        run on the loaded host)."""
        while True:
            qmp = QEMUMonitorProtocol(str(self.qmp_socket))
            try:
                qmp.connect()
                return qmp
            except Exception as e:
                with contextlib.suppress(Exception):
                    qmp.close()
                if not (_refused(e) and self.proc is not None and self.proc.poll() is None
                        and time.monotonic() < deadline):
                    raise
            time.sleep(0.05)

    def command(self) -> list[str]:
        return build_command(self.spec, self.qmp_socket)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, connect_timeout: float = 30.0) -> None:
        if self.proc is not None:
            raise VMError(f"VM {self.spec.name} already started", self.command())
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        (self.workdir / "command.txt").write_text(" ".join(cmd) + "\n")
        with contextlib.suppress(FileNotFoundError):
            self.qmp_socket.unlink()
        stderr = open(self.stderr_log, "wb")  # noqa: SIM115 (owned by the child)
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=stderr, start_new_session=True)
        except OSError as e:
            raise VMError(f"cannot run {cmd[0]}: {e}", cmd) from e
        finally:
            stderr.close()
        deadline = time.monotonic() + connect_timeout
        while not self.qmp_socket.exists():
            if self.proc.poll() is not None:
                self._finish()
                raise self._error(f"QEMU exited with status {self.proc.returncode} at launch")
            if time.monotonic() > deadline:
                self._kill()
                self._finish()
                raise self._error(f"QMP socket {self.qmp_socket} did not appear in "
                                  f"{connect_timeout:.0f} s")
            time.sleep(0.02)
        try:
            qmp = self._connect_qmp(deadline)
        except Exception as e:
            # QEMU makes the socket before it checks devices: a bad option shows up as EOF here.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            if self.proc.returncode is None:
                self._kill()
            self._finish()
            if self.proc.returncode is not None and self.proc.returncode > 0:
                raise self._error(f"QEMU exited with status {self.proc.returncode} at launch"
                                  ) from e
            raise self._error(f"cannot connect QMP at {self.qmp_socket}: {e}") from e
        self.qmp = qmp
        self._reader = threading.Thread(target=self._read_console, name=f"{self.spec.name}-con",
                                        daemon=True)
        self.t0 = time.monotonic()
        self._reader.start()
        if self.spec.hard_timeout:
            self._watchdog = threading.Timer(self.spec.hard_timeout, self._hard_timeout)
            self._watchdog.daemon = True
            self._watchdog.start()
        qmp.cmd("cont")

    def status(self) -> str:
        """The run state QMP reports (running, paused, internal-error, shutdown…)."""
        if self.qmp is None:
            raise VMError(f"VM {self.spec.name} is not started")
        reply = self.qmp.cmd("query-status")
        if not isinstance(reply, dict):
            raise VMError(f"VM {self.spec.name}: odd query-status reply {reply!r}")
        return str(reply["status"])

    def hotplug_nic(self) -> None:
        """Plug the spec's NIC into the spare root port (profiles that hide it from firmware)."""
        if self.qmp is None or self.spec.nic is None:
            raise VMError(f"VM {self.spec.name}: no QMP or no NIC planned to hot-plug")
        self.qmp.cmd("device_add", driver=self.spec.nic.model, netdev="net0",
                     id="net0-dev", bus="hotplug0")

    def kill(self) -> None:
        """A power cut: SIGKILL QEMU now, whatever the guest is doing."""
        self._kill()

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float) -> int:
        """Wait for QEMU to exit by itself; its exit status. VMError if it is still running."""
        if self.proc is None:
            raise VMError(f"VM {self.spec.name} is not started")
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self._error(f"VM {self.spec.name} still running after {timeout:.0f} s") from None
        self._finish()
        return rc

    def shutdown(self, powerdown_timeout: float = 0.0, quit_timeout: float = 10.0) -> str:
        """Stop QEMU: ACPI powerdown (if powerdown_timeout > 0), then QMP quit, then SIGKILL.

        Returns how it ended: "exited", "powerdown", "quit" or "killed".
        """
        if self.proc is None:
            return "exited"
        how = "exited"
        if self.proc.poll() is None and self.qmp is not None and powerdown_timeout > 0:
            with contextlib.suppress(Exception):
                self.qmp.cmd("system_powerdown")
                self.proc.wait(powerdown_timeout)
                how = "powerdown"
        if self.proc.poll() is None and self.qmp is not None:
            try:
                self.qmp.cmd("quit")
                self.proc.wait(quit_timeout)
                how = "quit"
            except Exception:
                how = "killed"
        if self.proc.poll() is None:
            self._kill()
            how = "killed"
        self._finish()
        return how

    def __enter__(self) -> QemuVM:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- console ----------------------------------------------------------------------------
    def lines(self) -> list[ConsoleLine]:
        """Complete console lines so far, with their timestamps."""
        with self._cond:
            return list(self._lines)

    def text(self) -> str:
        """Everything the console printed so far (cleaned), including an unfinished line."""
        with self._cond:
            return self._text_locked()

    def console_tail(self, n: int = _TAIL_LINES) -> str:
        return "\n".join(self.text().splitlines()[-n:])

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float,
                 from_start: bool = False) -> re.Match[str]:
        """Wait until `pattern` appears on the console after the previous match (or anywhere
        with from_start); VMError on timeout or if QEMU exits first."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                start = 0 if from_start else self._cursor
                m = rx.search(self._text_locked(), start)
                if m:
                    self._cursor = m.end()
                    return m
                if self._eof:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
        what = "QEMU exited" if self._eof else f"timed out after {timeout:.0f} s"
        raise self._error(f"VM {self.spec.name}: {what} waiting for {rx.pattern!r}")

    def quiet_for(self) -> float:
        """Seconds since the console last printed anything (since start if it never did)."""
        with self._cond:
            return time.monotonic() - self.t0 - self._last_output

    def time_of(self, pattern: str | re.Pattern[str]) -> float | None:
        """Timestamp of the first console line matching `pattern`, if any."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        for line in self.lines():
            if rx.search(line.text):
                return line.t
        return None

    # -- internals --------------------------------------------------------------------------
    def _text_locked(self) -> str:
        tail = _clean(self._partial) if self._partial else ""
        return "".join(self._text_parts) + tail

    def _read_console(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        with open(self.console_log, "w", encoding="utf-8") as log, \
                open(self.console_raw, "wb") as raw:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                now = time.monotonic() - self.t0
                if not chunk:
                    break
                raw.write(chunk)
                raw.flush()
                with self._cond:
                    self._last_output = now
                    self._feed(chunk, now, log)
                    self._cond.notify_all()
            with self._cond:
                if self._partial:
                    self._emit(self._partial, self._partial_t or 0.0, log)
                    self._partial = b""
                self._eof = True
                self._cond.notify_all()

    def _feed(self, chunk: bytes, now: float, log: object) -> None:
        data = self._partial + chunk
        if self._partial_t is None:
            self._partial_t = now
        *complete, rest = data.split(b"\n")
        for line in complete:
            self._emit(line, self._partial_t, log)
            self._partial_t = now
        self._partial = rest
        if not rest:
            self._partial_t = None

    def _emit(self, line: bytes, t: float, log: object) -> None:
        text = _clean(line)
        self._lines.append(ConsoleLine(t, text))
        self._text_parts.append(text + "\n")
        log.write(f"{t:.3f}\t{text}\n")  # type: ignore[attr-defined]
        log.flush()  # type: ignore[attr-defined]

    def _hard_timeout(self) -> None:
        if self.is_running():
            self.timed_out = True
            self._kill()

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def _finish(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self.qmp is not None:
            with contextlib.suppress(Exception):
                self.qmp.close()
            self.qmp = None
        if self._reader is not None:
            self._reader.join(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def _error(self, message: str) -> VMError:
        stderr = ""
        with contextlib.suppress(OSError):
            stderr = self.stderr_log.read_text(errors="replace")[-4000:]
        return VMError(message, self.command(), self.console_tail(), stderr)


def _clean(line: bytes) -> str:
    """Console bytes as text: ANSI escapes and carriage returns dropped, bad UTF-8 replaced."""
    return _ANSI.sub(b"", line).replace(b"\r", b"").decode("utf-8", errors="replace")


def boot(spec: VMSpec, workdir: Path, timeout: float, *,
         interact: Callable[[QemuVM], None] | None = None) -> BootOutcome:
    """Boot until the run decides itself (userspace, fatal, panic) or `timeout` passes.
    `interact` acts on the running VM first (waits for a prompt and answers it, say); its
    VMError counts as the boot's."""
    timed_out = False
    with QemuVM(spec, workdir) as vm:
        try:
            if interact is not None:
                interact(vm)
            vm.wait_for(DECIDED, timeout=timeout)
            # Let the guest finish the line and power off (or print the rest of its error).
            with contextlib.suppress(VMError):
                vm.wait_exit(30)
        except VMError:
            timed_out = vm.is_running() or vm.timed_out
        text = vm.text()
    # The log file carries the time each line arrived (for per-phase times).
    return BootOutcome(text, parse_log(vm.console_log), timed_out, vm.console_log)
