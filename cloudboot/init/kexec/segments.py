"""What every kexec_load(2) planner shares: free RAM, an allocator, segments, the syscall.

Kernels built without CONFIG_KEXEC_FILE (Debian's arm64, armhf, riscv64 and loong64) take
only kexec_load(2): user space lays the new kernel, initrd, device tree (and on arm64 a
purgatory) out in physical memory itself. This module holds the arch-neutral part:

- `free_ranges`: top-level "System RAM" of /proc/iomem minus every child resource (the
  running kernel, firmware reservations): destinations that nothing we know of needs.
- `Allocator`: first fit, lowest address first, with alignment and an address window.
- `chosen_dtb`: the DTB the EFI stub handed to this kernel (/sys/firmware/fdt: /chosen carries
  the UEFI system table and memory map the next kernel needs) with /chosen bootargs and
  linux,initrd-{start,end} rewritten for the target.
- `kexec_load`: the raw syscall, numbered per arch (`cloudboot.arch.Arch.kexec_load_nr`).

The per-arch planners (kexec_arm64, kexec_arm32, kexec_riscv64, kexec_loongarch64) are pure
functions of (kernel, initrd, cmdline, DTB, iomem text, page size), so the unit tests check
them against the real Debian kernels off the guest. Standard library only: runs as PID 1.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cloudboot.arch import host_arch
from cloudboot.init.kexec import fdt

PAGE = 4096  # the default; loong64 kernels use 16 KiB pages (load() asks the kernel)
FDT_PATH = Path("/sys/firmware/fdt")
IOMEM_PATH = Path("/proc/iomem")
DTB_MAX = 2 << 20  # arm64 and riscv64 refuse device trees over 2 MiB
_IOMEM_LINE = re.compile(r"^(\s*)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)$")


class KexecLoadError(OSError):
    """A layout or load failure of our own making (errno + a message that says where)."""


def align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def free_ranges(iomem: str) -> list[tuple[int, int]]:
    """[start, end) ranges of top-level System RAM not covered by any child resource."""
    ram: list[tuple[int, int]] = []
    used: list[tuple[int, int]] = []
    for line in iomem.splitlines():
        m = _IOMEM_LINE.match(line)
        if not m:
            continue
        depth, start, end = len(m.group(1)), int(m.group(2), 16), int(m.group(3), 16) + 1
        if depth == 0:
            if m.group(4).strip() == "System RAM":
                ram.append((start, end))
        else:
            used.append((start, end))
    if ram and all(s == 0 and e == 1 for s, e in ram):
        raise KexecLoadError(errno.EPERM, "/proc/iomem shows zero addresses (not root?)")
    out = []
    for start, end in ram:
        pieces = [(start, end)]
        for us, ue in used:
            nxt = []
            for s, e in pieces:
                if ue <= s or us >= e:
                    nxt.append((s, e))
                    continue
                if s < us:
                    nxt.append((s, us))
                if ue < e:
                    nxt.append((ue, e))
            pieces = nxt
        out += pieces
    return sorted(out)


def ram_start(iomem: str) -> int:
    """The lowest address of top-level System RAM (armv7's decompressor works from it)."""
    starts = [int(m.group(2), 16) for line in iomem.splitlines()
              if (m := _IOMEM_LINE.match(line)) and not m.group(1)
              and m.group(4).strip() == "System RAM"]
    if not starts:
        raise KexecLoadError(errno.ENOMEM, "/proc/iomem lists no System RAM")
    return min(starts)


class Allocator:
    """First fit, lowest address first, in the free ranges; never hands out a byte twice."""

    def __init__(self, ranges: list[tuple[int, int]], page: int = PAGE) -> None:
        self.ranges = list(ranges)
        self.page = page

    def take(self, size: int, align_to: int, offset: int = 0, lo: int = 0,
             hi: int | None = None) -> int:
        """Address A with (A - offset) aligned to `align_to`, [A, A+size) free, and
        lo <= A, A+size <= hi."""
        size = align(size, self.page)
        align_to = max(align_to, self.page)
        for i, (s, e) in enumerate(self.ranges):
            floor = max(s, lo)
            base = align(max(floor - offset, 0), align_to) + offset
            while base < floor:
                base += align_to
            top = e if hi is None else min(e, hi)
            if base + size <= top:
                rest = [(s, base)] if base > s else []
                rest += [(base + size, e)] if base + size < e else []
                self.ranges[i:i + 1] = rest
                return base
        window = f" in [{lo:#x}, {hi:#x})" if hi is not None else f" above {lo:#x}" if lo else ""
        raise KexecLoadError(errno.ENOMEM, f"no free {size >> 10} KiB of RAM (align "
                             f"{align_to:#x}){window} for a kexec segment in "
                             f"{len(self.ranges)} ranges")


@dataclass(frozen=True)
class Segment:
    data: bytes
    mem: int
    memsz: int  # page-aligned; the kernel zero-fills memsz beyond len(data)
    what: str


def segment(data: bytes, mem: int, what: str, page: int = PAGE, memsz: int = 0) -> Segment:
    return Segment(data, mem, align(max(memsz, len(data)), page), what)


def chosen_dtb(base: bytes, cmdline: str, initrd: tuple[int, int] | None) -> bytes:
    """The boot DTB with /chosen bootargs and linux,initrd-{start,end} set for the target."""
    tree = fdt.parse(base)
    chosen = tree.root.ensure_child("chosen")
    chosen.props["bootargs"] = fdt.string(cmdline)
    for key in ("linux,initrd-start", "linux,initrd-end"):
        chosen.props.pop(key, None)
    if initrd is not None:
        chosen.props["linux,initrd-start"] = fdt.u64(initrd[0])
        chosen.props["linux,initrd-end"] = fdt.u64(initrd[0] + initrd[1])
    blob = fdt.serialize(tree)
    if len(blob) > DTB_MAX:
        raise KexecLoadError(errno.E2BIG, f"DTB of {len(blob)} bytes exceeds the 2 MiB limit")
    return blob


def check(segments: list[Segment], ranges: list[tuple[int, int]], page: int) -> None:
    """What the kernel's sanity_check_segment_list enforces, checked before the syscall so a
    bad plan fails with the segment's name rather than a bare EADDRNOTAVAIL."""
    spans = sorted((s.mem, s.mem + s.memsz, s.what) for s in segments)
    for (_, a_end, a), (b0, _, b) in zip(spans, spans[1:], strict=False):
        if a_end > b0:
            raise KexecLoadError(errno.EINVAL, f"kexec segments {a} and {b} overlap")
    for s in segments:
        if s.mem % page or s.memsz % page or len(s.data) > s.memsz:
            raise KexecLoadError(errno.EADDRNOTAVAIL,
                                 f"kexec segment {s.what} at {s.mem:#x}+{s.memsz:#x} is not "
                                 f"{page}-aligned or shorter than its {len(s.data)} bytes")
        if not any(lo <= s.mem and s.mem + s.memsz <= hi for lo, hi in ranges):
            raise KexecLoadError(errno.EADDRNOTAVAIL,
                                 f"kexec segment {s.what} at {s.mem:#x}+{s.memsz:#x} is not "
                                 "in free System RAM")


class _KexecSegment(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("bufsz", ctypes.c_size_t),
                ("mem", ctypes.c_void_p), ("memsz", ctypes.c_size_t)]


def kexec_load(entry: int, segments: list[Segment], nr: int | None = None) -> None:
    """The raw syscall (flags 0: KEXEC_ARCH_DEFAULT). Raises OSError with the errno."""
    if nr is None:
        nr = host_arch().kexec_load_nr
    if nr is None:
        raise KexecLoadError(errno.ENOSYS, f"no kexec_load syscall number for {host_arch().name}")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    bufs = [ctypes.create_string_buffer(s.data, len(s.data)) for s in segments]
    array = (_KexecSegment * len(segments))(*[
        _KexecSegment(ctypes.addressof(b), len(s.data), s.mem, s.memsz)
        for b, s in zip(bufs, segments, strict=True)])
    rc = libc.syscall(ctypes.c_long(nr), ctypes.c_ulong(entry),
                      ctypes.c_ulong(len(segments)), array, ctypes.c_ulong(0))
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"kexec_load refused: {errno.errorcode.get(err, err)}")


def page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


def boot_fdt() -> bytes:
    """The DTB this kernel was booted with (the EFI stub's), or KexecLoadError."""
    try:
        return FDT_PATH.read_bytes()
    except OSError as e:
        raise KexecLoadError(e.errno or errno.ENOENT,
                             f"{FDT_PATH}: {e.strerror}: no boot DTB to pass on") from None


# A planner: (kernel, initrd, cmdline, iomem text, page size) -> (entry, segments).
Planner = Callable[[bytes, bytes | None, str, str, int], tuple[int, list[Segment]]]


def load_with(planner: Planner, kernel: Path, initrd: Path | None, cmdline: str) -> list[Segment]:
    """Run `planner` on this machine's files and load the result; returns the segments."""
    page = page_size()
    iomem = IOMEM_PATH.read_text()
    entry, segs = planner(kernel.read_bytes(), initrd.read_bytes() if initrd else None, cmdline,
                          iomem, page)
    check(segs, free_ranges(iomem), page)
    kexec_load(entry, segs)
    return segs
