"""Mount a target filesystem read-only through mount(2), never replaying its journal.

The target disk belongs to the distro we are about to boot: replaying a dirty journal from
the bootstrap kernel would write to it, so each filesystem gets its "don't replay" option.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

MS_RDONLY = 0x1
MNT_DETACH = 0x2

# Option sets tried in order; the first the kernel accepts wins (older kernels lack some).
_NO_REPLAY: dict[str, list[str]] = {
    "ext4": ["noload"],
    "ext3": ["noload"],
    "ext2": [""],
    "xfs": ["norecovery"],
    "btrfs": ["rescue=nologreplay", "nologreplay"],
    "vfat": [""],
    "iso9660": [""],
}


class MountError(OSError):
    """mount(2) or umount(2) failed; the message names errno, device, target and fstype."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _errname(code: int) -> str:
    return errno.errorcode.get(code, f"errno {code}")


def _mount(source: str, target: str, fstype: str, flags: int, data: str) -> int:
    libc = _libc()
    rc = libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode(),
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    return 0 if rc == 0 else ctypes.get_errno()


def mount_ro(device: str | Path, target: str | Path, fstype: str, subvol: str | None = None) -> str:
    """Mount `device` on `target` read-only without journal replay; returns the options used.

    ext2/ext3 fall back to the ext4 driver (the bootstrap kernel may only have that one).
    """
    device, target = str(device), str(target)
    if fstype not in _NO_REPLAY:
        raise MountError(
            errno.EINVAL, f"mount {device} on {target}: unsupported filesystem type {fstype!r}"
        )
    if subvol and fstype != "btrfs":
        raise MountError(
            errno.EINVAL, f"mount {device} on {target}: subvol={subvol} needs btrfs, not {fstype}"
        )
    attempts: list[tuple[str, str]] = []
    drivers = [fstype] + (["ext4"] if fstype in ("ext2", "ext3") else [])
    for driver in drivers:
        for opt in _NO_REPLAY[fstype]:
            opts = [o for o in (opt, f"subvol={subvol}" if subvol else "") if o]
            attempts.append((driver, ",".join(opts)))
    failures = []
    code = 0
    for driver, data in attempts:
        code = _mount(device, target, driver, MS_RDONLY, data)
        if code == 0:
            return data
        failures.append(f"{driver}[{data or '-'}]: {_errname(code)}")
        if code not in (errno.EINVAL, errno.ENODEV):
            break  # only a rejected option or missing driver is worth another try
    raise MountError(
        code,
        f"mount {device} on {target} as {fstype} read-only failed: {os.strerror(code)} "
        f"(tried {'; '.join(failures)})",
    )


def umount(target: str | Path, lazy: bool = False) -> None:
    """Unmount `target`; `lazy` detaches it even if busy."""
    rc = _libc().umount2(str(target).encode(), MNT_DETACH if lazy else 0)
    if rc != 0:
        code = ctypes.get_errno()
        raise MountError(code, f"umount {target} failed: {_errname(code)} {os.strerror(code)}")
