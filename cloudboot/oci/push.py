"""The push side (host only): artifacts and plans with oras-py, image indexes by plain HTTP.

oras-py uploads blobs and an image manifest well but has no image-index support (DESIGN §7),
so indexes are built here and PUT with cloudboot's own client.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cloudboot.oci import mediatypes as mt
from cloudboot.oci.client import OCIError, Registry
from cloudboot.oci.manifest import Platform
from cloudboot.oci.ref import Reference, parse_ref


@dataclass
class Pushed:
    ref: str
    digest: str
    size: int
    media_type: str


def _oras_client(ref: Reference, insecure: bool, username: str | None, password: str | None):  # type: ignore[no-untyped-def]
    import oras.client  # host-only dependency, imported here so the guest never sees it

    # oras-py's token backend treats a Basic challenge's realm as a token URL, and keeps the
    # first token it gets whatever scope a later challenge asks for (a pull token cannot
    # push). So: Basic registries get the basic backend; for Bearer ones we fetch a pull,push
    # token ourselves and hand it over.
    plain = ref.scheme == "http" or insecure
    challenge = _challenge(ref, plain) if username is not None else None
    bearer = challenge is not None and challenge.lower().startswith("bearer ")
    client = oras.client.OrasClient(insecure=plain,
                                    auth_backend="token" if bearer or username is None
                                    else "basic")
    if username is not None:
        client.auth.set_basic_auth(username, password or "")
    if bearer:
        assert challenge is not None
        token = Registry(insecure=plain, username=username, password=password).bearer_token(
            ref, challenge, "pull,push")
        if token:
            client.auth.set_token_auth(token)
    return client


def _challenge(ref: Reference, plain: bool) -> str | None:
    """The registry's `/v2/` WWW-Authenticate challenge, or None."""
    import urllib.error
    import urllib.request

    url = f"{'http' if plain else 'https'}://{ref.host}/v2/"
    try:
        with urllib.request.urlopen(url, timeout=10):
            return None
    except urllib.error.HTTPError as e:
        return e.headers.get("WWW-Authenticate") or None
    except OSError:
        return None  # unreachable: the push itself reports it


def _head(reg: Registry, ref: Reference) -> Pushed:
    manifest, digest, body = reg.get_manifest(ref)
    return Pushed(str(ref), digest, len(body), manifest.media_type)


def push_files(ref_text: str, files: list[tuple[Path, str, str]], *,
               platform: Platform | None = None, insecure: bool = False,
               username: str | None = None, password: str | None = None) -> Pushed:
    """Push (path, role, title) files as one artifact manifest; returns its digest.

    The manifest's config is a small JSON with the platform (os, architecture, variant), so a
    single-platform artifact says what it is for even without an index.
    """
    ref = parse_ref(ref_text)
    with tempfile.TemporaryDirectory(prefix="cloudboot-push-") as tmp:
        entries = []
        for i, (path, role, title) in enumerate(files):
            # oras titles a layer with the file's base name: stage each file under its title.
            d = Path(tmp) / str(i)
            d.mkdir()
            staged = d / title
            shutil.copyfile(path, staged)
            entries.append(f"{staged}:{mt.media_type(role)}")
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps(platform.to_json() if platform else {}, sort_keys=True))
        client = _oras_client(ref, insecure, username, password)
        try:
            client.push(target=str(ref), files=entries, disable_path_validation=True,
                        manifest_config=f"{config}:{mt.CONFIG}", quiet=True)
        except Exception as e:  # noqa: BLE001 - oras/requests raise many types; say which ref
            raise OCIError("network", f"push to {ref}: {type(e).__name__}: {e}") from None
    reg = Registry(insecure=insecure, username=username, password=password)
    return _head(reg, ref)


def push_artifact(ref_text: str, *, platform: Platform, kernel: Path | None = None,
                  initrds: list[Path] | None = None, modules: list[Path] | None = None,
                  cmdline: str | None = None, insecure: bool = False,
                  username: str | None = None, password: str | None = None) -> Pushed:
    files: list[tuple[Path, str, str]] = []
    if kernel is not None:
        files.append((kernel, "kernel", kernel.name))
    files += [(p, "initrd", p.name) for p in initrds or []]
    files += [(p, "modules", p.name) for p in modules or []]
    with tempfile.TemporaryDirectory(prefix="cloudboot-cmdline-") as tmp:
        if cmdline is not None:
            f = Path(tmp) / "cmdline"
            f.write_text(cmdline)
            files.append((f, "cmdline", "cmdline"))
        if not files:
            raise ValueError("push artifact: give at least one of --kernel, --initrd, "
                             "--modules, --cmdline")
        return push_files(ref_text, files, platform=platform, insecure=insecure,
                          username=username, password=password)


def push_plan(ref_text: str, plan: Path, *, insecure: bool = False,
              username: str | None = None, password: str | None = None) -> Pushed:
    return push_files(ref_text, [(plan, "plan", plan.name)], insecure=insecure,
                      username=username, password=password)


def push_index(ref_text: str, entries: list[tuple[Platform, str]], *, insecure: bool = False,
               username: str | None = None, password: str | None = None) -> Pushed:
    """PUT an OCI image index whose entries are existing manifests (platform, ref)."""
    ref = parse_ref(ref_text)
    reg = Registry(insecure=insecure, username=username, password=password)
    manifests = []
    for plat, entry_ref in entries:
        child = parse_ref(entry_ref)
        if child.scheme is None:  # entries are in the index's registry: same scheme
            child = dataclasses.replace(child, scheme=ref.scheme)
        if (child.host, child.repository) != (ref.host, ref.repository):
            raise ValueError(f"index entry {entry_ref}: must be in {ref.host}/{ref.repository}"
                             " (an index can only point into its own repository)")
        got = _head(reg, child)
        manifests.append({"mediaType": got.media_type, "digest": got.digest, "size": got.size,
                          "platform": plat.to_json()})
    body = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                       "manifests": manifests}, sort_keys=True).encode()
    r = reg.request("PUT", ref, f"/v2/{ref.repository}/manifests/{ref.reference}", body=body,
                    headers={"Content-Type": mt.OCI_INDEX}, push=True)
    if r.status not in (200, 201):
        raise OCIError("http", f"PUT index {ref}: HTTP {r.status} "
                       f"{r.body[:300].decode('utf-8', 'replace')}")
    return Pushed(str(ref), "sha256:" + hashlib.sha256(body).hexdigest(), len(body),
                  mt.OCI_INDEX)
