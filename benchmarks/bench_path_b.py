"""Path B against the target's own kernel booted directly by the firmware, same host, same run.

Path B: firmware → the native loader (reads CloudBootTarget=ext4:, finds the root, reads the
kernel + initrd through EFI_DISK_IO) → the kernel's EFI stub → the target userspace marker.
Baseline: firmware → a UKI of the same kernel + initrd + command line → the same marker.
Prints medians per arch, the ratio, and the loader's own time (loader-start → loader-handoff).
BENCH_RUNS (default 3) and BENCH_ARCHES (default "x86_64"; "x86_64 aarch64" for both).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

from lab.cells import Cell
from lab.hypervisors.accel import select_accel
from lab.images import debian
from lab.paths.b import run_path_b
from lab.paths.direct import direct_firmware_boot
from lab.profiles import get_profile

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
ARCHES = os.environ.get("BENCH_ARCHES", "x86_64").split()


def path_b(arch: str, work: Path) -> tuple[float, float]:
    cell = Cell("qemu", arch, "B", "debian-12", "ext4")
    profile = get_profile(arch)
    # The same command line as the baseline's UKI (root=UUID= is added by the loader).
    run = run_path_b(cell, work, target="ext4:", cmdline=f"console={profile.console} panic=-1",
                     timeout=900)
    r = run.result
    if r.status != "pass":
        raise SystemExit(f"Path B failed on {arch}: {r.category}: {r.evidence}")
    t = r.phase_times
    return t["userspace"], t["loader-handoff"] - t["loader-start"]


def main() -> int:
    for arch in ARCHES:
        image = debian.build("bookworm", "ext4", arch)
        b_times, d_times, own = [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(RUNS):
                work = Path(tmp) / str(i)
                work.mkdir()
                b, loader = path_b(arch, work / "b")
                d = direct_firmware_boot(image, work / "direct", arch=arch, timeout=900)
                b_times.append(b)
                d_times.append(d)
                own.append(loader)
                print(f"{arch} run {i + 1}: Path B {b:.1f} s, direct {d:.1f} s, loader "
                      f"{loader:.2f} s", flush=True)
        b, d = statistics.median(b_times), statistics.median(d_times)
        print(f"Path B {arch} (bookworm/ext4, median of {RUNS}): reset → userspace {b:.1f} s; "
              f"direct UKI of the target kernel {d:.1f} s; ratio {b / d:.2f}; loader "
              f"(loader-start → loader-handoff) {statistics.median(own):.2f} s; accel "
              f"{select_accel(get_profile(arch)).accel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
