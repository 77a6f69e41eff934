"""armv7 kexec through kexec_load(2): Debian's armmp kernels have KEXEC but no KEXEC_FILE.

What the kernel does with the segments (arch/arm/kernel/machine_kexec.c): no purgatory; it
refuses when more than one CPU is possible and the platform cannot hot-unplug them, takes the
`mem` of the segment whose buffer starts with the FDT magic as r2, and relocate_new_kernel
jumps to the entry with the MMU off, r0 = 0, r1 = machine type, r2 = that DTB.

The target is a zImage (Debian's vmlinuz, with an EFI stub whose "MZ" is a harmless
instruction). With CONFIG_AUTO_ZRELADDR its decompressor writes the kernel to
(pc & 0xf8000000) + TEXT_OFFSET, so the zImage must run inside the first 128 MiB of RAM, and
it relocates itself past the decompressed kernel if the two would overlap. The zImage's
header table (arch/arm/boot/compressed/vmlinux.lds.S, tag "KLSZ") gives the decompressed size,
the kernel's BSS, TEXT_OFFSET (0x208000 on armmp, which enables ARCH_QCOM) and the malloc
size. The plan puts the zImage above the end of the decompressed kernel (no relocation, no
page tables under it), then the initrd and the DTB above the zImage, all in low memory.

The bytes after the zImage must not look like an FDT: armmp has CONFIG_ARM_APPENDED_DTB, and
the kernel zero-fills the segment's memsz beyond the file, so they do not.

Standard library only: runs as PID 1.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from pathlib import Path

from cloudboot.init.kexec import segments as ks
from cloudboot.init.kexec.segments import KexecLoadError, Segment

ZIMAGE_MAGIC = 0x016F2818  # at 0x24
ZIMAGE_TABLE_MAGIC = 0x45454545  # at 0x34, then the table's offset at 0x38
TAG_KERNEL_SIZE = 0x5A534C4B  # "KLSZ"
AUTO_ZRELADDR_WINDOW = 128 << 20  # the decompressor masks pc with 0xf8000000
LOWMEM_WINDOW = 512 << 20  # keep initrd and DTB well inside lowmem (3G/1G split: ~760 MiB)
DEFAULT_TEXT_OFFSET = 0x8000
DECOMPRESSOR_SLACK = 1 << 20  # zImage BSS, 4 KiB stack and the 64 KiB malloc arena, rounded


@dataclass(frozen=True)
class ZImage:
    length: int  # bytes of the file the decompressor runs from (_edata)
    text_offset: int  # where the kernel goes: RAM start + text_offset
    kernel_size: int  # decompressed image + BSS: what it covers from there
    malloc_size: int


def zimage_header(data: bytes) -> ZImage:
    """Parse the zImage header and its KLSZ tag; without the tag assume a ratio of 4."""
    if len(data) < 0x40 or struct.unpack_from("<I", data, 0x24)[0] != ZIMAGE_MAGIC:
        raise KexecLoadError(errno.ENOEXEC,
                             f"not an ARM zImage (no magic {ZIMAGE_MAGIC:#x} at 0x24)")
    start, end, endian = struct.unpack_from("<III", data, 0x28)
    if endian != 0x04030201:
        raise KexecLoadError(errno.ENOEXEC, "big-endian zImage: armv7 Path A is little-endian")
    length = end - start if end > start else len(data)
    text_offset, kernel_size, malloc = DEFAULT_TEXT_OFFSET, 4 * len(data) + (4 << 20), 0x10000
    if struct.unpack_from("<I", data, 0x34)[0] == ZIMAGE_TABLE_MAGIC:
        pos = struct.unpack_from("<I", data, 0x38)[0]
        while pos + 8 <= len(data):
            nwords, tag = struct.unpack_from("<II", data, pos)
            if nwords == 0:
                break
            words = struct.unpack_from(f"<{nwords - 2}I", data, pos + 8) if nwords > 2 else ()
            if tag == TAG_KERNEL_SIZE and len(words) >= 2:
                size_ptr, bss = words[0], words[1]
                if size_ptr + 4 > len(data):
                    raise KexecLoadError(errno.ENOEXEC, f"zImage KLSZ size pointer {size_ptr:#x}"
                                         f" lies past the file ({len(data)} bytes)")
                kernel_size = struct.unpack_from("<I", data, size_ptr)[0] + bss
                if len(words) >= 4:
                    text_offset, malloc = words[2], words[3]
            pos += 4 * nwords
    return ZImage(length, text_offset, kernel_size, malloc)


def plan(kernel: bytes, initrd: bytes | None, cmdline: str, base_dtb: bytes, iomem: str,
         page: int = ks.PAGE) -> tuple[int, list[Segment]]:
    """(entry, segments) for kexec_load: pure, so it can be checked off the guest."""
    z = zimage_header(kernel)
    ram = ks.ram_start(iomem)
    kernel_end = ks.align(ram + z.text_offset + z.kernel_size, 1 << 20)
    alloc = ks.Allocator(ks.free_ranges(iomem), page)
    zsize = max(len(kernel), z.length) + z.malloc_size + DECOMPRESSOR_SLACK
    try:
        zaddr = alloc.take(zsize, 2 << 20, lo=kernel_end, hi=ram + AUTO_ZRELADDR_WINDOW)
    except KexecLoadError as e:
        raise KexecLoadError(errno.ENOMEM, f"zImage: {e.strerror} (it must run in the first "
                             f"128 MiB of RAM, above the decompressed kernel's end "
                             f"{kernel_end:#x})") from None
    segs = [ks.segment(kernel, zaddr, "kernel", page, zsize)]
    top = ram + LOWMEM_WINDOW
    initrd_range = None
    if initrd is not None:
        iaddr = alloc.take(len(initrd), page, lo=zaddr, hi=top)
        initrd_range = (iaddr, len(initrd))
        segs.append(ks.segment(initrd, iaddr, "initrd", page))
    dtb = ks.chosen_dtb(base_dtb, cmdline, initrd_range)
    daddr = alloc.take(len(dtb), page, lo=zaddr, hi=top)
    segs.append(ks.segment(dtb, daddr, "dtb", page))
    return zaddr, segs


def load(kernel: Path, initrd: Path | None, cmdline: str) -> list[Segment]:
    """Lay out and load `kernel` (a zImage) for kexec; returns the segments loaded."""
    base = ks.boot_fdt()
    return ks.load_with(lambda k, i, c, io, pg: plan(k, i, c, base, io, pg),
                        kernel, initrd, cmdline)
