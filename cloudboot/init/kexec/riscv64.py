"""riscv64 kexec through kexec_load(2): Debian's riscv64 kernels have KEXEC, no KEXEC_FILE.

What the kernel does with the segments (arch/riscv/kernel/machine_kexec.c): no purgatory;
machine_kexec_prepare scans the segments for one whose buffer starts with a valid FDT header
and keeps its `mem` as fdt_addr (no FDT: EINVAL); the relocation code copies the pages and
jumps to the entry with a0 = this hart's id, a1 = fdt_addr, the MMU off.

The target is the flat Image (Debian's riscv64 vmlinux is one, with an EFI stub header;
Documentation/arch/riscv/boot-image-header.rst): text_offset at 0x08, image_size (BSS
included) at 0x10, magic2 "RSC\\x05" at 0x38. RV64 kernels want a 2 MiB-aligned load address.
The DTB is the EFI stub's (/sys/firmware/fdt) with /chosen rewritten; initrd and DTB go above
the kernel's 2 MiB-rounded end (the kernel reserves up to there), where every riscv64 kernel
maps them.

Standard library only: runs as PID 1.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from pathlib import Path

from cloudboot.init.kexec import segments as ks
from cloudboot.init.kexec.segments import KexecLoadError, Segment

RISCV_MAGIC2 = b"RSC\x05"
IMAGE_ALIGN = 2 << 20  # RV64: PMD-aligned


@dataclass(frozen=True)
class ImageHeader:
    text_offset: int
    image_size: int


def image_header(data: bytes) -> ImageHeader:
    if len(data) < 64 or data[0x38:0x3C] != RISCV_MAGIC2:
        raise KexecLoadError(errno.ENOEXEC,
                             "not a bare riscv64 Image (no RSC\\x05 magic at 0x38)")
    text_offset, image_size = struct.unpack_from("<QQ", data, 8)
    if image_size == 0:
        image_size = len(data) + (8 << 20)
    return ImageHeader(text_offset, image_size)


def plan(kernel: bytes, initrd: bytes | None, cmdline: str, base_dtb: bytes, iomem: str,
         page: int = ks.PAGE) -> tuple[int, list[Segment]]:
    """(entry, segments) for kexec_load: pure, so it can be checked off the guest."""
    hdr = image_header(kernel)
    alloc = ks.Allocator(ks.free_ranges(iomem), page)
    size = max(hdr.image_size, len(kernel))
    kaddr = alloc.take(size, IMAGE_ALIGN, hdr.text_offset)
    segs = [ks.segment(kernel, kaddr, "kernel", page, size)]
    # RV64 with STRICT_KERNEL_RWX reserves the kernel up to the next 2 MiB boundary after
    # _end (setup_bootmem), and drops an initrd that overlaps a reservation ("INITRD: ...
    # overlaps in-use memory region - disabling initrd", measured): start above it.
    above = kaddr + ks.align(size, IMAGE_ALIGN)
    initrd_range = None
    if initrd is not None:
        iaddr = alloc.take(len(initrd), page, lo=above)
        initrd_range = (iaddr, len(initrd))
        segs.append(ks.segment(initrd, iaddr, "initrd", page))
    dtb = ks.chosen_dtb(base_dtb, cmdline, initrd_range)
    daddr = alloc.take(len(dtb), page, lo=above)
    segs.append(ks.segment(dtb, daddr, "dtb", page))
    return kaddr, segs


def load(kernel: Path, initrd: Path | None, cmdline: str) -> list[Segment]:
    """Lay out and load `kernel` (a bare Image) for kexec; returns the segments loaded."""
    base = ks.boot_fdt()
    return ks.load_with(lambda k, i, c, io, pg: plan(k, i, c, base, io, pg),
                        kernel, initrd, cmdline)
