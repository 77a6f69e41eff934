"""Network plans on QEMU x86_64, Path A: the guest brings up its NIC (QEMU user net, DHCP),
pulls an HCL plan and the Debian kernel + initrd from a real docker-registry on the host's
loopback (reached through a guestfwd; restrict=on keeps the guest off everything else), and
kexecs into the Debian root disk with the plan's command line.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cloudboot.oci.manifest import Platform
from cloudboot.oci.push import push_artifact, push_plan
from lab.bootstrap import build_bootstrap_iso
from lab.cells import Cell, CellResult, Stopwatch, file_digest
from lab.firmware import select_firmware
from lab.hypervisors.qemu import boot
from lab.hypervisors.vmspec import Disk, UserNet, VMSpec, guestfwd
from lab.images import debian
from lab.paths.c import PathCMachine
from lab.profiles import get_profile
from lab.services import registry as labreg
from lab.verdict import check_userspace, verdict

pytestmark = [pytest.mark.e2e, pytest.mark.boot]
if labreg.available():
    pytestmark.append(pytest.mark.skip(reason=str(labreg.available())))

GUEST_REGISTRY = "10.0.2.100:5000"  # what the guest dials; guestfwd'ed to the lab registry
# romfile= drops the NIC's iPXE ROM: OVMF would otherwise try to PXE boot first (DESIGN §7).
NIC_MODEL = "virtio-net-pci,romfile="


@pytest.fixture(scope="module")
def reg() -> Iterator[labreg.LocalRegistry]:
    with labreg.running() as r:
        yield r


@pytest.fixture(scope="module")
def image() -> debian.TargetImage:
    return debian.build("bookworm", "ext4")


@pytest.fixture(scope="module")
def kernel_ref(reg: labreg.LocalRegistry, image: debian.TargetImage) -> str:
    """The Debian target's kernel + initrd as an OCI artifact (pushed once per module)."""
    push_artifact(f"http://{reg.host}/debian/bookworm:amd64", platform=Platform("linux", "amd64"),
                  kernel=image.kernel, initrds=[image.initrd])
    return f"{GUEST_REGISTRY}/debian/bookworm:amd64"


def _plan(tmp: Path, text: str) -> Path:
    p = tmp / "plan.hcl"
    p.write_text(text)
    return p


def _boot(cell: Cell, tmp: Path, cmdline: str, image: debian.TargetImage, nic: UserNet,
          timeout: float = 600.0) -> CellResult:
    watch = Stopwatch()
    profile = get_profile(cell.arch)
    full = f"console={profile.console} panic=-1 cloudboot.reboot_delay=0 {cmdline}"
    iso = build_bootstrap_iso(cell.arch, full, tmp / "boot.iso")
    fw = select_firmware(profile)
    spec = VMSpec(profile=profile, firmware=fw, vars_path=fw.fresh_vars(tmp), nic=nic,
                  disks=[Disk(iso, interface="virtio-blk", readonly=True),
                         Disk(image.path, interface="virtio-blk", snapshot=True)],
                  no_reboot=True, hard_timeout=timeout + 60, name=cell.id)
    outcome = boot(spec, tmp / "vm", timeout)
    result = verdict(cell, outcome, accel=spec.accel, seconds=watch.seconds())
    result.assets = {"boot.iso": file_digest(iso), "target-image": image.key}
    if result.status == "pass":
        check_userspace(result, image)
    return result


def _events(result: CellResult) -> dict[str, dict]:  # type: ignore[type-arg]
    from lab import console

    got = console.parse_log(Path(result.console_log))
    return {e.phase: e.data for e in got.events if e.phase and e.phase not in ("userspace",)}


@pytest.mark.smoke
def test_path_a_plan_from_registry(tmp_path: Path, reg: labreg.LocalRegistry,
                                   image: debian.TargetImage, kernel_ref: str,
                                   record_cell) -> None:
    plan = _plan(tmp_path, f'''
default_target = "debian"
target "debian" {{
  label   = "Debian 12 kernel from the registry, root on the local disk"
  kernel  = "{kernel_ref}"
  initrd  = ["{kernel_ref}"]
  cmdline = ["root=UUID={image.fs_uuid}", "ro", "console=ttyS0", "cb.ip={{{{.IP}}}}"]
}}
''')
    push_plan(f"http://{reg.host}/plans/test:1", plan)
    nic = UserNet(restrict=True, model=NIC_MODEL,
                  guestfwd=(guestfwd(GUEST_REGISTRY, reg.host),))
    cell = Cell("qemu", "x86_64", "A", "debian-12", "ext4-oci-plan")
    result = _boot(cell, tmp_path, f"cloudboot.plan={GUEST_REGISTRY}/plans/test:1 "
                   "cloudboot.insecure=1", image, nic)
    record_cell(result)
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    us = result.userspace or {}
    assert us["kernel"] == image.kernel_version
    # the plan's command line, with the DHCP address filled in
    assert "cb.ip=10.0.2.15" in us["cmdline"], us["cmdline"]
    ev = _events(result)
    # restrict=on: slirp's DHCP gives an address but no router or DNS
    assert ev["net-up"]["address"] == "10.0.2.15/24" and ev["net-up"]["method"] == "dhcp"
    assert ev["plan-fetched"]["ref"] == f"{GUEST_REGISTRY}/plans/test:1"
    assert ev["materialised"]["found_by"] == "oci"
    assert ev["materialised"]["bytes"] >= image.kernel.stat().st_size
    t = result.phase_times
    assert t["net-up"] < t["plan-fetched"] < t["materialised"] < t["kexec-load"] < t["userspace"]


class _Metadata(BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != "/cloudboot.json":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def test_metadata_url_overrides_the_target(tmp_path: Path, reg: labreg.LocalRegistry,
                                           image: debian.TargetImage, kernel_ref: str,
                                           record_cell) -> None:
    """cmdline says target "broken"; the metadata service says "debian" and wins."""
    guest_reg = "169.254.0.100:5000"
    ref = kernel_ref.replace(GUEST_REGISTRY, guest_reg)
    plan = _plan(tmp_path, f'''
target "broken" {{
  kernel = "{guest_reg}/debian/nosuch:1"
}}
target "debian" {{
  kernel  = "{ref}"
  initrd  = ["{ref}"]
  cmdline = "root=UUID={image.fs_uuid} ro console=ttyS0 cb.from=metadata"
}}
''')
    push_plan(f"http://{reg.host}/plans/md:1", plan)
    handler = type("H", (_Metadata,), {"body": json.dumps(
        {"cloudboot": {"target": "debian"}}).encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        nic = UserNet(restrict=True, model=NIC_MODEL, net="169.254.0.0/16", guestfwd=(
            guestfwd("169.254.169.254:80", f"127.0.0.1:{server.server_address[1]}"),
            guestfwd(guest_reg, reg.host)))
        cell = Cell("qemu", "x86_64", "A", "debian-12", "ext4-metadata")
        result = _boot(cell, tmp_path, f"cloudboot.plan={guest_reg}/plans/md:1 "
                       "cloudboot.insecure=1 cloudboot.target=broken "
                       "cloudboot.metadata.url=http://169.254.169.254/cloudboot.json",
                       image, nic)
    finally:
        server.shutdown()
    record_cell(result)
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    assert "cb.from=metadata" in (result.userspace or {})["cmdline"]
    ev = _events(result)
    assert ev["metadata"]["keys"] == ["cloudboot.target"] and ev["metadata"]["error"] is None
    assert ev["target-selected"]["target"] == "debian"


def test_path_c_plan_from_registry(tmp_path: Path, reg: labreg.LocalRegistry,
                                   image: debian.TargetImage, kernel_ref: str,
                                   record_cell) -> None:
    """The same OCI plan and artifact through Path C: the pulled kernel and initrd are staged
    on the cache ESP, the firmware boots them on the second pass. The plan's `dns` list
    replaces what DHCP gave (the `dns` event)."""
    plan = _plan(tmp_path, f'''
default_target = "debian"
dns = ["192.0.2.53"]
target "debian" {{
  kernel  = "{kernel_ref}"
  initrd  = ["{kernel_ref}"]
  cmdline = ["root=UUID={image.fs_uuid}", "ro", "console=ttyS0", "cb.path=c"]
}}
''')
    push_plan(f"http://{reg.host}/plans/pathc:1", plan)
    nic = UserNet(restrict=True, model=NIC_MODEL,
                  guestfwd=(guestfwd(GUEST_REGISTRY, reg.host),))
    m = PathCMachine.create(Cell("qemu", "x86_64", "C", "debian-12", "ext4-oci-plan"),
                            tmp_path, image=image)
    iso = m.iso(m.cmdline(f"cloudboot.plan={GUEST_REGISTRY}/plans/pathc:1 "
                          "cloudboot.insecure=1", disk=False))
    b = m.boot(iso, timeout=900, nic=nic)
    result = b.result
    record_cell(result)
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    assert result.banners == 1
    assert "cb.path=c" in (result.userspace or {})["cmdline"]
    assert b.event("materialised")["found_by"] == "oci"  # type: ignore[index]
    dns = b.event("dns")
    assert dns is not None and dns["servers"] == ["192.0.2.53"] and dns["source"] == "plan"
    staged = b.event("staged")
    assert staged is not None and staged["kernel_bytes"] == image.kernel.stat().st_size
    assert [e["description"] for e in b.ours] == ["cloud-boot debian"]
    assert b.vars_after["boot_order"][0] == b.ours[0]["number"]
    assert b.fsck is not None and b.fsck.returncode == 0, b.fsck
