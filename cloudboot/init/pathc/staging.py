"""Stage a target's kernel and initrd on the cache ESP (Path C, DESIGN §5).

Two forms. "split": `\\EFI\\Linux\\<safe>-vmlinuz.efi` and `\\EFI\\Linux\\<safe>-initrd`, the
Boot#### passing `initrd=` in its load options. "uki": one `\\EFI\\Linux\\<safe>-uki.efi`
assembled in the guest from the bootstrap's systemd-stub, the target kernel, initrd and
command line (cloudboot/init/pathc/ukistage.py), for kernel stubs that ignore `initrd=`. Each file
is written under a temporary name, fsync'ed, its page cache dropped and read back to check
size and SHA-256, and only then renamed into place, so the firmware never starts a
half-written file. At most KEEP targets stay staged; the oldest that no Boot#### points at
goes first.

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
from cloudboot.init import pid1
from cloudboot.init.pathc import bootentry
from cloudboot.init.storage import kernelimage

KEEP = 3
LINUX_DIR = "EFI/Linux"
KERNEL_SUFFIX = "-vmlinuz.efi"
INITRD_SUFFIX = "-initrd"
UKI_SUFFIX = bootentry.UKI_SUFFIX
# The file a Boot#### starts, per form, and every file each form stages.
ENTRY_SUFFIX = {"split": KERNEL_SUFFIX, "uki": UKI_SUFFIX}
FORM_SUFFIXES = {"split": (KERNEL_SUFFIX, INITRD_SUFFIX), "uki": (UKI_SUFFIX,)}
ALL_SUFFIXES = (KERNEL_SUFFIX, INITRD_SUFFIX, UKI_SUFFIX)
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
    kernel: StagedFile  # the file the Boot#### starts: the kernel, or the UKI (form "uki")
    initrd: StagedFile | None
    dropped: list[str] = field(default_factory=list)  # safe names of targets removed
    seconds: float = 0.0
    form: str = "split"


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


def _entry_target(name: str) -> str | None:
    """The safe target name of a file a Boot#### starts (kernel or UKI), else None."""
    for suffix in (KERNEL_SUFFIX, UKI_SUFFIX):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def staged_targets(esp: Path) -> dict[str, float]:
    """Safe names staged on the ESP (either form) -> newest entry file mtime."""
    d = esp / LINUX_DIR
    out: dict[str, float] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(d):
            if entry.is_file() and (name := _entry_target(entry.name)) is not None:
                out[name] = max(out.get(name, 0.0), entry.stat().st_mtime)
    return out


def referenced_names(paths: Iterable[str]) -> set[str]:
    """Safe names of staged targets that the given EFI file paths point at."""
    out = set()
    for p in paths:
        norm = p.replace("\\", "/").strip("/").lower()
        head, _, name = norm.rpartition("/")
        if head == LINUX_DIR.lower() and (target := _entry_target(name)) is not None:
            out.add(target)
    return out


def _remove_target(esp: Path, safe: str, suffixes: Iterable[str] = ALL_SUFFIXES) -> None:
    for suffix in suffixes:
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
            if entry.is_file() and entry.name.endswith((*ALL_SUFFIXES, TMP_SUFFIX)):
                os.unlink(entry.path)
                gone.append(efi_path(entry.name))
    return gone


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _write_verified(src: Iterable[bytes | memoryview], dest: Path,
                    expect: int | None = None) -> StagedFile:
    """Write chunks to dest+TMP, fsync, re-read from disk, compare, rename over dest.
    `expect`: the size the source must come to (checked before the rename)."""
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
        if expect is not None and size != expect:
            raise StagingError(0, f"{tmp}: the source gave {size} bytes, {expect} expected "
                               "(did it change while it was staged?)")
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
    except ValueError as e:  # a streamed source (the UKI's initrd) changed size under us
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StagingError(0, f"write {dest}: {e}") from e
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
    initrd_size = initrd.stat().st_size if initrd else 0
    files: list[tuple[str, int, Iterable[bytes | memoryview]]] = []
    if initrd is not None:  # first: a kernel file on the ESP means its initrd is complete
        files.append((INITRD_SUFFIX, initrd_size, _file_chunks(initrd)))
    files.append((KERNEL_SUFFIX, len(kernel), [kernel]))
    what = f"kernel {len(kernel)}, initrd {initrd_size}"
    return _stage(esp, target, "split", files, what, referenced, keep)


def stage_uki(esp: Path, target: str, size: int, chunks: Iterable[bytes | memoryview], *,
              referenced: set[str] | None = None, keep: int = KEEP) -> Staged:
    """Stage one UKI of `size` bytes streamed from `chunks` (ukistage.Assembly) as
    `<safe>-uki.efi`; the split files of the same target go once the UKI is in place."""
    return _stage(esp, target, "uki", [(UKI_SUFFIX, size, chunks)], f"UKI {size}",
                  referenced, keep)


def _stage(esp: Path, target: str, form: str,
           files: list[tuple[str, int, Iterable[bytes | memoryview]]], what: str,
           referenced: set[str] | None, keep: int) -> Staged:
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
    need = sum(size for _, size, _ in files) + SLACK
    have = free_bytes(esp)
    if have < need:
        # The old copy of this very target goes too, unless a Boot#### still points at it.
        if safe.lower() not in refs:
            _remove_target(esp, safe)
        dropped += prune(esp, 0, safe, refs)
        have = free_bytes(esp)
    if have < need:
        raise StagingError(28, f"cache ESP {esp} is full: {have} bytes free, staging "
                           f"{target} needs {need} ({what}); "
                           "make a bigger cache disk or run with cloudboot.reset=1")
    written = {suffix: _write_verified(chunks, d / (safe + suffix), size)
               for suffix, size, chunks in files}
    # The other form's files of this target: stale now (our Boot#### for it is rewritten
    # next; were the power cut before that, it would name a missing file and the firmware
    # would go on to the next BootOrder entry, the bootstrap, which stages again).
    _remove_target(esp, safe, [s for f, sx in FORM_SUFFIXES.items() if f != form for s in sx])
    _fsync_dir(d)
    return Staged(target, safe, written[ENTRY_SUFFIX[form]], written.get(INITRD_SUFFIX),
                  dropped, round(time.monotonic() - start, 3), form)


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
