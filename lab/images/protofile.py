"""mkfs.xfs prototype files (`mkfs.xfs -p`) from a directory tree, so XFS needs no mount.

The format cannot express the sticky bit, hard links, extended attributes or names with
white space; `sticky_paths` reports what the caller must fix afterwards (xfs_db -x), and
unrepresentable names raise ProtofileError naming the path.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path


class ProtofileError(ValueError):
    pass


def _check_token(text: str, where: str) -> None:
    if not text or any(c.isspace() for c in text) or text.startswith(":") or text == "$":
        raise ProtofileError(f"{where}: {text!r} cannot be written in an XFS protofile "
                             "(white space, a leading ':' or a lone '$')")


def _mode(st: os.stat_result) -> str:
    kinds = {stat.S_IFREG: "-", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c",
             stat.S_IFBLK: "b", stat.S_IFIFO: "p"}
    kind = kinds.get(stat.S_IFMT(st.st_mode))
    if kind is None:
        raise ProtofileError(f"file type {stat.S_IFMT(st.st_mode):o} has no protofile form")
    suid = "u" if st.st_mode & stat.S_ISUID else "-"
    sgid = "g" if st.st_mode & stat.S_ISGID else "-"
    return f"{kind}{suid}{sgid}{st.st_mode & 0o777:03o}"


def _entries(directory: Path, depth: int) -> Iterator[str]:
    indent = "  " * depth
    for name in sorted(os.listdir(directory)):
        path = directory / name
        _check_token(name, str(path))
        st = os.lstat(path)
        head = f"{indent}{name} {_mode(st)} {st.st_uid} {st.st_gid}"
        if stat.S_ISDIR(st.st_mode):
            yield head
            yield from _entries(path, depth + 1)
            yield f"{indent}$"
        elif stat.S_ISREG(st.st_mode):
            _check_token(str(path), str(path))
            yield f"{head} {path}"
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            _check_token(target, f"symlink {path}")
            yield f"{head} {target}"
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            yield f"{head} {os.major(st.st_rdev)} {os.minor(st.st_rdev)}"
        elif stat.S_ISFIFO(st.st_mode):
            yield head
        else:
            raise ProtofileError(f"{path}: sockets have no protofile form")


def protofile(root: Path) -> str:
    """The protofile text describing `root` (sources are referenced by absolute path)."""
    root = Path(root).resolve()
    st = os.lstat(root)
    lines = ["cloudboot-lab", "0 0", f"{_mode(st)} {st.st_uid} {st.st_gid}"]
    lines.extend(_entries(root, 1))
    lines.append("$")
    return "\n".join(lines) + "\n"


def sticky_paths(root: Path) -> list[tuple[str, int]]:
    """(path inside the filesystem, full st_mode) of every directory/file with the sticky bit."""
    root = Path(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            if st.st_mode & stat.S_ISVTX and not stat.S_ISLNK(st.st_mode):
                found.append(("/" + str(path.relative_to(root)), st.st_mode))
    return sorted(found)
