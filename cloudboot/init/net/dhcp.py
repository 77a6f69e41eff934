"""A DHCPv4 client (RFC 2131) on an AF_PACKET socket: DISCOVER → OFFER → REQUEST → ACK.

Before the link has an address the kernel will not route UDP for us, so frames are sent and
received as raw IPv4 packets on a packet socket (SOCK_DGRAM: the kernel adds and strips the
Ethernet header). Standard library only: runs as PID 1 in the bootstrap initramfs.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

ETH_P_IP = 0x0800
CLIENT_PORT, SERVER_PORT = 68, 67
MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK = 1, 2, 3, 4, 5, 6
# subnet mask, router, DNS, hostname, domain, broadcast, lease time, server id
PARAMS = bytes([1, 3, 6, 12, 15, 28, 51, 54])
BROADCAST_MAC = b"\xff" * 6


class DHCPError(OSError):
    """No usable lease: says which interface and how far the exchange got."""


@dataclass
class Lease:
    address: str
    prefix: int
    router: str | None = None
    dns: list[str] = field(default_factory=list)
    server: str | None = None
    lease_seconds: int | None = None
    hostname: str | None = None
    domain: str | None = None


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ip_udp(payload: bytes) -> bytes:
    """0.0.0.0:68 -> 255.255.255.255:67; the UDP checksum is optional over IPv4 (0)."""
    udp = struct.pack("!HHHH", CLIENT_PORT, SERVER_PORT, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0x10, 20 + len(udp), 0, 0, 64, 17, 0,
                      bytes(4), b"\xff" * 4)
    hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
    return hdr + udp


def build_message(kind: int, xid: int, mac: bytes, secs: int = 0,
                  requested: str | None = None, server: str | None = None,
                  hostname: str | None = None) -> bytes:
    """A BOOTREQUEST with the broadcast flag (we cannot receive unicast before we have an
    address) and the options for `kind`."""
    fixed = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, min(secs, 0xFFFF),
                        0x8000, bytes(4), bytes(4), bytes(4), bytes(4), mac.ljust(16, b"\0"),
                        b"", b"")
    opts = bytearray([53, 1, kind, 61, 7, 1, *mac, 55, len(PARAMS), *PARAMS])
    if requested:
        opts += bytes([50, 4]) + socket.inet_aton(requested)
    if server:
        opts += bytes([54, 4]) + socket.inet_aton(server)
    if hostname:
        name = hostname.encode()[:63]
        opts += bytes([12, len(name)]) + name
    opts.append(255)
    msg = fixed + MAGIC + bytes(opts)
    return msg.ljust(300, b"\0")  # BOOTP minimum; some servers drop shorter ones


def parse_options(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(data):
            break
        n = data[i + 1]
        out[code] = out.get(code, b"") + data[i + 2:i + 2 + n]  # RFC 3396: long options split
        i += 2 + n
    return out


def parse_reply(packet: bytes, xid: int, mac: bytes) -> tuple[int, str, dict[int, bytes]] | None:
    """(message type, your-address, options) of a BOOTREPLY for us in an IPv4 packet."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 17:
        return None
    ihl = (packet[0] & 0xF) * 4
    udp = packet[ihl:ihl + 8]
    if len(udp) < 8 or struct.unpack("!H", udp[2:4])[0] != CLIENT_PORT:
        return None
    bootp = packet[ihl + 8:]
    if len(bootp) < 240 or bootp[0] != 2 or bootp[236:240] != MAGIC:
        return None
    if struct.unpack("!I", bootp[4:8])[0] != xid or bootp[28:34] != mac:
        return None
    opts = parse_options(bootp[240:])
    kind = opts.get(53, b"\0")[0]
    return kind, socket.inet_ntoa(bootp[16:20]), opts


def _addrs(raw: bytes) -> list[str]:
    return [socket.inet_ntoa(raw[i:i + 4]) for i in range(0, len(raw) - 3, 4)]


def lease_from(yiaddr: str, opts: dict[int, bytes]) -> Lease:
    mask = opts.get(1)
    prefix = ipaddress.IPv4Network(f"0.0.0.0/{socket.inet_ntoa(mask)}").prefixlen if (
        mask and len(mask) == 4) else 24
    routers = _addrs(opts.get(3, b""))
    lease = opts.get(51)
    server = opts.get(54)
    return Lease(
        address=yiaddr, prefix=prefix, router=routers[0] if routers else None,
        dns=_addrs(opts.get(6, b"")),
        server=socket.inet_ntoa(server) if server and len(server) == 4 else None,
        lease_seconds=struct.unpack("!I", lease)[0] if lease and len(lease) == 4 else None,
        hostname=opts[12].decode(errors="replace").strip("\0") if 12 in opts else None,
        domain=opts[15].decode(errors="replace").strip("\0") if 15 in opts else None,
    )


def obtain(ifname: str, mac: bytes, *, timeout: float = 30.0, hostname: str | None = None,
           log: Callable[[str], None] | None = None) -> Lease:
    """Run the exchange on ifname (which must be up); DHCPError after `timeout` seconds."""
    xid = int.from_bytes(os.urandom(4), "big")
    start = time.monotonic()
    deadline = start + timeout
    stage = "DISCOVER"
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    try:
        sock.bind((ifname, ETH_P_IP))
        offer: tuple[str, str] | None = None  # (address, server)
        interval = 1.0
        while time.monotonic() < deadline:
            secs = int(time.monotonic() - start)
            if offer is None:
                msg = build_message(DISCOVER, xid, mac, secs, hostname=hostname)
            else:
                msg = build_message(REQUEST, xid, mac, secs, requested=offer[0],
                                    server=offer[1], hostname=hostname)
            sock.sendto(_ip_udp(msg), (ifname, ETH_P_IP, 0, 1, BROADCAST_MAC))
            resend = min(time.monotonic() + interval, deadline)
            interval = min(interval * 2, 8.0)
            while (left := resend - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                got = parse_reply(sock.recv(4096), xid, mac)
                if got is None:
                    continue
                kind, yiaddr, opts = got
                server = opts.get(54)
                if offer is None and kind == OFFER and server and len(server) == 4:
                    offer = (yiaddr, socket.inet_ntoa(server))
                    stage = f"REQUEST {yiaddr} from {offer[1]}"
                    interval = 1.0
                    break
                if offer is not None and kind == ACK:
                    return lease_from(yiaddr, opts)
                if offer is not None and kind == NAK:
                    if log:
                        log(f"dhcp: {ifname}: NAK for {offer[0]}; starting over")
                    offer, stage, interval = None, "DISCOVER after NAK", 1.0
                    break
        raise DHCPError(f"dhcp on {ifname}: no lease after {timeout:g}s (last sent: {stage})")
    finally:
        sock.close()
