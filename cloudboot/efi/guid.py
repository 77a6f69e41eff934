"""GUIDs cloudboot uses, and their on-disk (EFI mixed-endian) encoding.

Standard library only: the guest init imports this.
"""

from __future__ import annotations

import uuid

# UEFI spec: Boot####, BootOrder, BootNext, ... live under this vendor GUID.
EFI_GLOBAL_VARIABLE = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

# Our own variables (DESIGN §5).
CLOUDBOOT_VENDOR = "c10ddb07-83c5-4d3e-9b76-1f4c0e7a3b8e"
CLOUDBOOT_TARGET = "CloudBootTarget"
CLOUDBOOT_CMDLINE = "CloudBootCmdline"
CLOUDBOOT_MARK = "CloudBootMark"
CLOUDBOOT_VAR_NAMES = (CLOUDBOOT_TARGET, CLOUDBOOT_CMDLINE, CLOUDBOOT_MARK)

# Vendor media device path under which Linux's EFI stub looks for LoadFile2 (initrd).
LINUX_EFI_INITRD_MEDIA_GUID = "5568e427-68fc-4f3d-ac74-ca555231cc68"

# GPT partition type of an EFI system partition.
ESP_PARTITION_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"


class GuidError(ValueError):
    pass


def normalize(guid_str: str) -> str:
    """Canonical lower-case 8-4-4-4-12 form; raises GuidError naming the bad text."""
    try:
        return str(uuid.UUID(guid_str.strip().strip("{}")))
    except (ValueError, AttributeError):
        raise GuidError(f"not a GUID: {guid_str!r}") from None


def to_bytes(guid_str: str) -> bytes:
    """EFI_GUID layout: first three fields little-endian, last eight bytes as written."""
    return uuid.UUID(normalize(guid_str)).bytes_le


def from_bytes(b: bytes, offset: int = 0) -> str:
    chunk = bytes(b[offset : offset + 16])
    if len(chunk) != 16:
        raise GuidError(f"GUID at offset {offset} needs 16 bytes, have {len(chunk)}")
    return str(uuid.UUID(bytes_le=chunk))
