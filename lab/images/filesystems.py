"""Filesystem images from a tree, never mounted: ext4 -d, XFS protofile, btrfs --rootdir."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from lab.images.protofile import protofile, sticky_paths

FILESYSTEMS = ("ext4", "xfs", "btrfs")
MIB = 1024 * 1024
# mkfs.xfs refuses filesystems under 300 MB; btrfs wants ~114 MiB. Images are sparse anyway.
MIN_SIZE = {"ext4": 64 * MIB, "xfs": 320 * MIB, "btrfs": 256 * MIB}


class FilesystemError(RuntimeError):
    pass


def tree_bytes(root: Path) -> int:
    """Allocated bytes below `root`, each inode counted once."""
    seen: set[int] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_ino in seen:
                continue
            seen.add(st.st_ino)
            total += max(st.st_blocks * 512, 4096 if stat.S_ISDIR(st.st_mode) else 0)
    return total


def size_for(root: Path, fs: str) -> int:
    """A filesystem size with room for metadata and a little growth, in whole 16 MiB."""
    want = int(tree_bytes(root) * 1.5) + 128 * MIB
    want = max(want, MIN_SIZE[fs])
    return -(-want // (16 * MIB)) * (16 * MIB)


def _run(cmd: list[str], what: str) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise FilesystemError(f"{what}: {cmd[0]} is not installed") from None
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip()[-1500:]
        raise FilesystemError(f"{what}: `{' '.join(cmd)}` exited {proc.returncode}:\n{tail}")
    return proc.stdout


def make_filesystem(root: Path, out: Path, fs: str, label: str, uuid: str,
                    size: int | None = None) -> int:
    """Write a `fs` filesystem holding `root` into the file `out`; returns its size in bytes."""
    if fs not in FILESYSTEMS:
        raise FilesystemError(f"unknown filesystem {fs!r} (known: {', '.join(FILESYSTEMS)})")
    size = size or size_for(root, fs)
    with open(out, "wb") as f:
        f.truncate(size)
    what = f"building {fs} image {out} from {root}"
    if fs == "ext4":
        _run(["mkfs.ext4", "-q", "-F", "-L", label, "-U", uuid, "-d", str(root), str(out)],
             what)
    elif fs == "btrfs":
        _run(["mkfs.btrfs", "-q", "-f", "-L", label, "-U", uuid, "--rootdir", str(root),
              str(out)], what)
    else:
        proto = out.with_name(out.name + ".proto")
        proto.write_text(protofile(root))
        try:
            _run(["mkfs.xfs", "-q", "-f", "-L", label, "-m", f"uuid={uuid}", "-p", str(proto),
                  str(out)], what)
        finally:
            proto.unlink()
        fix_xfs_modes(out, sticky_paths(root))
    return size


def fix_xfs_modes(image: Path, paths: list[tuple[str, int]]) -> None:
    """Restore modes a protofile cannot carry (the sticky bit of /tmp and friends)."""
    for path, mode in paths:
        _run(["xfs_db", "-x", "-c", f"path {path}", "-c", f"write core.mode 0{mode:o}",
              str(image)], f"restoring mode {mode:o} of {path} in {image}")


def read_label_uuid(image: Path) -> tuple[str, str, str]:
    """(TYPE, LABEL, UUID) of a filesystem image as blkid sees it."""
    out = _run(["blkid", "-p", "-o", "export", str(image)], f"probing {image}")
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return fields.get("TYPE", ""), fields.get("LABEL", ""), fields.get("UUID", "")
