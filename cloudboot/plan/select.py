"""Choose the target to boot: by name, else the plan's default, else the only one that fits."""

from __future__ import annotations

from cloudboot.arch import UnknownArch, get_arch
from cloudboot.plan.errors import PlanError
from cloudboot.plan.load import SubplanResolver, load_subplan
from cloudboot.plan.model import Plan, Target


def _for_arch(plan: Plan, arch: str) -> tuple[Plan, str]:
    try:
        name = get_arch(arch).name
    except UnknownArch as e:
        raise PlanError(str(e), plan.filename) from None
    if plan.arch != name:
        plan = plan.evaluate(name)
    return plan, name


def fits(target: Target, arch: str) -> bool:
    """Whether a target may boot on arch (any of our, Debian or Go names)."""
    return target.arch is None or get_arch(target.arch) == get_arch(arch)


def eligible_targets(plan: Plan, arch: str) -> list[Target]:
    """The plan's targets for arch, evaluated for it, in plan order."""
    plan, name = _for_arch(plan, arch)
    return [t for t in plan.targets if fits(t, name)]


def select_target(
    plan: Plan,
    arch: str,
    name: str | None = None,
    *,
    resolver: SubplanResolver | None = None,
) -> Target:
    """The target to boot on arch.

    ``name`` (from ``cloudboot.target=`` or the menu) wins, then ``default_target``, then the
    single target that fits the arch. With a resolver, a subplan target is followed into its
    plan, where the same rules pick again (without the name).
    """
    plan, arch = _for_arch(plan, arch)
    line = None
    if name is None and plan.default_target is not None:
        name, line = plan.default_target, plan.default_line
    if name is not None:
        target = plan.target(name)
        if target is None:
            folded = [t for t in plan.targets if t.name.lower() == name.lower()]
            target = folded[0] if len(folded) == 1 else None
        if target is None:
            names = ", ".join(t.name for t in plan.targets) or "none"
            raise PlanError(f'no target "{name}" (targets: {names})', plan.filename, line)
        if not fits(target, arch):
            raise PlanError(f"is for {target.arch}, this machine is {arch}", plan.filename,
                            line or target.line, target.name)
    else:
        found = [t for t in plan.targets if fits(t, arch)]
        if not found:
            raise PlanError(f"no target fits {arch} (and no default_target)", plan.filename)
        if len(found) > 1:
            names = ", ".join(t.name for t in found)
            raise PlanError(f"{len(found)} targets fit {arch} ({names}) and there is no "
                            "default_target: choose one with cloudboot.target=",
                            plan.filename)
        target = found[0]
    if target.subplan is not None and resolver is not None:
        return select_target(load_subplan(plan, target, resolver), arch, resolver=resolver)
    return target
