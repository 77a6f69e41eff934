"""Path C against the target's own kernel booted directly by the firmware, same host, same run.

Path C: firmware → cloudboot UKI → cloudboot-init → stage on the cache ESP + Boot#### →
restart → firmware → the staged kernel's EFI stub → target userspace marker (two firmware
passes). Baseline: firmware → a UKI of the target's kernel + initrd + command line → the
same marker. Prints medians and the ratio (goal ≤ 1.9), and the bootstrap's share (reset →
`rebooting`). BENCH_RUNS (default 3), BENCH_FS (ext4), BENCH_ARCH (x86_64) choose what runs;
`--arch aarch64` (AAVMF, TCG) and `--runs N` override them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from lab.cells import Cell
from lab.hypervisors.accel import select_accel
from lab.images import debian
from lab.paths.c import run_path_c_disk
from lab.paths.direct import direct_firmware_boot
from lab.profiles import get_profile

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
FS = os.environ.get("BENCH_FS", "ext4")
ARCH = os.environ.get("BENCH_ARCH", "x86_64")


def main(argv: list[str] | None = None) -> int:
    global ARCH, RUNS
    p = argparse.ArgumentParser(prog="bench_path_c.py")
    p.add_argument("--arch", default=ARCH, help="x86_64 (default) or aarch64")
    p.add_argument("--runs", type=int, default=RUNS)
    args, _ = p.parse_known_args(argv)  # nox passes its posargs to every benchmark
    ARCH, RUNS = args.arch, args.runs
    # aarch64 under TCG boots several times slower than x86_64 on these hosts.
    timeout = 900.0 if ARCH == "x86_64" else 1500.0
    image = debian.build("bookworm", FS, ARCH)
    c_times, d_times, first_pass = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(RUNS):
            work = Path(tmp) / str(i)
            # No dead foreign Boot#### entries: the baseline boots a VARS copy without them.
            run = run_path_c_disk(Cell("qemu", ARCH, "C", "debian-12", FS), work / "path-c",
                                  timeout=timeout, plant_foreign=False)
            r = run.result
            if r.status != "pass":
                raise SystemExit(f"Path C failed: {r.category}: {r.evidence}")
            c, reboot = r.phase_times["userspace"], r.phase_times["rebooting"]
            d = direct_firmware_boot(image, work / "direct", ARCH, timeout=timeout)
            c_times.append(c)
            d_times.append(d)
            first_pass.append(reboot)
            print(f"run {i + 1}: Path C {c:.1f} s (restart at {reboot:.1f} s), direct {d:.1f} s",
                  flush=True)
    c, d = statistics.median(c_times), statistics.median(d_times)
    print(f"Path C ({ARCH} bookworm/{FS}, median of {RUNS}): reset → userspace {c:.1f} s; "
          f"direct UKI of the target kernel {d:.1f} s; ratio {c / d:.2f} (goal <= 1.9); "
          f"bootstrap pass (reset → rebooting) {statistics.median(first_pass):.1f} s; "
          f"accel {select_accel(get_profile(ARCH)).accel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
