"""Load the kernel modules the initramfs builder listed, with finit_module(2).

`/lib/modules/<uname -r>/cloudboot.order` holds one module per line in dependency order:
a .ko path (absolute, or relative to that directory), optionally followed by parameters.
Blank lines and `#` comments are skipped. A module already loaded (EEXIST) is fine; any
other failure is reported and the rest still load. Standard library only (PID 1).
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from cloudboot.arch import host_arch

ORDER_FILE = "cloudboot.order"
# finit_module(2) syscall numbers (arch.py has no column for it).
FINIT_MODULE_NR = {"x86_64": 313, "aarch64": 273, "riscv64": 273, "loongarch64": 273,
                   "armv7": 379}
MODULE_INIT_COMPRESSED_FILE = 4  # the kernel decompresses (CONFIG_MODULE_DECOMPRESS)
_COMPRESSED = (".ko.xz", ".ko.zst", ".ko.gz")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


@dataclass
class ModuleReport:
    loaded: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)  # EEXIST: built in or loaded before
    failed: list[tuple[str, str]] = field(default_factory=list)  # (module, "ENOENT: reason")
    seconds: float = 0.0

    def summary(self) -> dict[str, object]:
        return {"loaded": len(self.loaded), "already": len(self.already),
                "failed": len(self.failed), "seconds": round(self.seconds, 3),
                "failures": [f"{m}: {why}" for m, why in self.failed]}


def module_dir(release: str | None = None, root: Path = Path("/")) -> Path:
    return root / "lib/modules" / (release or os.uname().release)


def read_order(path: Path) -> list[tuple[Path, str]]:
    """(module path, parameters) per line of an order file; relative paths are taken
    relative to the file's directory."""
    entries: list[tuple[Path, str]] = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, params = line.partition(" ")
        p = Path(name)
        entries.append((p if p.is_absolute() else path.parent / p, params.strip()))
    return entries


def finit_module(fd: int, params: str = "", flags: int = 0) -> None:
    """finit_module(2); raises OSError with the errno."""
    nr = FINIT_MODULE_NR.get(host_arch().name)
    if nr is None:
        raise OSError(errno.ENOSYS, f"finit_module: no syscall number for {host_arch().name}")
    rc = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(fd), ctypes.c_char_p(params.encode()),
                       ctypes.c_int(flags))
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def load_one(path: Path, params: str = "") -> bool:
    """Load one module file; True if loaded now, False if it was already there."""
    flags = MODULE_INIT_COMPRESSED_FILE if path.name.endswith(_COMPRESSED) else 0
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        finit_module(fd, params, flags)
    except OSError as e:
        if e.errno == errno.EEXIST:
            return False
        raise
    finally:
        os.close(fd)
    return True


# Filesystems whose module is named differently from the fstype the superblock reports.
FS_MODULE_OF = {"ext2": "ext4", "ext3": "ext4"}


def load_for_fs(fstype: str) -> ModuleReport | None:
    """Load the modules of one filesystem (listed by the builder in cloudboot.fs.<fs>.order);
    None when the initramfs lists none for it (built in, or not packed)."""
    fs = FS_MODULE_OF.get(fstype, fstype)
    path = module_dir() / f"cloudboot.fs.{fs}.order"
    if not path.exists():
        return None
    return load_all(path)


def load_all(order_file: Path | None = None) -> ModuleReport:
    """Load every module the order file lists; a missing order file means nothing to load."""
    start = time.monotonic()
    report = ModuleReport()
    path = order_file or module_dir() / ORDER_FILE
    try:
        entries = read_order(path)
    except FileNotFoundError:
        entries = []
    except OSError as e:
        report.failed.append((str(path), f"{errno.errorcode.get(e.errno or 0, '?')}: {e}"))
        entries = []
    for mod, params in entries:
        name = mod.name
        try:
            (report.loaded if load_one(mod, params) else report.already).append(name)
        except OSError as e:
            code = errno.errorcode.get(e.errno or 0, str(e.errno))
            report.failed.append((name, f"{code}: {e.strerror or e} ({mod})"))
    report.seconds = time.monotonic() - start
    return report
