"""Path A's exit: kexec_file_load(2) the target kernel, then reboot(LINUX_REBOOT_CMD_KEXEC).

The kernel's file loader wants a bare bzImage/Image (or a PE it can parse), so gzip and
EFI-zboot wrappers are unwrapped first and the bare kernel written to /run. Standard
library only: runs as PID 1 in the bootstrap initramfs.
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cloudboot.arch import host_arch
from cloudboot.init import pid1
from cloudboot.init.storage import kernelimage

if TYPE_CHECKING:  # the initramfs import walk follows this: the planners are packed
    from cloudboot.init.kexec import arm32, arm64, loongarch64, riscv64  # noqa: F401

KEXEC_FILE_UNLOAD = 0x1
KEXEC_FILE_ON_CRASH = 0x2
KEXEC_FILE_NO_INITRAMFS = 0x4

# Arches whose Debian kernels lack KEXEC_FILE: our own segment layout + kexec_load(2), in a
# module imported only once kexec_file_load said ENOSYS (PID 1 on x86_64 never loads them).
KEXEC_LOAD_PLANNERS: dict[str, str] = {
    "aarch64": "cloudboot.init.kexec.arm64",
    "armv7": "cloudboot.init.kexec.arm32",
    "riscv64": "cloudboot.init.kexec.riscv64",
    "loongarch64": "cloudboot.init.kexec.loongarch64",
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class KexecRefused(OSError):
    """The kernel refused kexec_file_load (or the kexec reboot); carries errno and its name."""

    def __init__(self, err: int, what: str = "kexec_file_load") -> None:
        self.name = errno.errorcode.get(err, f"errno {err}")
        self.what = what  # the call that was refused: kexec_load on arm64's fallback
        super().__init__(err, f"{what} refused: {self.name} ({os.strerror(err)})")


def kexec_file_load(kernel_fd: int, initrd_fd: int | None, cmdline: str, flags: int = 0) -> None:
    """The raw syscall. initrd_fd None adds KEXEC_FILE_NO_INITRAMFS; raises KexecRefused."""
    nr = host_arch().kexec_file_load_nr
    if nr is None:
        raise KexecRefused(errno.ENOSYS, f"kexec_file_load on {host_arch().name}")
    if initrd_fd is None:
        flags |= KEXEC_FILE_NO_INITRAMFS
    raw = cmdline.encode() + b"\0"  # the kernel wants the length including the NUL
    rc = _libc.syscall(
        ctypes.c_long(nr),
        ctypes.c_int(kernel_fd),
        ctypes.c_int(-1 if initrd_fd is None else initrd_fd),
        ctypes.c_ulong(len(raw)),
        ctypes.c_char_p(raw),
        ctypes.c_ulong(flags),
    )
    if rc != 0:
        raise KexecRefused(ctypes.get_errno())


def bare_kernel(kernel: Path, workdir: Path) -> Path:
    """`kernel` itself if the loader can take it, else its unwrapped copy in `workdir`."""
    data = kernel.read_bytes()
    bare = kernelimage.unwrap(data)
    if bare is data or bare == data:
        return kernel
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / f"{kernel.name}.unwrapped"
    out.write_bytes(bare)
    return out


def load(kernel: Path, initrd: Path | None, cmdline: str,
         workdir: Path = Path("/run/cloudboot")) -> Path:
    """Load the target kernel for kexec; returns the kernel file actually loaded."""
    image = bare_kernel(kernel, workdir)
    kfd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
    ifd = None
    try:
        if initrd is not None:
            ifd = os.open(initrd, os.O_RDONLY | os.O_CLOEXEC)
        kexec_file_load(kfd, ifd, cmdline)
    except KexecRefused as e:
        # Debian's arm64, armhf, riscv64 and loong64 kernels lack KEXEC_FILE (ENOSYS) but
        # have KEXEC: lay the segments out ourselves and use kexec_load(2).
        planner = KEXEC_LOAD_PLANNERS.get(host_arch().name)
        if e.errno != errno.ENOSYS or planner is None:
            raise
        from cloudboot.init.kexec.segments import KexecLoadError

        try:
            importlib.import_module(planner).load(image, initrd, cmdline)
        except KexecLoadError:
            raise
        except OSError as err:
            raise KexecRefused(err.errno or errno.EIO, "kexec_load") from None
    finally:
        os.close(kfd)
        if ifd is not None:
            os.close(ifd)
    return image


def execute() -> None:
    """Jump into the loaded kernel. Returns only by raising KexecRefused."""
    pid1.sync()
    try:
        pid1.reboot(pid1.LINUX_REBOOT_CMD_KEXEC)
    except OSError as e:
        raise KexecRefused(e.errno or errno.EIO, "reboot(LINUX_REBOOT_CMD_KEXEC)") from None
    raise KexecRefused(errno.EIO, "reboot(LINUX_REBOOT_CMD_KEXEC) returned")
