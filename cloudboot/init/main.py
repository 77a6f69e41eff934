"""cloudboot-init: the PID 1 of the bootstrap initramfs (DESIGN §2 paths A and C).

Flow: early mounts → consoles, banner, `init-start` → command line → modules → source
(`cloudboot.disk=` or a `disk {}` target of the embedded plan) → device → read-only mount →
kernel → chained command line → exit sink (`kexec`; `reboot` comes with Path C).

Every error ends in exactly one `fatal` event, then the failure sink: a shell when
`cloudboot.shell=1`, then after `cloudboot.reboot_delay` seconds (default 30) a reboot;
`0` powers off at once (lets a lab VM exit immediately), a negative delay keeps the machine
up with a heartbeat line every minute. PID 1 never returns: the kernel would panic silently.

Off PID 1 (tests, the host) `main(argv)` takes `--cmdline TEXT`, `--root DIR` (an already
extracted/mounted target tree: no device lookup, no mount), `--plan FILE`, `--mnt DIR` and
`--dry-run` (stop before the hand-off and print what would be booted); it returns 0/1.
Standard library only.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudboot.arch import host_arch
from cloudboot.init import cmdline, events, modules, pid1
from cloudboot.init.boot import (
    EMBEDDED_PLAN,
    VERSION,
    Boot,
    Handoff,
    Options,
    Source,
)
from cloudboot.init.errors import Fatal
from cloudboot.init.handoff import hand_off
from cloudboot.init.storage import blockdev, discover, kernelimage, mount

if TYPE_CHECKING:
    from cloudboot.init import menu
    from cloudboot.init.net import netboot, ocitarget
    from cloudboot.init.pathc import reboot_sink
else:  # loaded on first use: a disk boot through kexec needs none of them
    from cloudboot.init.lazy import LazyModule

    menu = LazyModule("cloudboot.init.menu")
    netboot = LazyModule("cloudboot.init.net.netboot")
    ocitarget = LazyModule("cloudboot.init.net.ocitarget")
    reboot_sink = LazyModule("cloudboot.init.pathc.reboot_sink")

USAGE = ("usage: cloudboot-init [--cmdline TEXT] [--root DIR] [--plan FILE] [--mnt DIR] "
         "[--dry-run]")


def parse_argv(argv: list[str]) -> Options:
    """The host/test options; ValueError on anything else."""
    opts = Options()
    it = iter(argv)
    for arg in it:
        if arg == "--dry-run":
            opts.dry_run = True
            continue
        if arg not in ("--cmdline", "--root", "--plan", "--mnt"):
            raise ValueError(f"unknown argument {arg!r}\n{USAGE}")
        value = next(it, None)
        if value is None:
            raise ValueError(f"{arg} needs a value\n{USAGE}")
        if arg == "--cmdline":
            opts.cmdline_text = value
        elif arg == "--root":
            opts.root = Path(value)
        elif arg == "--plan":
            opts.plan = Path(value)
        else:
            opts.mnt = Path(value)
    return opts


def _uptime() -> float | None:
    try:
        return float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# --- source ---------------------------------------------------------------------------------
def select_source(boot: Boot) -> Source:
    """`cloudboot.disk=` wins; else a disk target of the plan; else `--root` on the host."""
    cfg, opts = boot.cfg, boot.opts
    if cfg.disk:
        return Source("cmdline", device=cfg.disk, fs=cfg.disk_fs, kernel=cfg.disk_kernel,
                      initrd=cfg.disk_initrd)
    plan_path = opts.plan
    if plan_path is None and cfg.plan:
        if boot.registry is not None and netboot.is_oci_ref(cfg.plan):
            text, name = netboot.pull_plan(cfg, boot.registry, boot.ev)
            return plan_source(boot, Path(name), text=text,
                               resolver=netboot.oci_resolver(boot.registry))
        plan_path = Path(cfg.plan)
    if plan_path is None and EMBEDDED_PLAN.is_file() and opts.root is None:
        plan_path = EMBEDDED_PLAN
    if plan_path is not None:
        return plan_source(boot, plan_path)
    if cfg.image:
        return Source("cmdline", target=None, oci=[("image", cfg.image)])
    if opts.root is not None:
        return Source("--root")
    raise Fatal("init-plan", "nothing to boot: no cloudboot.disk= on the kernel command line "
                f"and no plan at {EMBEDDED_PLAN}")


def plan_source(boot: Boot, path: Path, *, text: str | None = None,
                resolver: Any = None) -> Source:
    """The source of the selected plan target (`disk {}` or OCI refs); `text` is a plan
    already fetched (path then only names it), `resolver` loads its subplans."""
    try:
        from cloudboot.plan import file_resolver, load_plan, select_target
    except ImportError as e:
        raise Fatal("init-plan", f"{path}: plan support is missing from this initramfs: {e}"
                    ) from e
    try:
        arch = host_arch().name
        plan = load_plan(path, text=text, arch=arch)
        name = boot.cfg.target
        if name is None and wants_menu(boot.cfg, plan):
            name = menu.ask(boot, plan, arch)
        target = select_target(plan, arch, name, resolver=resolver or file_resolver(path.parent))
    except (ValueError, OSError) as e:  # PlanError is a ValueError and names file/line/target
        raise Fatal("init-plan", str(e)) from e
    boot.plan_dns = list(plan.dns)
    if boot.facts is not None:  # the network is up already: the plan's DNS replaces it now
        netboot.use_plan_dns(boot)
    disk = getattr(target, "disk", None)
    if disk is None and target.source == "oci":
        return oci_source(boot, target)
    if disk is None:
        raise Fatal("init-plan", f"{path}: target {target.name!r} has no disk {{}} source; "
                    "OCI and subplan sources are not built yet")
    if disk.device is None:
        raise Fatal("init-plan", f"{path}: target {target.name!r}: a disk {{}} without device "
                    "(search every disk) is not built yet; set device")
    cfg = boot.cfg
    return Source("plan", target=target.name, device=disk.device, fs=disk.fs or cfg.disk_fs,
                  kernel=disk.kernel or cfg.disk_kernel, initrd=disk.initrd or cfg.disk_initrd,
                  cmdline=target.cmdline)


def wants_menu(cfg: cmdline.BootConfig, plan: Any) -> bool:
    """The plan's `menu {}` or cloudboot.menu=1 shows it; cloudboot.menu=0 hides it."""
    return cfg.menu if cfg.menu is not None else plan.menu is not None


MENU_RETRIES = 10  # failures after a menu choice that go back to the menu


# --- device and mount -----------------------------------------------------------------------
def attach(boot: Boot, src: Source) -> tuple[Path, blockdev.BlockDevice | None]:
    """Find and mount the source filesystem read-only; returns (tree, device)."""
    ev, opts = boot.ev, boot.opts
    if opts.root is not None:
        ev.emit("disk-found", device=str(opts.root), spec=src.device, given="--root")
        ev.emit("mounted", target=str(opts.root), fstype=None, given="--root")
        return opts.root, None
    assert src.device is not None
    timeout = boot.cfg.disk_timeout
    ev.log(f"waiting up to {timeout:g}s for {src.device}")
    try:
        dev = blockdev.resolve(src.device, timeout=timeout)
    except blockdev.DiskNotFound as e:
        raise Fatal("init-disk", str(e)) from e
    except ValueError as e:
        raise Fatal("init-disk", str(e)) from e
    ev.emit("disk-found", device=dev.devpath, spec=src.device, fstype=dev.fstype,
            label=dev.label, uuid=dev.uuid, partuuid=dev.partuuid, partlabel=dev.partlabel)
    fstype = src.fs or dev.fstype
    if not fstype:
        raise Fatal("init-disk", f"{dev.devpath} (cloudboot.disk={src.device}) has no "
                    "filesystem cloudboot recognises; name it with cloudboot.disk.fs=")
    if opts.pid1:
        report = modules.load_for_fs(fstype)
        if report is not None:
            for name, why in report.failed:
                ev.log(f"module {name} failed to load: {why}")
            ev.emit("fs-modules-loaded", fstype=fstype, **report.summary())
    try:
        os.makedirs(opts.mnt, exist_ok=True)
        # btrfs: no subvol= option, so the filesystem's default subvolume is what we get.
        options = mount.mount_ro(dev.devpath, opts.mnt, fstype)
    except OSError as e:
        raise Fatal("init-disk", str(e)) from e
    ev.emit("mounted", device=dev.devpath, target=str(opts.mnt), fstype=fstype, options=options)
    return opts.mnt, dev


# --- kernel and command line ----------------------------------------------------------------
def _in_tree(root: Path, rel: str, what: str, where: str) -> Path:
    found = discover.resolve_in(root, rel)
    if found is None or not found.is_file():
        raise Fatal("init-disk", f"{what}={rel}: no such file on {where}")
    return found


def choose_kernel(boot: Boot, src: Source, root: Path,
                  dev: blockdev.BlockDevice | None) -> discover.KernelCandidate:
    """Explicit kernel/initrd paths win over discovery (DESIGN §5 cloudboot.disk.kernel)."""
    where = dev.devpath if dev else str(root)
    if src.kernel:
        kernel = _in_tree(root, src.kernel, "kernel", where)
        initrd = _in_tree(root, src.initrd, "initrd", where) if src.initrd else None
        name = kernel.name
        for prefix in discover.KERNEL_PREFIXES:
            name = name.removeprefix(prefix)
        try:
            version = kernelimage.version_string(kernel.read_bytes()) or name
        except (OSError, ValueError):
            version = name
        return discover.KernelCandidate(kernel, initrd, version.split()[0] if version else name,
                                        None, "override")
    try:
        cand = discover.pick(root)
    except discover.NoKernelFound as e:
        raise Fatal("init-disk", f"{where}: {e}") from e
    if src.initrd:  # an explicit initrd with a discovered kernel
        cand = discover.KernelCandidate(cand.kernel, _in_tree(root, src.initrd, "initrd", where),
                                        cand.version, cand.options, cand.source, cand.title)
    return cand


def _root_arg(src: Source, dev: blockdev.BlockDevice | None) -> str:
    if dev is not None:
        if dev.uuid:
            return f"root=UUID={dev.uuid}"
        if dev.partuuid:
            return f"root=PARTUUID={dev.partuuid}"
        raise Fatal("init-disk", f"{dev.devpath}: neither a filesystem UUID nor a PARTUUID to "
                    "build root= from; give cloudboot.cmdline=")
    if src.device:  # --root runs: the spec text is what the target's initramfs understands
        return f"root={src.device}"
    raise Fatal("init-disk", "cannot build root= for --root without cloudboot.disk=; give "
                "cloudboot.cmdline=")


def chain_cmdline(boot: Boot, src: Source, cand: discover.KernelCandidate, root: Path,
                  dev: blockdev.BlockDevice | None) -> tuple[str, str]:
    """(command line for the target kernel, where it came from).

    `cloudboot.cmdline=` is taken verbatim. Otherwise: the plan target's, else the BLS entry's
    options, else /etc/kernel/cmdline, else `root=… ro`; then the bootstrap's console= args
    are appended unless the line already sets a console.
    """
    cfg = boot.cfg
    if cfg.cmdline is not None:
        return cfg.cmdline, "cloudboot.cmdline"
    if src.cmdline:
        line, origin = src.cmdline, "plan"
    elif cand.options:
        line, origin = cand.options, "bls"
    elif (text := discover.default_cmdline(root)) is not None:
        line, origin = text, "etc-kernel-cmdline"
    else:
        line, origin = f"{_root_arg(src, dev)} ro", "root-fs"
    if not any(name == "console" for name, _ in cmdline.split(line)):
        line = " ".join([line, *cmdline.console_args(cfg)])
    return line.strip(), origin


def oci_source(boot: Boot, target: Any) -> Source:
    """A plan target whose kernel/initrd come from OCI refs (slots in override order)."""
    slots = [("index", target.index)] if target.index else []
    slots += [("kernel", target.kernel)] if target.kernel else []
    slots += [("initrd", r) for r in target.initrd] + [("modules", r) for r in target.modules]
    if boot.registry is None:  # an embedded plan with an OCI target: bring the network up now
        boot.cfg = netboot.network(boot)
    return Source("plan", target=target.name, cmdline=target.cmdline, oci=slots)


# --- the flow -------------------------------------------------------------------------------
def run(boot: Boot) -> int:
    """Everything between init-start and the hand-off; raises Fatal on any failure."""
    prepare(boot)
    return boot_target(boot)


def prepare(boot: Boot) -> None:
    """Once per boot: command line, modules, network and metadata, cloudboot.reset."""
    ev, opts = boot.ev, boot.opts
    boot.stage = "init-plan"
    text = opts.cmdline_text
    if text is None:
        try:
            text = Path("/proc/cmdline").read_text()
        except OSError as e:
            raise Fatal("init-plan", f"cannot read /proc/cmdline: {e}") from e
    try:
        boot.cfg = cmdline.parse(text)
    except cmdline.CmdlineError as e:
        raise Fatal("init-plan", str(e)) from e
    cfg = boot.cfg
    ev.debug_enabled = cfg.debug
    for w in cfg.warnings:
        ev.log(f"warning: {w}")
    ev.emit("cmdline", keys=cfg.redacted_keys(), consoles=cfg.consoles,
            warnings=cfg.warnings, exit=cfg.exit)

    if opts.pid1:
        report = modules.load_all()
        for name, why in report.failed:
            ev.log(f"module {name} failed to load: {why}")
        ev.emit("modules-loaded", **report.summary())
        ev.wait_for_late_consoles(Path("/sys/bus/virtio/drivers/virtio_console"))

    boot.text = text
    if netboot.needs_network(cfg):
        cfg = boot.cfg = netboot.network(boot)

    if cfg.reset:
        if not opts.pid1:
            raise Fatal("handoff", "cloudboot.reset=1 needs PID 1 (it writes EFI variables)")
        # Then on into the menu in this same boot: rebooting would run the reset again.
        reboot_sink.reset_guest(boot)
        if cfg.menu is None:
            cfg.menu = True


def boot_target(boot: Boot) -> int:
    """Choose the target (the menu may ask), find or pull it, hand off. Runs again after a
    failure when the user chose from the menu."""
    ev, opts, cfg = boot.ev, boot.opts, boot.cfg
    src = select_source(boot)
    ev.emit("target-selected", origin=src.origin, target=src.target, device=src.device,
            oci=[r for _, r in src.oci] or None, exit=cfg.exit)
    if src.oci:
        return ocitarget.run_oci(boot, src)

    boot.stage = "init-disk"
    root, dev = attach(boot, src)
    mounted = root if dev is not None else None
    try:
        cand = choose_kernel(boot, src, root, dev)
        line, line_origin = chain_cmdline(boot, src, cand, root, dev)
        h = Handoff(cand.kernel, cand.initrd, line, cand.version, cand.source, mounted,
                    src.target)
        ev.emit("materialised", kernel=str(cand.kernel), initrd=str(cand.initrd)
                if cand.initrd else None, version=cand.version, found_by=cand.source,
                cmdline=line, cmdline_from=line_origin)
        return hand_off(boot, h)
    except Fatal:
        if mounted is not None and boot.menu_shown and not opts.dry_run:
            try:  # the menu may send us round again, to this or another disk
                mount.umount(mounted)
            except OSError as e:
                ev.log(f"warning: {e}")
        raise
    finally:
        if mounted is not None and opts.dry_run:
            try:
                mount.umount(mounted)
            except OSError as e:
                ev.log(f"warning: {e}")


def after_fatal(boot: Boot) -> int:
    """The failure sink. Off PID 1: return 1. As PID 1: shell, then reboot/poweroff/stay;
    never returns."""
    if not boot.opts.pid1:
        return 1
    ev, cfg = boot.ev, boot.cfg
    try:
        if cfg.shell and os.access("/bin/sh", os.X_OK):
            ev.log("cloudboot.shell=1: starting /bin/sh; the machine reboots when it exits")
            code = pid1.wait_child(pid1.spawn(["/bin/sh"], {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                            "HOME": "/", "TERM": "linux"}))
            ev.log(f"/bin/sh exited with {code}")
        elif cfg.shell:
            ev.log("cloudboot.shell=1 but there is no /bin/sh in this initramfs")
        delay = cfg.reboot_delay
        if delay < 0:
            ev.log("cloudboot.reboot_delay<0: staying up; reset the machine to retry")
        elif delay == 0:
            ev.emit("rebooting", action="poweroff")
            pid1.poweroff()
        else:
            ev.log(f"rebooting in {delay:g}s (cloudboot.reboot_delay=)")
            time.sleep(delay)
            ev.emit("rebooting", action="restart")
            pid1.restart()
    except BaseException as e:  # noqa: BLE001 - PID 1 must reach the loop below
        ev.log(f"failure sink: {type(e).__name__}: {e}")
    pid1.sleep_forever(60.0, lambda: ev.log("halted after a fatal error; reset the machine"))
    return 1  # not reached


def main(argv: list[str] | None = None) -> int:
    t0 = time.monotonic()
    is_pid1 = pid1.is_pid1()
    if is_pid1:
        opts = Options(pid1=True)  # the kernel passes stray boot words as argv: ignore them
        problems = pid1.early_mounts()
        pid1.install_reaper()
        # fd 1 (the kernel's /dev/console, if it had one) until the real consoles open
        ev = events.Events([sys.stdout] if sys.stdout is not None else [], t0=t0)
        ev.use_consoles()
    else:
        try:
            opts = parse_argv(sys.argv[1:] if argv is None else argv)
        except ValueError as e:
            print(f"cloudboot-init: {e}", file=sys.stderr)
            return 2
        problems = []
        ev = events.Events([sys.stdout], t0=t0)
    boot = Boot(opts, ev)
    ev.banner(VERSION)
    ev.emit("init-start", version=VERSION, pid1=is_pid1, arch=host_arch().name,
            kernel=os.uname().release, uptime=_uptime(), consoles=ev.console_names,
            problems=problems)
    for p in problems:
        ev.log(f"warning: early mount: {p}")
    prepared, retries = False, 0
    while True:
        try:
            if not prepared:
                prepare(boot)
                prepared = True
            return boot_target(boot)
        except Fatal as e:
            ev.fatal(e.category, e.message)
            if prepared and boot.menu_shown and retries < MENU_RETRIES:
                retries += 1
                ev.log("back to the menu: choose again (or reset the machine)")
                boot.cfg.target, boot.menu_shown, boot.menu_wait = None, False, True
                continue
        except BaseException as e:  # noqa: BLE001 - a bug must still end in one fatal event
            if isinstance(e, KeyboardInterrupt | SystemExit) and not is_pid1:
                raise
            where = ""
            tb = e.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            if tb is not None:
                where = f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
            ev.fatal(boot.stage, f"internal error: {type(e).__name__}: {e}{where}")
        return after_fatal(boot)
