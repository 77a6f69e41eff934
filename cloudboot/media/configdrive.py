"""An OpenStack config drive: ISO 9660 with volume label `config-2`, laid out as Nova writes it.

Files (Nova's `nova/virt/configdrive.py` + `nova/api/metadata/base.py` layout, the versions we
need): `openstack/2012-08-10/meta_data.json` (+ `user_data`), and `openstack/latest/`
`meta_data.json`, `network_data.json`, `vendor_data.json` (+ `user_data`). `meta_data.json`
carries uuid, name, hostname, availability_zone, launch_index, the `meta` dict (where cloudboot
reads `cloudboot.*` keys) and public_keys; `latest` adds `keys` and `devices` as Nova does.

The ISO is written by Debian's `xorriso -as mkisofs -r -J` (what Nova does with genisoimage).
`cloudboot.media.iso` writes a single-purpose hybrid image with 8.3 names in the root directory
only; a config drive needs directories and long lower-case names (`meta_data.json`,
`network_data.json`, `2012-08-10`), which plain ISO 9660 cannot hold: Rock Ridge (what Linux
reads) and Joliet (what Windows guests read) carry them, and xorriso writes both. Dates come
from SOURCE_DATE_EPOCH, so the same input gives the same bytes.

The same JSON documents are what `lab.services.metadata` serves on 169.254.169.254.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cloudboot.fsutil import atomic_output

VOLUME_ID = "config-2"
VERSIONS = ("2012-08-10", "latest")
DEFAULT_TIMESTAMP = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
META_MAX = 255  # Nova: metadata keys and values are at most 255 characters


class ConfigDriveError(ValueError):
    """Bad instance metadata, or a config drive that cannot be written or read."""


@dataclass(frozen=True)
class InstanceMetadata:
    """What Nova knows about an instance, as far as a config drive carries it."""

    uuid: str
    name: str
    hostname: str | None = None  # None: the name
    availability_zone: str = "nova"
    meta: Mapping[str, str] = field(default_factory=dict)
    public_keys: Mapping[str, str] = field(default_factory=dict)  # key name -> OpenSSH key
    launch_index: int = 0
    project_id: str = "cloudboot-lab"
    mac: str = "52:54:00:12:34:56"  # the instance's NIC, for network_data.json
    user_data: bytes | None = None

    def validate(self) -> None:
        where = f"instance {self.name!r}"
        try:
            uuidlib.UUID(self.uuid)
        except ValueError:
            raise ConfigDriveError(f"{where}: uuid {self.uuid!r} is not a UUID") from None
        host = self.hostname if self.hostname is not None else self.name
        if not _HOSTNAME.match(host) or len(host) > 253:
            raise ConfigDriveError(f"{where}: hostname {host!r} is not a DNS name "
                                   "(letters, digits, '-', dots; labels of 1-63 characters)")
        if not _MAC.match(self.mac):
            raise ConfigDriveError(f"{where}: mac {self.mac!r} is not a lower-case "
                                   "aa:bb:cc:dd:ee:ff address")
        for k, v in self.meta.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ConfigDriveError(f"{where}: meta {k!r}: keys and values must be strings "
                                       f"(Nova's rule), got {type(v).__name__}")
            if not k or len(k) > META_MAX or len(v) > META_MAX:
                raise ConfigDriveError(f"{where}: meta {k[:40]!r}: key must be 1-{META_MAX} "
                                       f"and value 0-{META_MAX} characters")
        for k, v in self.public_keys.items():
            if not isinstance(v, str) or not v.startswith(("ssh-", "ecdsa-", "sk-")):
                raise ConfigDriveError(f"{where}: public key {k!r} is not an OpenSSH public "
                                       "key line")

    def meta_data(self, version: str = "latest") -> dict[str, object]:
        """meta_data.json for one metadata version."""
        self.validate()
        doc: dict[str, object] = {
            "uuid": self.uuid,
            "meta": dict(self.meta),
            "hostname": self.hostname if self.hostname is not None else self.name,
            "name": self.name,
            "launch_index": self.launch_index,
            "availability_zone": self.availability_zone,
        }
        if self.public_keys:
            doc["public_keys"] = dict(self.public_keys)
        if version != "2012-08-10":
            doc["project_id"] = self.project_id
            doc["devices"] = []
            if self.public_keys:
                doc["keys"] = [{"name": k, "type": "ssh", "data": v}
                               for k, v in self.public_keys.items()]
        return doc

    def network_data(self) -> dict[str, object]:
        """network_data.json (2015-10-15 and later): one physical link, DHCP on it."""
        link = "tap" + self.uuid.replace("-", "")[:11]
        return {
            "links": [{"id": link, "vif_id": self.uuid, "type": "phy", "mtu": 1500,
                       "ethernet_mac_address": self.mac}],
            "networks": [{"id": "network0", "type": "ipv4_dhcp", "link": link,
                          "network_id": self.uuid}],
            "services": [],
        }


def _json(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(", ", ": ")).encode()


def files(md: InstanceMetadata) -> dict[str, bytes]:
    """Every file of the drive: path (forward slashes, no leading slash) -> content."""
    md.validate()
    out: dict[str, bytes] = {}
    for version in VERSIONS:
        base = f"openstack/{version}"
        out[f"{base}/meta_data.json"] = _json(md.meta_data(version))
        if version != "2012-08-10":
            out[f"{base}/network_data.json"] = _json(md.network_data())
            out[f"{base}/vendor_data.json"] = _json({})
        if md.user_data is not None:
            out[f"{base}/user_data"] = md.user_data
    return dict(sorted(out.items()))


def _xorriso() -> str:
    path = shutil.which("xorriso")
    if path is None:
        raise ConfigDriveError("xorriso is not installed (apt-get install xorriso; "
                               "python -m cloudboot.debian.hostdeps ensure tests)")
    return path


def write(md: InstanceMetadata, out: Path,
          timestamp: dt.datetime = DEFAULT_TIMESTAMP) -> Path:
    """Write the config drive ISO to `out` (atomically); returns `out`."""
    content = files(md)
    xorriso = _xorriso()
    epoch = int(timestamp.timestamp())
    with tempfile.TemporaryDirectory(prefix="cb-configdrive-") as tmp:
        root = Path(tmp) / "root"
        for rel, data in content.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        for p in [root, *root.rglob("*")]:
            os.utime(p, (epoch, epoch))
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))
        with atomic_output(Path(out)) as tmp_out:
            tmp_out.unlink()  # xorriso refuses to overwrite a non-ISO file
            proc = subprocess.run(
                [xorriso, "-as", "mkisofs", "-o", str(tmp_out), "-V", VOLUME_ID,
                 "-publisher", "cloudboot", "-r", "-J", "-l", "-quiet", str(root)],
                capture_output=True, text=True, env=env, check=False)
            if proc.returncode != 0:
                raise ConfigDriveError(f"{out}: xorriso failed ({proc.returncode}): "
                                       f"{proc.stderr.strip()[-2000:]}")
    return Path(out)


def volume_id(iso: Path) -> str:
    """The primary volume descriptor's volume identifier (read directly, no tools)."""
    with open(iso, "rb") as f:
        f.seek(16 * 2048)
        pvd = f.read(2048)
    if len(pvd) < 2048 or pvd[0:6] != b"\x01CD001":
        raise ConfigDriveError(f"{iso}: no ISO 9660 primary volume descriptor at sector 16")
    return pvd[40:72].decode("ascii", "replace").rstrip(" ")


def read(iso: Path) -> dict[str, bytes]:
    """Every file on an ISO as Linux sees it (Rock Ridge names), via `xorriso -osirrox`."""
    volume_id(iso)  # a clear error for something that is no ISO at all (xorriso says 0)
    xorriso = _xorriso()
    with tempfile.TemporaryDirectory(prefix="cb-configdrive-read-") as tmp:
        dest = Path(tmp) / "x"
        proc = subprocess.run(
            [xorriso, "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(dest)],
            capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ConfigDriveError(f"{iso}: xorriso cannot read it ({proc.returncode}): "
                                   f"{proc.stderr.strip()[-2000:]}")
        return {p.relative_to(dest).as_posix(): p.read_bytes()
                for p in sorted(dest.rglob("*")) if p.is_file()}
