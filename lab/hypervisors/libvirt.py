"""The libvirt lane: the QEMU lane's VMSpec booted as a transient libvirt domain.

Which libvirtd: $CLOUDBOOT_LIBVIRT_URI when set; else a running system daemon
(/run/libvirt/libvirt-sock) when one answers; else a session daemon the lab starts itself with
private XDG directories under the cache (nothing in /etc changes). Root's libvirtd is always the
privileged one (system paths, a `libvirt-qemu` user that a bare install lacks), so as root the
lab runs the session daemon inside a user namespace as `nobody`: libvirt sees an ordinary user,
the kernel maps it back to root for file access, so the lab's files stay readable. Its qemu.conf
says `stdio_handler = "file"` (no virtlogd). The daemon exits by itself when idle; its QEMU
capability cache persists, so only the first start pays for probing every qemu-system-*.

Console: a pty serial (or virtio console). The domain starts paused, the lab opens the pty in
raw mode, then resumes it, so nothing is lost and times count from the guest's reset, as on the
QEMU lane (console.log "<seconds>\\t<text>", console.raw).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import hashlib
import os
import secrets
import shutil
import subprocess
import threading
import time
import tty
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from cloudboot.fsutil import cache_dir
from lab.console import DECIDED, BootOutcome, parse_log
from lab.hypervisors.domainxml import domain_xml
from lab.hypervisors.qemu import ConsoleLine
from lab.hypervisors.recorder import ConsoleRecorder
from lab.hypervisors.vmspec import VMError, VMSpec

SYSTEM_SOCKET = Path("/run/libvirt/libvirt-sock")
# The first start probes every installed qemu-system-* binary: allow for a slow, shared host.
DAEMON_START_TIMEOUT = 300.0
DAEMON_IDLE_EXIT = 600  # seconds without clients or domains before the session daemon exits
_NOBODY = 65534


class LibvirtUnavailable(RuntimeError):
    """libvirt cannot be used on this host; the message says why (for a "not run" reason)."""


def _libvirt() -> Any:
    try:
        import libvirt  # type: ignore[import-not-found]
    except ImportError as e:
        raise LibvirtUnavailable(
            f"the libvirt Python binding is not installed ({e}); pip install '.[libvirt]' "
            "(needs libvirt-dev and pkg-config)") from e
    # libvirt prints every error on stderr by default; ours carry them in exceptions.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


@dataclasses.dataclass(frozen=True)
class SessionDaemon:
    """Where the lab's private session libvirtd keeps its files."""

    base: Path

    @property
    def runtime(self) -> Path:
        # AF_UNIX paths stop at 107 bytes: a long cache path moves the sockets to /tmp.
        run = self.base / "run"
        if len(str(run / "libvirt" / "libvirt-admin-sock")) > 100:
            digest = hashlib.sha256(str(self.base).encode()).hexdigest()[:10]
            run = Path(f"/tmp/cb-libvirt-{digest}")
        return run

    @property
    def socket(self) -> Path:
        return self.runtime / "libvirt" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu:///session?socket={self.socket}"

    @property
    def log(self) -> Path:
        return self.base / "libvirtd.log"

    def qemu_log(self, domain: str) -> Path:
        return self.base / "cache" / "libvirt" / "qemu" / "log" / f"{domain}.log"

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.base), "XDG_CONFIG_HOME": str(self.base / "config"),
                "XDG_CACHE_HOME": str(self.base / "cache"),
                "XDG_DATA_HOME": str(self.base / "data"), "XDG_RUNTIME_DIR": str(self.runtime)}

    def argv(self) -> list[str]:
        daemon = shutil.which("libvirtd") or (
            "/usr/sbin/libvirtd" if os.path.exists("/usr/sbin/libvirtd") else None)
        if daemon is None:
            raise LibvirtUnavailable("libvirtd is not installed (Debian: libvirt-daemon, "
                                     "libvirt-daemon-driver-qemu)")
        argv = [daemon, "--timeout", str(DAEMON_IDLE_EXIT)]
        if os.geteuid() == 0:
            if shutil.which("unshare") is None:
                raise LibvirtUnavailable("running as root needs unshare (util-linux) to start "
                                         "an unprivileged session libvirtd")
            argv = ["unshare", "--user", f"--map-user={_NOBODY}", f"--map-group={_NOBODY}",
                    *argv]
        return argv

    def prepare(self) -> None:
        for sub in ("config/libvirt", "cache", "data"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        self.runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.base / "config" / "libvirt" / "qemu.conf").write_text(
            "# written by the cloudboot lab: QEMU's stdio goes to files, no virtlogd\n"
            'stdio_handler = "file"\n')

    def connect(self, libvirt: Any) -> Any:
        """A connection to the daemon, starting it first when it does not answer."""
        with contextlib.suppress(libvirt.libvirtError):
            if self.socket.exists():
                return libvirt.open(self.uri)
        self.base.mkdir(parents=True, exist_ok=True)
        # Parallel workers share one daemon: whoever holds the lock starts it.
        with open(self.base / "daemon.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with contextlib.suppress(libvirt.libvirtError):
                if self.socket.exists():
                    return libvirt.open(self.uri)
            self.prepare()
            with contextlib.suppress(FileNotFoundError):
                self.socket.unlink()
            with open(self.log, "ab") as log:
                proc = subprocess.Popen(self.argv(), env=self.env(), stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=log, start_new_session=True)
            deadline = time.monotonic() + DAEMON_START_TIMEOUT
            last: Exception | None = None
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise LibvirtUnavailable(
                        f"session libvirtd exited with status {proc.returncode} at start; "
                        f"log {self.log}: {_tail(self.log)}")
                if self.socket.exists():
                    try:
                        conn = libvirt.open(self.uri)
                        conn.getCapabilities()  # waits for the QEMU driver to be ready
                        return conn
                    except libvirt.libvirtError as e:
                        last = e
                time.sleep(0.2)
            raise LibvirtUnavailable(f"session libvirtd did not answer on {self.socket} in "
                                     f"{DAEMON_START_TIMEOUT:.0f} s ({last}); log {self.log}")


def _tail(path: Path, n: int = 5) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-n:])
    return "(no log)"


def session_daemon() -> SessionDaemon:
    return SessionDaemon(cache_dir("libvirt"))


@dataclasses.dataclass
class Connection:
    conn: Any
    uri: str
    kind: str  # "env" | "system" | "session"
    session: SessionDaemon | None = None

    def version(self) -> str:
        v = int(self.conn.getLibVersion())
        return f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"


def connect() -> Connection:
    """Connect to libvirt (see the module docstring for the order); LibvirtUnavailable if none."""
    libvirt = _libvirt()
    uri = os.environ.get("CLOUDBOOT_LIBVIRT_URI")
    if uri:
        try:
            return Connection(libvirt.open(uri), uri, "env")
        except libvirt.libvirtError as e:
            raise LibvirtUnavailable(f"cannot connect to CLOUDBOOT_LIBVIRT_URI={uri}: {e}") from e
    if SYSTEM_SOCKET.exists():
        with contextlib.suppress(libvirt.libvirtError):
            conn = libvirt.open("qemu:///system")
            conn.getCapabilities()
            return Connection(conn, "qemu:///system", "system")
    daemon = session_daemon()
    return Connection(daemon.connect(libvirt), daemon.uri, "session", daemon)


class LibvirtVM:
    """One transient libvirt domain for `spec`, its run files in `workdir`. The same surface as
    QemuVM for the runner: start/wait_for/wait_exit/shutdown/text/console_log/timed_out."""

    def __init__(self, spec: VMSpec, workdir: Path, connection: Connection | None = None) -> None:
        # A unique domain name: two runs of one cell must not collide in a shared daemon.
        self.spec = dataclasses.replace(spec, name=f"{spec.name}-{secrets.token_hex(3)}")
        self.workdir = Path(workdir)
        self.connection = connection
        self.console_log = self.workdir / "console.log"
        self.console_raw = self.workdir / "console.raw"
        self.qemu_log = self.workdir / "qemu.log"
        self.xml_path = self.workdir / "domain.xml"
        self.timed_out = False
        self.domain: Any = None
        self._recorder = ConsoleRecorder(self.console_log, self.console_raw, self.spec.name)
        self._pty_fd: int | None = None
        self._watchdog: threading.Timer | None = None
        self._overlays: dict[int, Path] = {}

    # -- the domain -------------------------------------------------------------------------
    def xml(self) -> str:
        return domain_xml(self.spec, overlays=self._overlay_paths(),
                          console_log=self.workdir / "console.qemu.log",
                          run_as_root=self.connection is not None
                          and self.connection.kind == "system" and os.geteuid() == 0)

    def _overlay_paths(self) -> dict[int, Path]:
        return {i: self.workdir / f"disk{i}.overlay.qcow2"
                for i, d in enumerate(self.spec.disks) if d.snapshot}

    def _make_overlays(self) -> None:
        for i, path in self._overlay_paths().items():
            disk = self.spec.disks[i]
            out = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", disk.format,
                                  "-b", str(Path(disk.path).absolute()), str(path)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise VMError(f"qemu-img could not make an overlay for {disk.path}: "
                              f"{out.stderr.strip()}")

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self.domain is not None:
            raise VMError(f"domain {self.spec.name} already started")
        libvirt = _libvirt()
        if self.connection is None:
            self.connection = connect()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._make_overlays()
        xml = self.xml()
        self.xml_path.write_text(xml)
        try:
            self.domain = self.connection.conn.createXML(xml, libvirt.VIR_DOMAIN_START_PAUSED)
        except libvirt.libvirtError as e:
            raise self._error(f"libvirt could not start domain {self.spec.name} "
                              f"({self.connection.uri}): {e}") from e
        try:
            self._attach_console()
        except Exception:
            self._destroy()
            raise
        if self.spec.hard_timeout:
            self._watchdog = threading.Timer(self.spec.hard_timeout, self._hard_timeout)
            self._watchdog.daemon = True
            self._watchdog.start()
        self.domain.resume()

    def _attach_console(self) -> None:
        live = ET.fromstring(self.domain.XMLDesc(0))
        tag = "console" if self.spec.profile.console_transport == "virtconsole" else "serial"
        source = live.find(f"devices/{tag}[@type='pty']/source")
        path = source.get("path") if source is not None else None
        if not path:
            raise self._error(f"domain {self.spec.name} has no pty for its {tag} console")
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)  # no echo back into the guest, no line buffering
        self._pty_fd = fd

        def read() -> bytes:
            try:
                return os.read(fd, 65536)
            except OSError:  # EIO: QEMU closed its side
                return b""

        self._recorder.start(read)

    def is_running(self) -> bool:
        if self.domain is None:
            return False
        try:
            return bool(self.domain.isActive())
        except Exception:  # a transient domain that stopped no longer exists
            return False

    def wait_exit(self, timeout: float) -> str:
        """Wait for the domain to stop by itself; VMError if it is still running."""
        deadline = time.monotonic() + timeout
        while self.is_running():
            if time.monotonic() > deadline:
                raise self._error(f"domain {self.spec.name} still running after {timeout:.0f} s")
            time.sleep(0.3)
        self._finish()
        return "exited"

    def shutdown(self) -> str:
        how = "exited"
        if self.is_running():
            self._destroy()
            how = "destroyed"
        self._finish()
        return how

    def __enter__(self) -> LibvirtVM:
        if self.domain is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- console ----------------------------------------------------------------------------
    def lines(self) -> list[ConsoleLine]:
        return self._recorder.lines()

    def text(self) -> str:
        return self._recorder.text()

    def console_tail(self, n: int = 40) -> str:
        return self._recorder.tail(n)

    def wait_for(self, pattern: str, timeout: float, from_start: bool = False) -> Any:
        m = self._recorder.wait_for(pattern, timeout, from_start)
        if m is None:
            what = ("the console closed" if self._recorder.eof
                    else f"timed out after {timeout:.0f} s")
            raise self._error(f"domain {self.spec.name}: {what} waiting for {pattern!r}")
        return m

    # -- internals --------------------------------------------------------------------------
    def _hard_timeout(self) -> None:
        if self.is_running():
            self.timed_out = True
            self._destroy()

    def _destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.domain.destroy()

    def _finish(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._recorder.join(10)
        if self._pty_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pty_fd)
            self._pty_fd = None
        self._collect_qemu_log()

    def _collect_qemu_log(self) -> None:
        """libvirt's per-domain QEMU log (the generated command line, QEMU's stderr)."""
        session = self.connection.session if self.connection else None
        if session is not None:
            with contextlib.suppress(OSError):
                shutil.copyfile(session.qemu_log(self.spec.name), self.qemu_log)

    def _error(self, message: str) -> VMError:
        self._collect_qemu_log()
        log = ""
        with contextlib.suppress(OSError):
            log = self.qemu_log.read_text(errors="replace")[-4000:]
        return VMError(message, [f"domain XML: {self.xml_path}"], self.console_tail(), log)


_connection: Connection | None = None


def libvirt_connection() -> Connection:
    """One connection per process (the session daemon is shared by every worker)."""
    global _connection
    if _connection is None or not _connection.conn.isAlive():
        _connection = connect()
        atexit.register(_close, _connection)
    return _connection


def _close(connection: Connection) -> None:
    # Closed before the interpreter tears its modules down: libvirt-python's __del__ would
    # otherwise run then and print "TypeError: 'NoneType' object is not callable".
    with contextlib.suppress(Exception):
        connection.conn.close()


def unavailable_reason() -> str | None:
    """Why the libvirt lane cannot run here, or None when it can."""
    try:
        libvirt_connection()
    except LibvirtUnavailable as e:
        return str(e)
    return None


def boot(spec: VMSpec, workdir: Path, timeout: float) -> BootOutcome:
    """Boot until the run decides itself (userspace, fatal, panic) or `timeout` passes."""
    timed_out = False
    with LibvirtVM(spec, workdir, libvirt_connection()) as vm:
        try:
            vm.wait_for(DECIDED.pattern, timeout=timeout)
            with contextlib.suppress(VMError):  # let the guest finish and power off
                vm.wait_exit(30)
        except VMError:
            timed_out = vm.is_running() or vm.timed_out
        text = vm.text()
    return BootOutcome(text, parse_log(vm.console_log), timed_out, vm.console_log)
