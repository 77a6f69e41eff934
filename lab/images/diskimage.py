"""Raw GPT disks carrying one filesystem image as a single partition at 1 MiB (sgdisk)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cloudboot.arch import get_arch

MIB = 1024 * 1024
SECTOR = 512

# Discoverable Partitions root types where one exists, else "Linux filesystem".
_ROOT_TYPE = {"x86_64": "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
              "aarch64": "b921b045-1df0-41c3-af44-4c6f280d3fae"}
LINUX_FS_TYPE = "0fc63daf-8483-4772-8e79-3d69d8477de4"


class DiskError(RuntimeError):
    pass


def root_type(arch: str) -> str:
    return _ROOT_TYPE.get(get_arch(arch).name, LINUX_FS_TYPE)


def _copy_sparse(src: Path, dst_fd: int, offset: int) -> None:
    """Copy only the data extents of `src` to `dst_fd` at `offset`: holes stay holes."""
    with open(src, "rb") as f:
        fd = f.fileno()
        end = os.fstat(fd).st_size
        pos = 0
        while pos < end:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            while data < hole:
                n = os.copy_file_range(fd, dst_fd, hole - data, data, offset + data)
                if n == 0:
                    raise DiskError(f"short copy of {src} at {data}")
                data += n
            pos = hole


def gpt_disk(fs_image: Path, out: Path, *, part_name: str, part_uuid: str, disk_uuid: str,
             type_guid: str = LINUX_FS_TYPE) -> None:
    """Write `out`: GPT, partition 1 = `fs_image` at 1 MiB, named `part_name`."""
    fs_size = fs_image.stat().st_size
    if fs_size % SECTOR:
        raise DiskError(f"{fs_image}: size {fs_size} is not a multiple of {SECTOR}")
    first = MIB // SECTOR
    last = first + fs_size // SECTOR - 1
    # 1 MiB in front for the primary GPT and alignment, 1 MiB behind for the backup GPT.
    with open(out, "wb") as f:
        f.truncate(fs_size + 2 * MIB)
    cmd = ["sgdisk", "--clear", f"--disk-guid={disk_uuid}", f"--new=1:{first}:{last}",
           f"--typecode=1:{type_guid}", f"--change-name=1:{part_name}",
           f"--partition-guid=1:{part_uuid}", str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise DiskError("sgdisk is not installed (Debian package gdisk)") from None
    if proc.returncode != 0:
        raise DiskError(f"partitioning {out}: `{' '.join(cmd)}` exited {proc.returncode}: "
                        f"{(proc.stdout + proc.stderr).strip()[-800:]}")
    fd = os.open(out, os.O_WRONLY)
    try:
        _copy_sparse(fs_image, fd, MIB)
        os.fsync(fd)
    finally:
        os.close(fd)
