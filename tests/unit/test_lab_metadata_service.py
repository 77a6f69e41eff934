"""The lab's Nova-shaped metadata service, on a real loopback socket, read by the guest's own
metadata client (cloudboot.init.net.metadata) and by urllib."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from cloudboot.init.net import metadata
from cloudboot.media import configdrive
from cloudboot.media.configdrive import InstanceMetadata
from lab.services.metadata import MetadataService, serving

# Golden outputs do not depend on this host's QEMU release.
pytestmark = pytest.mark.usefixtures("qemu_without_cpu_quirks")

MD = InstanceMetadata(uuid="6c1fd3b4-4b0e-4bb4-9a8e-2f0a3a0b5e11", name="cb-lab",
                      meta={"cloudboot.plan": "oci://169.254.0.100:5000/plans/p:1",
                            "cloudboot_insecure": "1", "other": "x"})


def _get(svc: MetadataService, path: str) -> bytes:
    with urllib.request.urlopen(f"http://{svc.address}{path}", timeout=5) as r:
        return bytes(r.read())


def test_serves_the_config_drive_documents_and_logs_each_request() -> None:
    with serving(MD) as svc:
        assert _get(svc, "/openstack") == b"2012-08-10\nlatest"
        assert _get(svc, "/openstack/latest/").split(b"\n") == [
            b"meta_data.json", b"network_data.json", b"vendor_data.json"]
        files = configdrive.files(MD)
        for rel, body in files.items():
            assert _get(svc, "/" + rel) == body
        assert _get(svc, "/latest/meta-data/instance-id") == MD.uuid.encode()
        with pytest.raises(urllib.error.HTTPError) as e:
            _get(svc, "/openstack/latest/nosuch.json")
        assert e.value.code == 404
        log = svc.requests
    assert [r.path for r in log][:2] == ["/openstack", "/openstack/latest/"]
    assert log[-1].path == "/openstack/latest/nosuch.json" and log[-1].status == 404
    assert all(r.client == "127.0.0.1" and r.method == "GET" for r in log)


def test_the_guest_client_reads_the_meta_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """cloudboot-init's own fetch (the code the guest runs) with url=openstack, pointed at the
    service's loopback address instead of 169.254.169.254."""
    with serving(MD) as svc:
        monkeypatch.setattr(metadata, "OPENSTACK_URL",
                            f"http://{svc.address}/openstack/latest/meta_data.json")
        got = metadata.fetch("openstack")
        hit = svc.wait_for("/openstack/latest/meta_data.json", timeout=5)
    assert got.error is None, got.error
    assert got.overrides == {"cloudboot.plan": "oci://169.254.0.100:5000/plans/p:1",
                             "cloudboot.insecure": "1"}
    assert got.bytes == len(configdrive.files(MD)["openstack/latest/meta_data.json"])
    assert hit is not None and hit.status == 200


def test_guestfwd_rule_and_wait_timeout() -> None:
    svc = MetadataService(MD)
    try:
        host, port = svc.address.split(":")
        assert host == "127.0.0.1" and int(port) > 0
        assert svc.guestfwd() == f"tcp:169.254.169.254:80-cmd:socat - TCP:{svc.address}"
        svc.start()
        assert svc.wait_for("/never", timeout=0.2) is None
    finally:
        svc.stop()


def test_bad_instance_metadata_is_refused_up_front() -> None:
    with pytest.raises(configdrive.ConfigDriveError, match="not a UUID"):
        MetadataService(InstanceMetadata(uuid="x", name="cb-lab"))


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_golden_nova_shaped_command_line(arch: str) -> None:
    """The openstack lane's QEMU command line (no boot); UPDATE_GOLDEN=1 regenerates it."""
    import os
    from pathlib import Path

    from lab.cells import Cell
    from lab.firmware import Firmware
    from lab.hypervisors.qemu import QemuVM
    from lab.hypervisors.vmspec import Disk
    from lab.lanes.openstack import instance_metadata, nova_spec
    from lab.profiles import get_profile

    run = Path("/run/lab/cell")
    cell = Cell("openstack", arch, "C", "debian-12", "ext4")
    md = instance_metadata(cell, {"cloudboot.disk": "LABEL=cbroot"})
    fw = Firmware(arch, Path(f"/fw/{arch}/CODE.fd"), Path(f"/fw/{arch}/VARS.fd"), "test", None)
    spec = nova_spec("golden-openstack", get_profile(arch), fw, run / "vars.fd", md,
                     Path("/img/boot.iso"), run / "config-drive.iso",
                     [Disk(Path("/img/root.raw"), snapshot=True), Disk(run / "cache.raw")],
                     ("tcp:169.254.169.254:80-cmd:socat - TCP:127.0.0.1:8775",), reboots=True)
    text = "\n".join(QemuVM(spec, run).command()) + "\n"
    golden = Path(__file__).parent / "golden" / f"qemu-openstack-{arch}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.is_file(), f"{golden} missing: run with UPDATE_GOLDEN=1"
    assert text == golden.read_text()
    assert "restrict=on,net=169.254.0.0/16" in text and "scsi-cd,drive=configdrive" in text
    assert "-no-reboot" not in text  # Path C reboots on purpose
    with pytest.raises(ValueError, match="wired for x86_64, aarch64 only, not riscv64"):
        nova_spec("x", get_profile("riscv64"), fw, run / "vars.fd", md, Path("/b"), Path("/c"),
                  [], ())
