"""The plan schema: check the syntax tree's shape, evaluate it for one arch, build a Plan.

Evaluation happens for a given machine arch: ``arch`` in expressions is that arch's Go/OCI name
(``amd64``, ``arm64``…, as in OCI platform fields and ``<tag>-<arch>`` tags). Inside a target
that declares ``arch``, ``arch`` and ``self.arch`` are the target's own arch (its Go name): a
target for arm64 only ever boots on arm64, so its references are evaluated as there.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from cloudboot.arch import UnknownArch, get_arch
from cloudboot.plan.cmdline import check_placeholders
from cloudboot.plan.errors import PlanError
from cloudboot.plan.evaluate import Evaluator, Facts, Locals, a_type, to_text
from cloudboot.plan.parser import Attribute, Block, Body

DEFAULT_MENU_TIMEOUT = 10  # seconds; 0 waits forever
# Target names become file names on the cache ESP (\EFI\Linux\<name>-vmlinuz.efi) and menu
# answers, so they are restricted to the characters that survive both unchanged.
TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
DISK_PREFIXES = ("/dev/", "LABEL=", "UUID=", "PARTLABEL=", "PARTUUID=")

_TOP = {"attributes": ("default_target", "dns"), "blocks": ("menu", "locals", "target")}
_MENU = ("timeout", "prompt")
_TARGET = ("arch", "version", "label", "index", "kernel", "initrd", "modules", "cmdline",
           "subplan")
_DISK = ("device", "fs", "kernel", "initrd")
_OCI = ("index", "kernel", "initrd", "modules")


@dataclass
class Menu:
    timeout: int = DEFAULT_MENU_TIMEOUT
    prompt: str | None = None


@dataclass
class DiskSource:
    device: str | None = None  # /dev/…, LABEL=, UUID=, PARTLABEL=, PARTUUID=; None: search all
    fs: str | None = None
    kernel: str | None = None
    initrd: str | None = None


@dataclass
class Target:
    name: str
    arch: str | None = None  # as written in the plan; None: any arch
    version: str | None = None
    label: str | None = None
    index: str | None = None
    kernel: str | None = None
    initrd: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    cmdline: str | None = None  # a list in the plan is joined with spaces
    subplan: str | None = None
    disk: DiskSource | None = None
    line: int = 0
    filename: str = ""

    @property
    def source(self) -> str:
        """"oci", "disk" or "subplan"."""
        if self.disk is not None:
            return "disk"
        return "subplan" if self.subplan is not None else "oci"


@dataclass
class Plan:
    default_target: str | None
    dns: list[str]
    menu: Menu | None
    targets: list[Target]
    locals: dict[str, Any]
    filename: str
    arch: str = ""  # our name of the arch this plan was evaluated for
    lldp: dict[str, Any] = field(default_factory=dict)
    chain: tuple[str, ...] = ()  # filenames of the plans above this one (subplans)
    default_line: int = 0
    body: Body | None = field(default=None, repr=False, compare=False)

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)

    def evaluate(self, arch: str, lldp: dict[str, Any] | None = None) -> Plan:
        """The same plan evaluated for another arch (and LLDP facts)."""
        if self.body is None:
            raise PlanError("plan has no syntax tree to re-evaluate", self.filename)
        plan = build(self.body, self.filename, arch, self.lldp if lldp is None else lldp)
        plan.chain = self.chain
        return plan


def build(body: Body, filename: str, arch: str, lldp: dict[str, Any] | None) -> Plan:
    """Check and evaluate a parsed plan for a machine of the given arch."""
    try:
        machine = get_arch(arch)
    except UnknownArch as e:
        raise PlanError(str(e), filename) from None
    _check_shape(body, _TOP["attributes"], _TOP["blocks"], filename, None, "the top level")
    facts = Facts(lldp or {})
    attrs: dict[str, Attribute] = {}
    for block in body.blocks:
        if block.type == "locals":
            _check_shape(block.body, None, (), filename, None, "locals")
            for a in block.body.attributes:
                if a.name in attrs:
                    raise PlanError(f'local "{a.name}" is set twice (first on line '
                                    f"{attrs[a.name].line})", filename, a.line)
                attrs[a.name] = a
    variables = {"arch": machine.go, "lldp": facts}

    def top() -> Evaluator:
        return Evaluator(filename, variables, local_values)

    local_values = Locals(attrs, top)
    plan = Plan(None, [], None, [], local_values.all(filename), filename, machine.name,
                dict(lldp or {}), (), 0, body)
    ev = top()
    for a in body.attributes:
        if a.name == "default_target":
            plan.default_target = _string(ev, a, None)
            plan.default_line = a.line
        else:
            plan.dns = [_dns(s, a, filename) for s in _strings(ev, a, None)]
    seen: dict[str, int] = {}
    for block in body.blocks:
        if block.type == "menu":
            if plan.menu is not None:
                raise PlanError("menu is set twice", filename, block.line)
            plan.menu = _menu(block, ev, filename)
        elif block.type == "target":
            t = _target(block, variables, local_values, filename, machine.go)
            if t.name in seen:
                raise PlanError(f'target "{t.name}" is defined twice (first on line '
                                f"{seen[t.name]})", filename, block.line)
            seen[t.name] = block.line
            plan.targets.append(t)
    if plan.default_target is not None and plan.default_target not in seen:
        names = ", ".join(seen) or "none"
        raise PlanError(f'default_target "{plan.default_target}" names no target '
                        f"(targets: {names})", filename, plan.default_line)
    return plan


def _check_shape(body: Body, attributes: tuple[str, ...] | None, blocks: tuple[str, ...],
                 filename: str, target: str | None, where: str) -> None:
    if attributes is not None:
        for a in body.attributes:
            if a.name not in attributes:
                known = ", ".join(attributes)
                raise PlanError(f'unknown attribute "{a.name}" in {where} (known: {known})',
                                filename, a.line, target)
    for b in body.blocks:
        if b.type not in blocks:
            known = ", ".join(blocks) or "none"
            raise PlanError(f'unknown block "{b.type}" in {where} (blocks here: {known})',
                            filename, b.line, target)
        want = 1 if b.type == "target" else 0
        if len(b.labels) != want:
            shape = 'target "name" { ... }' if want else f"{b.type} {{ ... }}"
            raise PlanError(f"{b.type} takes {want or 'no'} label{'s' if not want else ''}: "
                            f"write {shape}", filename, b.line, target)


def _string(ev: Evaluator, a: Attribute, target: str | None) -> str | None:
    value = ev.eval(a.expr)
    if value is None:
        return None
    text = to_text(value)
    if text is None:
        raise PlanError(f"{a.name} must be a string, got {a_type(value)}", ev.filename,
                        a.line, target)
    return text


def _strings(ev: Evaluator, a: Attribute, target: str | None) -> list[str]:
    """A string or a list of strings; nested lists are flattened and nulls dropped."""
    value = ev.eval(a.expr)
    items = list(value) if isinstance(value, list) else [] if value is None else [value]
    flat: list[Any] = []
    while items:
        item = items.pop(0)
        if isinstance(item, list):
            items[:0] = item
        else:
            flat.append(item)
    out = []
    for item in flat:
        if item is None:
            continue
        text = to_text(item)
        if text is None:
            raise PlanError(f"{a.name} must be a string or a list of strings, found "
                            f"{a_type(item)}", ev.filename, a.line, target)
        out.append(text)
    return out


def _dns(server: str, a: Attribute, filename: str) -> str:
    try:
        return str(ipaddress.ip_address(server))
    except ValueError:
        raise PlanError(f"dns: {server!r} is not an IP address", filename, a.line) from None


def _menu(block: Block, ev: Evaluator, filename: str) -> Menu:
    _check_shape(block.body, _MENU, (), filename, None, "menu")
    menu = Menu()
    for a in block.body.attributes:
        if a.name == "prompt":
            menu.prompt = _string(ev, a, None)
            continue
        value = ev.eval(a.expr)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PlanError(f"menu timeout must be a whole number of seconds >= 0, got "
                            f"{value!r}", filename, a.line)
        menu.timeout = value
    return menu


def _target(block: Block, variables: dict[str, Any], local_values: Locals, filename: str,
            machine_go: str) -> Target:
    name = block.labels[0]
    if not TARGET_NAME.match(name):
        raise PlanError(f'target name "{name}" may hold only letters, digits, ".", "_" and "-" '
                        "and starts with a letter or digit", filename, block.line)
    _check_shape(block.body, _TARGET, ("disk",), filename, name, f'target "{name}"')
    attrs = {a.name: a for a in block.body.attributes}
    me: dict[str, Any] = {"name": name}
    scope = dict(variables, self=me)
    ev = Evaluator(filename, scope, local_values, name)
    t = Target(name, line=block.line, filename=filename)
    if "arch" in attrs:
        t.arch = _string(ev, attrs["arch"], name)
    own_go = machine_go
    if t.arch is not None:
        try:
            own_go = get_arch(t.arch).go
        except UnknownArch as e:
            raise PlanError(str(e), filename, attrs["arch"].line, name) from None
    me["arch"] = scope["arch"] = own_go
    if "version" in attrs:
        t.version = _string(ev, attrs["version"], name)
    me["version"] = t.version
    for key in ("label", "index", "kernel", "subplan"):
        if key in attrs:
            setattr(t, key, _string(ev, attrs[key], name))
    for key in ("initrd", "modules"):
        if key in attrs:
            setattr(t, key, _strings(ev, attrs[key], name))
    if "cmdline" in attrs:
        t.cmdline = " ".join(_strings(ev, attrs["cmdline"], name))
        try:
            check_placeholders(t.cmdline)
        except PlanError as e:
            raise PlanError(e.message, filename, attrs["cmdline"].line, name) from None
    disk_line = 0
    if block.body.blocks:
        disks = block.body.blocks
        if len(disks) > 1:
            raise PlanError("disk is set twice", filename, disks[1].line, name)
        disk_line = disks[0].line
        t.disk = _disk(disks[0], ev, filename, name)
    _check_sources(t, attrs, disk_line, filename)
    return t


def _disk(block: Block, ev: Evaluator, filename: str, target: str) -> DiskSource:
    _check_shape(block.body, _DISK, (), filename, target, "disk")
    disk = DiskSource()
    for a in block.body.attributes:
        setattr(disk, a.name, _string(ev, a, target))
    if disk.device is not None and not disk.device.startswith(DISK_PREFIXES):
        line = next(a.line for a in block.body.attributes if a.name == "device")
        raise PlanError(f'disk device "{disk.device}" must start with one of '
                        f"{', '.join(DISK_PREFIXES)}", filename, line, target)
    return disk


def _check_sources(t: Target, attrs: dict[str, Attribute], disk_line: int, filename: str) -> None:
    present: list[tuple[int, str, str]] = []  # (line, attribute, kind)
    for key in _OCI:
        value = getattr(t, key)
        if value:  # None or an empty list: not set
            present.append((attrs[key].line, key, "oci"))
    if t.disk is not None:
        present.append((disk_line, "disk", "disk"))
    if t.subplan is not None:
        present.append((attrs["subplan"].line, "subplan", "subplan"))
    present.sort()
    kinds: dict[str, tuple[int, str]] = {}
    for line, key, kind in present:
        kinds.setdefault(kind, (line, key))
    if not kinds:
        raise PlanError("no source: give index or kernel (OCI), a disk {} block, or subplan",
                        filename, t.line, t.name)
    if len(kinds) > 1:
        (_, first), (line, second) = sorted(kinds.values())[:2]
        raise PlanError(f"two sources ({first} and {second}); a target has exactly one",
                        filename, line, t.name)
    if "oci" in kinds:
        if t.index and t.kernel:
            raise PlanError("index and kernel are alternatives: an index brings its own kernel "
                            "and initrd", filename, attrs["kernel"].line, t.name)
        if t.index and (t.initrd or t.modules):
            key = "initrd" if t.initrd else "modules"
            raise PlanError(f"{key} cannot be added to an index (list it in the index instead)",
                            filename, attrs[key].line, t.name)
        if not t.index and not t.kernel:
            key = "initrd" if t.initrd else "modules"
            raise PlanError(f"{key} without kernel: an OCI target needs kernel or index",
                            filename, attrs[key].line, t.name)
