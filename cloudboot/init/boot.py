"""The state one cloudboot-init run carries, shared by the flow (main.py), its hand-off
(handoff.py) and the rooms it calls (net/, pathc/, storage/): the run's options, where the
target comes from, what the exit sink gets, and the fixed paths. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudboot
from cloudboot.init import cmdline, events

VERSION: str = getattr(cloudboot, "__version__", "0.1.0")
TARGET_DIR = Path("/run/cloudboot/target")
WORK_DIR = Path("/run/cloudboot")
EMBEDDED_PLAN = Path("/etc/cloud-boot/plan.hcl")
DRY_RUN = "dry run: would hand off "  # + JSON {exit, kernel, initrd, cmdline, version}
@dataclass
class Options:
    """How this run was started: PID 1 in the guest, or a test/host run."""

    pid1: bool = False
    cmdline_text: str | None = None
    root: Path | None = None
    plan: Path | None = None
    mnt: Path = TARGET_DIR
    dry_run: bool = False
    sys_root: Path = Path("/sys")  # where block devices are listed (the cache ESP search)
    dev_root: Path = Path("/dev")


@dataclass
class Source:
    """Where the target kernel comes from: a filesystem on a block device."""

    origin: str  # "cmdline" | "plan" | "--root"
    target: str | None = None  # plan target name
    device: str | None = None  # cloudboot.disk= spec
    fs: str | None = None
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None  # the plan target's command line
    oci: list[tuple[str, str]] = field(default_factory=list)  # (slot, ref): an OCI target


@dataclass
class Handoff:
    """Everything the exit sink needs."""

    kernel: Path
    initrd: Path | None
    cmdline: str
    version: str
    source: str  # how the kernel was found: "override", "bls", "boot-dir", …
    mountpoint: Path | None = None  # unmounted before the jump
    target: str | None = None  # plan target name; names the Path C entry and files


@dataclass
class Boot:
    """State of one run; `stage` is the failure category unexpected errors get."""

    opts: Options
    ev: events.Events
    cfg: cmdline.BootConfig = field(default_factory=cmdline.BootConfig)
    stage: str = "init-plan"
    text: str = ""  # the command line as read (metadata overrides are appended to it)
    facts: Any = None  # net.NetFacts once the network is up
    registry: Any = None  # oci.Registry, shared by plan and target pulls
    plan_dns: list[str] = field(default_factory=list)  # the plan's `dns = [...]`
    metadata_dns: bool = False  # metadata set cloudboot.dns: it outranks the plan's
    menu_shown: bool = False  # the user chose the target: a failure goes back to the menu
    menu_wait: bool = False  # after a failure the menu waits for a choice (no countdown)
