"""EFI_LOAD_OPTION (the data of a Boot#### variable) and the option cloudboot writes.

Layout (UEFI spec 3.1.3): UINT32 Attributes, UINT16 FilePathListLength, CHAR16 Description[]
(NUL-terminated), FilePathList[FilePathListLength bytes], UINT8 OptionalData[rest].

Standard library only: the guest init imports this.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from cloudboot.efi import devpath
from cloudboot.efi import guid as _guid

LOAD_OPTION_ACTIVE = 0x00000001
LOAD_OPTION_FORCE_RECONNECT = 0x00000002
LOAD_OPTION_HIDDEN = 0x00000008
LOAD_OPTION_CATEGORY_APP = 0x00000100

DESCRIPTION_PREFIX = "cloud-boot "


class LoadOptionError(ValueError):
    pass


@dataclass(frozen=True)
class LoadOption:
    attributes: int
    description: str
    file_path_list: list[devpath.Node] = field(default_factory=list)
    optional_data: bytes = b""

    @property
    def active(self) -> bool:
        return bool(self.attributes & LOAD_OPTION_ACTIVE)

    @property
    def file_path(self) -> str | None:
        return devpath.file_path(self.file_path_list)

    def path_text(self) -> str:
        return devpath.to_text(self.file_path_list)

    def optional_text(self) -> str | None:
        """Optional data as text when it is NUL-terminated UCS-2 (kernel command lines are)."""
        return decode_ucs2_text(self.optional_data)

    def pack(self) -> bytes:
        return pack(self)


def encode_ucs2_text(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass") + b"\0\0"


def decode_ucs2_text(data: bytes) -> str | None:
    """`data` as text if it is NUL-terminated UCS-2 of printable characters, else None."""
    if len(data) < 2 or len(data) % 2 or not data.endswith(b"\0\0"):
        return None
    try:
        text = data[:-2].decode("utf-16-le")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def pack(option: LoadOption) -> bytes:
    paths = devpath.pack(option.file_path_list)
    if len(paths) > 0xFFFF:
        raise LoadOptionError(f"load option {option.description!r}: FilePathList too long "
                              f"({len(paths)} bytes, max 65535)")
    return (
        struct.pack("<IH", option.attributes, len(paths))
        + option.description.encode("utf-16-le", "surrogatepass")
        + b"\0\0"
        + paths
        + option.optional_data
    )


def unpack(data: bytes, where: str = "load option") -> LoadOption:
    """Decode an EFI_LOAD_OPTION; `where` (e.g. 'Boot0003') prefixes every error."""
    if len(data) < 6:
        raise LoadOptionError(f"{where}: truncated: {len(data)} byte(s), the header needs 6")
    attributes, path_len = struct.unpack_from("<IH", data)
    end = 6
    while True:
        if end + 2 > len(data):
            raise LoadOptionError(f"{where}: truncated: description has no NUL terminator "
                                  f"within {len(data)} bytes")
        if data[end : end + 2] == b"\0\0":
            break
        end += 2
    description = bytes(data[6:end]).decode("utf-16-le", "surrogatepass")
    paths_start = end + 2
    paths_end = paths_start + path_len
    if paths_end > len(data):
        raise LoadOptionError(
            f"{where}: truncated: FilePathList claims {path_len} bytes at offset {paths_start} "
            f"but only {len(data) - paths_start} remain"
        )
    try:
        nodes = devpath.parse(bytes(data[paths_start:paths_end]))
    except devpath.DevicePathError as e:
        raise LoadOptionError(f"{where} ({description!r}): bad FilePathList: {e}") from None
    return LoadOption(attributes, description, nodes, bytes(data[paths_end:]))


def is_cloudboot(option: LoadOption) -> bool:
    return option.description.startswith(DESCRIPTION_PREFIX)


def description_for(target: str) -> str:
    return DESCRIPTION_PREFIX + target


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(target: str) -> str:
    """The file-name form of a target name: only [A-Za-z0-9._-] kept (DESIGN §5)."""
    safe = _UNSAFE.sub("", target)
    if not safe:
        raise LoadOptionError(f"target {target!r} has no character usable in a file name")
    return safe


def staged_paths(target: str) -> tuple[str, str]:
    """(kernel, initrd) EFI paths on the cache ESP for `target`."""
    safe = safe_name(target)
    return f"\\EFI\\Linux\\{safe}-vmlinuz.efi", f"\\EFI\\Linux\\{safe}-initrd"


def cloudboot_option(
    target: str,
    partition_number: int,
    part_start_lba: int,
    part_size_lba: int,
    part_guid: str,
    kernel_path: str,
    initrd_path: str | None,
    cmdline: str,
) -> LoadOption:
    """The Boot#### cloudboot writes for Path C (DESIGN §5).

    Device path HD(part, GPT, partuuid, start, size)/File(kernel); optional data UCS-2
    'initrd=<initrd> <cmdline>' with a NUL, read by the kernel's EFI stub as its command line.
    """
    if not target:
        raise LoadOptionError("cloudboot_option: empty target name")
    if partition_number < 1:
        raise LoadOptionError(f"cloudboot_option({target!r}): partition number "
                              f"{partition_number} must be >= 1")
    nodes: list[devpath.Node] = [
        devpath.HardDrive(partition_number, part_start_lba, part_size_lba,
                          _guid.normalize(part_guid)),
        devpath.FilePath.of(kernel_path),
        devpath.End(),
    ]
    words = []
    if initrd_path:
        words.append("initrd=" + devpath.FilePath.of(initrd_path).path)
    if cmdline.strip():
        words.append(cmdline.strip())
    return LoadOption(LOAD_OPTION_ACTIVE, description_for(target), nodes,
                      encode_ucs2_text(" ".join(words)))
