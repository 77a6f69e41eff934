"""The guest's DHCP client and link set-up against a real dnsmasq, in network namespaces.

A veth pair joins two namespaces: the server side runs dnsmasq, the client side runs
cloudboot.init.net.links.bring_up in a child Python (`ip netns exec`), which prints its facts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudboot.init.net import dhcp
from cloudboot.init.net import links as net
from tests.helpers import host_only, need_tools

ROOT = Path(__file__).resolve().parents[2]
pytestmark = host_only(os.geteuid() != 0, "network namespaces need root")


@pytest.fixture(autouse=True)
def _tools() -> None:
    need_tools("ip", "dnsmasq")


CLIENT = """
import json, sys
from pathlib import Path
from cloudboot.init.net import links as net
cfg = net.parse_ip(sys.argv[1] or None, [d for d in sys.argv[2].split(",") if d])
facts = net.bring_up(cfg, link_timeout=5, dhcp_timeout=float(sys.argv[3]),
                     resolv=Path(sys.argv[4]))
print(json.dumps(facts.__dict__ | {"placeholders": facts.placeholders()}))
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Pair:
    """Two namespaces joined by a veth pair; server side 10.77.0.1/24."""

    def __init__(self, tmp: Path) -> None:
        tag = uuid.uuid4().hex[:6]
        self.srv, self.cli = f"cbsrv{tag}", f"cbcli{tag}"
        self.tmp = tmp
        self.dnsmasq: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Pair:
        _ip("netns", "add", self.srv)
        _ip("netns", "add", self.cli)
        _ip("link", "add", "veth-s", "netns", self.srv, "type", "veth", "peer", "name", "eth0",
            "netns", self.cli)
        _ip("-n", self.srv, "addr", "add", "10.77.0.1/24", "dev", "veth-s")
        _ip("-n", self.srv, "link", "set", "veth-s", "up")
        return self

    def serve(self, *extra: str) -> None:
        self.dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", self.srv, "dnsmasq", "--no-daemon", "--port=0",
             "--no-resolv", "--no-hosts", "--interface=veth-s", "--bind-interfaces",
             "--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,1h",
             "--dhcp-option=option:router,10.77.0.1",
             "--dhcp-option=option:dns-server,10.77.0.53,10.77.0.54",
             f"--dhcp-leasefile={self.tmp / 'leases'}", "--log-dhcp", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(0.3)

    def client(self, ip: str = "", dns: str = "", timeout: float = 20
               ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.cli, sys.executable, "-c", CLIENT, ip, dns,
             str(timeout), str(self.tmp / "resolv.conf")],
            capture_output=True, text=True, timeout=timeout + 30, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})

    def run_in_client(self, *cmd: str) -> str:
        return subprocess.run(["ip", "netns", "exec", self.cli, *cmd], capture_output=True,
                              text=True, check=True).stdout

    def __exit__(self, *exc: object) -> None:
        if self.dnsmasq is not None:
            self.dnsmasq.terminate()
            self.dnsmasq.wait(10)
        for ns in (self.srv, self.cli):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    with Pair(tmp_path) as p:
        yield p


def test_dhcp_lease_configures_link_route_and_resolv(pair: Pair, tmp_path: Path) -> None:
    pair.serve("--dhcp-option=option:domain-name,lab.test")
    out = pair.client()
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)
    assert facts["iface"] == "eth0" and facts["method"] == "dhcp"
    assert facts["address"].startswith("10.77.0.") and 50 <= int(facts["address"][8:]) <= 60
    assert facts["prefix"] == 24 and facts["gateway"] == "10.77.0.1"
    assert facts["dns"] == ["10.77.0.53", "10.77.0.54"]
    # The kernel really has the address and the default route.
    assert f"inet {facts['address']}/24" in pair.run_in_client("ip", "-4", "addr", "show", "eth0")
    assert "default via 10.77.0.1 dev eth0" in pair.run_in_client("ip", "route")
    resolv = (tmp_path / "resolv.conf").read_text()
    assert resolv == "nameserver 10.77.0.53\nnameserver 10.77.0.54\nsearch lab.test\n"
    assert facts["placeholders"]["IPSpec"].startswith(f"{facts['address']}::10.77.0.1:"
                                                      "255.255.255.0::eth0:none:10.77.0.53")
    # dnsmasq handed out exactly this lease to our MAC.
    leases = (tmp_path / "leases").read_text()
    assert facts["mac"] in leases and facts["address"] in leases


def test_cloudboot_dns_overrides_the_servers(pair: Pair, tmp_path: Path) -> None:
    pair.serve()
    out = pair.client(dns="192.0.2.7")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["dns"] == ["192.0.2.7"]
    assert (tmp_path / "resolv.conf").read_text() == "nameserver 192.0.2.7\n"


def test_static_ip_without_dhcp(pair: Pair, tmp_path: Path) -> None:
    out = pair.client(ip="10.77.0.9::10.77.0.1:255.255.255.0:guest:eth0:none:10.77.0.1")
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)
    assert (facts["method"], facts["address"], facts["hostname"]) == ("static", "10.77.0.9",
                                                                      "guest")
    assert "inet 10.77.0.9/24" in pair.run_in_client("ip", "-4", "addr", "show", "eth0")
    # and the server side can reach it: the link and the address are real
    ping = subprocess.run(["ip", "netns", "exec", pair.srv, "ping", "-c1", "-W2", "10.77.0.9"],
                          capture_output=True)
    if shutil.which("ping"):
        assert ping.returncode == 0


def test_no_server_times_out_with_a_clear_error(pair: Pair) -> None:
    out = pair.client(timeout=3)
    assert out.returncode != 0
    assert "dhcp on eth0: no lease after 3s (last sent: DISCOVER)" in out.stderr


def test_reservation_for_our_mac_is_honoured(pair: Pair) -> None:
    """The server keys its answer on the chaddr/client-id we send."""
    _ip("-n", pair.cli, "link", "set", "eth0", "address", "52:54:00:aa:bb:cc")
    pair.serve("--dhcp-host=52:54:00:aa:bb:cc,10.77.0.42,cbguest")
    out = pair.client()
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)
    assert (facts["address"], facts["mac"], facts["hostname"]) == (
        "10.77.0.42", "52:54:00:aa:bb:cc", "cbguest")


def test_message_layout() -> None:
    mac = bytes.fromhex("525400123456")
    msg = dhcp.build_message(dhcp.REQUEST, 0x01020304, mac, requested="10.0.2.15",
                             server="10.0.2.2", hostname="g")
    assert len(msg) >= 300 and msg[:4] == b"\x01\x01\x06\x00"
    assert msg[4:8] == b"\x01\x02\x03\x04" and msg[10:12] == b"\x80\x00"  # broadcast flag
    opts = dhcp.parse_options(msg[240:])
    assert opts[53] == b"\x03" and opts[50] == bytes([10, 0, 2, 15]) and opts[12] == b"g"
    assert opts[61] == b"\x01" + mac


def test_parse_ip_forms() -> None:
    assert net.parse_ip(None).method == "dhcp"
    assert net.parse_ip("dhcp").method == "dhcp"
    assert net.parse_ip("off").method == "off"
    c = net.parse_ip("192.0.2.5:192.0.2.1:192.0.2.1:255.255.0.0:h:ens3:off:192.0.2.53")
    assert (c.method, c.address, c.prefix, c.gateway, c.device, c.dns) == (
        "static", "192.0.2.5", 16, "192.0.2.1", "ens3", ["192.0.2.53"])
    assert net.parse_ip(":::::eth1:dhcp").device == "eth1"
    with pytest.raises(net.NetError, match="ip=300.1.1.1"):
        net.parse_ip("300.1.1.1::::::none")
