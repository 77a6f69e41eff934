"""The network half of cloudboot-init: link up, metadata overrides, plans and targets from
OCI registries (DESIGN §3 "network → metadata overrides → plan → target").

main.py calls these in order (network() runs the first three for a boot); each turns its
module's errors into Fatal with the right category (network trouble: init-network; a plan or
artifact that is wrong: init-plan).
Standard library only: runs as PID 1 in the bootstrap initramfs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudboot.arch import host_arch
from cloudboot.init import cmdline, events
from cloudboot.init.errors import Fatal
from cloudboot.init.net import links as net
from cloudboot.init.net import materialise, metadata
from cloudboot.oci.client import OCIError, Registry
from cloudboot.oci.manifest import Platform
from cloudboot.oci.pull import fetch_plan
from cloudboot.oci.ref import is_oci_ref, parse_ref

if TYPE_CHECKING:
    from cloudboot.init.boot import Boot

__all__ = ["is_oci_ref", "parse_ref"]  # re-exported for main.py

# OCIError.kind -> failure category
_PLAN_KINDS = {"manifest", "platform", "media-type", "not-found"}


def fatal_of(e: OCIError) -> Fatal:
    return Fatal("init-plan" if e.kind in _PLAN_KINDS else "init-network", e.message)


def platform() -> Platform:
    a = host_arch()
    return Platform("linux", a.go, a.variant)


def needs_network(cfg: cmdline.BootConfig) -> bool:
    return bool(cfg.metadata_url or cfg.image or (cfg.plan and is_oci_ref(cfg.plan)))


def registry(cfg: cmdline.BootConfig, log: Callable[[str], None]) -> Registry:
    return Registry(insecure=cfg.insecure, timeout=20.0, retries=3, backoff=1.0,
                    username=cfg.user, password=cfg.password, log=log)


def bring_up(cfg: cmdline.BootConfig, ev: events.Events) -> net.NetFacts:
    try:
        want = net.parse_ip(cfg.ip, cfg.dns)
        facts = net.bring_up(want, log=ev.log)
    except net.NetError as e:
        raise Fatal("init-network", str(e)) from e
    ev.emit("net-up", iface=facts.iface, mac=facts.mac, address=f"{facts.address}/"
            f"{facts.prefix}", gateway=facts.gateway, dns=facts.dns, method=facts.method,
            seconds=facts.seconds)
    return facts


def apply_metadata(cfg: cmdline.BootConfig, text: str, ev: events.Events,
                   timeout: float = metadata.TIMEOUT) -> cmdline.BootConfig:
    """cmdline < metadata: the overrides are appended to the command line and re-parsed.
    Any failure is a warning and the command line stays as it was."""
    if not cfg.metadata_url:
        return cfg
    t0 = time.monotonic()
    md = metadata.fetch(cfg.metadata_url, cfg.metadata_token, timeout=timeout)
    extra, skipped = metadata.as_cmdline(md.overrides)
    for k in skipped:
        ev.log(f"warning: metadata key {k} cannot be applied (quotes or newlines)")
    new = cfg
    if extra and md.error is None:
        try:
            new = cmdline.parse(f"{text} {extra}")
        except cmdline.CmdlineError as e:
            md.error = f"{md.url}: {e}"
            new = cfg
    if md.error:
        ev.log(f"warning: metadata ignored: {md.error}")
    ev.emit("metadata", url=md.url, keys=sorted(md.overrides), error=md.error,
            bytes=md.bytes, seconds=round(time.monotonic() - t0, 3))
    return new


def network(boot: Boot) -> cmdline.BootConfig:
    """Link up (PID 1 only: a host run uses the host's network), then metadata overrides;
    returns the command-line settings with the overrides applied."""
    boot.stage = "init-network"
    if boot.opts.pid1:
        boot.facts = bring_up(boot.cfg, boot.ev)
    cfg = apply_metadata(boot.cfg, boot.text, boot.ev)
    boot.metadata_dns = cfg.dns != boot.cfg.dns
    if boot.plan_dns:  # an embedded plan, read before the network came up
        use_plan_dns(boot)
    boot.registry = registry(cfg, boot.ev.log)
    boot.stage = "init-plan"
    return cfg


def use_plan_dns(boot: Any, resolv: Path | None = None) -> bool:
    """The plan's `dns = [...]` replaces what DHCP or `cloudboot.dns=` gave (precedence
    cmdline < plan < metadata); metadata's cloudboot.dns wins over it. True when applied."""
    if not boot.plan_dns or boot.metadata_dns or boot.facts is None:
        return False
    if boot.facts.dns == boot.plan_dns:
        return False
    resolv = resolv or net.RESOLV
    try:
        net.write_resolv(boot.plan_dns, None, resolv)
    except OSError as e:
        boot.ev.log(f"warning: plan dns: {resolv}: {e}")
        return False
    boot.facts.dns = list(boot.plan_dns)
    boot.ev.emit("dns", servers=boot.plan_dns, source="plan")
    return True


def oci_resolver(reg: Registry) -> Callable[[str], tuple[str, str]]:
    """Subplan references that are OCI refs are pulled; the ref names the plan."""
    def resolve(ref: str) -> tuple[str, str]:
        try:
            return fetch_plan(reg, parse_ref(ref), platform())
        except OCIError as e:
            raise ValueError(e.message) from None

    return resolve


def pull_plan(cfg: cmdline.BootConfig, reg: Registry, ev: events.Events) -> tuple[str, str]:
    """(HCL text, name) of `cloudboot.plan=REF`; emits plan-fetched."""
    assert cfg.plan is not None
    t0 = time.monotonic()
    try:
        ref = parse_ref(cfg.plan)
        text, name = fetch_plan(reg, ref, platform())
    except ValueError as e:
        raise Fatal("init-plan", f"cloudboot.plan={cfg.plan}: {e}") from e
    except OCIError as e:
        raise fatal_of(e) from e
    ev.emit("plan-fetched", ref=name, bytes=len(text.encode()),
            seconds=round(time.monotonic() - t0, 3))
    return text, name


def pull_target(reg: Registry, slots: list[tuple[str, str]], out: Path,
                ev: events.Events) -> materialise.Pulled:
    try:
        return materialise.pull(reg, slots, platform(), out, log=ev.log)
    except OCIError as e:
        raise fatal_of(e) from e
    except OSError as e:  # /run full, …
        raise Fatal("init-network", f"cannot store the pulled target in {out}: {e}") from e
