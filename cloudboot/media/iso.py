"""A hybrid boot image: ISO 9660 + El Torito (UEFI) + a GPT whose ESP is the same FAT image.

One FAT image holds `\\EFI\\BOOT\\BOOT<ARCH>.EFI`. Firmware reaches it either through the El
Torito catalog (CD-ROM) or through the GPT in the ISO's system area (disk, USB, virtio-blk).
The FAT image starts at 1 MiB so the ESP is aligned; every date comes from `timestamp`, so
the output is byte-for-byte reproducible.
"""

from __future__ import annotations

import datetime as dt
import struct
from typing import BinaryIO

from cloudboot.media import gpt

BLOCK = 2048
ESP_START_BLOCK = 512  # 1 MiB: aligned ESP, room for the system area and descriptors
PVD_BLOCK, BOOT_RECORD_BLOCK, TERMINATOR_BLOCK = 16, 17, 18
L_PATH_BLOCK, M_PATH_BLOCK, ROOT_BLOCK, CATALOG_BLOCK = 19, 20, 21, 22
TAIL_BLOCKS = 9  # >= 33 sectors of 512 bytes for the backup GPT
EFI_IMAGE_NAME = "EFIBOOT.IMG;1"
CATALOG_NAME = "BOOT.CAT;1"


def _both16(v: int) -> bytes:
    return struct.pack("<H", v) + struct.pack(">H", v)


def _both32(v: int) -> bytes:
    return struct.pack("<I", v) + struct.pack(">I", v)


def _dir_date(ts: dt.datetime) -> bytes:
    return bytes([ts.year - 1900, ts.month, ts.day, ts.hour, ts.minute, ts.second, 0])


def _vol_date(ts: dt.datetime | None) -> bytes:
    if ts is None:
        return b"0" * 16 + b"\0"
    return ts.strftime("%Y%m%d%H%M%S").encode() + b"00" + b"\0"


def _dir_record(name: bytes, extent: int, size: int, is_dir: bool, ts: dt.datetime) -> bytes:
    length = 33 + len(name) + (1 - len(name) % 2)
    rec = (
        bytes([length, 0]) + _both32(extent) + _both32(size) + _dir_date(ts)
        + bytes([2 if is_dir else 0, 0, 0]) + _both16(1) + bytes([len(name)]) + name
    )
    return rec.ljust(length, b"\0")


def _pad_str(text: str, n: int) -> bytes:
    return text.upper().encode("ascii")[:n].ljust(n, b" ")


def _pvd(volume_id: str, total_blocks: int, root: bytes, ts: dt.datetime) -> bytes:
    d = bytearray(BLOCK)
    d[0:8] = b"\x01CD001\x01\x00"
    d[8:40] = _pad_str("", 32)
    d[40:72] = _pad_str(volume_id, 32)
    d[80:88] = _both32(total_blocks)
    d[120:124] = _both16(1)
    d[124:128] = _both16(1)
    d[128:132] = _both16(BLOCK)
    d[132:140] = _both32(10)
    d[140:144] = struct.pack("<I", L_PATH_BLOCK)
    d[148:152] = struct.pack(">I", M_PATH_BLOCK)
    d[156:190] = root
    d[190:318] = _pad_str("", 128)
    d[318:446] = _pad_str("", 128)
    d[446:574] = _pad_str("CLOUDBOOT", 128)
    d[574:702] = _pad_str("CLOUDBOOT", 128)
    d[702:813] = b" " * 111
    d[813:830] = _vol_date(ts)
    d[830:847] = _vol_date(ts)
    d[847:864] = _vol_date(None)
    d[864:881] = _vol_date(None)
    d[881] = 1
    return bytes(d)


def _boot_record() -> bytes:
    d = bytearray(BLOCK)
    d[0:7] = b"\x00CD001\x01"
    d[7:39] = b"EL TORITO SPECIFICATION".ljust(32, b"\0")
    struct.pack_into("<I", d, 0x47, CATALOG_BLOCK)
    return bytes(d)


def _catalog(image_block: int, image_bytes: int) -> bytes:
    validation = bytearray(32)
    validation[0] = 1
    validation[1] = 0xEF  # platform: EFI
    validation[4:28] = b"CLOUDBOOT".ljust(24, b"\0")
    validation[30:32] = b"\x55\xaa"
    checksum = -sum(struct.unpack("<16H", bytes(validation))) & 0xFFFF
    struct.pack_into("<H", validation, 28, checksum)
    # Sector count is in 512-byte units and only 16 bits wide; for a larger image, 1 tells
    # UEFI firmware to use the image up to the end of the medium (the FAT knows its size).
    sectors = image_bytes // 512
    count = sectors if sectors <= 0xFFFF else 1
    default = struct.pack("<BBHBBHI", 0x88, 0, 0, 0, 0, count, image_block).ljust(32, b"\0")
    return (bytes(validation) + default).ljust(BLOCK, b"\0")


def write_hybrid(out: BinaryIO, efi_image: BinaryIO, efi_size: int, *, volume_id: str,
                 timestamp: dt.datetime, disk_guid: str, esp_guid: str) -> int:
    """Write the hybrid image; `efi_image` is a FAT image of `efi_size` bytes (multiple of 2048).

    Returns the total size in bytes.
    """
    if efi_size % BLOCK:
        raise ValueError("EFI image size must be a multiple of 2048")
    efi_blocks = efi_size // BLOCK
    total_blocks = ESP_START_BLOCK + efi_blocks + TAIL_BLOCKS
    ts = timestamp.replace(tzinfo=None, microsecond=0)
    root_self = _dir_record(b"\0", ROOT_BLOCK, BLOCK, True, ts)
    root = (
        root_self
        + _dir_record(b"\x01", ROOT_BLOCK, BLOCK, True, ts)
        + _dir_record(CATALOG_NAME.encode(), CATALOG_BLOCK, BLOCK, False, ts)
        + _dir_record(EFI_IMAGE_NAME.encode(), ESP_START_BLOCK, efi_size, False, ts)
    )
    path_entry_l = struct.pack("<BBIH", 1, 0, ROOT_BLOCK, 1) + b"\0\0"
    path_entry_m = struct.pack(">BBIH", 1, 0, ROOT_BLOCK, 1) + b"\0\0"
    blocks = {
        PVD_BLOCK: _pvd(volume_id, total_blocks, root_self, ts),
        BOOT_RECORD_BLOCK: _boot_record(),
        TERMINATOR_BLOCK: b"\xffCD001\x01".ljust(BLOCK, b"\0"),
        L_PATH_BLOCK: path_entry_l.ljust(BLOCK, b"\0"),
        M_PATH_BLOCK: path_entry_m.ljust(BLOCK, b"\0"),
        ROOT_BLOCK: root.ljust(BLOCK, b"\0"),
        CATALOG_BLOCK: _catalog(ESP_START_BLOCK, efi_size),
    }
    total_bytes = total_blocks * BLOCK
    out.truncate(total_bytes)
    for block, data in blocks.items():
        out.seek(block * BLOCK)
        out.write(data)
    out.seek(ESP_START_BLOCK * BLOCK)
    efi_image.seek(0)
    while chunk := efi_image.read(1 << 20):
        out.write(chunk)
    first = ESP_START_BLOCK * BLOCK // 512
    esp = gpt.Partition(gpt.ESP_TYPE, esp_guid, "cloudboot-esp", first,
                        first + efi_size // 512 - 1)
    gpt.write_gpt(out, total_bytes // 512, disk_guid, [esp])
    return total_bytes
