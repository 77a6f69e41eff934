"""Golden libvirt domain XML for the lab's cells (no libvirtd needed), checked against libvirt's
own schema with virt-xml-validate.

Regenerate with UPDATE_GOLDEN=1 after a deliberate change, and review the diff.
"""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.firmware import Firmware
from lab.hypervisors.domainxml import QEMU_NS, DomainXMLError, domain_xml
from lab.hypervisors.vmspec import Disk, UserNet, VMSpec
from lab.profiles import get_profile

# Golden outputs do not depend on this host's QEMU release.
pytestmark = pytest.mark.usefixtures("qemu_without_cpu_quirks")

GOLDEN = Path(__file__).parent / "golden"
RUN = Path("/run/lab/cell")


def _fw(arch: str) -> Firmware:
    return Firmware(arch, Path(f"/fw/{arch}/CODE.fd"), Path(f"/fw/{arch}/VARS.fd"), "test", None)


def _cell(profile: str) -> VMSpec:
    """boot.iso read-only plus a snapshot target, as lab.paths boot a cell through libvirt."""
    p = get_profile(profile)
    return VMSpec(p, _fw(p.fw_arch), RUN / "vars.fd",
                  disks=[Disk(Path("/img/boot.iso"), readonly=True),
                         Disk(Path("/img/root.raw"), snapshot=True)],
                  no_reboot=True, name=f"golden-{profile}")


OVERLAYS = {1: RUN / "disk1.overlay.qcow2"}
CASES: dict[str, tuple[VMSpec, dict]] = {
    "x86_64": (_cell("x86_64"), {"overlays": OVERLAYS, "console_log": RUN / "console.qemu.log"}),
    "aarch64": (_cell("aarch64"), {"overlays": OVERLAYS}),
    "vz": (_cell("vz"), {"overlays": OVERLAYS}),
    "x86_64-direct": (VMSpec(
        get_profile("x86_64"), None, None, kernel=Path("/k/vmlinuz"),
        initrd=Path("/k/initrd.img"), append="console=ttyS0 panic=-1", no_reboot=True,
        accel="kvm", cpus=2, memory_mib=2048, name="golden-direct"), {}),
    "x86_64-net-cdrom-scsi": (VMSpec(
        get_profile("x86_64"), _fw("x86_64"), RUN / "vars.fd",
        disks=[Disk(Path("/img/boot.iso"), "cdrom"), Disk(Path("/img/cache.raw"), "virtio-scsi")],
        nic=UserNet(net="169.254.0.0/16", guestfwd=("tcp:169.254.169.254:80-tcp:127.0.0.1:8775",)),
        name="golden-net"), {}),
    "x86_64-plain-nic-file-console": (VMSpec(
        get_profile("x86_64"), _fw("x86_64"), RUN / "vars.fd",
        disks=[Disk(Path("/img/boot.iso"), readonly=True)],
        nic=UserNet(restrict=False, mac="52:54:00:12:34:56"), name="golden-nic"),
        {"console": "file", "console_file": RUN / "serial.log"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_domain_xml(case: str) -> None:
    spec, kwargs = CASES[case]
    text = domain_xml(spec, **kwargs)
    golden = GOLDEN / f"libvirt-{case}.xml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.is_file(), f"{golden} missing: run with UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{case}: domain XML differs from {golden}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_validates_against_libvirt_schema(case: str) -> None:
    out = subprocess.run(["virt-xml-validate", str(GOLDEN / f"libvirt-{case}.xml"), "domain"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _root(case: str) -> ET.Element:
    spec, kwargs = CASES[case]
    return ET.fromstring(domain_xml(spec, **kwargs))


def test_cell_is_uefi_with_fresh_vars_and_no_nic() -> None:
    root = _root("x86_64")
    assert root.get("type") == "qemu"  # TCG
    assert root.findtext("os/loader") == "/fw/x86_64/CODE.fd"
    assert root.find("os/loader").get("readonly") == "yes"  # type: ignore[union-attr]
    nvram = root.find("os/nvram")
    assert nvram is not None and nvram.text == str(RUN / "vars.fd")
    assert nvram.get("template") == "/fw/x86_64/VARS.fd"
    assert root.find("devices/interface") is None  # no NIC: EDK2 would try PXE first
    assert root.findtext("on_reboot") == "destroy"  # -no-reboot: a panic ends the run


def test_snapshot_target_is_an_overlay_over_the_untouched_image() -> None:
    disks = _root("x86_64").findall("devices/disk")
    assert [d.find("target").get("bus") for d in disks] == ["virtio", "virtio"]  # type: ignore
    assert disks[0].find("readonly") is not None
    target = disks[1]
    assert target.find("source").get("file") == str(OVERLAYS[1])  # type: ignore[union-attr]
    assert target.find("backingStore/source").get("file") == "/img/root.raw"  # type: ignore


def test_profile_quirks_carry_over() -> None:
    arm = _root("aarch64")
    assert arm.find("os/bootmenu").get("timeout") == "0"  # type: ignore[union-attr]
    assert arm.findtext("cpu/model") == "cortex-a57"
    vz = _root("vz")
    assert vz.find("devices/serial") is None
    assert vz.find("devices/console/target").get("type") == "virtio"  # type: ignore[union-attr]


def test_restricted_user_net_goes_through_qemu_passthrough() -> None:
    root = _root("x86_64-net-cdrom-scsi")
    args = [a.get("value") for a in root.iter(f"{{{QEMU_NS}}}arg")]
    assert "restrict=on" in args[args.index("-netdev") + 1]
    cdrom = root.find("devices/disk[@device='cdrom']/target")
    assert cdrom is not None and cdrom.get("bus") == "sata"  # firmware sees q35's AHCI


def test_what_libvirt_cannot_express_is_refused() -> None:
    spec, _ = CASES["x86_64"]
    with pytest.raises(DomainXMLError, match="overlay"):
        domain_xml(spec)  # a snapshot disk without its overlay
    vz_net = VMSpec(get_profile("vz"), _fw("aarch64"), RUN / "vars.fd", nic=UserNet())
    with pytest.raises(DomainXMLError, match="hot-plug"):
        domain_xml(vz_net)


def test_unreachable_libvirt_is_a_reason_not_a_crash(monkeypatch, tmp_path: Path) -> None:
    """What the libvirt cells report as "not run: …" when no libvirtd can be reached."""
    from lab.hypervisors.libvirt import LibvirtUnavailable, connect

    uri = f"qemu+unix:///session?socket={tmp_path}/no-such-sock"
    monkeypatch.setenv("CLOUDBOOT_LIBVIRT_URI", uri)
    with pytest.raises(LibvirtUnavailable) as err:
        connect()
    # Either the binding is missing (and the message says how to get it) or the URI failed.
    assert "CLOUDBOOT_LIBVIRT_URI" in str(err.value) or "binding" in str(err.value)
