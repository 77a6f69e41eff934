"""The openstack lane: a Nova-shaped guest on QEMU, configured by a config drive and a metadata
service the way an OpenStack instance is.

What makes it Nova-shaped (nova/virt/libvirt/driver.py's choices, expressed on QEMU directly):
- q35 + OVMF (hw_firmware_type=uefi), one vCPU, SMBIOS type 1 "OpenStack Foundation" /
  "OpenStack Nova" with the instance UUID as system UUID (what cloud-init's ds-identify reads);
- the root disk (the Glance image: our boot.iso) on virtio-blk as vda, copy-on-write; volumes
  (the Debian target disk, the Path C cache disk) as further virtio-blk disks;
- the config drive (ISO 9660 `config-2`, cloudboot.media.configdrive) as a CD-ROM. Nova puts it
  on IDE/SATA on x86; Debian's cloud kernel has no AHCI, so here it is a virtio-scsi CD
  (Nova's hw_cdrom_bus=scsi with hw_scsi_model=virtio-scsi);
- one virtio NIC on QEMU user networking with restrict=on, `net=169.254.0.0/16`, and
  169.254.169.254:80 forwarded to the lab's metadata service (lab.services.metadata); more
  forwards (e.g. the lab registry) may be added by the caller;
- the serial console.

The bootstrap's command line carries `cloudboot.metadata.url=openstack`; what to boot comes from
the instance metadata's `meta` (`cloudboot.plan=oci://…` or `cloudboot.disk=LABEL=…`).
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cloudboot.media import cachedisk, configdrive
from cloudboot.media.configdrive import InstanceMetadata
from lab.bootstrap import build_bootstrap_iso
from lab.cells import Cell, CellResult, Stopwatch, file_digest
from lab.firmware import Firmware, select_firmware, with_editable_vars
from lab.hypervisors.accel import select_accel
from lab.hypervisors.qemu import boot
from lab.hypervisors.vmspec import Disk, UserNet, VMSpec
from lab.images import debian
from lab.paths.c import (
    PathCRun,
    plant_foreign_entries,
    raw_boot_vars,
)
from lab.profiles import Profile, get_profile
from lab.services.metadata import GUEST_NET, MetadataService, Request
from lab.verdict import check_userspace, verdict

METADATA_CMDLINE = "cloudboot.metadata.url=openstack"
# romfile= drops the NIC's iPXE ROM: OVMF would otherwise try to PXE boot first (DESIGN §7).
NIC_MODEL = "virtio-net-pci,romfile="
META_PATH = "/openstack/latest/meta_data.json"
# Nova's libvirt driver defaults: q35 + OVMF on x86_64, virt + AAVMF on aarch64; the config
# drive on virtio-scsi and the NIC on virtio-net-pci are the same on both.
NOVA_PROFILES = ("x86_64", "aarch64")
# Where an instance reaches the lab's registry: inside slirp's 169.254.0.0/16, guestfwd'ed.
INSTANCE_REGISTRY = "169.254.0.100:5000"


def instance_metadata(cell: Cell, meta: dict[str, str]) -> InstanceMetadata:
    """A stable instance identity per cell (uuid5 of the cell id), with `meta` as Nova meta."""
    uid = str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"cloudboot-lab:{cell.id}"))
    name = f"cb-{cell.path.lower()}-{uid[:8]}"
    return InstanceMetadata(uuid=uid, name=name, hostname=f"{name}.novalocal",
                            availability_zone="nova", meta=meta,
                            public_keys={"lab": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"
                                                "CloudbootLabKeyNotARealOne lab@cloudboot"})


def nova_spec(name: str, profile: Profile, fw: Firmware, vars_path: Path,
              md: InstanceMetadata, root: Path, drive: Path, volumes: list[Disk],
              guestfwds: tuple[str, ...], *, accel: Literal["tcg", "kvm"] = "tcg",
              reboots: bool = False, timeout: float = 600.0) -> VMSpec:
    """The Nova-shaped VMSpec (golden-tested through lab.hypervisors.vmspec.build_command).
    `guestfwds`: the metadata service's rule first (MetadataService.guestfwd), then others."""
    if profile.name not in NOVA_PROFILES:
        raise ValueError(f"VM {name}: the openstack lane is wired for "
                         f"{', '.join(NOVA_PROFILES)} only, not {profile.name}")
    nic = UserNet(restrict=True, net=GUEST_NET, model=NIC_MODEL, mac=md.mac, guestfwd=guestfwds)
    return VMSpec(
        profile=profile, firmware=fw, vars_path=vars_path, accel=accel, nic=nic,
        disks=[Disk(root, interface="virtio-blk", snapshot=True), *volumes],
        no_reboot=not reboots, hard_timeout=timeout + 90, name=name,
        extra_args=[*config_drive_args(drive),
                    "-uuid", md.uuid, "-smbios",
                    f"type=1,manufacturer=OpenStack Foundation,product=OpenStack Nova,"
                    f"serial={md.uuid},uuid={md.uuid},family=Virtual Machine"],
    )


def config_drive_args(drive: Path) -> list[str]:
    """The config drive as a read-only CD on its own virtio-scsi controller. The QEMU lane's
    `cdrom` interface means SATA on q35 (firmware-bootable, invisible to Debian's cloud
    kernel), so the CD is spelled out here."""
    return ["-drive", f"if=none,id=configdrive,file={drive},format=raw,readonly=on,media=cdrom",
            "-device", "virtio-scsi-pci,id=scsi-cfg",
            "-device", "scsi-cd,drive=configdrive,id=configdrive-dev,bus=scsi-cfg.0"]


@dataclass
class OpenStackRun:
    result: CellResult
    requests: list[Request]  # what the guest asked the metadata service
    config_drive: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    path_c: PathCRun | None = None

    def event(self, phase: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("phase") == phase), None)


def run_openstack_cell(cell: Cell, workdir: Path, meta: dict[str, str], *,
                       extra_cmdline: str = "", extra_guestfwd: tuple[str, ...] = (),
                       timeout: float = 600.0) -> OpenStackRun:
    """Boot boot.iso as a Nova instance with the cell's Debian disk as a volume; Path C adds
    `cloudboot.exit=reboot` and a cache disk and reads the nvram and ESP back afterwards."""
    watch = Stopwatch()
    workdir.mkdir(parents=True, exist_ok=True)
    image = debian.build(cell.release, cell.fs, cell.arch)
    profile = get_profile(cell.arch)
    path_c = cell.path == "C"
    full = (f"console={profile.console} panic=-1 cloudboot.reboot_delay=0 {METADATA_CMDLINE}"
            f"{' cloudboot.exit=reboot' if path_c else ''} {extra_cmdline}").strip()
    iso = build_bootstrap_iso(cell.arch, full, workdir / "boot.iso")
    md = instance_metadata(cell, meta)
    drive = configdrive.write(md, workdir / "config-drive.iso")
    # Path C reads and plants Boot#### on the host: AAVMF's bookworm template is all zeros
    fw = with_editable_vars(select_firmware(profile)) if path_c else select_firmware(profile)
    vars_path = fw.fresh_vars(workdir)
    volumes = [Disk(image.path, interface="virtio-blk", snapshot=True)]
    cache = workdir / "cache.raw"
    foreign: dict[str, bytes] = {}
    order: list[int] = []
    if path_c:
        cachedisk.create(cache)
        volumes.append(Disk(cache, interface="virtio-blk"))
        plant_foreign_entries(vars_path, cell.arch)
        foreign, order = raw_boot_vars(vars_path)
    with MetadataService(md) as svc:
        spec = nova_spec(cell.id, profile, fw, vars_path, md, iso, drive, volumes,
                         (svc.guestfwd(), *extra_guestfwd), accel=select_accel(profile).accel,
                         reboots=path_c, timeout=timeout)
        outcome = boot(spec, workdir / "vm", timeout)
        requests = svc.requests
    result = verdict(cell, outcome, accel=spec.accel, seconds=watch.seconds())
    result.assets = {"boot.iso": file_digest(iso), "config-drive": file_digest(drive),
                     "target-image": image.key}
    if result.status == "pass":
        check_userspace(result, image)
    if result.status == "pass" and not any(r.path == META_PATH and r.status == 200
                                           for r in requests):
        result.status, result.category = "fail", "init-network"
        result.evidence = f"the guest never fetched {META_PATH} from the metadata service"
    run = OpenStackRun(result, requests, drive,
                       [e.data for e in outcome.events.events if e.phase != "userspace"])
    if path_c:
        pc = PathCRun(result, vars_path, cache, foreign, order, events=run.events)
        run.path_c = pc.read_back(workdir / "esp.img")
    return run


def metadata_seconds(run: OpenStackRun) -> dict[str, float | None]:
    """From the guest's events: how long DHCP and the metadata fetch took (seconds)."""
    net = run.event("net-up") or {}
    md = run.event("metadata") or {}
    return {"net-up": net.get("seconds"), "metadata": md.get("seconds")}


def run_openstack_loader(cell: Cell, workdir: Path, root: Path, *,
                         vars_set: Callable[[Path], None] | None = None,
                         extra_guestfwd: tuple[str, ...] = (), rng: bool = False,
                         timeout: float = 420.0) -> tuple[CellResult, Path]:
    """Paths B and D as a Nova instance: `root` (the loader's boot media) is the Glance image,
    the cell's Debian disk a volume, the config drive and metadata service present as for
    any instance (the loaders do not read them: they must not be confused by them, e.g. a
    2048-byte-block CD among the block devices). `vars_set` prepares the nvram (Path B's
    CloudBootTarget). Returns the verdict and the vars file (CloudBootMark)."""
    from lab.paths.b import boot_loader

    watch = Stopwatch()
    workdir.mkdir(parents=True, exist_ok=True)
    image = debian.build(cell.release, cell.fs, cell.arch)
    profile = get_profile(cell.arch)
    md = instance_metadata(cell, {})
    drive = configdrive.write(md, workdir / "config-drive.iso")
    fw = select_firmware(profile)
    vars_path = fw.fresh_vars(workdir)
    if vars_set is not None:
        vars_set(vars_path)
    with MetadataService(md) as svc:
        spec = nova_spec(cell.id, profile, fw, vars_path, md, root, drive,
                         [Disk(image.path, interface="virtio-blk", snapshot=True)],
                         (svc.guestfwd(), *extra_guestfwd), accel=select_accel(profile).accel,
                         timeout=timeout)
        spec.rng = rng
        outcome = boot_loader(spec, workdir / "vm", timeout)
    result = verdict(cell, outcome, accel=spec.accel, seconds=watch.seconds())
    result.assets = {"boot-media": file_digest(root), "config-drive": file_digest(drive),
                     "target-image": image.key}
    if result.status == "pass":
        check_userspace(result, image)
    return result, vars_path
