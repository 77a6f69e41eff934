"""Run a Path B cell on QEMU: the native loader (loader/b) on a boot.iso or ESP disk, its
target chosen by EFI variables set with `cloudboot vars set` on a fresh VARS copy, and the
Debian target disk (or a FAT disk holding `\\EFI\\Linux\\<name>.efi`) beside it.

After the run the vars file is read back on the host: `CloudBootMark` proves the loader ran
even when no console line did.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from cloudboot.cli.main import main as cloudboot_main
from cloudboot.efi import varstore
from cloudboot.loader.media import build_b_media, esp_disk
from lab import console
from lab.cells import Cell, CellResult, Stopwatch, file_digest
from lab.console import BootOutcome
from lab.firmware import select_firmware, with_editable_vars
from lab.hypervisors.accel import select_accel
from lab.hypervisors.qemu import QemuVM
from lab.hypervisors.vmspec import Disk, VMError, VMSpec
from lab.images import debian
from lab.profiles import get_profile
from lab.verdict import check_userspace, verdict

# The run has decided itself: userspace, a loader or kernel failure, or the firmware gave up.
DECIDED = re.compile(r"CLOUDBOOT-USERSPACE|\"phase\":\s*\"fatal\"|Kernel panic - not syncing|"
                     r"Shell> |\(initramfs\)")
LOADER_ERROR = re.compile(r"cloudboot-loader: error: .*")


@dataclass
class PathBRun:
    result: CellResult
    text: str
    vars_path: Path
    mark: str | None  # CloudBootMark read back from the vars file after the run
    cloudboot_vars: dict[str, bytes] = field(default_factory=dict)

    @property
    def loader_error(self) -> str | None:
        m = LOADER_ERROR.search(self.text)
        return m.group(0).strip() if m else None


def boot_loader(spec: VMSpec, workdir: Path, timeout: float) -> BootOutcome:
    """Boot a native loader until it decides (userspace, or its fatal line and return)."""
    timed_out = False
    with QemuVM(spec, workdir) as vm:
        try:
            m = vm.wait_for(DECIDED, timeout=timeout)
            # A loader failure returns to the firmware, which would go on to other options:
            # the line is all the lab needs. A kernel may still be printing its last lines.
            if "fatal" not in m.group(0):
                with contextlib.suppress(VMError):
                    vm.wait_exit(20)
            else:
                with contextlib.suppress(VMError):
                    vm.wait_for(re.compile(r"\n"), timeout=2)
        except VMError:
            timed_out = vm.is_running() or vm.timed_out
        text = vm.text()
    return BootOutcome(text, console.parse_log(vm.console_log), timed_out, vm.console_log)


def set_vars(vars_path: Path, target: str | None, cmdline: str | None = None) -> None:
    """`cloudboot vars set` exactly as a user runs it (None: leave the variable unset)."""
    if target is None:
        return
    argv = ["vars", "set", "--vars", str(vars_path), "--target", target]
    if cmdline is not None:
        argv += ["--cmdline", cmdline]
    if cloudboot_main(argv) != 0:
        raise RuntimeError(f"cloudboot {' '.join(argv)} failed")


def run_path_b(cell: Cell, workdir: Path, *, target: str | None = "ext4:",
               cmdline: str | None = None, file_cmdline: str | None = None,
               raw_vars: dict[str, bytes] | None = None, extra_disks: list[Path] | None = None,
               with_target_image: bool = True, media: str = "iso",
               userspace_of: debian.TargetImage | None = None,
               timeout: float = 420.0) -> PathBRun:
    """Boot the Path B loader with CloudBootTarget=`target` (and CloudBootCmdline=`cmdline`);
    `raw_vars` writes variables byte for byte (garbage cases); `file_cmdline` goes into the
    loader volume's \\cmdline."""
    watch = Stopwatch()
    workdir.mkdir(parents=True, exist_ok=True)
    profile = get_profile(cell.arch)
    fs = cell.fs.split("-")[0]  # extra cells such as "ext4-uki" boot the ext4 image
    image = debian.build(cell.release, fs, cell.arch) if with_target_image else None
    out = workdir / ("b.iso" if media == "iso" else "b.img")
    boot_media = build_b_media(cell.arch, out, cmdline=file_cmdline, kind=media)
    fw = with_editable_vars(select_firmware(profile))
    vars_path = fw.fresh_vars(workdir)
    set_vars(vars_path, target, cmdline)
    for name, data in (raw_vars or {}).items():
        varstore.set_cloudboot_var(vars_path, name, data)
    accel = select_accel(profile).accel
    disks = [Disk(boot_media.path, interface="virtio-blk", readonly=True)]
    disks += [Disk(p, interface="virtio-blk", snapshot=True) for p in extra_disks or []]
    if image is not None:
        disks.append(Disk(image.path, interface="virtio-blk", snapshot=True))
    spec = VMSpec(profile=profile, firmware=fw, vars_path=vars_path, accel=accel, disks=disks,
                  no_reboot=True, hard_timeout=timeout + 60, name=cell.id)
    if cell.hypervisor == "libvirt":  # the same machine as a libvirt domain
        from lab.hypervisors.libvirt import boot as libvirt_boot

        outcome = libvirt_boot(spec, workdir / "vm", timeout)
    else:
        outcome = boot_loader(spec, workdir / "vm", timeout)
    result = verdict(cell, outcome, accel=accel, seconds=watch.seconds())
    result.assets = {"boot-media": file_digest(boot_media.path),
                     "loader": file_digest(boot_media.loader)}
    if image is not None:
        result.assets["target-image"] = image.key
    expect = image or userspace_of
    if expect is not None and result.status == "pass":
        check_userspace(result, expect)
    store = varstore.VarStore(vars_path)
    ours = {name: data for name, (_, data) in store.cloudboot_vars().items()}
    mark = ours.get("CloudBootMark")
    return PathBRun(result, outcome.text, vars_path,
                    mark.decode("utf-8", "replace") if mark is not None else None, ours)


def uki_disk(cell: Cell, workdir: Path, name: str) -> Path:
    """A GPT disk whose ESP holds \\EFI\\Linux\\<name>.efi: a UKI of the target image's own
    kernel + initrd (Debian's systemd-stub) with root=UUID=… in its .cmdline."""
    from cloudboot import __version__
    from cloudboot.bootstrap.build import default_stub
    from cloudboot.pe import uki

    arch = cell.arch
    image = debian.build(cell.release, cell.fs.split("-")[0], cell.arch)
    profile = get_profile(cell.arch)
    cmdline = f"root=UUID={image.fs_uuid} ro console={profile.console}"
    blob = uki.assemble(uki.UKIParts(
        stub=default_stub(arch).read_bytes(), linux=image.kernel.read_bytes(),
        initrd=image.initrd.read_bytes(), cmdline=cmdline,
        osrel=uki.osrel_text(version=__version__), uname=image.kernel_version), arch)
    out = workdir / f"uki-{name}.img"
    esp_disk(out, {f"EFI/Linux/{name}.efi": blob}, label="UKIDISK", name="uki-esp")
    return out
