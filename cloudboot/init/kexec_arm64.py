"""arm64 kexec through kexec_load(2): for kernels built without KEXEC_FILE.

Debian's arm64 kernels (bookworm and trixie, cloud and generic flavours) have CONFIG_KEXEC=y
but not CONFIG_KEXEC_FILE, so kexec_file_load(2) is ENOSYS and the segments have to be laid
out here, as kexec-tools does: the bare Image at a 2 MiB-aligned base + text_offset, the
initrd, a DTB, and a tiny purgatory. The DTB is the one the EFI stub handed to this kernel
(/sys/firmware/fdt: /chosen carries the UEFI system table and memory map that the next
kernel needs), with bootargs and the initrd range rewritten.

The kernel's relocate_new_kernel jumps to the entry with x0 = 0 for kexec_load images
(dtb_mem is only set by kexec_file_load), and the arm64 boot protocol wants x0 = DTB,
x1..x3 = 0, so the purgatory sets those and branches to the Image.

Standard library only: runs as PID 1.
"""

from __future__ import annotations

import ctypes
import errno
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from cloudboot.init import fdt

KEXEC_LOAD_NR = 104  # asm-generic/unistd.h, which arm64 uses
PAGE = 4096
ARM64_MAGIC = b"ARM\x64"
IMAGE_ALIGN = 2 << 20  # Documentation/arch/arm64/booting.rst: 2 MiB-aligned base
FDT_PATH = Path("/sys/firmware/fdt")
IOMEM_PATH = Path("/proc/iomem")
# Children of "System RAM" the kernel itself marks; anything else in there is off limits.
_IOMEM_LINE = re.compile(r"^(\s*)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)$")


class KexecLoadError(OSError):
    pass


@dataclass(frozen=True)
class ImageHeader:
    text_offset: int
    image_size: int  # bytes from the load address the kernel needs, BSS included
    flags: int


def image_header(data: bytes) -> ImageHeader:
    """The arm64 Image header (booting.rst): magic "ARM\\x64" at 0x38."""
    if len(data) < 64 or data[0x38:0x3C] != ARM64_MAGIC:
        raise KexecLoadError(errno.ENOEXEC, "not a bare arm64 Image (no ARM\\x64 magic at 0x38)")
    text_offset, image_size, flags = struct.unpack_from("<QQQ", data, 8)
    if image_size == 0:  # kernels before 3.17: no size; leave generous room for the BSS
        image_size = len(data) + (8 << 20)
    return ImageHeader(text_offset, image_size, flags)


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


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


class Allocator:
    """First fit, lowest address first, in the free ranges; never hands out a byte twice."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = list(ranges)

    def take(self, size: int, align: int, offset: int = 0) -> int:
        """Address A with (A - offset) aligned to `align` and [A, A+size) free."""
        size = _align(size, PAGE)
        for i, (s, e) in enumerate(self.ranges):
            base = _align(max(s - offset, 0), align) + offset
            while base < s:
                base += align
            if base + size <= e:
                rest = [(s, base)] if base > s else []
                rest += [(base + size, e)] if base + size < e else []
                self.ranges[i:i + 1] = rest
                return base
        raise KexecLoadError(errno.ENOMEM, f"no free {size >> 10} KiB of RAM (align "
                             f"{align:#x}) for a kexec segment in {len(self.ranges)} ranges")


def purgatory(dtb: int, entry: int) -> bytes:
    """x0 = dtb; x1 = x2 = x3 = 0; br entry (hand-assembled A64, literals after the code)."""
    code = [
        0x580000C0,  # ldr x0, #24  (the dtb literal)
        0x580000E4,  # ldr x4, #28  (the entry literal, 4 bytes further on)
        0xAA1F03E1,  # mov x1, xzr
        0xAA1F03E2,  # mov x2, xzr
        0xAA1F03E3,  # mov x3, xzr
        0xD61F0080,  # br x4
    ]
    return struct.pack("<6I", *code) + struct.pack("<QQ", dtb, entry)


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
    return fdt.serialize(tree)


@dataclass(frozen=True)
class Segment:
    data: bytes
    mem: int
    memsz: int
    what: str


def plan(kernel: bytes, initrd: bytes | None, cmdline: str, base_dtb: bytes,
         iomem: str) -> tuple[int, list[Segment]]:
    """(entry, segments) for kexec_load: pure, so it can be checked off the guest."""
    hdr = image_header(kernel)
    alloc = Allocator(free_ranges(iomem))
    kaddr = alloc.take(max(hdr.image_size, len(kernel)), IMAGE_ALIGN, hdr.text_offset)
    segs = [Segment(kernel, kaddr, _align(max(hdr.image_size, len(kernel)), PAGE), "kernel")]
    initrd_range = None
    if initrd is not None:
        iaddr = alloc.take(len(initrd), PAGE)
        initrd_range = (iaddr, len(initrd))
        segs.append(Segment(initrd, iaddr, _align(len(initrd), PAGE), "initrd"))
    dtb = chosen_dtb(base_dtb, cmdline, initrd_range)
    if len(dtb) > (2 << 20):
        raise KexecLoadError(errno.E2BIG, f"DTB of {len(dtb)} bytes exceeds the 2 MiB limit")
    daddr = alloc.take(len(dtb), PAGE)
    segs.append(Segment(dtb, daddr, _align(len(dtb), PAGE), "dtb"))
    code = purgatory(daddr, kaddr)
    paddr = alloc.take(len(code), PAGE)
    segs.append(Segment(code, paddr, PAGE, "purgatory"))
    return paddr, segs


class _KexecSegment(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("bufsz", ctypes.c_size_t),
                ("mem", ctypes.c_void_p), ("memsz", ctypes.c_size_t)]


def kexec_load(entry: int, segments: list[Segment]) -> None:
    """The raw syscall (flags 0: KEXEC_ARCH_DEFAULT). Raises OSError with the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    bufs = [ctypes.create_string_buffer(s.data, len(s.data)) for s in segments]
    array = (_KexecSegment * len(segments))(*[
        _KexecSegment(ctypes.addressof(b), len(s.data), s.mem, s.memsz)
        for b, s in zip(bufs, segments, strict=True)])
    rc = libc.syscall(ctypes.c_long(KEXEC_LOAD_NR), ctypes.c_ulong(entry),
                      ctypes.c_ulong(len(segments)), array, ctypes.c_ulong(0))
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"kexec_load refused: {errno.errorcode.get(err, err)}")


def load(kernel: Path, initrd: Path | None, cmdline: str) -> list[Segment]:
    """Lay out and load `kernel` (a bare Image) for kexec; returns the segments loaded."""
    try:
        base = FDT_PATH.read_bytes()
    except OSError as e:
        raise KexecLoadError(e.errno or errno.ENOENT,
                             f"{FDT_PATH}: {e.strerror}: no boot DTB to pass on") from None
    entry, segs = plan(kernel.read_bytes(), initrd.read_bytes() if initrd else None, cmdline,
                       base, IOMEM_PATH.read_text())
    kexec_load(entry, segs)
    return segs
