"""Path D's embedded configuration and boot media.

The network loader (`loader/d`) carries a fixed-size configuration block in its data section,
found by the magic `CLOUDBOOT-D-CFG1` (layout in `loader/d/config.h`). `embed_config` fills it
in after compilation; `build_d_loader` compiles the loader and embeds the configuration, and
`write_media` writes boot media with it as `\\EFI\\BOOT\\BOOT<ARCH>.EFI` (what
`cloudboot build --path d` calls).
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from cloudboot.arch import Arch
from cloudboot.fsutil import atomic_output

MAGIC = b"CLOUDBOOT-D-CFG1"
FLAG_FILLED = 1
FLAG_INSECURE = 2
# (name, offset, size) after the 16-byte magic, u32 size and u32 flags; mirrors config.h.
FIELDS = (("registry", 24, 128), ("repository", 152, 256), ("reference", 408, 136),
          ("cmdline", 544, 2048))
BLOCK_SIZE = 2592

_HOSTPORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$")
# OCI distribution spec: path components and tags.
_REPO = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)"
                   r"[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class NetConfigError(ValueError):
    """A configuration that does not fit the loader, or a loader without the block."""


@dataclass(frozen=True)
class NetConfig:
    registry: str  # host:port (an IP literal always works under the firmware's DNS)
    repository: str
    reference: str  # a tag or sha256:<hex>
    cmdline: str = ""  # "" = the artifact's cmdline layer
    insecure: bool = False  # plain http

    @classmethod
    def make(cls, registry: str, repository: str, *, tag: str | None = None,
             digest: str | None = None, cmdline: str | None = None,
             insecure: bool = False) -> NetConfig:
        if (tag is None) == (digest is None):
            raise NetConfigError("give exactly one of --tag and --digest")
        return cls(registry, repository, tag if tag is not None else str(digest),
                   cmdline or "", insecure)

    def validate(self) -> None:
        """Raise NetConfigError naming the field when a value is malformed or too long."""
        m = _HOSTPORT.match(self.registry)
        if not m or (m.group(1) is not None and not 0 < int(m.group(1)) < 65536):
            raise NetConfigError(f"--registry {self.registry!r}: expected host:port "
                                 "(e.g. 10.0.2.2:5000)")
        if not _REPO.match(self.repository):
            raise NetConfigError(f"--repo {self.repository!r}: not an OCI repository name "
                                 "(lowercase components separated by '/')")
        ref = self.reference
        if ref.startswith("sha256:"):
            if not _DIGEST.match(ref):
                raise NetConfigError(f"--digest {ref!r}: expected sha256:<64 lowercase hex>")
        elif not _TAG.match(ref):
            raise NetConfigError(f"--tag {ref!r}: not an OCI tag ([A-Za-z0-9_][A-Za-z0-9._-]"
                                 "{0,127})")
        if any(c in self.cmdline for c in "\0\n\r"):
            raise NetConfigError("--cmdline: must be one line without NUL characters")
        if any(ord(c) > 0xFFFF for c in self.cmdline):
            raise NetConfigError("--cmdline: characters beyond U+FFFF cannot go into UEFI "
                                 "load options (UCS-2)")
        for name, _off, size in FIELDS:
            raw = getattr(self, name).encode("utf-8")
            if len(raw) > size - 1:
                raise NetConfigError(f"{name}: {len(raw)} bytes do not fit the loader's "
                                     f"{size - 1}-byte field")


def find_block(efi: bytes) -> int:
    """Offset of the configuration block; NetConfigError when absent or ambiguous."""
    at = efi.find(MAGIC)
    if at < 0:
        raise NetConfigError(f"the loader has no {MAGIC.decode()} configuration block "
                             "(not a Path D loader?)")
    if efi.find(MAGIC, at + 1) >= 0:
        raise NetConfigError(f"the loader has more than one {MAGIC.decode()} block")
    if at + BLOCK_SIZE > len(efi):
        raise NetConfigError("the configuration block is cut off at the end of the file")
    size = struct.unpack_from("<I", efi, at + 16)[0]
    if size != BLOCK_SIZE:
        raise NetConfigError(f"the loader's configuration block is {size} bytes, this tool "
                             f"writes {BLOCK_SIZE}: rebuild the loader and the tool together")
    return at


def embed_config(efi_bytes: bytes, cfg: NetConfig) -> bytes:
    """The loader with `cfg` written into its configuration block (a new bytes object)."""
    cfg.validate()
    at = find_block(efi_bytes)
    out = bytearray(efi_bytes)
    flags = FLAG_FILLED | (FLAG_INSECURE if cfg.insecure else 0)
    struct.pack_into("<I", out, at + 20, flags)
    for name, off, size in FIELDS:
        raw = getattr(cfg, name).encode("utf-8")
        out[at + off:at + off + size] = raw.ljust(size, b"\0")
    return bytes(out)


def read_config(efi_bytes: bytes) -> NetConfig | None:
    """The configuration in a loader (None when it was never filled in)."""
    at = find_block(efi_bytes)
    flags = struct.unpack_from("<I", efi_bytes, at + 20)[0]
    if not flags & FLAG_FILLED:
        return None
    vals = {}
    for name, off, size in FIELDS:
        raw = efi_bytes[at + off:at + off + size]
        vals[name] = raw.split(b"\0", 1)[0].decode("utf-8")
    return NetConfig(vals["registry"], vals["repository"], vals["reference"], vals["cmdline"],
                     bool(flags & FLAG_INSECURE))


def write_media(arch: Arch, efi: bytes, out: Path) -> int:
    """`efi` as \\EFI\\BOOT\\BOOT<ARCH>.EFI: a hybrid ISO (ISO9660 + El Torito + GPT ESP) for
    a name ending .iso, else a GPT disk with one ESP (Path B's media writers); its size."""
    from cloudboot.loader.media import esp_disk, fat_image
    from cloudboot.media import gpt, iso
    from cloudboot.media.timestamps import build_time

    files = {f"EFI/BOOT/{arch.efi_boot_file}": efi}
    out = Path(out)
    if out.suffix.lower() != ".iso":
        return esp_disk(out, files, name="cloudboot-d")
    esp = fat_image(files, "CLOUDBOOT")
    digest = f"{zlib.crc32(esp):08x}"
    with atomic_output(out) as tmp, open(tmp, "r+b") as f:
        return int(iso.write_hybrid(f, io.BytesIO(esp), len(esp), volume_id="CLOUDBOOT-D",
                                    timestamp=build_time(),
                                    disk_guid=gpt.stable_guid(f"d-iso-disk:{digest}"),
                                    esp_guid=gpt.stable_guid(f"d-iso-esp:{digest}")))


def build_d_loader(arch: Arch | str, cfg: NetConfig) -> bytes:
    """Compile (cached) the Path D loader for `arch` and embed `cfg`."""
    from cloudboot.loader.compile import build_loader

    cfg.validate()
    return embed_config(build_loader(arch, "d").read_bytes(), cfg)
