"""Media types: the OCI/Docker manifest types and cloudboot's layer types, in both spellings.

cloudboot writes `application/vnd.cloud-boot.*` and reads that and `application/vnd.cloudboot.*`
(the spelling some earlier pushes used); `role()` maps either to a short role name.
"""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((*MANIFESTS, *INDEXES))
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
TITLE = "org.opencontainers.image.title"

PREFIX = "application/vnd.cloud-boot."
ALT_PREFIXES = (PREFIX, "application/vnd.cloudboot.")
# role -> the suffix after the prefix
ROLES = {
    "kernel": "kernel.v1",
    "initrd": "initrd.v1",
    "modules": "modules.v1.cpio+gzip",
    "cmdline": "cmdline.v1",
    "plan": "plan.v1+hcl",
    "boot-config": "boot.config.v1+json",
    "modloop": "modloop.v1+squashfs",
    "squashfs": "squashfs.v1",
    "apkovl": "apkovl.v1+tar.gz",
}
_BY_SUFFIX = {suffix: role for role, suffix in ROLES.items()}
CONFIG = PREFIX + "config.v1+json"  # the artifact manifest's config (holds the platform)


def media_type(role: str) -> str:
    """The media type cloudboot writes for a role."""
    return PREFIX + ROLES[role]


def role(media: str) -> str | None:
    """The role of a layer media type in either spelling; None for anything else."""
    for prefix in ALT_PREFIXES:
        if media.startswith(prefix):
            return _BY_SUFFIX.get(media[len(prefix):])
    return None
