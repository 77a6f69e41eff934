"""Path D in the lab: the one-boot network UEFI loader pulling from the local docker-registry.

The firmware boots boot.iso whose only program is the Path D loader (`loader/d`, its
configuration embedded by `cloudboot.loader.netconfig`). The loader brings the firmware's
network stack up over QEMU user networking (the host, and so the registry on 127.0.0.1, is
10.0.2.2 from the guest), resolves the image index to this platform's manifest, streams kernel
and initrd with sha256 verification and starts the kernel; the Debian target disk is attached
so the kernel's root= finds its userspace.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cloudboot.arch import Arch
from cloudboot.efi import guid, varstore
from cloudboot.loader.netconfig import NetConfig, build_d_loader, write_media
from cloudboot.oci.manifest import Platform
from cloudboot.oci.push import Pushed, push_artifact, push_index
from lab import console
from lab.cells import Cell, CellResult, Stopwatch, file_digest
from lab.console import DECIDED, BootOutcome
from lab.firmware import select_firmware, with_editable_vars
from lab.hypervisors.accel import select_accel
from lab.hypervisors.qemu import QemuVM
from lab.hypervisors.vmspec import Disk, UserNet, VMError, VMSpec
from lab.images import debian
from lab.profiles import get_profile
from lab.services import registry as labreg
from lab.verdict import check_userspace, verdict

GUEST_HOST = "10.0.2.2"  # QEMU user net: the host's loopback as the guest sees it
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7": "arm"}
# romfile= drops the NIC's iPXE option ROM: the firmware's own virtio-net driver serves the
# loader, and nothing PXE-boots before our disk. trixie's OVMF loads its network stack only
# with an RNG; bookworm's does not mind one.
NIC_MODEL = "virtio-net-pci,romfile="
# The loader's last line before it hands control back to the firmware.
RETURNED = "cloudboot-loader: returning to the firmware"


@dataclass(frozen=True)
class PushedTarget:
    repository: str
    index_tag: str  # the multi-platform index
    artifact_tag: str  # the single-platform artifact manifest
    index: Pushed
    artifact: Pushed


def push_target(reg: labreg.LocalRegistry, image: debian.TargetImage, *,
                repository: str = "debian/bookworm", tag: str = "12",
                platform_arch: str | None = None) -> PushedTarget:
    """The target's kernel + initrd as a cloud-boot artifact plus an index pointing at it.

    `platform_arch` (Go name) is what the index and the artifact's config claim; by default
    the image's own architecture (another one makes the "other platform only" case).
    """
    goarch = platform_arch or GO_ARCH[image.arch]
    art_tag = f"{tag}-{goarch}"
    plat = Platform("linux", goarch)
    art = push_artifact(f"http://{reg.host}/{repository}:{art_tag}", platform=plat,
                        kernel=image.kernel, initrds=[image.initrd])
    idx = push_index(f"http://{reg.host}/{repository}:{tag}",
                     [(plat, f"http://{reg.host}/{repository}:{art_tag}")])
    return PushedTarget(repository, tag, art_tag, idx, art)


def target_cmdline(image: debian.TargetImage) -> str:
    return f"root=UUID={image.fs_uuid} ro console={get_profile(image.arch).console} panic=-1"


def guest_config(reg: labreg.LocalRegistry, repository: str, reference: str, cmdline: str, *,
                 port: int | None = None) -> NetConfig:
    """The loader's configuration for a registry on the host's loopback."""
    return NetConfig(f"{GUEST_HOST}:{port or reg.port}", repository, reference, cmdline,
                     insecure=True)


def build_d_iso(arch: Arch | str, cfg: NetConfig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    write_media(get_profile(arch).arch, build_d_loader(arch, cfg), out)
    return out


def read_mark(vars_path: Path) -> str | None:
    """CloudBootMark from a vars file (the loader writes d:start, d:fatal …, d:boot …); None
    when unset or while the file cannot be parsed (QEMU may be writing it)."""
    try:
        got = varstore.VarStore(vars_path).get("CloudBootMark", guid.CLOUDBOOT_VENDOR)
    except (OSError, ValueError, varstore.VarStoreError):
        return None
    return got[1].decode("utf-8", "replace") if got else None


def _mark_event(mark: str) -> str:
    """A fatal event line rebuilt from "d:fatal <category>: <message>" (for the verdict)."""
    category, _, message = mark[len("d:fatal "):].partition(": ")
    return console.EVENT + " " + json.dumps({"phase": "fatal", "category": category,
                                              "message": message, "via": "CloudBootMark"})


def boot_d(spec: VMSpec, workdir: Path, timeout: float) -> BootOutcome:
    """Like lab.hypervisors.qemu.boot, but a loader failure ends the run as soon as the loader has
    returned to the firmware (which would go on to its next boot option: nothing to see).

    Where the firmware's console is invisible (the vz profile: hvc0 only, as on Apple VZ where
    it goes to the framebuffer), the loader's CloudBootMark in the vars file is polled instead,
    and a "d:fatal …" mark becomes the run's fatal event ("via": "CloudBootMark")."""
    timed_out = False
    mark_line = ""
    blind = spec.profile.console_transport != "serial"
    with QemuVM(spec, workdir) as vm:
        try:
            deadline = time.monotonic() + timeout
            m: re.Match[str] | None = None
            while True:
                try:
                    m = vm.wait_for(DECIDED, timeout=3 if blind else timeout)
                    break
                except VMError:
                    if not blind or not vm.is_running() or time.monotonic() > deadline:
                        raise
                assert spec.vars_path is not None
                mark = read_mark(spec.vars_path)
                if mark and mark.startswith("d:fatal "):
                    mark_line = _mark_event(mark)
                    break
            with contextlib.suppress(VMError):
                if m is None:
                    pass
                elif "fatal" in m.group(0):  # the test asserts the RETURNED line itself
                    vm.wait_for(RETURNED, timeout=30, from_start=True)
                else:
                    vm.wait_exit(30)
        except VMError:
            timed_out = vm.is_running() or vm.timed_out
        text = vm.text()
    events = console.parse_log(vm.console_log)
    if mark_line:
        text += "\n" + mark_line + "\n"
        events.events.extend(console.parse_text(mark_line).events)
    return BootOutcome(text, events, timed_out, vm.console_log)


def run_path_d(cell: Cell, workdir: Path, cfg: NetConfig, image: debian.TargetImage | None,
               *, timeout: float = 420.0, nic: UserNet | None = None) -> CellResult:
    """Boot the Path D loader with `cfg`; with `image` attached (and a pass checked against
    it). A failing loader prints a fatal event and the run ends there."""
    watch = Stopwatch()
    workdir.mkdir(parents=True, exist_ok=True)
    profile = get_profile(cell.profile_name)
    iso = build_d_iso(cell.arch, cfg, workdir / "boot.iso")
    fw = with_editable_vars(select_firmware(profile))  # the host reads CloudBootMark back
    accel = select_accel(profile).accel
    disks = [Disk(iso, interface="virtio-blk", readonly=True)]
    if image is not None:
        disks.append(Disk(image.path, interface="virtio-blk", snapshot=True))
    spec = VMSpec(profile=profile, firmware=fw, vars_path=fw.fresh_vars(workdir), accel=accel,
                  disks=disks, nic=nic or UserNet(restrict=False, model=NIC_MODEL),
                  no_reboot=True, hard_timeout=timeout + 60, rng=True,
                  name=cell.id)
    if cell.hypervisor == "libvirt":  # the same machine as a libvirt domain
        from lab.hypervisors.libvirt import boot as libvirt_boot

        outcome = libvirt_boot(spec, workdir / "vm", timeout)
    else:
        outcome = boot_d(spec, workdir / "vm", timeout)
    result = verdict(cell, outcome, accel=accel, seconds=watch.seconds())
    result.assets = {"boot.iso": file_digest(iso)}
    if image is not None:
        result.assets["target-image"] = image.key
        if result.status == "pass":
            check_userspace(result, image)
    return result
