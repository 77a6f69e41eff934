"""The HCL plan: parse, evaluate, validate, select a target.

Why our own parser and not python-hcl2: this package runs in the guest's initramfs, where every
module is shipped as .pyc inside a ~3 MB closure and Python starts cold under TCG. Measured on
this machine (python-hcl2 8.1.4, lark 1.3.1): their compiled modules weigh 476 KB + 608 KB,
``import hcl2`` takes 60-90 ms warm, and the first ``hcl2.loads()`` takes ~2 s (lark builds
the grammar's parser tables), which would be many seconds in a TCG guest. python-hcl2 also does
not evaluate expressions and loses line numbers, and every error here must name file, line and
target. The subset a plan needs (attributes, labelled blocks, strings with ``${}``, heredocs,
lists, objects, references, operators, ``?:`` and a few functions) is ~1,500 lines of stdlib
Python: ~105 KB of .pyc, ~20 ms to import warm (plus cloudboot.arch, which the init imports
anyway), about a millisecond to parse and evaluate the example plan.

Modules: lexer (tokens) -> parser (syntax tree) -> evaluate (HCL values and scope) -> model
(schema checks, Plan/Target) -> load (files, subplans) -> select (which target boots); cmdline
fills network-fact placeholders; tool (host only, imported lazily) backs ``cloudboot plan``.
"""

from cloudboot.plan.cmdline import PLACEHOLDERS, render_cmdline
from cloudboot.plan.errors import PlanError
from cloudboot.plan.load import (
    MAX_SUBPLAN_DEPTH,
    SubplanResolver,
    file_resolver,
    load_plan,
    load_subplan,
    parse_plan,
)
from cloudboot.plan.model import DiskSource, Menu, Plan, Target
from cloudboot.plan.select import eligible_targets, fits, select_target

__all__ = [
    "MAX_SUBPLAN_DEPTH",
    "PLACEHOLDERS",
    "DiskSource",
    "Menu",
    "Plan",
    "PlanError",
    "SubplanResolver",
    "Target",
    "check_main",
    "eligible_targets",
    "file_resolver",
    "fits",
    "load_plan",
    "load_subplan",
    "parse_plan",
    "render_cmdline",
    "select_target",
    "show",
]


def check_main(path: str, arch: str | None = None) -> int:
    """``cloudboot plan check``: print problems, return the exit status (host-side helper)."""
    from cloudboot.plan.tool import check_main as run

    return run(path, arch)


def show(plan: Plan, arch: str) -> dict:  # type: ignore[type-arg]
    """``cloudboot plan show``: the plan resolved for arch as JSON-able data."""
    from cloudboot.plan.tool import show as run

    return run(plan, arch)
