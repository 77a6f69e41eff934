"""A cell's verdict from what its console showed, and the proof a pass must carry: which
distro, kernel and command line came up (lab-built images print CLOUDBOOT-USERSPACE)."""

from __future__ import annotations

import re

from lab.cells import Cell, CellResult
from lab.console import BANNER, BootOutcome
from lab.failures import classify
from lab.images import debian

# A guest that reached its userspace and then crashed did not really work.
CRASH = re.compile(r"Kernel panic - not syncing.*|Oops: .*|BUG: .*")


def verdict(cell: Cell, outcome: BootOutcome, *, accel: str, seconds: float) -> CellResult:
    us = outcome.events.userspace
    v = classify(outcome.text, outcome.events.events, us is not None, outcome.timed_out)
    result = CellResult(
        cell=cell, status="pass" if v.passed else "fail", category=v.category,
        evidence=v.evidence, accel=accel, seconds=seconds,
        phase_times=outcome.events.phase_times(),
        userspace=us.data if us else None,
        banners=len(BANNER.findall(outcome.text)),
        console_log=str(outcome.console_log),
    )
    if us is not None:
        crash = CRASH.search(outcome.text, outcome.text.find(us.line.strip()[:40]))
        if crash:
            result.status, result.category = "fail", "target-kernel"
            result.evidence = f"crashed after reaching userspace: {crash.group(0).strip()}"
    return result


def check_userspace(result: CellResult, image: debian.TargetImage) -> None:
    """A pass must prove which distro, kernel and command line came up."""
    us = result.userspace or {}
    problems = []
    if us.get("id") != image.os_id or us.get("version_id") != image.version_id:
        problems.append(f"userspace is {us.get('id')} {us.get('version_id')}, expected "
                        f"{image.os_id} {image.version_id}")
    if us.get("kernel") != image.kernel_version:
        problems.append(f"kernel {us.get('kernel')}, expected the target's "
                        f"{image.kernel_version}")
    if f"root=UUID={image.fs_uuid}" not in str(us.get("cmdline", "")):
        problems.append(f"command line {us.get('cmdline')!r} lacks root=UUID={image.fs_uuid}")
    if problems:
        result.status, result.category = "fail", "target-userspace"
        result.evidence = "; ".join(problems)
