"""Stage a target's kernel and initrd on the cache ESP (Path C, DESIGN §5).

Files: `\\EFI\\Linux\\<safe>-vmlinuz.efi` and `\\EFI\\Linux\\<safe>-initrd`. Each is written
under a temporary name, fsync'ed, its page cache dropped and read back to check size and
SHA-256, and only then renamed into place, so the firmware never starts a half-written file.
At most KEEP targets stay staged; the oldest that no Boot#### points at goes first.

The ESP is mounted read-write with the kernel's vfat driver and unmounted before the reboot
(the driver marks a mounted volume dirty). Standard library only (PID 1).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cloudboot.efi.loadopt import safe_name
from cloudboot.init import kernelimage, pid1

KEEP = 3
LINUX_DIR = "EFI/Linux"
KERNEL_SUFFIX = "-vmlinuz.efi"
INITRD_SUFFIX = "-initrd"
TMP_SUFFIX = ".cbtmp"
SLACK = 1 << 20  # FAT cluster rounding and directory growth
CHUNK = 1 << 20


class StagingError(OSError):
    """Staging failed; the message names the file and what went wrong."""


@dataclass(frozen=True)
class StagedFile:
    efi_path: str  # \EFI\Linux\…
    size: int
    sha256: str


@dataclass
class Staged:
    target: str
    safe: str
    kernel: StagedFile
    initrd: StagedFile | None
    dropped: list[str] = field(default_factory=list)  # safe names of targets removed
    seconds: float = 0.0


def efi_path(name: str) -> str:
    return "\\" + f"{LINUX_DIR}/{name}".replace("/", "\\")


def kernel_for_firmware(data: bytes, pe_machine: int | None = None) -> bytes:
    """The kernel bytes the firmware can start: gzip unwrapped, an EFI stub required.

    An EFI zboot image is already a PE the firmware runs; only plain gzip is peeled.
    """
    if data[:2] == b"\x1f\x8b":
        try:
            data = kernelimage.unwrap(data)
        except kernelimage.KernelImageError as e:
            raise StagingError(0, f"cannot unwrap the kernel: {e}") from e
    if not kernelimage.is_efi_stub(data):
        raise StagingError(0, "the target kernel is not an EFI-stub image "
                           f"({kernelimage.describe(data)}): the firmware cannot start it; "
                           "Path C needs a kernel built with CONFIG_EFI_STUB (or use Path A)")
    machine = kernelimage.pe_machine(data)
    if pe_machine is not None and machine != pe_machine:
        have = kernelimage.PE_MACHINES.get(machine or 0, hex(machine or 0))
        want = kernelimage.PE_MACHINES.get(pe_machine, hex(pe_machine))
        raise StagingError(0, f"the target kernel is an EFI stub for {have}, this machine "
                           f"needs {want}")
    return data


def staged_targets(esp: Path) -> dict[str, float]:
    """Safe names staged on the ESP -> kernel file mtime."""
    d = esp / LINUX_DIR
    out: dict[str, float] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(d):
            if entry.is_file() and entry.name.endswith(KERNEL_SUFFIX):
                out[entry.name[: -len(KERNEL_SUFFIX)]] = entry.stat().st_mtime
    return out


def referenced_names(paths: Iterable[str]) -> set[str]:
    """Safe names of staged targets that the given EFI file paths point at."""
    out = set()
    for p in paths:
        norm = p.replace("\\", "/").strip("/").lower()
        head, _, name = norm.rpartition("/")
        if head == LINUX_DIR.lower() and name.endswith(KERNEL_SUFFIX):
            out.add(name[: -len(KERNEL_SUFFIX)])
    return out


def _remove_target(esp: Path, safe: str) -> None:
    for suffix in (KERNEL_SUFFIX, INITRD_SUFFIX):
        with contextlib.suppress(FileNotFoundError):
            (esp / LINUX_DIR / (safe + suffix)).unlink()


def prune(esp: Path, keep_free: int, current: str, referenced: set[str]) -> list[str]:
    """Drop the oldest staged targets no Boot#### points at until at most `keep_free` others
    remain (the current target is not counted and never dropped)."""
    staged = staged_targets(esp)
    others = sorted((t for t in staged if t.lower() != current.lower()), key=lambda t: staged[t])
    dropped: list[str] = []
    for name in others:
        if len(others) - len(dropped) <= keep_free:
            break
        if name.lower() in referenced:
            continue
        _remove_target(esp, name)
        dropped.append(name)
    return dropped


def remove_all(esp: Path) -> list[str]:
    """Reset: remove every staged target and leftover temporary file; returns what went."""
    gone = []
    d = esp / LINUX_DIR
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(os.scandir(d), key=lambda e: e.name):
            if entry.is_file() and entry.name.endswith((KERNEL_SUFFIX, INITRD_SUFFIX, TMP_SUFFIX)):
                os.unlink(entry.path)
                gone.append(efi_path(entry.name))
    return gone


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _write_verified(src: Iterable[bytes], dest: Path) -> StagedFile:
    """Write chunks to dest+TMP, fsync, re-read from disk, compare, rename over dest."""
    tmp = dest.with_name(dest.name + TMP_SUFFIX)
    h = hashlib.sha256()
    size = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for chunk in src:
                h.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            os.fsync(fd)
            # Drop the cached pages so the read below comes from the medium.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        back = hashlib.sha256()
        got = 0
        with open(tmp, "rb", buffering=0) as f:
            while chunk := f.read(CHUNK):
                back.update(chunk)
                got += len(chunk)
        if got != size or back.hexdigest() != h.hexdigest():
            raise StagingError(0, f"{tmp}: read back {got} bytes sha256 {back.hexdigest()}, "
                               f"wrote {size} bytes sha256 {h.hexdigest()}")
        os.rename(tmp, dest)
    except StagingError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StagingError(e.errno or 0, f"write {dest}: {e.strerror or e}") from e
    return StagedFile(efi_path(f"{dest.name}"), size, h.hexdigest())


def _file_chunks(path: Path) -> Iterable[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):  # not every file system syncs directories
            os.fsync(fd)
    finally:
        os.close(fd)


def stage(esp: Path, target: str, kernel: bytes, initrd: Path | None, *,
          referenced: set[str] | None = None, keep: int = KEEP) -> Staged:
    """Stage `kernel` (bytes ready for the firmware, see kernel_for_firmware) and `initrd`.

    `referenced`: safe names some Boot#### points at (never pruned). Raises StagingError.
    """
    start = time.monotonic()
    safe = safe_name(target)
    d = esp / LINUX_DIR
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StagingError(e.errno or 0, f"create {d}: {e.strerror}") from e
    for leftover in d.glob("*" + TMP_SUFFIX):  # a run killed mid-write
        with contextlib.suppress(OSError):
            leftover.unlink()
    refs = {r.lower() for r in (referenced or set())}
    dropped = prune(esp, keep - 1, safe, refs)
    initrd_size = initrd.stat().st_size if initrd else 0
    need = len(kernel) + initrd_size + SLACK
    have = free_bytes(esp)
    if have < need:
        # The old copy of this very target goes too, unless a Boot#### still points at it.
        if safe.lower() not in refs:
            _remove_target(esp, safe)
        dropped += prune(esp, 0, safe, refs)
        have = free_bytes(esp)
    if have < need:
        raise StagingError(28, f"cache ESP {esp} is full: {have} bytes free, staging "
                           f"{target} needs {need} (kernel {len(kernel)}, initrd {initrd_size}); "
                           "make a bigger cache disk or run with cloudboot.reset=1")
    init_file = None
    if initrd is not None:
        init_file = _write_verified(_file_chunks(initrd), d / (safe + INITRD_SUFFIX))
    kern_file = _write_verified([kernel], d / (safe + KERNEL_SUFFIX))
    _fsync_dir(d)
    return Staged(target, safe, kern_file, init_file, dropped,
                  round(time.monotonic() - start, 3))


def mount_rw(device: str, target: Path) -> None:
    """Mount the ESP read-write with the vfat driver (no mount helper in the initramfs)."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        pid1.mount(device, str(target), "vfat", pid1.MS_NOSUID | pid1.MS_NODEV | pid1.MS_NOEXEC,
                   "iocharset=iso8859-1,shortname=mixed")
    except OSError as e:
        raise StagingError(e.errno or 0, f"{e} (is the vfat module loaded and the ESP a FAT "
                           "file system?)") from e


def unmount(target: Path) -> None:
    os.sync()
    try:
        pid1.umount(str(target))
    except OSError as e:
        raise StagingError(e.errno or 0, f"{e}: the ESP stays mounted and marked dirty") from e
