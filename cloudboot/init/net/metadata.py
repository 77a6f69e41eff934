"""Metadata URL overrides (DESIGN §5): `{"cloudboot": {"key": "value"}}` → `cloudboot.key`.

`cloudboot.metadata.url=openstack` reads OpenStack's meta_data.json, where the keys live under
`meta` as `cloudboot.key` (or `cloudboot_key`: Nova metadata keys often avoid dots). Failures
are returned as a message for a warning, never raised: a boot must not die for metadata.
Standard library only: runs as PID 1 in the bootstrap initramfs.
"""

from __future__ import annotations

import importlib
import json
import urllib.parse
from dataclasses import dataclass, field

from cloudboot import httpmini

OPENSTACK_URL = "http://169.254.169.254/openstack/latest/meta_data.json"
TIMEOUT = 10.0
CAP = 1 << 20
# A name, not a literal: the initramfs closure follows import_module("…") literals, and
# ssl would bring libssl/libcrypto (~2.5 MB gzip). The guest is http-only unless ssl is packed.
TLS_MODULE = "ssl"


@dataclass
class Metadata:
    url: str
    overrides: dict[str, str] = field(default_factory=dict)  # "cloudboot.target" -> "x"
    error: str | None = None
    bytes: int = 0


def _scalar(value: object) -> str | None:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)  # e.g. dns = ["10.0.0.1", "10.0.0.2"]
    return None


def extract(data: object, openstack: bool) -> dict[str, str]:
    """The overrides in a parsed document; ValueError when it has none of our shape."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    out: dict[str, str] = {}
    if openstack:
        meta = data.get("meta")
        if not isinstance(meta, dict):
            raise ValueError("no \"meta\" object")
        for k, v in meta.items():
            key = str(k)
            if key.startswith(("cloudboot.", "cloudboot_")):
                name = "cloudboot." + key[len("cloudboot."):]
                s = _scalar(v)
                if s is not None:
                    out[name] = s
        if "cloudboot" in meta and isinstance(meta["cloudboot"], str):
            try:  # a whole JSON object in one Nova meta value
                inner = json.loads(meta["cloudboot"])
            except ValueError:
                inner = None
            if isinstance(inner, dict):
                out.update(extract({"cloudboot": inner}, openstack=False))
        return out
    section = data.get("cloudboot")
    if not isinstance(section, dict):
        raise ValueError("no \"cloudboot\" object")
    for k, v in section.items():
        s = _scalar(v)
        if s is None:
            raise ValueError(f"cloudboot.{k}: expected a string, number, bool or string list")
        out[f"cloudboot.{k}"] = s
    return out


def fetch(url: str, token: str | None = None, *, timeout: float = TIMEOUT,
          cap: int = CAP) -> Metadata:
    openstack = url == "openstack"
    real = OPENSTACK_URL if openstack else url
    md = Metadata(real)
    parts = urllib.parse.urlsplit(real)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        md.error = f"cloudboot.metadata.url={url}: expected an http(s) URL or 'openstack'"
        return md
    headers = {"User-Agent": "cloudboot", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        if parts.scheme == "https":
            # only when packed: a plain import would pull ssl + libcrypto into the closure
            ssl = importlib.import_module(TLS_MODULE)

            conn: httpmini.HTTPConnection = httpmini.HTTPSConnection(
                parts.netloc, timeout=timeout, context=ssl.create_default_context())
        else:
            conn = httpmini.HTTPConnection(parts.netloc, timeout=timeout)
        try:
            conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else "") or "/",
                         headers=headers)
            resp = conn.getresponse()
            body = resp.read(cap + 1)
        finally:
            conn.close()
    except ImportError:
        md.error = f"{real}: no TLS support in this initramfs"
        return md
    except (OSError, httpmini.HTTPException) as e:
        md.error = f"{real}: {type(e).__name__}: {e}"
        return md
    md.bytes = len(body)
    if resp.status != 200:
        md.error = f"{real}: HTTP {resp.status}"
        return md
    if len(body) > cap:
        md.error = f"{real}: larger than {cap} bytes"
        return md
    try:
        md.overrides = extract(json.loads(body), openstack)
    except ValueError as e:
        md.error = f"{real}: unusable metadata: {e}"
    return md


def as_cmdline(overrides: dict[str, str]) -> tuple[str, list[str]]:
    """Overrides as command-line text to append (last occurrence wins), and the keys that
    cannot be written that way."""
    words, skipped = [], []
    for k, v in overrides.items():
        if '"' in v or "\n" in v or not k.replace(".", "").replace("_", "").isalnum():
            skipped.append(k)
            continue
        words.append(f'{k}="{v}"' if any(c.isspace() for c in v) else f"{k}={v}")
    return " ".join(words), skipped
