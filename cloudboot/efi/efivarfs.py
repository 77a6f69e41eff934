"""EFI variables through Linux efivarfs, as the guest's PID 1 uses them.

Each variable is a file `<Name>-<guid>` whose content is a 4-byte little-endian attribute word
followed by the data. efivarfs wants the whole variable in ONE write(), cannot seek, and marks
most files immutable (FS_IMMUTABLE_FL), which must be cleared before writing or unlinking.
All functions take `root` so tests can run against a plain directory.

Standard library only: runs inside the bootstrap initramfs.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from pathlib import Path

from cloudboot.efi import guid as _guid

EFIVARFS = "/sys/firmware/efi/efivars"

EFI_VARIABLE_NON_VOLATILE = 0x1
EFI_VARIABLE_BOOTSERVICE_ACCESS = 0x2
EFI_VARIABLE_RUNTIME_ACCESS = 0x4
EFI_VARIABLE_APPEND_WRITE = 0x40
NV_BS_RT = EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS

FS_IMMUTABLE_FL = 0x00000010


def _ioc(direction: int, nr: int, size: int) -> int:
    # asm-generic _IOC layout (x86, arm, arm64, riscv, loongarch): dir<<30 | size<<16 | 'f'<<8 | nr
    return (direction << 30) | (size << 16) | (ord("f") << 8) | nr


# Declared with sizeof(long) in linux/fs.h, although the kernel reads and writes an int.
_LONG = ctypes.sizeof(ctypes.c_long)
FS_IOC_GETFLAGS = _ioc(2, 1, _LONG)
FS_IOC_SETFLAGS = _ioc(1, 2, _LONG)


class EfiVarError(OSError):
    pass


def var_path(name: str, vendor: str, root: str | Path = EFIVARFS) -> Path:
    return Path(root) / f"{name}-{_guid.normalize(vendor)}"


def _mounts() -> list[tuple[str, str]]:
    """(mount point, fs type) from /proc/self/mounts."""
    try:
        with open("/proc/self/mounts") as f:
            rows = [line.split() for line in f]
    except OSError:
        return []
    return [(r[1].replace("\\040", " "), r[2]) for r in rows if len(r) >= 3]


def is_efivarfs(root: str | Path = EFIVARFS) -> bool:
    real = os.path.realpath(root)
    return any(mp == real and fs == "efivarfs" for mp, fs in _mounts())


def ensure_mounted(root: str | Path = EFIVARFS) -> None:
    """Mount efivarfs at `root` unless it already is (PID 1 has no mount helper)."""
    if is_efivarfs(root):
        return
    os.makedirs(root, exist_ok=True)
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.mount(b"efivarfs", os.fsencode(root), b"efivarfs", ctypes.c_ulong(0), None)
    if rc != 0:
        err = ctypes.get_errno()
        raise EfiVarError(err, f"mount efivarfs on {root}: {os.strerror(err)} "
                               "(is the efivarfs module loaded and the system booted via UEFI?)")


def _clear_immutable(path: Path) -> None:
    """Clear FS_IMMUTABLE_FL; file systems without inode flags are left alone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return
    try:
        buf = bytearray(_LONG)
        try:
            fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)
        except OSError as e:
            if e.errno in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                return
            raise EfiVarError(e.errno, f"FS_IOC_GETFLAGS on {path}: {e.strerror}") from None
        flags = struct.unpack_from("<i", buf)[0]
        if flags & FS_IMMUTABLE_FL:
            struct.pack_into("<i", buf, 0, flags & ~FS_IMMUTABLE_FL)
            try:
                fcntl.ioctl(fd, FS_IOC_SETFLAGS, buf)
            except OSError as e:
                raise EfiVarError(e.errno, f"clear immutable flag on {path}: {e.strerror}") \
                    from None
    finally:
        os.close(fd)


def encode(data: bytes, attributes: int = NV_BS_RT) -> bytes:
    """The efivarfs file content: attributes (UINT32 LE) then data."""
    return struct.pack("<I", attributes) + data


def decode(content: bytes, where: str = "variable") -> tuple[int, bytes]:
    if len(content) < 4:
        raise EfiVarError(errno.EINVAL, f"{where}: {len(content)} byte(s), "
                                        "shorter than the 4-byte attribute prefix")
    return struct.unpack_from("<I", content)[0], content[4:]


def read_var(name: str, vendor: str, root: str | Path = EFIVARFS) -> tuple[int, bytes] | None:
    """(attributes, data), or None when the variable does not exist."""
    path = var_path(name, vendor, root)
    try:
        with open(path, "rb", buffering=0) as f:
            content = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise EfiVarError(e.errno, f"read {path}: {e.strerror}") from None
    return decode(content, str(path))


def write_var(name: str, vendor: str, data: bytes, attributes: int = NV_BS_RT,
              root: str | Path = EFIVARFS) -> None:
    """Create or replace a variable with one write(), then read it back to check it stuck."""
    path = var_path(name, vendor, root)
    _clear_immutable(path)
    content = encode(data, attributes)
    # efivarfs replaces the variable on write and cannot truncate; a plain directory must.
    flags = os.O_WRONLY | os.O_CREAT
    if not is_efivarfs(root):
        flags |= os.O_TRUNC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        raise EfiVarError(e.errno, f"open {path} for writing: {e.strerror}") from None
    try:
        written = os.write(fd, content)
    except OSError as e:
        raise EfiVarError(e.errno, f"write {len(content)} bytes to {path}: {e.strerror} "
                                   "(variable store full or write protected?)") from None
    finally:
        os.close(fd)
    if written != len(content):
        raise EfiVarError(errno.EIO, f"short write to {path}: {written} of {len(content)} bytes")
    if attributes & EFI_VARIABLE_APPEND_WRITE:
        return  # the stored value is the old data plus ours: nothing simple to compare
    back = read_var(name, vendor, root)
    want = attributes & ~EFI_VARIABLE_APPEND_WRITE
    if back is None or back[1] != data or (back[0] & NV_BS_RT) != (want & NV_BS_RT):
        got = "nothing" if back is None else f"attributes 0x{back[0]:x}, {len(back[1])} bytes"
        raise EfiVarError(errno.EIO, f"{path}: read back {got}, wrote attributes "
                                     f"0x{attributes:x}, {len(data)} bytes")


def delete_var(name: str, vendor: str, root: str | Path = EFIVARFS) -> bool:
    """Delete a variable; False when it did not exist."""
    path = var_path(name, vendor, root)
    _clear_immutable(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as e:
        raise EfiVarError(e.errno, f"delete {path}: {e.strerror}") from None
    return True


def list_vars(vendor: str, root: str | Path = EFIVARFS) -> list[str]:
    """Names of the variables under `vendor`, sorted."""
    suffix = "-" + _guid.normalize(vendor)
    try:
        names = os.listdir(root)
    except OSError as e:
        raise EfiVarError(e.errno, f"list {root}: {e.strerror}") from None
    return sorted(n[: -len(suffix)] for n in names if n.lower().endswith(suffix))
