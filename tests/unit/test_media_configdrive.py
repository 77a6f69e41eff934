"""The OpenStack config drive: golden file list and JSON, read back from the real ISO (xorriso
-osirrox, no mount), volume label from our own PVD read, reproducible bytes, clear errors.

Regenerate the golden file with UPDATE_GOLDEN=1 after a deliberate change, and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cloudboot.media import configdrive
from cloudboot.media.configdrive import ConfigDriveError, InstanceMetadata

GOLDEN = Path(__file__).parent / "golden" / "configdrive-files.json"

MD = InstanceMetadata(
    uuid="6c1fd3b4-4b0e-4bb4-9a8e-2f0a3a0b5e11",
    name="cb-lab",
    hostname="cb-lab.novalocal",
    availability_zone="lab-az1",
    meta={"cloudboot.plan": "oci://169.254.0.100:5000/plans/openstack:1",
          "cloudboot.insecure": "1"},
    public_keys={"lab": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeadBeef lab@cloudboot"},
    user_data=b"#cloud-config\nhostname: cb-lab\n",
)


def _decoded(content: dict[str, bytes]) -> dict[str, object]:
    return {k: json.loads(v) if k.endswith(".json") else v.decode() for k, v in content.items()}


def test_golden_file_list_and_json() -> None:
    got = _decoded(configdrive.files(MD))
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert GOLDEN.is_file(), f"{GOLDEN} missing: run with UPDATE_GOLDEN=1"
    assert got == json.loads(GOLDEN.read_text())


def test_layout_is_novas() -> None:
    content = configdrive.files(MD)
    assert sorted(content) == [
        "openstack/2012-08-10/meta_data.json", "openstack/2012-08-10/user_data",
        "openstack/latest/meta_data.json", "openstack/latest/network_data.json",
        "openstack/latest/user_data", "openstack/latest/vendor_data.json"]
    latest = json.loads(content["openstack/latest/meta_data.json"])
    assert latest["meta"]["cloudboot.plan"].startswith("oci://")
    assert latest["keys"] == [{"name": "lab", "type": "ssh", "data": MD.public_keys["lab"]}]
    old = json.loads(content["openstack/2012-08-10/meta_data.json"])
    assert "keys" not in old and old["public_keys"] == dict(MD.public_keys)
    net = json.loads(content["openstack/latest/network_data.json"])
    assert net["links"][0]["ethernet_mac_address"] == MD.mac
    assert net["networks"][0]["link"] == net["links"][0]["id"]
    no_user = configdrive.files(InstanceMetadata(uuid=MD.uuid, name="x"))
    assert not any(k.endswith("user_data") for k in no_user)


def test_iso_reads_back_with_long_names_and_label(tmp_path: Path) -> None:
    iso = configdrive.write(MD, tmp_path / "config-drive.iso")
    assert configdrive.volume_id(iso) == "config-2"
    assert configdrive.read(iso) == configdrive.files(MD)  # names survive, bytes identical
    # Reproducible: same input, same bytes.
    again = configdrive.write(MD, tmp_path / "again.iso")
    assert iso.read_bytes() == again.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"uuid": "not-a-uuid"}, "is not a UUID"),
    ({"hostname": "bad_host!"}, "is not a DNS name"),
    ({"meta": {"k": 1}}, "must be strings"),
    ({"meta": {"k": "v" * 256}}, "1-255"),
    ({"public_keys": {"lab": "hello"}}, "not an OpenSSH public key"),
    ({"mac": "52:54:00:12:34"}, "aa:bb:cc:dd:ee:ff"),
])
def test_bad_metadata_is_a_clear_error_and_nothing_is_written(
        tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    md = InstanceMetadata(**{"uuid": MD.uuid, "name": "cb-lab", **kwargs})  # type: ignore[arg-type]
    out = tmp_path / "cd.iso"
    with pytest.raises(ConfigDriveError, match=message) as e:
        configdrive.write(md, out)
    assert "cb-lab" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_reading_a_non_iso_says_where(tmp_path: Path) -> None:
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"\0" * 40000)
    with pytest.raises(ConfigDriveError, match="junk.iso: no ISO 9660"):
        configdrive.volume_id(junk)
    with pytest.raises(ConfigDriveError, match="junk.iso"):
        configdrive.read(junk)
