"""The device-path node kinds cloudboot models (UEFI spec 10.3), each packing to exact bytes.

Standard library only: the guest init imports this. Parsing and text live in devpath.
"""

from __future__ import annotations

import ipaddress
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


def _exact(data: bytes, size: int, what: str) -> None:
    if len(data) != size:
        raise ValueError(f"{what} node payload must be {size} bytes, got {len(data)}")


def _hex_tail(data: bytes) -> str:
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
        return f"Path({self.node_type},{self.node_subtype}{_hex_tail(self.data)})"


@dataclass(frozen=True)
class End(Node):
    """End of the whole device path."""

    TYPE = END
    SUBTYPE = END_ENTIRE

    def payload(self) -> bytes:
        return b""

    @classmethod
    def from_payload(cls, data: bytes) -> End:
        _exact(data, 0, "End")
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
        _exact(data, 0, "EndInstance")
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
        _exact(data, 2, "Pci")
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
        return f"{self.LABEL}({self.vendor_guid}{_hex_tail(self.data)})"


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
        _exact(data, 8, "Acpi")
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
class Scsi(Node):
    TYPE = MESSAGING
    SUBTYPE = 0x02
    pun: int
    lun: int

    def payload(self) -> bytes:
        return struct.pack("<HH", self.pun, self.lun)

    @classmethod
    def from_payload(cls, data: bytes) -> Scsi:
        _exact(data, 4, "Scsi")
        return cls(*struct.unpack("<HH", data))

    def text(self) -> str:
        return f"Scsi(0x{self.pun:X},0x{self.lun:X})"


@dataclass(frozen=True)
class Usb(Node):
    TYPE = MESSAGING
    SUBTYPE = 0x05
    port: int
    interface: int

    def payload(self) -> bytes:
        return struct.pack("<BB", self.port, self.interface)

    @classmethod
    def from_payload(cls, data: bytes) -> Usb:
        _exact(data, 2, "USB")
        return cls(*struct.unpack("<BB", data))

    def text(self) -> str:
        return f"USB(0x{self.port:X},0x{self.interface:X})"


@dataclass(frozen=True)
class MacAddr(Node):
    TYPE = MESSAGING
    SUBTYPE = 0x0B
    address: bytes  # always 32 bytes on the wire; the significant part depends on if_type
    if_type: int = 1

    def payload(self) -> bytes:
        if len(self.address) > 32:
            raise DevicePathError(f"MAC address too long: {len(self.address)} bytes (max 32)")
        return self.address.ljust(32, b"\0") + bytes([self.if_type])

    @classmethod
    def from_payload(cls, data: bytes) -> MacAddr:
        _exact(data, 33, "MAC")
        return cls(bytes(data[:32]), data[32])

    def text(self) -> str:
        # Ethernet (0) and IEEE 802 (1) addresses are 6 bytes; show all 32 for anything else.
        shown = self.address[:6] if self.if_type in (0, 1) else self.address.ljust(32, b"\0")
        return f"MAC({shown.hex().upper()},0x{self.if_type:X})"


def _protocol(p: int) -> str:
    return {6: "TCP", 17: "UDP"}.get(p, f"0x{p:X}")


@dataclass(frozen=True)
class IPv4(Node):
    TYPE = MESSAGING
    SUBTYPE = 0x0C
    local: str = "0.0.0.0"
    remote: str = "0.0.0.0"
    local_port: int = 0
    remote_port: int = 0
    protocol: int = 0
    static: bool = False
    gateway: str = "0.0.0.0"
    mask: str = "0.0.0.0"

    def payload(self) -> bytes:
        def a(s: str) -> bytes:
            return ipaddress.IPv4Address(s).packed

        return (
            a(self.local) + a(self.remote)
            + struct.pack("<HHHB", self.local_port, self.remote_port, self.protocol,
                          int(self.static))
            + a(self.gateway) + a(self.mask)
        )

    @classmethod
    def from_payload(cls, data: bytes) -> IPv4:
        _exact(data, 23, "IPv4")  # the old 19-byte form stays a RawNode

        def a(off: int) -> str:
            return str(ipaddress.IPv4Address(data[off : off + 4]))

        lport, rport, proto, static = struct.unpack_from("<HHHB", data, 8)
        if static > 1:
            raise ValueError("IPv4 StaticIpAddress must be 0 or 1")
        return cls(a(0), a(4), lport, rport, proto, bool(static), a(15), a(19))

    def text(self) -> str:
        mode = "Static" if self.static else "DHCP"
        return (f"IPv4({self.remote},{_protocol(self.protocol)},{mode},{self.local},"
                f"{self.gateway},{self.mask})")


@dataclass(frozen=True)
class IPv6(Node):
    TYPE = MESSAGING
    SUBTYPE = 0x0D
    local: str = "::"
    remote: str = "::"
    local_port: int = 0
    remote_port: int = 0
    protocol: int = 0
    origin: int = 0  # 0 static, 1 stateless auto-configuration, 2 stateful
    prefix_length: int = 0
    gateway: str = "::"

    def payload(self) -> bytes:
        def a(s: str) -> bytes:
            return ipaddress.IPv6Address(s).packed

        return (
            a(self.local) + a(self.remote)
            + struct.pack("<HHHBB", self.local_port, self.remote_port, self.protocol,
                          self.origin, self.prefix_length)
            + a(self.gateway)
        )

    @classmethod
    def from_payload(cls, data: bytes) -> IPv6:
        _exact(data, 56, "IPv6")

        def a(off: int) -> str:
            return str(ipaddress.IPv6Address(data[off : off + 16]))

        lport, rport, proto, origin, prefix = struct.unpack_from("<HHHBB", data, 32)
        return cls(a(0), a(16), lport, rport, proto, origin, prefix, a(40))

    def text(self) -> str:
        origin = {0: "Static", 1: "StatelessAutoConfigure", 2: "StatefulAutoConfigure"}.get(
            self.origin, f"0x{self.origin:X}"
        )
        return (f"IPv6({self.remote},{_protocol(self.protocol)},{origin},{self.local},"
                f"0x{self.prefix_length:X},{self.gateway})")


@dataclass(frozen=True)
class Sata(Node):
    TYPE = MESSAGING
    SUBTYPE = 0x12
    hba_port: int
    multiplier_port: int = 0xFFFF
    lun: int = 0

    def payload(self) -> bytes:
        return struct.pack("<HHH", self.hba_port, self.multiplier_port, self.lun)

    @classmethod
    def from_payload(cls, data: bytes) -> Sata:
        _exact(data, 6, "Sata")
        return cls(*struct.unpack("<HHH", data))

    def text(self) -> str:
        return f"Sata(0x{self.hba_port:X},0x{self.multiplier_port:X},0x{self.lun:X})"


@dataclass(frozen=True)
class NVMe(Node):
    TYPE = MESSAGING
    SUBTYPE = 0x17
    namespace_id: int
    eui64: bytes = bytes(8)

    def payload(self) -> bytes:
        if len(self.eui64) != 8:
            raise DevicePathError(f"NVMe EUI-64 must be 8 bytes, got {len(self.eui64)}")
        return struct.pack("<I", self.namespace_id) + self.eui64

    @classmethod
    def from_payload(cls, data: bytes) -> NVMe:
        _exact(data, 12, "NVMe")
        return cls(struct.unpack_from("<I", data)[0], bytes(data[4:]))

    def text(self) -> str:
        eui = "-".join(f"{b:02X}" for b in reversed(self.eui64))
        return f"NVMe(0x{self.namespace_id:X},{eui})"


@dataclass(frozen=True)
class Uri(Node):
    TYPE = MESSAGING
    SUBTYPE = 0x18
    uri: str = ""  # "" means: whatever DHCP offers

    def payload(self) -> bytes:
        # surrogateescape: arbitrary bytes survive a decode/encode round trip.
        return self.uri.encode("utf-8", "surrogateescape")

    @classmethod
    def from_payload(cls, data: bytes) -> Uri:
        return cls(bytes(data).decode("utf-8", "surrogateescape"))

    def text(self) -> str:
        return f"Uri({self.uri})"


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
        _exact(data, 38, "HardDrive")
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
        _exact(data, 20, "CDROM")
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
        _exact(data, 16, cls.LABEL)
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
