"""Path D against the direct firmware boot of the same kernel, and against Path C, same host,
same run.

Path D: firmware → the network loader → DHCP, index → manifest, kernel + initrd pulled from
the local docker-registry with sha256 verification → the kernel's EFI stub → the target's
userspace marker (one firmware pass). Baselines: firmware → a UKI of the same kernel + initrd +
command line on a local ESP (lab.paths.direct.direct_firmware_boot), and Path C (two firmware
passes: bootstrap, stage, Boot####, restart). Prints medians and the ratios D/direct and D/C,
and the loader's share (reset → net-up → materialised).
BENCH_RUNS (default 3), BENCH_ARCH (x86_64), BENCH_SKIP_C=1 skips Path C.
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
from lab.paths.c import run_path_c_disk
from lab.paths.d import guest_config, push_target, run_path_d, target_cmdline
from lab.paths.direct import direct_firmware_boot
from lab.profiles import get_profile
from lab.services import registry as labreg

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
ARCH = os.environ.get("BENCH_ARCH", "x86_64")
SKIP_C = os.environ.get("BENCH_SKIP_C") == "1"


def main() -> int:
    image = debian.build("bookworm", "ext4", ARCH)
    cell = Cell("qemu", ARCH, "D", "debian-12", "ext4")
    d_t: list[float] = []
    direct_t: list[float] = []
    c_t: list[float] = []
    net_t: list[float] = []
    pulled_t: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, labreg.running() as reg:
        pushed = push_target(reg, image, tag="bench")
        cfg = guest_config(reg, pushed.repository, pushed.index_tag, target_cmdline(image))
        for i in range(RUNS):
            work = Path(tmp) / str(i)
            r = run_path_d(cell, work / "path-d", cfg, image, timeout=900)
            if r.status != "pass":
                raise SystemExit(f"Path D failed: {r.category}: {r.evidence}")
            t = r.phase_times
            d_t.append(t["userspace"])
            net_t.append(t["net-up"])
            pulled_t.append(t["materialised"])
            direct_t.append(direct_firmware_boot(image, work / "direct", ARCH))
            line = (f"run {i + 1}: Path D {d_t[-1]:.1f} s (net-up {net_t[-1]:.1f} s, pulled "
                    f"{pulled_t[-1]:.1f} s), direct {direct_t[-1]:.1f} s")
            if not SKIP_C:
                cr = run_path_c_disk(Cell("qemu", ARCH, "C", "debian-12", "ext4"),
                                     work / "path-c", timeout=900).result
                if cr.status != "pass":
                    raise SystemExit(f"Path C failed: {cr.category}: {cr.evidence}")
                c_t.append(cr.phase_times["userspace"])
                line += f", Path C {c_t[-1]:.1f} s"
            print(line, flush=True)
    d, direct = statistics.median(d_t), statistics.median(direct_t)
    out = (f"Path D ({ARCH} bookworm/ext4, median of {RUNS}): reset → userspace {d:.1f} s "
           f"(net-up {statistics.median(net_t):.1f} s, kernel+initrd pulled and verified "
           f"{statistics.median(pulled_t):.1f} s); direct UKI of the same kernel {direct:.1f} s; "
           f"D/direct {d / direct:.2f}")
    if c_t:
        c = statistics.median(c_t)
        out += f"; Path C {c:.1f} s; D/C {d / c:.2f} (C's two-boot tax removed: {c - d:.1f} s)"
    print(out + f"; accel {select_accel(get_profile(ARCH)).accel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
