"""Read plans: from text, from a file, and the subplans a target points to."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloudboot.arch import host_arch
from cloudboot.plan.errors import PlanError
from cloudboot.plan.model import Plan, Target, build
from cloudboot.plan.parser import parse

MAX_SUBPLAN_DEPTH = 8

# Given a target's subplan reference, return (HCL text, a name for it in messages). The name
# also identifies the plan for loop detection, so give the same plan the same name.
SubplanResolver = Callable[[str], tuple[str, str]]


def parse_plan(
    text: str,
    filename: str,
    *,
    arch: str | None = None,
    lldp: dict[str, Any] | None = None,
) -> Plan:
    """Parse, check and evaluate a plan for ``arch`` (default: this machine's).

    Raises PlanError, and nothing else, for any text.
    """
    try:
        body = parse(text, filename)
        return build(body, filename, arch or host_arch().name, lldp)
    except RecursionError:  # left-deep operator chains and long local chains
        raise PlanError("expression nests too deeply", filename) from None


def load_plan(
    path: str | Path,
    *,
    text: str | None = None,
    arch: str | None = None,
    lldp: dict[str, Any] | None = None,
) -> Plan:
    """Load a plan file; ``text`` given means it was already read (path names it in errors)."""
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise PlanError(f"cannot read plan: {e}", str(path)) from None
    return parse_plan(text, str(path), arch=arch, lldp=lldp)


def load_subplan(plan: Plan, target: Target, resolver: SubplanResolver) -> Plan:
    """The plan a subplan target points to, evaluated like its parent."""
    if target.subplan is None:
        raise PlanError("has no subplan", plan.filename, target.line, target.name)
    chain = (*plan.chain, plan.filename)
    if len(chain) > MAX_SUBPLAN_DEPTH:
        raise PlanError(f"subplans nest deeper than {MAX_SUBPLAN_DEPTH}", plan.filename,
                        target.line, target.name)
    try:
        text, name = resolver(target.subplan)
    except PlanError:
        raise
    except (OSError, ValueError) as e:
        raise PlanError(f"cannot load subplan {target.subplan}: {e}", plan.filename,
                        target.line, target.name) from None
    if name in chain:
        loop = " -> ".join((*chain[chain.index(name):], name))
        raise PlanError(f"subplan loop: {loop}", plan.filename, target.line, target.name)
    sub = parse_plan(text, name, arch=plan.arch, lldp=plan.lldp)
    sub.chain = chain
    return sub


def file_resolver(base: str | Path) -> SubplanResolver:
    """Resolve subplan references as files relative to ``base`` (``file://`` allowed)."""
    root = Path(base)

    def resolve(ref: str) -> tuple[str, str]:
        path = root / ref.removeprefix("file://")
        return path.read_text(encoding="utf-8"), str(path.resolve())

    return resolve
