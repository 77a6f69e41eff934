"""A reproducible newc ("070701") cpio writer, the format Linux unpacks as an initramfs."""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member. `data` is file contents or a symlink target."""

    path: str
    mode: int  # full st_mode (type bits included)
    data: bytes = b""
    uid: int = 0
    gid: int = 0
    mtime: int = 0

    @staticmethod
    def directory(path: str, perm: int = 0o755) -> Entry:
        return Entry(path, stat.S_IFDIR | perm)

    @staticmethod
    def file(path: str, data: bytes, perm: int = 0o644) -> Entry:
        return Entry(path, stat.S_IFREG | perm, data)

    @staticmethod
    def symlink(path: str, target: str) -> Entry:
        return Entry(path, stat.S_IFLNK | 0o777, target.encode())

    @staticmethod
    def chardev(path: str, major: int, minor: int, perm: int = 0o600) -> Entry:
        # Device numbers ride in `data` as "major:minor" for the writer to split out.
        return Entry(path, stat.S_IFCHR | perm, f"{major}:{minor}".encode())


def _pad(n: int) -> bytes:
    return b"\0" * ((4 - n % 4) % 4)


def _header(ino: int, e: Entry, size: int, name: bytes, rdev: tuple[int, int]) -> bytes:
    fields = [
        ino, e.mode, e.uid, e.gid, 2 if stat.S_ISDIR(e.mode) else 1, e.mtime, size,
        0, 0, rdev[0], rdev[1], len(name) + 1, 0,
    ]
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def write(out: BinaryIO, entries: Iterable[Entry]) -> None:
    """Write entries in the order given (parents must come before children), then the trailer.

    Inode numbers are assigned sequentially so the output depends only on the entries.
    """
    for ino, e in enumerate(entries, 1):
        name = e.path.lstrip("/").encode() or b"."
        rdev = (0, 0)
        data = e.data
        if stat.S_ISCHR(e.mode) or stat.S_ISBLK(e.mode):
            major, minor = (int(x) for x in e.data.decode().split(":"))
            rdev, data = (major, minor), b""
        elif stat.S_ISDIR(e.mode):
            data = b""
        head = _header(ino, e, len(data), name, rdev) + name + b"\0"
        out.write(head + _pad(len(head)))
        out.write(data + _pad(len(data)))
    trailer = _header(0, Entry(TRAILER, 0), 0, TRAILER.encode(), (0, 0)) + TRAILER.encode() + b"\0"
    out.write(trailer + _pad(len(trailer)))


def with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """Add missing parent directories and sort so that every parent precedes its children."""
    by_path: dict[str, Entry] = {}
    for e in entries:
        by_path[e.path.strip("/")] = e
    for p in list(by_path):
        parts = p.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            by_path.setdefault(parent, Entry.directory(parent))
    return [by_path[p] for p in sorted(by_path)]
