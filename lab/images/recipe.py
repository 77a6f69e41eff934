"""Image recipes: everything that decides an image's bytes, hashed into its cache key."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass

from lab.images.rootfs import RootfsRecipe

# Bump when the build steps change in a way the recipe fields do not show.
BUILDER_VERSION = 1

# Fixed namespace so the UUIDs of an image follow from its key (stable across rebuilds).
_UUID_NAMESPACE = uuid.UUID("6d1f3f6e-2b8a-4c35-9a57-0c1b0d7e5a21")


@dataclass(frozen=True)
class FileSpec:
    path: str  # inside the image, no leading slash
    mode: int
    text: str = ""
    symlink: str | None = None  # when set, `path` is a symlink to this target


@dataclass(frozen=True)
class ImageRecipe:
    release: str
    fs: str
    arch: str
    label: str
    packages: tuple[str, ...]
    files: tuple[FileSpec, ...]
    purge: tuple[str, ...] = ()  # packages of the shared tree this image removes
    builder: int = BUILDER_VERSION

    def rootfs(self) -> RootfsRecipe:
        return RootfsRecipe(self.release, self.arch, self.packages)

    def key(self) -> str:
        return canonical_hash(asdict(self))

    def derived_uuid(self, purpose: str) -> str:
        return derive_uuid(self.key(), purpose)


def derive_uuid(key: str, purpose: str) -> str:
    """A UUID that follows from a cache key, so a rebuilt image keeps its identifiers."""
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{key}:{purpose}"))


def canonical_hash(value: object) -> str:
    """sha256 of a canonical JSON form: key order and formatting never change the hash."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()
