"""Network-fact placeholders in a target's command line: ``{{.IP}}``, ``{{ .Gateway }}``…

The plan is evaluated before the network is up, so these stay in the cmdline text and are
filled in by the init once DHCP (or ``ip=``) has given the facts. Unknown names are refused
when the plan is loaded, so a typo fails on the host (``cloudboot plan check``), not at boot.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cloudboot.plan.errors import PlanError

PLACEHOLDERS = ("IP", "IPSpec", "Gateway", "Iface", "DNS", "Registry", "Hostname", "MAC")
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_NAME = re.compile(r"\s*\.([A-Za-z][A-Za-z0-9]*)\s*\Z")


def _names(text: str) -> list[tuple[re.Match[str], str]]:
    out = []
    for m in _PLACEHOLDER.finditer(text):
        name = _NAME.match(m.group(1))
        if name is None or name.group(1) not in PLACEHOLDERS:
            known = ", ".join("{{." + p + "}}" for p in PLACEHOLDERS)
            raise PlanError(f"unknown cmdline placeholder {m.group(0)} (known: {known})")
        out.append((m, name.group(1)))
    return out


def check_placeholders(text: str) -> list[str]:
    """The placeholder names a cmdline uses; PlanError (without a location) on unknown ones."""
    return [name for _, name in _names(text)]


def render_cmdline(text: str, facts: Mapping[str, Any], *, target: Any = None) -> str:
    """Fill ``{{.Name}}`` placeholders from facts (keys "IP", "Gateway"…).

    A placeholder whose fact is missing or empty is an error: booting with a half-filled
    ``ip=`` is worse than stopping. ``target`` (a Target) only improves the error message.
    """
    out, last = [], 0
    for m, name in _names(text):
        value = facts.get(name)
        if value is None or value == "":
            have = ", ".join(sorted(k for k, v in facts.items() if v not in (None, ""))) or "none"
            raise PlanError(f"cmdline placeholder {m.group(0)} has no value here "
                            f"(facts known: {have})",
                            getattr(target, "filename", None) or None,
                            getattr(target, "line", None) or None,
                            getattr(target, "name", None))
        out.append(text[last:m.start()])
        out.append(str(value))
        last = m.end()
    out.append(text[last:])
    return "".join(out)
