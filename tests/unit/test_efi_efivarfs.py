"""efivarfs file format and write discipline, on a plain directory (the real efivarfs is
exercised in a guest boot)."""

from __future__ import annotations

import ctypes
import fcntl
import os
import platform
import struct
from pathlib import Path

import pytest

from cloudboot.efi import efivarfs as ev
from cloudboot.efi import guid

G = guid.CLOUDBOOT_VENDOR


def _flags(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = bytearray(ctypes.sizeof(ctypes.c_long))
        fcntl.ioctl(fd, ev.FS_IOC_GETFLAGS, buf)
        return int(struct.unpack_from("<i", buf)[0])
    finally:
        os.close(fd)


def _set_immutable(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = bytearray(ctypes.sizeof(ctypes.c_long))
        fcntl.ioctl(fd, ev.FS_IOC_GETFLAGS, buf)
        struct.pack_into("<i", buf, 0, struct.unpack_from("<i", buf)[0] | ev.FS_IMMUTABLE_FL)
        fcntl.ioctl(fd, ev.FS_IOC_SETFLAGS, buf)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@pytest.mark.skipif(platform.machine() != "x86_64",
                    reason="host: constants checked for x86_64 only")
def test_ioctl_numbers_match_linux_headers() -> None:
    assert ev.FS_IOC_GETFLAGS == 0x80086601
    assert ev.FS_IOC_SETFLAGS == 0x40086602


def test_write_read_file_format(tmp_path: Path) -> None:
    ev.write_var("CloudBootTarget", G.upper(), b"debian\0", root=tmp_path)
    f = tmp_path / f"CloudBootTarget-{G}"
    assert f.read_bytes() == struct.pack("<I", 7) + b"debian\0"
    assert ev.read_var("CloudBootTarget", G, root=tmp_path) == (7, b"debian\0")
    assert ev.read_var("CloudBootCmdline", G, root=tmp_path) is None
    # Replacing with shorter data leaves no tail behind.
    ev.write_var("CloudBootTarget", G, b"x", attributes=3, root=tmp_path)
    assert f.read_bytes() == b"\x03\0\0\0x"


def test_list_and_delete(tmp_path: Path) -> None:
    for name in ("CloudBootMark", "CloudBootTarget"):
        ev.write_var(name, G, b"1", root=tmp_path)
    ev.write_var("BootOrder", guid.EFI_GLOBAL_VARIABLE, b"\0\0", root=tmp_path)
    assert ev.list_vars(G, root=tmp_path) == ["CloudBootMark", "CloudBootTarget"]
    assert ev.delete_var("CloudBootMark", G, root=tmp_path)
    assert not ev.delete_var("CloudBootMark", G, root=tmp_path)
    assert ev.list_vars(G, root=tmp_path) == ["CloudBootTarget"]
    assert ev.list_vars(guid.EFI_GLOBAL_VARIABLE, root=tmp_path) == ["BootOrder"]


def test_short_file_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / f"CloudBootMark-{G}").write_bytes(b"\1\0")
    with pytest.raises(ev.EfiVarError, match=rf"CloudBootMark-{G}: 2 byte"):
        ev.read_var("CloudBootMark", G, root=tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="host: setting FS_IMMUTABLE_FL needs root")
def test_immutable_flag_is_cleared_before_write_and_delete(tmp_path: Path) -> None:
    ev.write_var("CloudBootMark", G, b"old", root=tmp_path)
    f = tmp_path / f"CloudBootMark-{G}"
    if not _set_immutable(f):
        pytest.skip(f"host: {tmp_path} does not support inode flags")
    assert _flags(f) & ev.FS_IMMUTABLE_FL
    with pytest.raises(PermissionError):
        open(f, "wb").close()  # what efivarfs users hit without the ioctl
    ev.write_var("CloudBootMark", G, b"new", root=tmp_path)
    assert ev.read_var("CloudBootMark", G, root=tmp_path) == (ev.NV_BS_RT, b"new")
    assert _set_immutable(f)
    assert ev.delete_var("CloudBootMark", G, root=tmp_path)
    assert not f.exists()


def test_plain_directory_is_not_efivarfs(tmp_path: Path) -> None:
    assert not ev.is_efivarfs(tmp_path)
    assert ev.var_path("Boot0001", guid.EFI_GLOBAL_VARIABLE, "/x").as_posix() == (
        "/x/Boot0001-8be4df61-93ca-11d2-aa0d-00e098032b8c"
    )
