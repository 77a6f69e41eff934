"""What a PID 1 must do for itself: early mounts, a child reaper, reboot/power-off.

mount(2) and reboot(2) through ctypes. Standard library only: runs in the bootstrap initramfs.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path

# <linux/reboot.h>; glibc's reboot() adds the magic numbers itself.
LINUX_REBOOT_CMD_RESTART = 0x01234567
LINUX_REBOOT_CMD_HALT = 0xCDEF0123
LINUX_REBOOT_CMD_POWER_OFF = 0x4321FEDC
LINUX_REBOOT_CMD_KEXEC = 0x45584543

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8

# (source, target, fstype, flags, data) in mount order; /dev first after /proc so consoles
# can be opened early.
EARLY_MOUNTS: tuple[tuple[str, str, str, int, str], ...] = (
    ("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, ""),
    ("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"),
    ("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, ""),
    ("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"),
    ("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"),
)
# Device nodes created by hand when devtmpfs is missing: (name, major, minor).
FALLBACK_NODES = (("console", 5, 1), ("null", 1, 3), ("kmsg", 1, 11), ("tty", 5, 0))

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int
_libc.reboot.argtypes = [ctypes.c_int]
_libc.reboot.restype = ctypes.c_int


def _oserror(what: str, path: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what} {path}: {os.strerror(err)}")


def is_pid1() -> bool:
    return os.getpid() == 1


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    """mount(2); raises OSError naming the target."""
    rc = _libc.mount(source.encode(), target.encode(), fstype.encode(), flags,
                     data.encode() if data else None)
    if rc != 0:
        raise _oserror(f"mount -t {fstype} {source}", target)


def umount(target: str, flags: int = 0) -> None:
    if _libc.umount2(target.encode(), flags) != 0:
        raise _oserror("umount", target)


def is_mountpoint(path: str) -> bool:
    try:
        return os.path.ismount(path)
    except OSError:
        return False


def early_mounts() -> list[str]:
    """Mount /proc, /dev, /sys, /run, /tmp (skipping ones already mounted); returns
    human-readable problems instead of raising, because nothing can report them yet."""
    problems: list[str] = []
    for source, target, fstype, flags, data in EARLY_MOUNTS:
        try:
            os.makedirs(target, mode=0o755, exist_ok=True)
            if is_mountpoint(target):
                continue
            mount(source, target, fstype, flags, data)
        except OSError as e:
            if e.errno != errno.EBUSY:
                problems.append(str(e))
    problems += ensure_dev_nodes()
    return problems


def ensure_dev_nodes(dev: Path = Path("/dev")) -> list[str]:
    """Create /dev/console, /dev/null… when devtmpfs did not provide them."""
    problems: list[str] = []
    for name, major, minor in FALLBACK_NODES:
        path = dev / name
        if path.exists():
            continue
        try:
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
        except OSError as e:
            problems.append(f"mknod {path} c {major} {minor}: {e.strerror}")
    return problems


# --- children -------------------------------------------------------------------------------
# PID 1 inherits every orphan; reap them all, but keep the status of children we wait for.
_watched: set[int] = set()
_exited: dict[int, int] = {}


def _reap(signum: int, frame: object) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in _watched:
            _exited[pid] = status


def install_reaper() -> None:
    signal.signal(signal.SIGCHLD, _reap)


def spawn(argv: list[str], env: dict[str, str] | None = None,
          console: str = "/dev/console") -> int:
    """fork+exec argv as a new session with stdio on `console` (so a shell gets a
    controlling tty); returns the child's pid."""
    pid = os.fork()
    if pid == 0:  # child: never return into the parent's Python code
        try:
            os.setsid()
            fd = os.open(console, os.O_RDWR)
            for target in (0, 1, 2):
                os.dup2(fd, target)
            os.execve(argv[0], argv, env if env is not None else dict(os.environ))
        finally:
            os._exit(127)
    _watched.add(pid)
    return pid


def wait_child(pid: int) -> int:
    """Wait for a child started by spawn(); returns its exit code (negative: signal)."""
    try:
        while True:
            if pid in _exited:
                return os.waitstatus_to_exitcode(_exited.pop(pid))
            try:
                got, status = os.waitpid(pid, 0)
            except ChildProcessError:
                # the SIGCHLD handler reaped it first; its status is in _exited
                if pid in _exited:
                    continue
                return 0
            if got == pid:
                return os.waitstatus_to_exitcode(status)
    finally:
        _watched.discard(pid)
        _exited.pop(pid, None)


# --- the end of a boot ------------------------------------------------------------------------
def sync() -> None:
    os.sync()


def reboot(cmd: int) -> None:
    """reboot(2). Returns only on failure (raises OSError) or for CAD on/off commands."""
    if _libc.reboot(cmd) != 0:
        raise _oserror("reboot", hex(cmd))


def restart() -> None:
    sync()
    reboot(LINUX_REBOOT_CMD_RESTART)


def poweroff() -> None:
    sync()
    reboot(LINUX_REBOOT_CMD_POWER_OFF)


def sleep_forever(heartbeat: float, say: Callable[[], None] | None = None) -> None:
    """Last resort when reboot(2) failed: PID 1 must not exit (the kernel would panic
    without telling why), and must not go silent."""
    while True:
        if say is not None:
            say()
        time.sleep(heartbeat)
