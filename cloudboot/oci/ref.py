"""OCI references: `[oci://|http://|https://]host[:port]/repo[:tag|@digest]`.

The first path component is always the registry host: cloudboot has no default registry, so
`debian/kernel:12` is refused rather than silently sent to a registry the user did not name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_TAG = "latest"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*\Z")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}\Z|sha512:[a-f0-9]{128}\Z")
_HOST = re.compile(r"(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
                   r"(?::\d{1,5})?\Z")


class RefError(ValueError):
    """A reference cloudboot cannot parse; the message quotes it."""


@dataclass(frozen=True)
class Reference:
    host: str  # host[:port]
    repository: str
    tag: str | None = None
    digest: str | None = None
    scheme: str | None = None  # "http" / "https" when the ref said so; None: decided by caller

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest if pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.host, self.repository, None, digest, self.scheme)

    def __str__(self) -> str:
        tail = f"@{self.digest}" if self.digest else f":{self.tag or DEFAULT_TAG}"
        return f"{self.host}/{self.repository}{tail}"


def is_oci_ref(text: str) -> bool:
    """Whether text looks like a registry reference rather than a local path."""
    if text.startswith(("oci://", "http://", "https://")):
        return True
    if text.startswith(("/", ".", "file://")):
        return False
    try:
        parse_ref(text)
    except RefError:
        return False
    return True


def parse_ref(text: str) -> Reference:
    raw = text.strip()
    scheme = None
    for prefix in ("oci://", "http://", "https://"):
        if raw.startswith(prefix):
            raw = raw[len(prefix):]
            scheme = None if prefix == "oci://" else prefix[:-3]
            break
    host, sep, rest = raw.partition("/")
    if not sep or not rest:
        raise RefError(f"{text!r}: expected host[:port]/repository[:tag|@digest]")
    if not _HOST.match(host):
        raise RefError(f"{text!r}: {host!r} is not a registry host[:port]")
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise RefError(f"{text!r}: {digest!r} is not a sha256:/sha512: digest")
    tag = None
    name, colon, maybe_tag = rest.rpartition(":")
    if colon and "/" not in maybe_tag:
        rest, tag = name, maybe_tag
        if not _TAG.match(tag):
            raise RefError(f"{text!r}: {tag!r} is not a valid tag")
    if not _REPO.match(rest):
        raise RefError(f"{text!r}: {rest!r} is not a valid repository name (lower case, "
                       "digits, . _ - separators)")
    return Reference(host, rest, tag, digest, scheme)
