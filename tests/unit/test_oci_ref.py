"""OCI references, media types and platform matching (pure parsing, no network)."""

from __future__ import annotations

import json

import pytest

from cloudboot.oci import mediatypes as mt
from cloudboot.oci.manifest import ManifestError, Platform, match_platform, parse_manifest
from cloudboot.oci.ref import RefError, is_oci_ref, parse_ref

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text,host,repo,tag,digest,scheme", [
    ("reg.example:5000/plans/test:1", "reg.example:5000", "plans/test", "1", None, None),
    ("oci://10.0.2.100:5000/a/b", "10.0.2.100:5000", "a/b", None, None, None),
    ("http://localhost/x@" + D, "localhost", "x", None, D, "http"),
    ("https://ghcr.io/org/k:6.1-amd64@" + D, "ghcr.io", "org/k", "6.1-amd64", D, "https"),
])
def test_refs(text: str, host: str, repo: str, tag: str | None, digest: str | None,
              scheme: str | None) -> None:
    r = parse_ref(text)
    assert (r.host, r.repository, r.tag, r.digest, r.scheme) == (host, repo, tag, digest, scheme)
    assert r.reference == (digest or tag or "latest")


@pytest.mark.parametrize("text,why", [
    ("debian", "host"), ("reg:5000/", "host"), ("reg/Upper", "repository"),
    ("reg/a@sha256:12", "digest"), ("reg/a:bad tag", "tag"),
])
def test_bad_refs_say_what(text: str, why: str) -> None:
    with pytest.raises(RefError, match=why):
        parse_ref(text)


def test_plan_values_are_told_apart() -> None:
    assert is_oci_ref("10.0.2.100:5000/plans/test:1")
    assert not is_oci_ref("/etc/cloud-boot/plan.hcl")
    assert not is_oci_ref("sub.hcl") and not is_oci_ref("file://sub.hcl")


def test_both_spellings_map_to_roles() -> None:
    assert mt.role("application/vnd.cloud-boot.kernel.v1") == "kernel"
    assert mt.role("application/vnd.cloudboot.initrd.v1") == "initrd"
    assert mt.role("application/vnd.cloudboot.plan.v1+hcl") == "plan"
    assert mt.role("application/vnd.oci.image.layer.v1.tar") is None
    assert mt.media_type("modules") == "application/vnd.cloud-boot.modules.v1.cpio+gzip"


def _index(*plats: tuple[str, str, str | None]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": f"sha256:{i:064x}", "size": 1,
         "platform": {"os": o, "architecture": a, **({"variant": v} if v else {})}}
        for i, (o, a, v) in enumerate(plats)]}).encode()


def test_platform_match_with_arm_variants() -> None:
    idx = parse_manifest(_index(("linux", "arm", "v6"), ("linux", "arm", "v7"),
                                ("linux", "arm64", "v8"), ("linux", "amd64", None)), None, "t")
    assert idx.is_index
    assert match_platform(idx, Platform("linux", "arm", "v7")).platform == Platform(
        "linux", "arm", "v7")
    assert match_platform(idx, Platform("linux", "arm64")).platform.variant == "v8"
    assert match_platform(idx, Platform("linux", "amd64")).digest.endswith("3")
    with pytest.raises(ManifestError, match="no manifest for linux/riscv64.*linux/arm/v6"):
        match_platform(idx, Platform("linux", "riscv64"))
    only_v6 = parse_manifest(_index(("linux", "arm", "v6")), None, "t")
    with pytest.raises(ManifestError, match="linux/arm/v7"):
        match_platform(only_v6, Platform("linux", "arm", "v7"))


def test_garbage_manifests_are_refused_with_the_ref() -> None:
    with pytest.raises(ManifestError, match="reg/x: manifest is not JSON"):
        parse_manifest(b"<html>", None, "reg/x")
    with pytest.raises(ManifestError, match="unsupported manifest media type"):
        parse_manifest(b'{"mediaType": "text/plain", "layers": []}', None, "reg/x")
    with pytest.raises(ManifestError, match=r"layers\[0\]: descriptor lacks digest"):
        parse_manifest(b'{"layers": [{"mediaType": "a", "size": 1}]}', None, "reg/x")
