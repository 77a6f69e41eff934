"""Bring up the first Ethernet link: `ip=` (klibc form) or DHCPv4; route; resolv.conf.

Configuration goes through the classic SIOCSIF*/SIOCADDRT ioctls on an AF_INET socket: they
cover one address and a default route, need no netlink message codec, and exist on every
kernel cloudboot boots. Standard library only: runs as PID 1 in the bootstrap initramfs.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cloudboot.init.net import dhcp

SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
SIOCSIFADDR, SIOCSIFNETMASK = 0x8916, 0x891C
SIOCADDRT = 0x890B
IFF_UP = 0x1
RTF_UP, RTF_GATEWAY = 0x1, 0x2
ARPHRD_ETHER = 1
SYS_NET = Path("/sys/class/net")
RESOLV = Path("/etc/resolv.conf")


class NetError(OSError):
    """The network could not be brought up; says which link and step."""


@dataclass
class NetConfig:
    """What the command line asks for (`ip=`, `cloudboot.dns=`)."""

    method: str = "dhcp"  # "dhcp" | "static" | "off"
    address: str | None = None
    prefix: int | None = None
    gateway: str | None = None
    hostname: str | None = None
    device: str | None = None
    dns: list[str] = field(default_factory=list)


@dataclass
class NetFacts:
    """What the link ended up with; also the `{{.IP}}`… placeholder values."""

    iface: str
    mac: str
    address: str
    prefix: int
    gateway: str | None
    dns: list[str]
    hostname: str | None
    method: str
    seconds: float = 0.0

    @property
    def netmask(self) -> str:
        return str(ipaddress.IPv4Network(f"0.0.0.0/{self.prefix}").netmask)

    def placeholders(self) -> dict[str, str]:
        ip_spec = ":".join([self.address, "", self.gateway or "", self.netmask,
                            self.hostname or "", self.iface, "none", *self.dns[:2]])
        return {"IP": self.address, "IPSpec": ip_spec, "Gateway": self.gateway or "",
                "Iface": self.iface, "DNS": ",".join(self.dns), "Hostname": self.hostname or "",
                "MAC": self.mac}


def parse_ip(value: str | None, dns: list[str] | None = None) -> NetConfig:
    """`ip=` in the kernel's nfsroot.txt form:
    `<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>`,
    or just `dhcp|on|any|both|off|none`."""
    cfg = NetConfig(dns=list(dns or []))
    if value is None or value in ("dhcp", "on", "any", "both", "bootp", "1", ""):
        return cfg
    if value in ("off", "none"):
        cfg.method = "off"
        return cfg
    parts = value.split(":")
    parts += [""] * (9 - len(parts))
    client, _server, gw, mask, host, dev, auto, dns0, dns1 = parts[:9]
    cfg.hostname, cfg.device = host or None, dev or None
    cfg.dns += [d for d in (dns0, dns1) if d and d not in cfg.dns]
    if auto in ("off", "none", "") and client:
        try:
            cfg.address = str(ipaddress.IPv4Address(client))
            cfg.prefix = ipaddress.IPv4Network(f"0.0.0.0/{mask or '255.255.255.0'}").prefixlen
            cfg.gateway = str(ipaddress.IPv4Address(gw)) if gw else None
        except ValueError as e:
            raise NetError(f"ip={value}: {e}") from None
        cfg.method = "static"
    elif auto in ("off", "none"):
        raise NetError(f"ip={value}: autoconf off needs a client address")
    return cfg


# --- links ----------------------------------------------------------------------------------
def ethernet_links(sys_net: Path = SYS_NET) -> list[str]:
    """Ethernet interfaces by ifindex (lo and other link types skipped)."""
    found = []
    for d in sys_net.iterdir() if sys_net.is_dir() else []:
        try:
            if int((d / "type").read_text()) != ARPHRD_ETHER or d.name == "lo":
                continue
            if (d / "wireless").exists() or (d / "bridge").exists():
                continue
            found.append((int((d / "ifindex").read_text()), d.name))
        except (OSError, ValueError):
            continue
    return [name for _, name in sorted(found)]


def wait_link(device: str | None, timeout: float, sys_net: Path = SYS_NET) -> str:
    """The named link, or the first Ethernet link, once it exists (drivers probe late)."""
    deadline = time.monotonic() + timeout
    while True:
        links = ethernet_links(sys_net)
        if device and (sys_net / device).exists():
            return device
        if not device and links:
            return links[0]
        if time.monotonic() >= deadline:
            want = device or "an Ethernet link"
            have = ", ".join(links) or "none"
            raise NetError(f"no {want} after {timeout:g}s (Ethernet links: {have}); is the "
                           "NIC's driver in the initramfs?")
        time.sleep(0.1)


def _ifreq(name: str, payload: bytes = b"") -> bytes:
    return struct.pack("16s", name.encode()) + payload.ljust(24, b"\0")


def _sockaddr_in(addr: str) -> bytes:
    return struct.pack("=H2s4s8s", socket.AF_INET, b"\0\0", socket.inet_aton(addr), b"")


def set_up(name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        got = fcntl.ioctl(s, SIOCGIFFLAGS, _ifreq(name))
        flags = struct.unpack("=H", got[16:18])[0]
        fcntl.ioctl(s, SIOCSIFFLAGS, _ifreq(name, struct.pack("=H", flags | IFF_UP)))


def set_address(name: str, address: str, prefix: int) -> None:
    mask = str(ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCSIFADDR, _ifreq(name, _sockaddr_in(address)))
        fcntl.ioctl(s, SIOCSIFNETMASK, _ifreq(name, _sockaddr_in(mask)))


def add_default_route(gateway: str, name: str) -> None:
    """struct rtentry with native alignment (the same layout code works on 32 and 64 bit)."""
    cname = ctypes.create_string_buffer(name.encode())  # rt_dev points here during the ioctl
    rt = struct.pack("@L16s16s16sHhLPhPLH", 0, _sockaddr_in("0.0.0.0"), _sockaddr_in(gateway),
                     _sockaddr_in("0.0.0.0"), RTF_UP | RTF_GATEWAY, 0, 0, 0, 0,
                     ctypes.addressof(cname), 0, 0)
    # EEXIST: the same default route is already there
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, \
            contextlib.suppress(FileExistsError):
        fcntl.ioctl(s, SIOCADDRT, rt)


def mac_of(name: str, sys_net: Path = SYS_NET) -> str:
    return (sys_net / name / "address").read_text().strip()


def write_resolv(dns: list[str], search: str | None = None, path: Path = RESOLV) -> None:
    lines = [f"nameserver {d}" for d in dns[:3]]
    if search:
        lines.append(f"search {search}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def bring_up(cfg: NetConfig, *, link_timeout: float = 15.0, dhcp_timeout: float = 30.0,
             resolv: Path | None = RESOLV, log: Callable[[str], None] | None = None,
             sys_net: Path = SYS_NET) -> NetFacts:
    """lo and the link up, address and default route set, resolv.conf written."""
    if cfg.method == "off":
        raise NetError("ip=off: the network is needed here (a plan/image/metadata URL is set)")
    t0 = time.monotonic()
    try:
        set_up("lo")
    except OSError as e:
        if log:
            log(f"warning: lo: {e}")
    name = wait_link(cfg.device, link_timeout, sys_net)
    try:
        set_up(name)
    except OSError as e:
        raise NetError(f"{name}: cannot set the link up: {e}") from None
    mac = mac_of(name, sys_net)
    if cfg.method == "static":
        assert cfg.address is not None and cfg.prefix is not None
        address, prefix, gateway, dns = cfg.address, cfg.prefix, cfg.gateway, list(cfg.dns)
        hostname, domain = cfg.hostname, None
    else:
        try:
            lease = dhcp.obtain(name, bytes.fromhex(mac.replace(":", "")),
                                timeout=dhcp_timeout, hostname=cfg.hostname, log=log)
        except OSError as e:
            raise NetError(str(e)) from None
        address, prefix, gateway = lease.address, lease.prefix, lease.router
        dns = cfg.dns or lease.dns  # cloudboot.dns= / ip= DNS win over the server's
        hostname, domain = cfg.hostname or lease.hostname, lease.domain
    try:
        set_address(name, address, prefix)
        if gateway:
            add_default_route(gateway, name)
    except OSError as e:
        raise NetError(f"{name}: cannot set {address}/{prefix} via {gateway}: {e}") from None
    if resolv is not None and dns:
        try:
            write_resolv(dns, domain, resolv)
        except OSError as e:
            if log:
                log(f"warning: {resolv}: {e}")
    return NetFacts(name, mac, address, prefix, gateway, dns, hostname, cfg.method,
                    round(time.monotonic() - t0, 3))
