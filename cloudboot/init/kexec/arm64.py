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

The arch-neutral parts (free RAM, allocator, /chosen rewrite, the syscall) live in
kexec_segments.py. Standard library only: runs as PID 1.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from pathlib import Path

from cloudboot.init.kexec import segments as ks
from cloudboot.init.kexec.segments import (  # noqa: F401  (re-exported: the arm64 API)
    FDT_PATH,
    IOMEM_PATH,
    PAGE,
    Allocator,
    KexecLoadError,
    Segment,
    chosen_dtb,
    free_ranges,
    kexec_load,
)

KEXEC_LOAD_NR = 104  # asm-generic/unistd.h, which arm64 uses
ARM64_MAGIC = b"ARM\x64"
IMAGE_ALIGN = 2 << 20  # Documentation/arch/arm64/booting.rst: 2 MiB-aligned base


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


def plan(kernel: bytes, initrd: bytes | None, cmdline: str, base_dtb: bytes,
         iomem: str, page: int = PAGE) -> tuple[int, list[Segment]]:
    """(entry, segments) for kexec_load: pure, so it can be checked off the guest."""
    hdr = image_header(kernel)
    alloc = Allocator(free_ranges(iomem), page)
    size = max(hdr.image_size, len(kernel))
    kaddr = alloc.take(size, IMAGE_ALIGN, hdr.text_offset)
    segs = [ks.segment(kernel, kaddr, "kernel", page, size)]
    initrd_range = None
    if initrd is not None:
        iaddr = alloc.take(len(initrd), page)
        initrd_range = (iaddr, len(initrd))
        segs.append(ks.segment(initrd, iaddr, "initrd", page))
    dtb = chosen_dtb(base_dtb, cmdline, initrd_range)
    daddr = alloc.take(len(dtb), page)
    segs.append(ks.segment(dtb, daddr, "dtb", page))
    code = purgatory(daddr, kaddr)
    paddr = alloc.take(len(code), page)
    segs.append(ks.segment(code, paddr, "purgatory", page))
    return paddr, segs


def load(kernel: Path, initrd: Path | None, cmdline: str) -> list[Segment]:
    """Lay out and load `kernel` (a bare Image) for kexec; returns the segments loaded."""
    base = ks.boot_fdt()
    return ks.load_with(lambda k, i, c, io, pg: plan(k, i, c, base, io, pg),
                        kernel, initrd, cmdline)
