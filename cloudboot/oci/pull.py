"""Pull what a boot needs: a manifest for this platform, a plan's text, role-tagged layers.

Standard library only (guest).
"""

from __future__ import annotations

from cloudboot.oci import mediatypes as mt
from cloudboot.oci.client import OCIError, Registry
from cloudboot.oci.manifest import Descriptor, Manifest, ManifestError, Platform, match_platform
from cloudboot.oci.ref import Reference

PLAN_CAP = 1 << 20


def resolve(reg: Registry, ref: Reference, platform: Platform) -> tuple[Reference, Manifest]:
    """The image manifest for `platform`: ref itself, or its index's entry for the platform
    (followed to a digest-pinned ref, so the manifest is verified too)."""
    manifest, digest, _ = reg.get_manifest(ref)
    if not manifest.is_index:
        return ref.with_digest(digest), manifest
    try:
        entry = match_platform(manifest, platform)
    except ManifestError as e:
        raise OCIError("platform", f"{ref}: {e}") from None
    child = ref.with_digest(entry.digest)
    sub, _, _ = reg.get_manifest(child)
    if sub.is_index:
        raise OCIError("manifest", f"{child}: an index inside an index is not supported")
    return child, sub


def layers_by_role(ref: Reference, manifest: Manifest,
                   roles: tuple[str, ...]) -> list[Descriptor]:
    """The layers with one of `roles`; a manifest with none of them is a media-type error."""
    found = [d for d in manifest.layers if d.role in roles]
    if not found:
        have = ", ".join(d.media_type for d in manifest.layers) or "no layers"
        want = ", ".join(mt.media_type(r) for r in roles)
        raise OCIError("media-type", f"{ref}: no layer of type {want} (has: {have})")
    return found


def fetch_plan(reg: Registry, ref: Reference, platform: Platform) -> tuple[str, str]:
    """(HCL text, a name for messages and subplan loop detection) of a pushed plan."""
    pinned, manifest = resolve(reg, ref, platform)
    layer = layers_by_role(pinned, manifest, ("plan",))[0]
    data = reg.blob_bytes(pinned, layer, PLAN_CAP)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise OCIError("media-type", f"{ref}: the plan layer is not UTF-8: {e}") from None
    return text, str(ref)
