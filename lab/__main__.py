"""`python -m lab doctor | boot | matrix | precache`: the lab's commands.

- doctor [--json]: what this host can run, and why not (lab/commands/doctor.py)
- boot --hypervisor H --arch A --path P --distro D [--fs F] [--workdir DIR]: one cell, console
  live on stdout, then the verdict; exit 0 pass, 1 fail, 2 not run (lab/commands/boot.py)
- matrix [--smoke] [--check]: pytest on the e2e cells with --matrix-results, then MATRIX.md;
  --check only checks that MATRIX.md matches matrix/results.json
- matrix html RUN_DIR: write RUN_DIR/matrix.html from its results.json (lab/report/html.py)
- matrix export --kcidb FILE [--log-base URL] [RUN_DIR]: the run as KCIDB v5 JSON for KernelCI
  (lab/report/kcidb.py)
- precache [--smoke] [CELL…]: build/fetch what the cells need (lab/commands/precache.py)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from lab.cells import Cell

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "matrix" / "results.json"
TABLE = ROOT / "MATRIX.md"


def _workers() -> str:
    return os.environ.get("CLOUDBOOT_WORKERS", str(max(1, min(os.cpu_count() or 1, 4))))


def matrix_command(smoke: bool, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "-n", _workers(), "--dist", "loadgroup",
           "-m", "e2e and smoke" if smoke else "e2e", "tests/e2e",
           "--matrix-results", str(RESULTS)]
    return cmd + extra


def run_matrix(smoke: bool, check: bool, extra: list[str]) -> int:
    from lab import matrix

    if check:
        return matrix.main(["check", str(RESULTS), str(TABLE)])
    cmd = matrix_command(smoke, extra)
    print("[lab matrix] " + " ".join(cmd), file=sys.stderr, flush=True)
    rc = subprocess.run(cmd, cwd=ROOT, check=False).returncode
    if not RESULTS.exists():
        print(f"[lab matrix] pytest exited {rc} and wrote no {RESULTS}", file=sys.stderr)
        return rc or 1
    render_rc = matrix.main(["render", str(RESULTS), str(TABLE)])
    # pytest exits 1 when a cell failed: the table shows it; other codes are lab errors.
    return render_rc or (0 if rc in (0, 1) else rc)


def selected_cells(smoke: bool, ids: list[str]) -> list[Cell]:
    from lab.matrix import all_cells

    if ids:
        try:
            return [Cell.from_id(i) for i in ids]
        except ValueError:
            raise SystemExit(f"lab precache: a cell id is hv-arch-path-distro-fs, got {ids}"
                             ) from None
    if smoke:
        return [Cell("qemu", "x86_64", "A", "debian-12", "ext4"),
                Cell("qemu", "x86_64", "C", "debian-12", "ext4")]
    return all_cells()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["matrix", "html"]:  # an action of its own; `matrix`'s words are pytest's
        from lab.report import html

        return html.main(argv[2:])
    if argv[:2] == ["matrix", "export"]:  # --kcidb FILE [--log-base URL] [RUN_DIR]
        from lab.report import kcidb

        return kcidb.main(argv[2:])
    p = argparse.ArgumentParser(prog="python -m lab", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("doctor", help="what this host can run, and why not")
    d.add_argument("--json", action="store_true")
    b = sub.add_parser("boot", help="boot one cell, console live, then the verdict")
    from lab.commands import boot as boot_command

    boot_command.add_arguments(b)
    m = sub.add_parser("matrix", help="run the e2e cells and render MATRIX.md "
                       "(`matrix html RUN_DIR`: a run's matrix.html)")
    m.add_argument("--smoke", action="store_true", help="only the smoke-marked cells")
    m.add_argument("--check", action="store_true", help="only check MATRIX.md is up to date")
    m.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    pc = sub.add_parser("precache", help="build/fetch what the cells need")
    pc.add_argument("--smoke", action="store_true")
    pc.add_argument("cells", nargs="*", help="cell ids (default: every cell)")
    args = p.parse_args(argv)
    if args.cmd == "doctor":
        from lab.commands import doctor

        return doctor.main(as_json=args.json)
    if args.cmd == "boot":
        return boot_command.main(args)
    if args.cmd == "matrix":
        return run_matrix(args.smoke, args.check, args.pytest_args)
    from lab.commands.precache import precache

    digests = precache(selected_cells(args.smoke, args.cells))
    for name, digest in sorted(digests.items()):
        print(f"{digest}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
