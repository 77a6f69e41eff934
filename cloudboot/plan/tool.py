"""Helpers for the ``cloudboot plan check|show`` commands."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from cloudboot.arch import host_arch
from cloudboot.plan.errors import PlanError
from cloudboot.plan.load import file_resolver, load_plan, load_subplan
from cloudboot.plan.model import Plan
from cloudboot.plan.select import fits, select_target


def show(plan: Plan, arch: str) -> dict[str, Any]:
    """The plan evaluated for arch as JSON-able data, with the target that would be chosen."""
    plan = plan if plan.arch == arch else plan.evaluate(arch)
    try:
        selected: str | None = select_target(plan, arch).name
        problem = None
    except PlanError as e:
        selected, problem = None, str(e)
    targets = []
    for t in plan.targets:
        item = asdict(t)
        item["source"] = t.source
        item["eligible"] = fits(t, plan.arch)
        targets.append(item)
    return {
        "filename": plan.filename,
        "arch": plan.arch,
        "default_target": plan.default_target,
        "dns": plan.dns,
        "menu": asdict(plan.menu) if plan.menu else None,
        "locals": plan.locals,
        "selected": selected,
        "selection_problem": problem,
        "targets": targets,
    }


def _is_local(ref: str) -> bool:
    return ref.startswith("file://") or "://" not in ref


def check_main(path: str | Path, arch: str | None = None, *, out: TextIO | None = None,
               err: TextIO | None = None) -> int:
    """Check a plan (and the subplans it names as local files); 0 when all are fine."""
    out = out or sys.stdout
    err = err or sys.stderr
    arch = arch or host_arch().name
    try:
        plans = [load_plan(path, arch=arch)]
    except PlanError as e:
        print(f"error: {e}", file=err)
        return 1
    status = 0
    resolver = file_resolver(Path(path).parent)
    # Breadth first through local subplans; every broken one is reported, not just the first.
    for plan in plans:
        n = sum(fits(t, plan.arch) for t in plan.targets)
        default = f", default {plan.default_target}" if plan.default_target else ""
        print(f"{plan.filename}: ok, {len(plan.targets)} targets ({n} for {plan.arch})"
              f"{default}", file=out)
        for t in plan.targets:
            if t.subplan is None:
                continue
            if not _is_local(t.subplan):
                print(f'{plan.filename}:{t.line}: target "{t.name}": subplan {t.subplan} is '
                      "remote, not checked", file=out)
                continue
            try:
                plans.append(load_subplan(plan, t, resolver))
            except PlanError as e:
                print(f"error: {e}", file=err)
                status = 1
    return status
