"""`cloudboot build` against the classic objcopy + mtools + xorriso pipeline, same inputs.

Prints wall times (median of N), their ratio (goal: cloudboot ≤ 2× the pipeline) and the size
of each artefact.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cloudboot.arch import get_arch
from cloudboot.bootstrap.build import BuildRequest, build, default_kernel, default_stub
from cloudboot.initramfs.builder import default_initramfs

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
ARCH = get_arch("x86_64")
CMDLINE = "console=ttyS0 cloudboot.disk=LABEL=cbroot"


def pipeline(kernel: Path, initrd: Path, stub: Path, work: Path) -> Path:
    """objcopy the sections into the stub, put it on a FAT image, wrap it with xorriso."""
    (work / "cmdline").write_text(CMDLINE)
    (work / "osrel").write_text("ID=cloudboot\n")
    uki, efi_img, iso_root, out = (work / "uki.efi", work / "efi.img", work / "iso",
                                   work / "pipeline.iso")
    # Offsets as ukify's documentation of the objcopy recipe: sections placed after the stub.
    subprocess.run([
        "objcopy",
        "--add-section", f".osrel={work / 'osrel'}", "--change-section-vma", ".osrel=0x20000",
        "--add-section", f".cmdline={work / 'cmdline'}",
        "--change-section-vma", ".cmdline=0x30000",
        "--add-section", f".initrd={initrd}", "--change-section-vma", ".initrd=0x3000000",
        "--add-section", f".linux={kernel}", "--change-section-vma", ".linux=0x2000000",
        str(stub), str(uki)], check=True)
    for stale in (efi_img, out):
        stale.unlink(missing_ok=True)
    size_kib = (uki.stat().st_size * 103 // 100 + (1 << 20)) // 1024 // 1024 * 1024 + 1024
    subprocess.run(["mkfs.vfat", "-C", "-n", "CLOUDBOOT", str(efi_img), str(size_kib)],
                   check=True, capture_output=True)
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    subprocess.run(["mmd", "-i", str(efi_img), "::/EFI", "::/EFI/BOOT"], check=True, env=env)
    subprocess.run(["mcopy", "-i", str(efi_img), str(uki), "::/EFI/BOOT/BOOTX64.EFI"],
                   check=True, env=env)
    iso_root.mkdir(exist_ok=True)
    shutil.copy(efi_img, iso_root / "efi.img")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-e", "efi.img", "-no-emul-boot",
                    "-append_partition", "2", "0xef", str(efi_img), "-o", str(out),
                    str(iso_root)], check=True, capture_output=True)
    return out


def timed(fn) -> tuple[float, Path]:  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(RUNS):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    assert out is not None
    return statistics.median(times), out


def main() -> int:
    for tool in ("objcopy", "mkfs.vfat", "mcopy", "xorriso"):
        if shutil.which(tool) is None:
            print(f"bench_build: {tool} missing; run the README set-up", file=sys.stderr)
            return 1
    kernel, stub, initrd = default_kernel(ARCH), default_stub(ARCH), default_initramfs(ARCH)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ours_t, ours = timed(lambda: build(BuildRequest(
            arch=ARCH, output=work / "cloudboot.iso", kernel=kernel, initramfs=initrd,
            stub=stub, cmdline=CMDLINE)).iso)
        base_t, base = timed(lambda: pipeline(kernel, initrd, stub, work))
        print(f"build (median of {RUNS}): cloudboot {ours_t:.2f} s, objcopy+mtools+xorriso "
              f"{base_t:.2f} s, ratio {ours_t / base_t:.2f} (goal <= 2.0)")
        print(f"sizes: kernel {kernel.stat().st_size / 1e6:.1f} MB, initramfs "
              f"{initrd.stat().st_size / 1e6:.1f} MB, cloudboot boot.iso "
              f"{Path(ours).stat().st_size / 1e6:.1f} MB, pipeline iso "
              f"{base.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
