"""loongarch64 kexec through kexec_load(2): Debian's loong64 kernels have KEXEC only.

What the kernel does with the segments (arch/loongarch/kernel/machine_kexec.c): no DTB and
no purgatory. machine_kexec_prepare takes the first segment whose buffer starts with "kexec"
as the command line and copies COMMAND_LINE_SIZE (4096) bytes of it to KEXEC_CMDLINE_ADDR
(physical 0x108000; the relocation code goes to 0x100000, so 1-2 MiB must stay clear); no
such segment: EINVAL. The new kernel is entered at phys_to_virt(entry) with a0 = efi_boot and
a2 = the EFI system table of this boot (both as this kernel got them) and a1 = the copied
command line. As kexec-tools does, the command line starts "kexec " and carries the initrd
as `initrd=0xSTART,0xSIZE` (the generic early parameter).

The target is the flat vmlinux.efi inside Debian's EFI zboot vmlinuz (kernelimage.unwrap).
Its header (arch/loongarch/kernel/head.S): "MZ"; 0x08 kernel_entry (physical, at the link
address); 0x10 kernel_asize (BSS included); 0x18 the load offset (PHYS_LINK_KADDR); 0x38
LINUX_PE_MAGIC. The kernel is relocatable (it computes its offset from where it runs), so it
goes at a 2 MiB-aligned free address and the entry is that address + (kernel_entry - load
offset). Segments are aligned to the kernel's page size (16 KiB on Debian's loong64).

Standard library only: runs as PID 1.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from pathlib import Path

from cloudboot.init.kexec import segments as ks
from cloudboot.init.kexec.segments import KexecLoadError, Segment

LINUX_PE_MAGIC = 0x818223CD  # at 0x38
COMMAND_LINE_SIZE = 4096  # arch/loongarch/include/uapi/asm/setup.h
CMDLINE_PREFIX = "kexec "  # what machine_kexec_prepare looks for ("kexec")
RESERVED_LOW = 0x200000  # KEXEC_CONTROL_CODE 0x100000, KEXEC_CMDLINE_ADDR 0x108000
IMAGE_ALIGN = 2 << 20


@dataclass(frozen=True)
class ImageHeader:
    kernel_entry: int
    kernel_asize: int
    load_offset: int

    @property
    def entry_offset(self) -> int:
        return self.kernel_entry - self.load_offset


def image_header(data: bytes) -> ImageHeader:
    if len(data) < 0x40 or data[:2] != b"MZ" or \
            struct.unpack_from("<I", data, 0x38)[0] != LINUX_PE_MAGIC:
        raise KexecLoadError(errno.ENOEXEC, "not a bare loongarch64 vmlinux.efi (no MZ and "
                             f"LINUX_PE_MAGIC {LINUX_PE_MAGIC:#x} at 0x38)")
    if data[4:8] == b"zimg":  # the EFI zboot wrapper carries the same magic at 0x38
        raise KexecLoadError(errno.ENOEXEC, "an EFI zboot image, not the bare vmlinux.efi "
                             "inside it (kernelimage.unwrap first)")
    entry, asize, load_offset = struct.unpack_from("<QQQ", data, 8)
    hdr = ImageHeader(entry, asize or len(data) + (8 << 20), load_offset)
    if not 0 <= hdr.entry_offset < len(data):
        raise KexecLoadError(errno.ENOEXEC, f"loongarch64 kernel entry {entry:#x} is not "
                             f"inside the image loaded at offset {load_offset:#x}")
    return hdr


def command_line(cmdline: str, initrd: tuple[int, int] | None) -> bytes:
    """The "kexec ..." segment: NUL-padded to COMMAND_LINE_SIZE (the kernel copies that many)."""
    line = CMDLINE_PREFIX + cmdline.strip()
    if initrd is not None:
        line += f" initrd={initrd[0]:#x},{initrd[1]:#x}"
    raw = line.encode()
    if len(raw) >= COMMAND_LINE_SIZE:
        raise KexecLoadError(errno.E2BIG, f"command line of {len(raw)} bytes: loongarch64 "
                             f"takes at most {COMMAND_LINE_SIZE - 1}")
    return raw + bytes(COMMAND_LINE_SIZE - len(raw))


def plan(kernel: bytes, initrd: bytes | None, cmdline: str, iomem: str,
         page: int = ks.PAGE) -> tuple[int, list[Segment]]:
    """(entry, segments) for kexec_load: pure, so it can be checked off the guest."""
    hdr = image_header(kernel)
    alloc = ks.Allocator(ks.free_ranges(iomem), page)
    size = max(hdr.kernel_asize, len(kernel))
    kaddr = alloc.take(size, IMAGE_ALIGN, lo=max(RESERVED_LOW, hdr.load_offset))
    segs = [ks.segment(kernel, kaddr, "kernel", page, size)]
    initrd_range = None
    if initrd is not None:
        iaddr = alloc.take(len(initrd), page, lo=RESERVED_LOW)
        initrd_range = (iaddr, len(initrd))
        segs.append(ks.segment(initrd, iaddr, "initrd", page))
    line = command_line(cmdline, initrd_range)
    caddr = alloc.take(len(line), page, lo=RESERVED_LOW)
    segs.append(ks.segment(line, caddr, "cmdline", page))
    return kaddr + hdr.entry_offset, segs


def load(kernel: Path, initrd: Path | None, cmdline: str) -> list[Segment]:
    """Lay out and load `kernel` (the bare vmlinux.efi) for kexec; returns the segments."""
    return ks.load_with(plan, kernel, initrd, cmdline)
