"""Parse the kernel command line (/proc/cmdline) into cloudboot's typed settings.

Keys and rules are DESIGN §5: last occurrence wins, a bare word means "1", unknown
`cloudboot.*` keys become warnings, invalid values are errors naming the key and value.
Standard library only: runs as PID 1 in the bootstrap initramfs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

EXITS = ("kexec", "reboot")
# Path C staging forms (cloudboot/init/pathc/ukistage.py): auto = uki where the kernel's EFI stub
# ignores initrd= in load options (armv7, riscv64, loongarch64), split elsewhere.
STAGE_FORMS = ("auto", "uki", "split")
# Consoles cloudboot writes to when the command line names none (DESIGN §5 "Guest events").
DEFAULT_CONSOLES = ("ttyS0", "ttyAMA0", "hvc0", "tty0")
_TRUE = {"1", "y", "yes", "true", "on"}
_FALSE = {"0", "n", "no", "false", "off"}
# Values never echoed back into events or logs.
SECRET_KEYS = frozenset({"rd.cloudboot.pass", "cloudboot.metadata.token"})


class CmdlineError(ValueError):
    """One or more cloudboot keys have values cloudboot cannot use."""


@dataclass
class BootConfig:
    """Every setting cloudboot-init reads from the kernel command line, typed."""

    disk: str | None = None  # /dev/…, LABEL=, UUID=, PARTLABEL=, PARTUUID=
    disk_fs: str | None = None
    disk_kernel: str | None = None
    disk_initrd: str | None = None
    disk_timeout: float = 15.0  # seconds to wait for the device to appear
    plan: str | None = None
    image: str | None = None
    target: str | None = None
    menu: bool | None = None  # None: not given, the plan decides
    menu_timeout: int | None = None
    menu_prompt: str | None = None
    exit: str = "kexec"
    cmdline: str | None = None  # replaces the chained command line entirely
    insecure: bool = False
    dns: list[str] = field(default_factory=list)
    metadata_url: str | None = None
    metadata_token: str | None = None
    ip: str | None = None  # klibc form, kept verbatim for the network code
    user: str | None = None
    password: str | None = None
    shell: bool = False
    reboot_delay: float = 30.0
    debug: bool = False
    bootnext: bool = False
    reset: bool = False
    stage: str = "auto"  # Path C staging form: auto | uki | split
    consoles: list[str] = field(default_factory=list)  # every console= value, in order
    keys: dict[str, str] = field(default_factory=dict)  # recognised keys as given (last wins)
    warnings: list[str] = field(default_factory=list)

    def redacted_keys(self) -> dict[str, str]:
        """The recognised keys for logs and events, secrets masked."""
        return {k: ("***" if k in SECRET_KEYS else v) for k, v in self.keys.items()}


def split(text: str) -> list[tuple[str, str | None]]:
    """Split a command line into (name, value) pairs the way the kernel's next_arg() does.

    Whitespace separates arguments except inside double quotes. A quote opening the argument,
    or opening its value, is dropped together with a quote that ends the argument; quotes
    elsewhere stay. value is None for a bare word. Arguments after a lone `--` belong to
    init's argv, not to us, and are dropped.
    """
    out: list[tuple[str, str | None]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        quoted = text[i] == '"'
        if quoted:
            i += 1
        start, in_quote, equals = i, quoted, -1
        while i < n and (in_quote or not text[i].isspace()):
            if equals < 0 and text[i] == "=":
                equals = i - start
            if text[i] == '"':
                in_quote = not in_quote
            i += 1
        arg = text[start:i]
        trailing = arg.endswith('"')
        name, value = (arg, None) if equals < 0 else (arg[:equals], arg[equals + 1 :])
        if value is not None and value.startswith('"'):
            value = value[1:]
            if trailing and value:
                value = value[:-1]
            trailing = False  # that closing quote (if any) is used up
        if quoted and trailing:
            if value is not None:
                value = value[:-1]
            else:
                name = name[:-1]
        if not quoted and name == "--" and value is None:
            break
        out.append((name, value))
    return out


def _bool(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"{key}={value!r}: expected 0 or 1")


def _seconds(key: str, value: str, *, allow_negative: bool = False) -> float:
    try:
        v = float(value)
    except ValueError:
        raise ValueError(f"{key}={value!r}: expected a number of seconds") from None
    if v != v or v in (float("inf"), float("-inf")) or (v < 0 and not allow_negative):
        raise ValueError(f"{key}={value!r}: expected a finite number of seconds >= 0")
    return v


def _int(key: str, value: str) -> int:
    try:
        v = int(value, 10)
    except ValueError:
        raise ValueError(f"{key}={value!r}: expected a whole number") from None
    if v < 0:
        raise ValueError(f"{key}={value!r}: expected a number >= 0")
    return v


def _exit(key: str, value: str) -> str:
    if value not in EXITS:
        raise ValueError(f"{key}={value!r}: expected one of {', '.join(EXITS)}")
    return value


def _stage(key: str, value: str) -> str:
    if value not in STAGE_FORMS:
        raise ValueError(f"{key}={value!r}: expected one of {', '.join(STAGE_FORMS)}")
    return value


def _text(key: str, value: str) -> str:
    return value


def _dns(key: str, value: str) -> list[str]:
    servers = [s for s in value.replace(";", ",").split(",") if s]
    if not servers:
        raise ValueError(f"{key}={value!r}: expected a comma-separated list of servers")
    return servers


def _timeout(key: str, value: str) -> float:
    v = _seconds(key, value)
    if v == 0:
        raise ValueError(f"{key}={value!r}: a disk timeout must be > 0")
    return v


# command-line key -> (BootConfig field, converter)
_KEYS = {
    "cloudboot.disk": ("disk", _text),
    "cloudboot.disk.fs": ("disk_fs", _text),
    "cloudboot.disk.kernel": ("disk_kernel", _text),
    "cloudboot.disk.initrd": ("disk_initrd", _text),
    "cloudboot.disk.timeout": ("disk_timeout", _timeout),
    "cloudboot.plan": ("plan", _text),
    "cloudboot.image": ("image", _text),
    "cloudboot.target": ("target", _text),
    "cloudboot.menu": ("menu", _bool),
    "cloudboot.menu.timeout": ("menu_timeout", _int),
    "cloudboot.menu.prompt": ("menu_prompt", _text),
    "cloudboot.exit": ("exit", _exit),
    "cloudboot.cmdline": ("cmdline", _text),
    "cloudboot.insecure": ("insecure", _bool),
    "cloudboot.dns": ("dns", _dns),
    "cloudboot.metadata.url": ("metadata_url", _text),
    "cloudboot.metadata.token": ("metadata_token", _text),
    "cloudboot.shell": ("shell", _bool),
    "cloudboot.reboot_delay": ("reboot_delay", lambda k, v: _seconds(k, v, allow_negative=True)),
    "cloudboot.debug": ("debug", _bool),
    "cloudboot.bootnext": ("bootnext", _bool),
    "cloudboot.reset": ("reset", _bool),
    "cloudboot.stage": ("stage", _stage),
    "ip": ("ip", _text),
    "rd.cloudboot.user": ("user", _text),
    "rd.cloudboot.pass": ("password", _text),
}


def known_keys() -> list[str]:
    return sorted(_KEYS)


def parse(text: str) -> BootConfig:
    """Parse /proc/cmdline text; raises CmdlineError listing every invalid key=value."""
    cfg = BootConfig()
    given: dict[str, str] = {}
    for name, value in split(text):
        if name == "console":
            if value:
                cfg.consoles.append(value)
            continue
        if name in _KEYS:
            given[name] = "1" if value is None else value  # last occurrence wins
        elif name.startswith(("cloudboot.", "rd.cloudboot.")):
            warning = f"unknown key {name!r} ignored"
            if warning not in cfg.warnings:
                cfg.warnings.append(warning)
    errors: list[str] = []
    for name, value in given.items():
        attr, convert = _KEYS[name]
        try:
            setattr(cfg, attr, convert(name, value))
        except ValueError as e:
            shown = "***" if name in SECRET_KEYS else None
            errors.append(str(e) if shown is None else f"{name}: invalid value")
    cfg.keys = given
    if errors:
        raise CmdlineError("kernel command line: " + "; ".join(errors))
    return cfg


def console_name(value: str) -> str:
    """`ttyS0,115200n8` -> `ttyS0`; `/dev/hvc0` -> `hvc0`."""
    name = value.split(",", 1)[0]
    return name.removeprefix("/dev/")


def console_args(cfg: BootConfig) -> list[str]:
    """The `console=` arguments to pass on to the next kernel, in their original order."""
    return [f"console={v}" for v in cfg.consoles]


def console_devices(consoles: list[str], dev: Path = Path("/dev")) -> list[str]:
    """Console device names in use: those named by console= that exist, else the defaults
    that exist. Names such as `uart8250,io,…` or `efi` have no /dev node and are skipped."""
    names: list[str] = []
    for value in consoles:
        name = console_name(value)
        if name and name not in names and os.path.exists(dev / name):
            names.append(name)
    if names:
        return names
    return [n for n in DEFAULT_CONSOLES if os.path.exists(dev / n)]
