"""The device-path node kinds cloudboot models (UEFI spec 10.3), each packing to exact bytes:
the base class, End, hardware (PCI, vendor), ACPI and media (HardDrive, CD-ROM, file path,
firmware volumes) nodes. Messaging nodes (SCSI, USB, MAC, IP, SATA, NVMe, URI) are in
msgnodes.py. Standard library only: the guest init imports this. Parsing and text live in
devpath.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from cloudboot.efi import guid as _guid

HARDWARE, ACPI, MESSAGING, MEDIA, BBS, END = 0x01, 0x02, 0x03, 0x04, 0x05, 0x7F
END_ENTIRE, END_INSTANCE = 0xFF, 0x01

MBR, GPT = 1, 2  # HardDrive partition formats
SIG_NONE, SIG_MBR, SIG_GUID = 0, 1, 2  # HardDrive signature types

_PNP0A03 = 0x0A0341D0  # EISA "PNP0A03": PCI root bridge
_PNP0A08 = 0x0A0841D0  # EISA "PNP0A08": PCI Express root bridge


class DevicePathError(ValueError):
    pass


class Node:
    """One device-path node. Subclasses set TYPE/SUBTYPE and implement payload/from_payload."""

    TYPE: ClassVar[int]
    SUBTYPE: ClassVar[int]

    @property
    def type(self) -> int:
        return self.TYPE

    @property
    def subtype(self) -> int:
        return self.SUBTYPE

    def payload(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def from_payload(cls, data: bytes) -> Node:
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError

    def pack(self) -> bytes:
        data = self.payload()
        if len(data) + 4 > 0xFFFF:
            raise DevicePathError(
                f"{type(self).__name__} node too long: {len(data) + 4} bytes (max 65535)"
            )
        return struct.pack("<BBH", self.type, self.subtype, len(data) + 4) + data


def exact_size(data: bytes, size: int, what: str) -> None:
    if len(data) != size:
        raise ValueError(f"{what} node payload must be {size} bytes, got {len(data)}")


def hex_tail(data: bytes) -> str:
    return f",{data.hex().upper()}" if data else ""


@dataclass(frozen=True)
class RawNode(Node):
    """A node kept as bytes: unknown kinds, or bytes our model would not reproduce exactly."""

    node_type: int
    node_subtype: int
    data: bytes = b""

    @property
    def type(self) -> int:
        return self.node_type

    @property
    def subtype(self) -> int:
        return self.node_subtype

    def payload(self) -> bytes:
        return self.data

    def text(self) -> str:
        return f"Path({self.node_type},{self.node_subtype}{hex_tail(self.data)})"


@dataclass(frozen=True)
class End(Node):
    """End of the whole device path."""

    TYPE = END
    SUBTYPE = END_ENTIRE

    def payload(self) -> bytes:
        return b""

    @classmethod
    def from_payload(cls, data: bytes) -> End:
        exact_size(data, 0, "End")
        return cls()

    def text(self) -> str:
        return ""


@dataclass(frozen=True)
class EndInstance(Node):
    """Separates instances of a multi-instance path (rendered as ',')."""

    TYPE = END
    SUBTYPE = END_INSTANCE

    def payload(self) -> bytes:
        return b""

    @classmethod
    def from_payload(cls, data: bytes) -> EndInstance:
        exact_size(data, 0, "EndInstance")
        return cls()

    def text(self) -> str:
        return ","


@dataclass(frozen=True)
class Pci(Node):
    TYPE = HARDWARE
    SUBTYPE = 0x01
    device: int
    function: int

    def payload(self) -> bytes:
        return struct.pack("<BB", self.function, self.device)

    @classmethod
    def from_payload(cls, data: bytes) -> Pci:
        exact_size(data, 2, "Pci")
        function, device = struct.unpack("<BB", data)
        return cls(device, function)

    def text(self) -> str:
        return f"Pci(0x{self.device:X},0x{self.function:X})"


@dataclass(frozen=True)
class _Vendor(Node):
    vendor_guid: str
    data: bytes = b""
    LABEL: ClassVar[str] = "Ven"

    def payload(self) -> bytes:
        return _guid.to_bytes(self.vendor_guid) + self.data

    @classmethod
    def from_payload(cls, data: bytes) -> _Vendor:
        if len(data) < 16:
            raise ValueError(f"{cls.LABEL} node needs a 16-byte GUID, got {len(data)} bytes")
        return cls(_guid.from_bytes(data), bytes(data[16:]))

    def text(self) -> str:
        return f"{self.LABEL}({self.vendor_guid}{hex_tail(self.data)})"


@dataclass(frozen=True)
class VenHw(_Vendor):
    TYPE = HARDWARE
    SUBTYPE = 0x04
    LABEL = "VenHw"


@dataclass(frozen=True)
class VenMsg(_Vendor):
    TYPE = MESSAGING
    SUBTYPE = 0x0A
    LABEL = "VenMsg"


@dataclass(frozen=True)
class VenMedia(_Vendor):
    TYPE = MEDIA
    SUBTYPE = 0x03
    LABEL = "VenMedia"


def _eisa_text(hid: int) -> str:
    # Compressed EISA id: three 5-bit letters in the low word, product number in the high word.
    low = hid & 0xFFFF
    letters = "".join(chr(((low >> shift) & 0x1F) + 0x40) for shift in (10, 5, 0))
    return f"{letters}{hid >> 16:04X}"


@dataclass(frozen=True)
class Acpi(Node):
    TYPE = ACPI
    SUBTYPE = 0x01
    hid: int
    uid: int

    def payload(self) -> bytes:
        return struct.pack("<II", self.hid, self.uid)

    @classmethod
    def from_payload(cls, data: bytes) -> Acpi:
        exact_size(data, 8, "Acpi")
        return cls(*struct.unpack("<II", data))

    def text(self) -> str:
        if self.hid == _PNP0A03:
            return f"PciRoot(0x{self.uid:X})"
        if self.hid == _PNP0A08:
            return f"PcieRoot(0x{self.uid:X})"
        return f"Acpi({_eisa_text(self.hid)},0x{self.uid:X})"


def pci_root(uid: int = 0) -> Acpi:
    return Acpi(_PNP0A03, uid)


@dataclass(frozen=True)
class HardDrive(Node):
    TYPE = MEDIA
    SUBTYPE = 0x01
    partition_number: int
    start_lba: int
    size_lba: int
    signature: str  # GPT: partition GUID; MBR: "0x%08x" disk signature; none: ""
    partition_format: int = GPT
    signature_type: int = SIG_GUID

    def _signature_bytes(self) -> bytes:
        if self.signature_type == SIG_GUID:
            return _guid.to_bytes(self.signature)
        if self.signature_type == SIG_MBR:
            return struct.pack("<I", int(self.signature, 16)) + bytes(12)
        if self.signature_type == SIG_NONE:
            return bytes(16)
        raise DevicePathError(f"HardDrive signature type {self.signature_type} is not 0, 1 or 2")

    def payload(self) -> bytes:
        return (
            struct.pack("<IQQ", self.partition_number, self.start_lba, self.size_lba)
            + self._signature_bytes()
            + struct.pack("<BB", self.partition_format, self.signature_type)
        )

    @classmethod
    def from_payload(cls, data: bytes) -> HardDrive:
        exact_size(data, 38, "HardDrive")
        number, start, size = struct.unpack_from("<IQQ", data)
        fmt, sig_type = data[36], data[37]
        raw_sig = data[20:36]
        if sig_type == SIG_GUID:
            sig = _guid.from_bytes(raw_sig)
        elif sig_type == SIG_MBR:
            sig = f"0x{struct.unpack_from('<I', raw_sig)[0]:08x}"
        elif sig_type == SIG_NONE:
            sig = ""
        else:
            raise ValueError(f"unknown HardDrive signature type {sig_type}")
        return cls(number, start, size, sig, fmt, sig_type)

    def text(self) -> str:
        fmt = {MBR: "MBR", GPT: "GPT"}.get(self.partition_format, f"0x{self.partition_format:X}")
        sig = self.signature if self.signature_type != SIG_NONE else "0"
        return (f"HD({self.partition_number},{fmt},{sig},0x{self.start_lba:X},"
                f"0x{self.size_lba:X})")


@dataclass(frozen=True)
class CdRom(Node):
    TYPE = MEDIA
    SUBTYPE = 0x02
    boot_entry: int
    start_rba: int
    size_rba: int

    def payload(self) -> bytes:
        return struct.pack("<IQQ", self.boot_entry, self.start_rba, self.size_rba)

    @classmethod
    def from_payload(cls, data: bytes) -> CdRom:
        exact_size(data, 20, "CDROM")
        return cls(*struct.unpack("<IQQ", data))

    def text(self) -> str:
        return f"CDROM(0x{self.boot_entry:X},0x{self.start_rba:X},0x{self.size_rba:X})"


@dataclass(frozen=True)
class FilePath(Node):
    TYPE = MEDIA
    SUBTYPE = 0x04
    path: str  # as stored: UEFI uses backslashes

    @classmethod
    def of(cls, path: str) -> FilePath:
        """A FilePath from a POSIX-or-EFI style path, normalised to a leading backslash."""
        p = path.replace("/", "\\")
        return cls(p if p.startswith("\\") else "\\" + p)

    def payload(self) -> bytes:
        return self.path.encode("utf-16-le", "surrogatepass") + b"\0\0"

    @classmethod
    def from_payload(cls, data: bytes) -> FilePath:
        if len(data) % 2 or not data.endswith(b"\0\0"):
            raise ValueError("FilePath must be NUL-terminated UCS-2")
        return cls(bytes(data[:-2]).decode("utf-16-le", "surrogatepass"))

    def text(self) -> str:
        return self.path


@dataclass(frozen=True)
class _FvGuid(Node):
    name: str
    LABEL: ClassVar[str] = "Fv"

    def payload(self) -> bytes:
        return _guid.to_bytes(self.name)

    @classmethod
    def from_payload(cls, data: bytes) -> _FvGuid:
        exact_size(data, 16, cls.LABEL)
        return cls(_guid.from_bytes(data))

    def text(self) -> str:
        return f"{self.LABEL}({self.name})"


@dataclass(frozen=True)
class FvFile(_FvGuid):
    """PIWG firmware file (e.g. the UEFI shell or UiApp inside OVMF)."""

    TYPE = MEDIA
    SUBTYPE = 0x06
    LABEL = "FvFile"


@dataclass(frozen=True)
class Fv(_FvGuid):
    """PIWG firmware volume."""

    TYPE = MEDIA
    SUBTYPE = 0x07
    LABEL = "Fv"
