"""kexec_load(2) layouts for armv7, riscv64 and loongarch64 against the REAL lane kernels.

The lanes' Debian kernels (bookworm armmp, trixie riscv64, forky loong64) have CONFIG_KEXEC
but not CONFIG_KEXEC_FILE, so cloudboot-init lays the segments out itself. Each planner is a
pure function of (kernel, initrd, cmdline, DTB, /proc/iomem text, page size); these tests feed
it the unpacked Debian kernel of the lane and an /proc/iomem shaped like the lab guest's
(QEMU virt, 1 GiB, EDK2), and check what each kernel's machine_kexec_prepare and boot code
need (see the module docstrings for the sources).
"""

from __future__ import annotations

import importlib
import shutil
import struct
import subprocess

import pytest

from cloudboot.arch import get_arch
from cloudboot.init import kexec
from cloudboot.init.kexec import arm32 as kexec_arm32
from cloudboot.init.kexec import fdt
from cloudboot.init.kexec import loongarch64 as kexec_loongarch64
from cloudboot.init.kexec import riscv64 as kexec_riscv64
from cloudboot.init.kexec import segments as ks
from cloudboot.init.storage.kernelimage import _zboot, unwrap
from lab.arch_lanes import LaneGap, get_lane
from tests.helpers import dump_virt_dtb

# Shaped like the armv7 lab guest (virt,highmem=off, 1 GiB at 0x40000000, AAVMF32): the
# running armmp kernel at RAM + TEXT_OFFSET (0x208000), firmware reservations at the top.
ARMV7_IOMEM = """\
09000000-09000fff : 9000000.pl011 pl011@9000000
40000000-7fffffff : System RAM
  40208000-40ffffff : Kernel code
  41100000-4147ffff : Kernel data
  44000000-4400ffff : reserved
  7c000000-7c0fffff : reserved
  7f800000-7fffffff : reserved
"""
# riscv64 virt, 1 GiB at 0x80000000: OpenSBI's 512 KiB outside System RAM, the EFI stub's
# kernel at a 2 MiB boundary, EDK2 at the top.
RISCV64_IOMEM = """\
10000000-10000fff : serial
80000000-8007ffff : Reserved
80080000-bfffffff : System RAM
  80200000-8225ffff : Kernel image
    80200000-80dfffff : Kernel code
    81600000-81ffffff : Kernel data
  bf000000-bfffffff : Reserved
"""
# loongarch64 virt, 1 GiB: 256 MiB low RAM and the rest at 0x90000000; the running kernel at
# PHYS_LINK_KADDR (2 MiB), firmware at the top of low RAM.
LOONGARCH64_IOMEM = """\
00000000-0fffffff : System RAM
  00000000-000fffff : Reserved
  00200000-01bfffff : Kernel code
  01c00000-01ffffff : Kernel data
  0e000000-0fffffff : Reserved
1fe001e0-1fe001e7 : serial
90000000-bfffffff : System RAM
  bf000000-bfffffff : Reserved
"""


def _lane_kernel(arch: str) -> bytes:
    try:
        return get_lane(arch).kernel().read_bytes()
    except LaneGap as e:
        pytest.fail(f"{arch} lane kernel unavailable: {e}")


@pytest.fixture(scope="module")
def armmp() -> bytes:
    return unwrap(_lane_kernel("armv7"))


@pytest.fixture(scope="module")
def riscv_image() -> bytes:
    return unwrap(_lane_kernel("riscv64"))


@pytest.fixture(scope="module")
def loong_image() -> bytes:
    """forky's vmlinuz is EFI zboot + zstd: the guest's Python 3.14 unpacks it with
    compression.zstd; here (3.11) the zstd tool does."""
    zb = _zboot(_lane_kernel("loongarch64"))
    assert zb is not None and zb[0].startswith("zstd"), "expected a zstd EFI zboot vmlinuz"
    if shutil.which("zstd") is None:
        pytest.fail("zstd missing (apt-get install zstd)")
    out = subprocess.run(["zstd", "-dc"], input=zb[1], capture_output=True, check=True,
                         timeout=120).stdout
    return out


@pytest.fixture(scope="module")
def arm_virt_dtb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        pytest.fail("qemu-system-arm missing (apt-get install qemu-system-arm)")
    return dump_virt_dtb(qemu, "virt,highmem=off", "cortex-a15",
                         tmp_path_factory.mktemp("dtb") / "virt.dtb")


def _small_dtb() -> bytes:
    root = fdt.Node("", {"#address-cells": struct.pack(">I", 2),
                         "#size-cells": struct.pack(">I", 2)})
    root.children.append(fdt.Node("chosen", {"linux,uefi-system-table": fdt.u64(0xBFE00000)}))
    return fdt.serialize(fdt.Tree(root))


def _check_common(segs: list[ks.Segment], iomem: str, page: int) -> dict[str, ks.Segment]:
    ks.check(segs, ks.free_ranges(iomem), page)  # aligned, inside free RAM, no overlap
    by = {s.what: s for s in segs}
    assert len(by) == len(segs)
    return by


def test_syscall_numbers() -> None:
    assert {a: get_arch(a).kexec_load_nr for a in ("aarch64", "riscv64", "loongarch64",
                                                   "armv7", "x86_64")} == {
        "aarch64": 104, "riscv64": 104, "loongarch64": 104, "armv7": 347, "x86_64": 246}


def test_every_arch_without_kexec_file_has_a_planner() -> None:
    assert set(kexec.KEXEC_LOAD_PLANNERS) == {"aarch64", "armv7", "riscv64", "loongarch64"}
    for module in kexec.KEXEC_LOAD_PLANNERS.values():  # imported only on the ENOSYS path
        assert callable(importlib.import_module(module).load), module


def test_allocator_window() -> None:
    alloc = ks.Allocator([(0x1000, 0x100000), (0x200000, 0x800000)])
    assert alloc.take(0x3000, 0x10000, lo=0x20000) == 0x20000
    assert alloc.take(0x1000, 0x1000, lo=0x150000) == 0x200000
    with pytest.raises(ks.KexecLoadError, match=r"in \[0x0, 0x300000\)"):
        alloc.take(0x200000, 0x1000, hi=0x300000)


def test_zimage_header_of_armmp(armmp: bytes) -> None:
    z = kexec_arm32.zimage_header(armmp)
    assert z.length == len(armmp)
    assert z.text_offset == 0x208000  # armmp enables ARCH_QCOM
    assert 3 * len(armmp) < z.kernel_size < 8 * len(armmp)
    with pytest.raises(ks.KexecLoadError, match="zImage"):
        kexec_arm32.zimage_header(b"MZ" + bytes(100))


def test_arm32_plan(armmp: bytes, arm_virt_dtb: bytes) -> None:
    initrd = bytes(7 << 20)
    entry, segs = kexec_arm32.plan(armmp, initrd, "root=LABEL=x console=ttyAMA0", arm_virt_dtb,
                                   ARMV7_IOMEM)
    by = _check_common(segs, ARMV7_IOMEM, 4096)
    assert list(by) == ["kernel", "initrd", "dtb"]
    z = kexec_arm32.zimage_header(armmp)
    ram = 0x40000000
    # The zImage runs in the first 128 MiB, above where it decompresses the kernel to, and
    # the bytes after it (memsz zero-fill) hold no appended DTB.
    assert entry == by["kernel"].mem
    assert by["kernel"].mem >= ram + z.text_offset + z.kernel_size
    assert by["kernel"].mem + by["kernel"].memsz <= ram + (128 << 20)
    assert by["kernel"].memsz >= len(armmp) + z.malloc_size
    for s in (by["initrd"], by["dtb"]):
        assert by["kernel"].mem < s.mem and s.mem + s.memsz <= ram + (512 << 20)
    # machine_kexec_prepare finds the DTB by its magic; /chosen points at the initrd.
    assert [s.what for s in segs if s.data[:4] == b"\xd0\x0d\xfe\xed"] == ["dtb"]
    chosen = fdt.parse(by["dtb"].data).root.child("chosen")
    assert chosen is not None
    assert chosen.props["bootargs"] == fdt.string("root=LABEL=x console=ttyAMA0")
    assert chosen.props["linux,initrd-start"] == fdt.u64(by["initrd"].mem)
    assert chosen.props["linux,initrd-end"] == fdt.u64(by["initrd"].mem + len(initrd))


def test_arm32_no_room_below_128_mib(armmp: bytes, arm_virt_dtb: bytes) -> None:
    crowded = "40000000-7fffffff : System RAM\n  41000000-47ffffff : reserved\n"
    with pytest.raises(ks.KexecLoadError, match="first 128 MiB"):
        kexec_arm32.plan(armmp, None, "x", arm_virt_dtb, crowded)


def test_riscv64_plan(riscv_image: bytes) -> None:
    hdr = kexec_riscv64.image_header(riscv_image)
    assert hdr.image_size >= len(riscv_image)
    initrd = bytes(9 << 20)
    entry, segs = kexec_riscv64.plan(riscv_image, initrd, "root=LABEL=y ro", _small_dtb(),
                                     RISCV64_IOMEM)
    by = _check_common(segs, RISCV64_IOMEM, 4096)
    assert list(by) == ["kernel", "initrd", "dtb"]
    assert entry == by["kernel"].mem and (entry - hdr.text_offset) % (2 << 20) == 0
    assert by["kernel"].memsz >= hdr.image_size
    # the kernel reserves itself up to the next 2 MiB boundary (RV64 STRICT_KERNEL_RWX)
    kend = ks.align(by["kernel"].mem + hdr.image_size, 2 << 20)
    assert by["initrd"].mem >= kend and by["dtb"].mem >= kend
    assert [s.what for s in segs if s.data[:4] == b"\xd0\x0d\xfe\xed"] == ["dtb"]
    chosen = fdt.parse(by["dtb"].data).root.child("chosen")
    assert chosen is not None and "linux,uefi-system-table" in chosen.props
    assert chosen.props["linux,initrd-start"] == fdt.u64(by["initrd"].mem)
    with pytest.raises(ks.KexecLoadError, match="riscv64"):
        kexec_riscv64.image_header(bytes(128))


def test_loongarch64_plan(loong_image: bytes) -> None:
    hdr = kexec_loongarch64.image_header(loong_image)
    assert hdr.load_offset == 0x200000  # PHYS_LINK_KADDR
    assert hdr.kernel_asize >= len(loong_image)
    page = 16384  # CONFIG_PAGE_SIZE_16KB in Debian's loong64 config
    initrd = bytes(11 << 20)
    entry, segs = kexec_loongarch64.plan(loong_image, initrd, "root=LABEL=z console=ttyS0",
                                         LOONGARCH64_IOMEM, page)
    by = _check_common(segs, LOONGARCH64_IOMEM, page)
    assert list(by) == ["kernel", "initrd", "cmdline"]
    assert by["kernel"].mem % (2 << 20) == 0
    assert entry == by["kernel"].mem + hdr.kernel_entry - hdr.load_offset
    assert by["kernel"].mem < entry < by["kernel"].mem + len(loong_image)
    for s in segs:  # the control code (1 MiB) and command line (1 MiB + 32 KiB) stay clear
        assert s.mem >= 0x200000
    # machine_kexec_prepare takes the first segment that starts with "kexec".
    assert [s.what for s in segs if s.data.startswith(b"kexec")] == ["cmdline"]
    line = by["cmdline"].data
    assert len(line) == 4096
    text = line.rstrip(b"\0").decode()
    assert text == (f"kexec root=LABEL=z console=ttyS0 initrd={by['initrd'].mem:#x},"
                    f"{len(initrd):#x}")
    with pytest.raises(ks.KexecLoadError, match="at most 4095"):
        kexec_loongarch64.command_line("x" * 5000, None)


def test_loongarch64_rejects_the_zboot_wrapper() -> None:
    with pytest.raises(ks.KexecLoadError, match="vmlinux.efi"):
        kexec_loongarch64.image_header(_lane_kernel("loongarch64"))
