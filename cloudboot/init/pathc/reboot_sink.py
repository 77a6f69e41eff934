"""Path C's sink: stage the target on the cache ESP, write Boot#### (+ BootOrder or BootNext)
through efivarfs, restart; and the guest side of `cloudboot.reset=1`. Loaded by main.py only
on the boots that take this path.

`cloudboot.stage=` picks the staged form: "split" (kernel + initrd, `initrd=` in the load
options) or "uki" (one UKI assembled here, cloudboot/init/pathc/ukistage.py); "auto" takes the UKI
where the kernel's EFI stub ignores `initrd=` (armv7, riscv64, loongarch64)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cloudboot.arch import host_arch
from cloudboot.init import pid1
from cloudboot.init.errors import Fatal
from cloudboot.init.pathc import bootentry, cacheesp, staging, ukistage
from cloudboot.init.storage import mount

if TYPE_CHECKING:
    from cloudboot.init.boot import Boot, Handoff

ESP_MNT = Path("/run/cloudboot/cache-esp")


def fall_back_to_reboot(boot: Boot, h: Handoff, why: str) -> None:
    """kexec refused (Apple VZ traps it): take Path C when a cache ESP is attached;
    returns only when there is none."""
    try:
        esp = cacheesp.find(boot.opts.sys_root, boot.opts.dev_root, timeout=0)
    except cacheesp.CacheEspError:
        return
    boot.ev.log(f"{why}; a cache ESP is attached ({esp.devpath}): falling back to "
                "cloudboot.exit=reboot")
    sink_reboot(boot, h)


def sink_reboot(boot: Boot, h: Handoff) -> None:
    """Path C: stage on the cache ESP, write Boot#### (+ BootOrder or BootNext), restart.
    Returns only by raising Fatal."""
    ev, cfg = boot.ev, boot.cfg
    target = h.target or h.version
    opts = boot.opts
    try:  # disks appear late in a guest; a host run (tests) does not wait
        esp = cacheesp.find(opts.sys_root, opts.dev_root, timeout=5.0 if opts.pid1 else 0.0)
    except cacheesp.CacheEspError as e:
        raise Fatal("handoff", str(e)) from e
    if esp.warning:
        ev.log(f"warning: {esp.warning}")
    arch = host_arch()
    try:
        form = ukistage.choose_form(cfg.stage, arch)
    except ValueError as e:
        raise Fatal("handoff", str(e)) from e
    assembly = None
    try:
        kernel = staging.kernel_for_firmware(h.kernel.read_bytes(), arch.pe_machine)
        if form == "uki":  # laid out before anything is written: a bad stub fails early
            assembly = ukistage.prepare(
                ukistage.read_stub(arch), kernel, h.initrd, h.cmdline, arch=arch,
                osrel=ukistage.osrel_for(target, h.version, h.mountpoint), version=h.version)
        bootentry.prepare()
        entries = bootentry.read_entries()
        refs = staging.referenced_names(bootentry.referenced_paths(entries))
        staging.mount_rw(esp.devpath, ESP_MNT)
        try:
            if assembly is not None:
                staged = staging.stage_uki(ESP_MNT, target, assembly.size, assembly.chunks(),
                                           referenced=refs)
            else:
                staged = staging.stage(ESP_MNT, target, kernel, h.initrd, referenced=refs)
        finally:
            staging.unmount(ESP_MNT)
    except (OSError, ValueError) as e:
        raise Fatal("handoff", f"staging {target} on {esp.devpath}: {e}") from e
    if assembly is not None:
        sizes = assembly.section_sizes()
        ev.emit("staged", target=target, esp=esp.devpath, form=form,
                uki=staged.kernel.efi_path, uki_bytes=staged.kernel.size,
                uki_sha256=staged.kernel.sha256, linux_bytes=sizes.get(".linux"),
                initrd_bytes=sizes.get(".initrd"), cmdline_bytes=sizes.get(".cmdline"),
                dropped=staged.dropped, seconds=staged.seconds)
    else:
        ev.emit("staged", target=target, esp=esp.devpath, form=form,
                kernel=staged.kernel.efi_path, kernel_bytes=staged.kernel.size,
                kernel_sha256=staged.kernel.sha256,
                initrd=staged.initrd.efi_path if staged.initrd else None,
                initrd_bytes=staged.initrd.size if staged.initrd else None,
                dropped=staged.dropped, seconds=staged.seconds)
    option = bootentry.build_option(target, esp.partition, h.cmdline, h.initrd is not None,
                                    form)
    try:
        written = bootentry.write(option, boot_next=cfg.bootnext, entries=entries)
    except (OSError, ValueError) as e:
        raise Fatal("handoff", f"{e}") from e
    ev.emit("bootvar-written", number=f"{written.number:04X}", variable=written.name,
            description=written.description, device_path=option.path_text(),
            options=option.optional_text(), replaced=written.replaced,
            boot_order=None if written.boot_order is None
            else [f"{n:04X}" for n in written.boot_order],
            boot_next=None if written.boot_next is None else f"{written.boot_next:04X}")
    if h.mountpoint is not None:
        try:
            mount.umount(h.mountpoint)
        except OSError as e:
            ev.log(f"warning: {e} (continuing: the mount is read-only)")
    ev.emit("rebooting", action="restart", target=target)
    try:
        pid1.restart()
    except OSError as e:
        raise Fatal("handoff", f"reboot(LINUX_REBOOT_CMD_RESTART) failed: {e}") from e


def reset_guest(boot: Boot) -> None:
    """cloudboot.reset=1: remove only cloudboot's Boot#### and staged files."""
    ev = boot.ev
    removed: list[str] = []
    try:
        bootentry.prepare()
        removed += bootentry.reset()
    except OSError as e:
        raise Fatal("handoff", f"cloudboot.reset=1: {e}") from e
    try:
        esp = cacheesp.find(boot.opts.sys_root, boot.opts.dev_root, timeout=2)
    except cacheesp.CacheEspError as e:
        ev.log(f"cloudboot.reset=1: no staged files to remove ({e})")
    else:
        try:
            staging.mount_rw(esp.devpath, ESP_MNT)
            try:
                removed += staging.remove_all(ESP_MNT)
            finally:
                staging.unmount(ESP_MNT)
        except OSError as e:
            raise Fatal("handoff", f"cloudboot.reset=1: {esp.devpath}: {e}") from e
    ev.emit("reset", removed=removed)
