"""Messaging device-path nodes (UEFI spec 10.3.4): SCSI, USB, MAC address, IPv4, IPv6, SATA,
NVMe and URI, each packing to exact bytes like the nodes in devnodes.py. Standard library
only: the guest init imports this.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from cloudboot.efi.devnodes import MESSAGING, DevicePathError, Node, exact_size


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
        exact_size(data, 4, "Scsi")
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
        exact_size(data, 2, "USB")
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
        exact_size(data, 33, "MAC")
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
        exact_size(data, 23, "IPv4")  # the old 19-byte form stays a RawNode

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
        exact_size(data, 56, "IPv6")

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
        exact_size(data, 6, "Sata")
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
        exact_size(data, 12, "NVMe")
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
