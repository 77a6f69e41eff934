"""Path A against the target's own kernel booted directly by the firmware, same host, same run.

Path A: firmware → cloudboot UKI → cloudboot-init → kexec → target userspace marker.
Baseline: firmware → a UKI of the target's own kernel + initrd + command line → the same marker.
Prints medians, the ratio (goal ≤ 1.35) and init's own time from its events (init-start →
kexec-load; goal ≤ 0.5 s under TCG), plus Python's start-up ("Run /init" → init-start).
BENCH_RUNS (default 3), BENCH_RELEASE (bookworm), BENCH_FS (ext4) choose what is measured.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

from lab.cells import Cell
from lab.hypervisors.accel import select_accel
from lab.images import debian
from lab.paths.a import run_path_a_disk
from lab.paths.direct import direct_firmware_boot
from lab.profiles import get_profile

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
RELEASE = os.environ.get("BENCH_RELEASE", "bookworm")
FS = os.environ.get("BENCH_FS", "ext4")
RUN_INIT = re.compile(r"Run /init as init process")


def path_a(work: Path) -> tuple[float, float, float]:
    cell = Cell("qemu", "x86_64", "A", "debian-12" if RELEASE == "bookworm" else "debian-13",
                FS)
    result = run_path_a_disk(cell, work / "path-a")
    if result.status != "pass":
        raise SystemExit(f"Path A failed: {result.category}: {result.evidence}")
    t = result.phase_times
    run_init = None
    for line in Path(str(result.console_log)).read_text(errors="replace").splitlines():
        stamp, _, text = line.partition("\t")
        if RUN_INIT.search(text):
            run_init = float(stamp)
            break
    python_start = t["init-start"] - run_init if run_init is not None else float("nan")
    return t["userspace"], t["kexec-load"] - t["init-start"], python_start


def main() -> int:
    image = debian.build(RELEASE, FS)
    a_times, d_times, init_times, py_times = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(RUNS):
            work = Path(tmp) / str(i)
            work.mkdir()
            a, init, py = path_a(work)
            d = direct_firmware_boot(image, work / "direct")
            a_times.append(a)
            d_times.append(d)
            init_times.append(init)
            py_times.append(py)
            print(f"run {i + 1}: Path A {a:.1f} s, direct {d:.1f} s, init {init:.2f} s, "
                  f"python start {py:.2f} s", flush=True)
    a, d = statistics.median(a_times), statistics.median(d_times)
    print(f"Path A ({RELEASE}/{FS}, median of {RUNS}): reset → userspace {a:.1f} s; direct "
          f"UKI of the target kernel {d:.1f} s; ratio {a / d:.2f} (goal <= 1.35)")
    print(f"init's own time (init-start → kexec-load): {statistics.median(init_times):.2f} s "
          f"(goal <= 0.5 s); Python start (Run /init → init-start): "
          f"{statistics.median(py_times):.2f} s; accel {select_accel(get_profile('x86_64')).accel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
