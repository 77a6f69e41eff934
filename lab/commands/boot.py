"""`python -m lab boot`: one matrix cell, its console live on stdout, then the verdict.

Every cell goes through one table, RUNNERS: (hypervisor, arch, path) -> a function that boots
the cell into a work folder and returns its CellResult. A cell with no runner is "not run" with
the reason from matrix/expected.toml (or "no runner"), exit status 2.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from lab.cells import ALL_DISTROS, FILESYSTEMS, PATHS, Cell, CellResult

# (cell, workdir, timeout) -> result
Runner = Callable[[Cell, Path, float], CellResult]


def _path_a(cell: Cell, workdir: Path, timeout: float) -> CellResult:
    from lab.paths.a import run_path_a_disk

    return run_path_a_disk(cell, workdir, timeout=timeout)


def _path_c(cell: Cell, workdir: Path, timeout: float) -> CellResult:
    from lab.paths.c import run_path_c_disk

    return run_path_c_disk(cell, workdir, timeout=timeout).result


def _path_b(cell: Cell, workdir: Path, timeout: float) -> CellResult:
    from lab.paths.b import run_path_b

    # CloudBootTarget=<fs>: the loader walks the disks for that root file system.
    return run_path_b(cell, workdir, target=f"{cell.fs}:", timeout=timeout).result


def _openstack_disk(cell: Cell, workdir: Path, timeout: float) -> CellResult:
    from lab.images import debian
    from lab.lanes.openstack import run_openstack_cell

    image = debian.build(cell.release, cell.fs, cell.arch)
    return run_openstack_cell(cell, workdir, {"cloudboot.disk": f"LABEL={image.fs_label}"},
                              timeout=timeout).result


def _openstack_b(cell: Cell, workdir: Path, timeout: float) -> CellResult:
    from cloudboot.loader.media import build_b_media
    from lab.images import debian
    from lab.lanes.openstack import run_openstack_loader
    from lab.paths.b import set_vars

    image = debian.build(cell.release, cell.fs, cell.arch)
    media = build_b_media(cell.arch, workdir / "b.iso")
    cmdline = f"root=UUID={image.fs_uuid} ro console=ttyS0"
    result, _ = run_openstack_loader(cell, workdir / "cell", media.path, timeout=timeout,
                                     vars_set=lambda v: set_vars(v, f"{cell.fs}:", cmdline))
    return result


def _path_d(cell: Cell, workdir: Path, timeout: float) -> CellResult:
    from lab.images import debian
    from lab.paths.d import guest_config, push_target, run_path_d, target_cmdline
    from lab.services import registry

    image = debian.build(cell.release, cell.fs, cell.arch)
    with registry.running() as reg:
        pushed = push_target(reg, image, tag=f"{cell.distro}-{cell.fs}")
        cfg = guest_config(reg, pushed.repository, pushed.index_tag, target_cmdline(image))
        return run_path_d(cell, workdir, cfg, image, timeout=timeout)


def _openstack_d(cell: Cell, workdir: Path, timeout: float) -> CellResult:
    from cloudboot.loader.netconfig import NetConfig
    from lab.hypervisors.vmspec import guestfwd
    from lab.images import debian
    from lab.lanes.openstack import INSTANCE_REGISTRY, run_openstack_loader
    from lab.paths.d import build_d_iso, push_target, target_cmdline
    from lab.services import registry

    image = debian.build(cell.release, cell.fs, cell.arch)
    with registry.running() as reg:
        pushed = push_target(reg, image, repository="openstack/debian", tag=cell.distro)
        cfg = NetConfig(INSTANCE_REGISTRY, pushed.repository, pushed.index_tag,
                        target_cmdline(image), insecure=True)
        iso = build_d_iso(cell.arch, cfg, workdir / "d.iso")
        result, _ = run_openstack_loader(
            cell, workdir / "cell", iso, rng=True, timeout=timeout,
            extra_guestfwd=(guestfwd(INSTANCE_REGISTRY, reg.host),))
        return result


def _vz_a(cell: Cell, workdir: Path, timeout: float) -> CellResult:
    from lab.lanes.vz import run_vz_path_a

    return run_vz_path_a(cell, workdir, timeout=timeout)


@dataclass(frozen=True)
class Entry:
    run: Runner
    timeout: float  # seconds the boot may take before the verdict is "timeout"
    what: str


A_DISK, C_DISK, ON_LIBVIRT = ("lab.paths.a.run_path_a_disk", "lab.paths.c.run_path_c_disk",
                              " (libvirt domain)")
# Timeouts: 3-5x a lone boot on this 2-core TCG host (aarch64 Path C boots twice).
RUNNERS: dict[tuple[str, str, str], Entry] = {
    ("qemu", "x86_64", "A"): Entry(_path_a, 420, A_DISK),
    ("qemu", "x86_64", "B"): Entry(_path_b, 420, "lab.paths.b.run_path_b"),
    ("qemu", "x86_64", "C"): Entry(_path_c, 600, C_DISK),
    ("qemu", "x86_64", "D"): Entry(_path_d, 600, "lab.paths.d.run_path_d"),
    ("qemu", "aarch64", "A"): Entry(_path_a, 900, A_DISK),
    ("qemu", "aarch64", "B"): Entry(_path_b, 900, "lab.paths.b.run_path_b"),
    ("qemu", "aarch64", "D"): Entry(_path_d, 900, "lab.paths.d.run_path_d"),
    ("qemu", "aarch64", "C"): Entry(_path_c, 1500, C_DISK),
    ("libvirt", "x86_64", "A"): Entry(_path_a, 420, A_DISK + ON_LIBVIRT),
    ("libvirt", "x86_64", "C"): Entry(_path_c, 600, C_DISK + ON_LIBVIRT),
    ("libvirt", "aarch64", "A"): Entry(_path_a, 900, A_DISK + ON_LIBVIRT),
    ("libvirt", "aarch64", "C"): Entry(_path_c, 1500, C_DISK + ON_LIBVIRT),
    ("libvirt", "x86_64", "B"): Entry(_path_b, 600, "lab.paths.b.run_path_b (libvirt domain)"),
    ("libvirt", "x86_64", "D"): Entry(_path_d, 600, "lab.paths.d.run_path_d (libvirt domain)"),
    ("openstack", "x86_64", "A"): Entry(_openstack_disk, 600,
                                        "lab.lanes.openstack.run_openstack_cell"),
    ("openstack", "x86_64", "C"): Entry(_openstack_disk, 600,
                                        "lab.lanes.openstack.run_openstack_cell"),
    ("openstack", "aarch64", "A"): Entry(_openstack_disk, 1500,
                                         "lab.lanes.openstack.run_openstack_cell"),
    ("openstack", "aarch64", "C"): Entry(_openstack_disk, 1500,
                                         "lab.lanes.openstack.run_openstack_cell"),
    ("openstack", "x86_64", "B"): Entry(_openstack_b, 600,
                                        "lab.lanes.openstack.run_openstack_loader"),
    ("openstack", "x86_64", "D"): Entry(_openstack_d, 600,
                                        "lab.lanes.openstack.run_openstack_loader"),
    ("vz", "aarch64", "A"): Entry(_vz_a, 900, "lab.lanes.vz.run_vz_path_a"),
    ("vz", "aarch64", "D"): Entry(_path_d, 900, "lab.paths.d.run_path_d (vz profile)"),
    ("vz", "aarch64", "C"): Entry(_path_c, 1500, C_DISK),
}


def runner_for(cell: Cell) -> Entry | None:
    return RUNNERS.get((cell.hypervisor, cell.arch.name, cell.path))


def not_run_reason(cell: Cell) -> str | None:
    """Why `cell` cannot be booted by `lab boot`, or None when it has a runner."""
    from lab.matrix import expectation

    rule = expectation(cell)
    if rule is not None and rule.kind == "not_run":
        return rule.reason
    if runner_for(cell) is None:
        known = ", ".join(f"{h}/{a}/{p}" for h, a, p in sorted(RUNNERS))
        return (f"no lab runner for hypervisor {cell.hypervisor}, arch {cell.arch}, path "
                f"{cell.path} (lab/commands/boot.py RUNNERS has: {known})")
    return None


class ConsoleFollower(threading.Thread):
    """Copy the console text of every console.log that appears under `root` to `out`
    while the cell runs (the runners write `<seconds>\\t<text>` lines as they arrive)."""

    def __init__(self, root: Path, out: TextIO, poll: float = 0.2) -> None:
        super().__init__(name="console-follower", daemon=True)
        self.root, self.out, self.poll = root, out, poll
        self.stop = threading.Event()
        self._offsets: dict[Path, int] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            self.drain()
            self.stop.wait(self.poll)
        self.drain()

    def drain(self) -> None:
        for log in sorted(self.root.rglob("console.log")):
            offset = self._offsets.get(log, 0)
            try:
                with open(log, encoding="utf-8", errors="replace") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                continue
            complete = data[:data.rfind("\n") + 1]
            if not complete:
                continue
            self._offsets[log] = offset + len(complete.encode("utf-8"))
            for line in complete.splitlines():
                stamp, _, text = line.partition("\t")
                self.out.write(f"[{stamp:>8}] {text}\n")
            self.out.flush()


def default_workdir(cell: Cell) -> Path:
    from cloudboot.fsutil import cache_dir

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return cache_dir("runs") / f"{cell.id}-{stamp}"


def print_verdict(result: CellResult, workdir: Path, out: TextIO) -> None:
    out.write(f"\n== {result.cell.id}: {result.status}"
              + (f" ({result.category})" if result.category else "") + "\n")
    if result.evidence:
        out.write(f"evidence: {result.evidence}\n")
    if result.reason:
        out.write(f"reason: {result.reason}\n")
    if result.phase_times:
        out.write("phase times (s since reset): " + ", ".join(
            f"{k} {v:.1f}" for k, v in sorted(result.phase_times.items(), key=lambda x: x[1]))
            + "\n")
    if result.userspace:
        out.write(f"userspace: {json.dumps(result.userspace, sort_keys=True)}\n")
    out.write(f"accelerator: {result.accel}; wall time {result.seconds} s\n")
    out.write(f"artefacts: {workdir}\n")
    out.flush()


def boot_cell(cell: Cell, workdir: Path | None = None, timeout: float | None = None,
              out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Boot one cell; exit status 0 pass, 1 any failure, 2 not run."""
    reason = not_run_reason(cell)
    if reason is not None:
        out.write(f"{cell.id}: not run: {reason}\n")
        return 2
    entry = runner_for(cell)
    assert entry is not None
    workdir = Path(workdir) if workdir is not None else default_workdir(cell)
    workdir.mkdir(parents=True, exist_ok=True)
    limit = timeout if timeout is not None else entry.timeout
    err.write(f"[lab boot] {cell.id} via {entry.what}, boot timeout {limit:.0f} s, "
              f"artefacts in {workdir}\n")
    err.flush()
    follower = ConsoleFollower(workdir, out)
    follower.start()
    t0 = time.monotonic()
    try:
        result = entry.run(cell, workdir, limit)
    except Exception as e:  # a lab failure (image build, firmware, QEMU launch): say so
        follower.stop.set()
        follower.join(5)
        out.write(f"\n== {cell.id}: fail (lab)\nevidence: {type(e).__name__}: {e}\n"
                  f"artefacts: {workdir}\n")
        return 1
    finally:
        follower.stop.set()
        follower.join(5)
    from lab.matrix import judge

    try:
        judge(result)
    except AssertionError as e:  # an expected failure that failed the wrong way
        result.reason = str(e)
    (workdir / "verdict.json").write_text(json.dumps(result.to_json(), indent=1) + "\n")
    err.write(f"[lab boot] finished in {time.monotonic() - t0:.0f} s\n")
    print_verdict(result, workdir, out)
    return 0 if result.status == "pass" else 1


def add_arguments(p) -> None:  # type: ignore[no-untyped-def]
    p.add_argument("--hypervisor", required=True,
                   help="qemu | libvirt | openstack | vfkit | vz")
    p.add_argument("--arch", required=True, help="x86_64 | aarch64 | riscv64 | …")
    p.add_argument("--path", required=True, choices=PATHS)
    p.add_argument("--distro", required=True, choices=sorted(ALL_DISTROS))
    p.add_argument("--fs", default="ext4", choices=FILESYSTEMS)
    p.add_argument("--workdir", type=Path, default=None,
                   help="artefact folder (default: a new one under ~/.cache/cloudboot/runs)")
    p.add_argument("--timeout", type=float, default=None,
                   help="boot timeout in seconds (default: the runner's)")


def main(args) -> int:  # type: ignore[no-untyped-def]
    from cloudboot.arch import get_arch

    try:
        arch = get_arch(args.arch).name
    except ValueError as e:
        print(f"lab boot: --arch {args.arch}: {e}", file=sys.stderr)
        return 2
    cell = Cell(args.hypervisor, arch, args.path, args.distro, args.fs)
    return boot_cell(cell, args.workdir, args.timeout)
