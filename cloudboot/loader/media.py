"""Path B boot media: the loader as `\\EFI\\BOOT\\BOOT<ARCH>.EFI` on a hybrid boot.iso or on a
GPT disk with one ESP, optionally with a `\\cmdline` file beside it.

`esp_disk` is also how the lab makes a FAT volume holding `\\EFI\\Linux\\<name>.efi` (a UKI that
Path B boots by name).
"""

from __future__ import annotations

import io
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

from cloudboot.arch import Arch
from cloudboot.fsutil import atomic_output
from cloudboot.loader.compile import build_loader
from cloudboot.media import gpt, iso
from cloudboot.media.fat import FatBuilder, FatError, geometry
from cloudboot.media.timestamps import build_time, reproducible

MIB = 1024 * 1024
ALIGN = 2048  # sectors


class MediaError(RuntimeError):
    pass


@dataclass(frozen=True)
class BMedia:
    path: Path
    kind: str  # "iso" | "disk"
    loader: Path
    size: int
    cmdline: str | None


def fat_image(files: dict[str, bytes], label: str) -> bytes:
    """A FAT image just large enough for `files` (FAT16; FAT32 at ≥ 40 MiB when too big)."""
    fat = FatBuilder()
    for name, data in files.items():
        fat.add_file(name, data)
    total = sum(len(d) for d in files.values())
    size = max(4 * MIB, -(-(total * 103 // 100 + MIB) // MIB) * MIB)
    bits = 16
    try:
        geometry(size, 16)
    except (ValueError, FatError):
        bits, size = 32, max(size, 40 * MIB)
    out = io.BytesIO()
    out.truncate(size)
    seed = "\0".join(sorted(files)).encode()
    fat.write(out, 0, size, fat_bits=bits, label=label, volume_id=zlib.crc32(seed),
              timestamp=build_time())
    return out.getvalue().ljust(size, b"\0")


def esp_disk(out: Path, files: dict[str, bytes], *, label: str = "CLOUDBOOT",
             name: str = "cloudboot-esp") -> int:
    """Write a GPT disk image with one EFI System Partition holding `files`; returns its size."""
    image = fat_image(files, label)
    part_sectors = len(image) // 512
    total = ALIGN + part_sectors + ALIGN  # room for the backup GPT at the end
    if reproducible():
        disk_guid = gpt.stable_guid(f"b-disk:{zlib.crc32(image):08x}")
        part_guid = gpt.stable_guid(f"b-esp:{zlib.crc32(image):08x}")
    else:
        disk_guid, part_guid = str(uuid.uuid4()), str(uuid.uuid4())
    with atomic_output(out) as tmp, open(tmp, "r+b") as f:
        f.truncate(total * 512)
        gpt.write_gpt(f, total, disk_guid, [
            gpt.Partition(gpt.ESP_TYPE, part_guid, name, ALIGN, ALIGN + part_sectors - 1)])
        f.seek(ALIGN * 512)
        f.write(image)
    return total * 512


def b_files(arch: Arch, loader: bytes, cmdline: str | None) -> dict[str, bytes]:
    files = {f"EFI/BOOT/{arch.efi_boot_file}": loader}
    if cmdline is not None:
        if not cmdline.strip() or any(ord(c) < 0x20 for c in cmdline):
            raise MediaError(f"--cmdline {cmdline!r}: empty or holds control characters")
        files["cmdline"] = cmdline.encode("utf-8") + b"\n"
    return files


def build_b_media(arch: Arch, out: Path, *, cmdline: str | None = None,
                  kind: str | None = None) -> BMedia:
    """Build the Path B loader and write it to `out`: a hybrid ISO when `kind` is "iso" (the
    default for a name ending .iso), else a GPT disk image with one ESP."""
    out = Path(out)
    kind = kind or ("iso" if out.suffix.lower() == ".iso" else "disk")
    if kind not in ("iso", "disk"):
        raise MediaError(f"media kind {kind!r}: expected iso or disk")
    loader = build_loader(arch, "b")
    files = b_files(arch, loader.read_bytes(), cmdline)
    if kind == "disk":
        size = esp_disk(out, files, name="cloudboot-b")
    else:
        esp = fat_image(files, "CLOUDBOOT")
        digest = f"{zlib.crc32(esp):08x}"
        with atomic_output(out) as tmp, open(tmp, "r+b") as f:
            size = iso.write_hybrid(
                f, io.BytesIO(esp), len(esp), volume_id="CLOUDBOOT", timestamp=build_time(),
                disk_guid=gpt.stable_guid(f"b-iso-disk:{digest}"),
                esp_guid=gpt.stable_guid(f"b-iso-esp:{digest}"))
    return BMedia(out, kind, loader, size, cmdline)
