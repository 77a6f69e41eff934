"""OCI manifests and image indexes as small dataclasses, and platform matching."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cloudboot.oci import mediatypes as mt


class ManifestError(ValueError):
    """A manifest or index that is not what cloudboot can use."""


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """`linux/arm64`, `linux/arm/v7`."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"platform {text!r}: expected os/arch[/variant]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def to_json(self) -> dict[str, str]:
        out = {"os": self.os, "architecture": self.architecture}
        if self.variant:
            out["variant"] = self.variant
        return out


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: Platform | None = None

    @property
    def title(self) -> str | None:
        return self.annotations.get(mt.TITLE)

    @property
    def role(self) -> str | None:
        return mt.role(self.media_type)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                               "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out


@dataclass(frozen=True)
class Manifest:
    """An image manifest (layers) or an image index (manifests); `is_index` tells which."""

    media_type: str
    layers: list[Descriptor] = field(default_factory=list)
    manifests: list[Descriptor] = field(default_factory=list)
    config: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES


def _descriptor(data: Any, where: str) -> Descriptor:
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: descriptor is not an object")
    try:
        media, digest, size = data["mediaType"], data["digest"], data["size"]
    except KeyError as e:
        raise ManifestError(f"{where}: descriptor lacks {e.args[0]}") from None
    if not (isinstance(media, str) and isinstance(digest, str) and isinstance(size, int)
            and size >= 0 and ":" in digest):
        raise ManifestError(f"{where}: descriptor has a bad mediaType, digest or size")
    ann = data.get("annotations") or {}
    plat = data.get("platform")
    platform = None
    if isinstance(plat, dict) and plat.get("architecture"):
        platform = Platform(str(plat.get("os", "linux")), str(plat["architecture"]),
                            plat.get("variant") or None)
    return Descriptor(media, digest, size, {str(k): str(v) for k, v in ann.items()}
                      if isinstance(ann, dict) else {}, platform)


def parse_manifest(body: bytes, content_type: str | None, where: str) -> Manifest:
    """Parse manifest or index JSON; the body's mediaType wins over the HTTP Content-Type."""
    try:
        data = json.loads(body)
    except ValueError as e:
        raise ManifestError(f"{where}: manifest is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: manifest is not a JSON object")
    media = data.get("mediaType") or (content_type or "").split(";")[0].strip()
    if not media:  # an OCI manifest may omit mediaType; its shape tells
        media = mt.OCI_INDEX if "manifests" in data else mt.OCI_MANIFEST
    if media not in (*mt.MANIFESTS, *mt.INDEXES):
        raise ManifestError(f"{where}: unsupported manifest media type {media!r}")
    if media in mt.INDEXES:
        entries = data.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError(f"{where}: index has no manifests list")
        return Manifest(media, manifests=[_descriptor(d, f"{where} manifests[{i}]")
                                          for i, d in enumerate(entries)])
    layers = data.get("layers")
    if not isinstance(layers, list):
        raise ManifestError(f"{where}: manifest has no layers list")
    config = _descriptor(data["config"], f"{where} config") if "config" in data else None
    ann = data.get("annotations") if isinstance(data.get("annotations"), dict) else {}
    return Manifest(media, layers=[_descriptor(d, f"{where} layers[{i}]")
                                   for i, d in enumerate(layers)],
                    config=config, artifact_type=data.get("artifactType"),
                    annotations={str(k): str(v) for k, v in (ann or {}).items()})


def _variant_ok(want: str | None, have: str | None, arch: str) -> bool:
    if want is None or have is None:
        # arm64 manifests often say variant v8; an arm entry without a variant is v7-or-any
        return True
    return want == have


def match_platform(index: Manifest, want: Platform) -> Descriptor:
    """The index entry for `want`: os and architecture equal, variant equal when both give
    one (arm/v7 vs arm/v6 differ; an entry without a variant fits any). An exact variant
    match beats a variant-less entry."""
    fits = [d for d in index.manifests if d.platform is not None
            and d.platform.os == want.os and d.platform.architecture == want.architecture
            and _variant_ok(want.variant, d.platform.variant, want.architecture)]
    exact = [d for d in fits if d.platform and d.platform.variant == want.variant]
    if exact or fits:
        return (exact or fits)[0]
    have = ", ".join(str(d.platform) for d in index.manifests if d.platform) or "none"
    raise ManifestError(f"no manifest for {want} (the index has: {have})")
