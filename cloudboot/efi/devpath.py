"""EFI device paths: the nodes cloudboot writes, and those OVMF/AAVMF write in their own Boot####.

A device path is a list of nodes: `parse(b)` decodes every node up to the end of `b` (End nodes
included, so a FilePathList of several paths survives), `pack(nodes)` encodes them again and
`to_text(nodes)` renders the UEFI spec's text form. Nodes we do not model, or whose bytes do not
re-encode identically through our model, are kept as `RawNode`, so pack(parse(b)) == b for any
well-formed input.

Standard library only: the guest init imports this.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence

from cloudboot.efi.devnodes import (
    ACPI,
    BBS,
    END,
    END_ENTIRE,
    END_INSTANCE,
    GPT,
    HARDWARE,
    MBR,
    MEDIA,
    MESSAGING,
    SIG_GUID,
    SIG_MBR,
    SIG_NONE,
    Acpi,
    CdRom,
    DevicePathError,
    End,
    EndInstance,
    FilePath,
    Fv,
    FvFile,
    HardDrive,
    Node,
    Pci,
    RawNode,
    VenHw,
    VenMedia,
    VenMsg,
    pci_root,
)
from cloudboot.efi.msgnodes import IPv4, IPv6, MacAddr, NVMe, Sata, Scsi, Uri, Usb

__all__ = [
    "HARDWARE",
    "ACPI",
    "MESSAGING",
    "MEDIA",
    "BBS",
    "END",
    "END_ENTIRE",
    "END_INSTANCE",
    "MBR",
    "GPT",
    "SIG_NONE",
    "SIG_MBR",
    "SIG_GUID",
    "DevicePathError",
    "Node",
    "RawNode",
    "End",
    "EndInstance",
    "Pci",
    "VenHw",
    "VenMsg",
    "VenMedia",
    "Acpi",
    "pci_root",
    "Scsi",
    "Usb",
    "MacAddr",
    "IPv4",
    "IPv6",
    "Sata",
    "NVMe",
    "Uri",
    "HardDrive",
    "CdRom",
    "FilePath",
    "FvFile",
    "Fv",
    "decode_node",
    "parse",
    "pack",
    "terminated",
    "paths",
    "to_text",
    "file_path",
    "hard_drive",
]

_DECODERS: dict[tuple[int, int], Callable[[bytes], Node]] = {
    (cls.TYPE, cls.SUBTYPE): cls.from_payload
    for cls in (End, EndInstance, Pci, VenHw, Acpi, Scsi, Usb, VenMsg, MacAddr, IPv4, IPv6,
                Sata, NVMe, Uri, HardDrive, CdRom, VenMedia, FilePath, FvFile, Fv)
}


def decode_node(node_type: int, subtype: int, data: bytes) -> Node:
    """Typed node if we model it and it re-encodes byte-identically, else a RawNode."""
    decoder = _DECODERS.get((node_type, subtype))
    if decoder is not None:
        try:
            node = decoder(data)
            if node.payload() == data:
                return node
        except (ValueError, struct.error, UnicodeError):
            pass
    return RawNode(node_type, subtype, bytes(data))


def parse(b: bytes) -> list[Node]:
    """Every node in `b`, End nodes included. Raises DevicePathError on malformed lengths."""
    nodes: list[Node] = []
    pos = 0
    while pos < len(b):
        if len(b) - pos < 4:
            raise DevicePathError(
                f"device path truncated at offset {pos}: {len(b) - pos} byte(s) left, "
                "a node header needs 4"
            )
        node_type, subtype, length = struct.unpack_from("<BBH", b, pos)
        if length < 4:
            raise DevicePathError(
                f"device path node at offset {pos} (type 0x{node_type:02x}, subtype "
                f"0x{subtype:02x}) has length {length}, less than its 4-byte header"
            )
        if pos + length > len(b):
            raise DevicePathError(
                f"device path node at offset {pos} (type 0x{node_type:02x}, subtype "
                f"0x{subtype:02x}) has length {length} but only {len(b) - pos} byte(s) remain"
            )
        nodes.append(decode_node(node_type, subtype, bytes(b[pos + 4 : pos + length])))
        pos += length
    return nodes


def pack(nodes: Iterable[Node]) -> bytes:
    return b"".join(n.pack() for n in nodes)


def terminated(nodes: Sequence[Node]) -> list[Node]:
    """`nodes` with an End node appended unless it already ends with one."""
    out = list(nodes)
    if not out or not isinstance(out[-1], End):
        out.append(End())
    return out


def paths(nodes: Sequence[Node]) -> list[list[Node]]:
    """Split a packed array of device paths (as in a FilePathList) at End nodes (dropped)."""
    out: list[list[Node]] = []
    current: list[Node] = []
    for n in nodes:
        if isinstance(n, End):
            out.append(current)
            current = []
        else:
            current.append(n)
    if current:
        out.append(current)
    return out


def to_text(nodes: Sequence[Node]) -> str:
    """UEFI text form; several paths (FilePathList) are joined with ' ; '."""
    rendered = []
    for path in paths(nodes):
        text = ""
        for n in path:
            if isinstance(n, EndInstance):
                text += ","
            else:
                text += ("" if not text or text.endswith(",") else "/") + n.text()
        rendered.append(text)
    return " ; ".join(rendered)


def file_path(nodes: Sequence[Node]) -> str | None:
    """The first FilePath in the first path, e.g. '\\EFI\\Linux\\x.efi'."""
    for n in paths(nodes)[0] if nodes else []:
        if isinstance(n, FilePath):
            return n.path
    return None


def hard_drive(nodes: Sequence[Node]) -> HardDrive | None:
    for n in paths(nodes)[0] if nodes else []:
        if isinstance(n, HardDrive):
            return n
    return None
