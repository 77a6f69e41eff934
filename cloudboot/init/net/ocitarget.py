"""Boot an OCI target: pull its layers into /run, build its command line, hand off.
Loaded by main.py only on boots whose target comes from a registry."""

from __future__ import annotations

from cloudboot.init import cmdline
from cloudboot.init.boot import Boot, Handoff, Source
from cloudboot.init.errors import Fatal
from cloudboot.init.handoff import hand_off
from cloudboot.init.net import netboot
from cloudboot.init.storage import kernelimage


def run_oci(boot: Boot, src: Source) -> int:
    """Pull the target into /run, build its command line, hand off."""
    ev, cfg, opts = boot.ev, boot.cfg, boot.opts
    boot.stage = "init-network"
    if boot.registry is None:
        boot.cfg = cfg = netboot.network(boot)
    # /run/cloudboot/oci in the guest; beside --mnt on host runs
    pulled = netboot.pull_target(boot.registry, src.oci, opts.mnt.parent / "oci", ev)
    boot.stage = "init-plan"
    facts = boot.facts.placeholders() if boot.facts is not None else {}
    first = src.oci[0][1] if src.oci else ""
    facts["Registry"] = netboot.parse_ref(first).host if first else ""
    if cfg.cmdline is not None:
        line, origin = cfg.cmdline, "cloudboot.cmdline"
    elif src.cmdline:
        from cloudboot.plan import render_cmdline

        try:
            line, origin = render_cmdline(src.cmdline, facts), "plan"
        except ValueError as e:
            raise Fatal("init-plan", str(e)) from e
    elif pulled.cmdline:
        line, origin = pulled.cmdline, "cmdline-layer"
    else:
        raise Fatal("init-plan", f"{src.oci[-1][1]}: no command line for the target (no plan "
                    "cmdline, no cmdline layer): set one or give cloudboot.cmdline=")
    if not any(name == "console" for name, _ in cmdline.split(line)):
        line = " ".join([line, *cmdline.console_args(cfg)]).strip()
    try:
        version = (kernelimage.version_string(pulled.kernel.read_bytes()) or "").split()
    except (OSError, ValueError):
        version = []
    h = Handoff(pulled.kernel, pulled.initrd, line, version[0] if version else "unknown",
                "oci", None, src.target)
    rate = pulled.kernel_bytes / pulled.kernel_seconds if pulled.kernel_seconds else None
    ev.emit("materialised", kernel=str(h.kernel), initrd=str(h.initrd) if h.initrd else None,
            version=h.version, found_by="oci", cmdline=line, cmdline_from=origin,
            refs=pulled.refs, bytes=pulled.bytes, seconds=pulled.seconds,
            kernel_bytes_per_s=round(rate) if rate else None)
    return hand_off(boot, h)
