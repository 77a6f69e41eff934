"""The hand-off: run the exit sink of `cloudboot.exit=` (kexec for Path A, stage and
reboot for Path C), or print what it would do on a dry run. Standard library only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cloudboot.init import kexec
from cloudboot.init.boot import DRY_RUN, WORK_DIR, Boot, Handoff
from cloudboot.init.errors import Fatal
from cloudboot.init.storage import mount

if TYPE_CHECKING:
    from cloudboot.init.pathc import reboot_sink
else:  # loaded on first use: only boots that reboot (Path C) or fall back to it need it
    from cloudboot.init.lazy import LazyModule

    reboot_sink = LazyModule("cloudboot.init.pathc.reboot_sink")


def sink_kexec(boot: Boot, h: Handoff) -> None:
    """Path A: load, unmount, jump. Returns only by raising Fatal."""
    start = time.monotonic()
    try:
        image = kexec.load(h.kernel, h.initrd, h.cmdline, WORK_DIR)
    except kexec.KexecRefused as e:
        why = f"{e.what} of {h.kernel} refused: {e.name} ({os.strerror(e.errno or 0)})"
        reboot_sink.fall_back_to_reboot(boot, h, why)
        raise Fatal("handoff", why) from e
    except (OSError, ValueError) as e:  # unreadable file, corrupt compressed kernel
        raise Fatal("handoff", f"cannot prepare {h.kernel} for kexec: {e}") from e
    boot.ev.emit("kexec-load", kernel=str(h.kernel), loaded=str(image),
                 initrd=str(h.initrd) if h.initrd else None, cmdline=h.cmdline,
                 seconds=round(time.monotonic() - start, 3))
    if h.mountpoint is not None:
        try:
            mount.umount(h.mountpoint)
        except OSError as e:
            boot.ev.log(f"warning: {e} (continuing: the mount is read-only)")
    try:
        kexec.execute()
    except kexec.KexecRefused as e:
        if h.kernel.exists():  # the target fs may be unmounted by now
            reboot_sink.fall_back_to_reboot(boot, h, str(e))
        raise Fatal("handoff", f"{e}") from e


def sink_reboot(boot: Boot, h: Handoff) -> None:
    """Path C (cloudboot/init/pathc/reboot_sink.py), loaded only on the boots that take it."""
    reboot_sink.sink_reboot(boot, h)


# Exit name (cloudboot.exit=) -> sink.
sinks: dict[str, Callable[[Boot, Handoff], None]] = {"kexec": sink_kexec, "reboot": sink_reboot}


def hand_off(boot: Boot, h: Handoff) -> int:
    """Run the sink of cloudboot.exit= (a dry run prints what it would do). Returns 0 only
    for a dry run; otherwise it hands off or raises Fatal."""
    cfg, opts, ev = boot.cfg, boot.opts, boot.ev
    boot.stage = "handoff"
    sink = sinks.get(cfg.exit)
    if sink is None:
        raise Fatal("handoff", f"cloudboot.exit={cfg.exit}: no sink for it")
    if opts.dry_run:
        plan = {"exit": cfg.exit, "kernel": str(h.kernel),
                "initrd": str(h.initrd) if h.initrd else None, "cmdline": h.cmdline,
                "version": h.version}
        ev.log(DRY_RUN + json.dumps(plan, separators=(",", ":")))
        return 0
    if not opts.pid1:  # a host run must never load a kernel or reboot the host
        raise Fatal("handoff", "not PID 1: refusing to hand off (use --dry-run)")
    sink(boot, h)
    raise Fatal("handoff", f"the {cfg.exit} sink returned without handing off")
