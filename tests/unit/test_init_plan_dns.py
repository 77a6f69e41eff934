"""A plan's `dns = [...]` reaches resolv.conf: it outranks DHCP and `cloudboot.dns=`, and
metadata's `cloudboot.dns` outranks it (DESIGN §5 precedence cmdline < plan < metadata)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from cloudboot.init import boot as boot_state
from cloudboot.init import main as init_main
from cloudboot.init.events import PREFIX, Events
from cloudboot.init.net import links as net
from cloudboot.init.net import netboot
from cloudboot.plan import load_plan

PLAN = '''
dns = ["192.0.2.53", "192.0.2.54"]
target "t" {
  disk { device = "LABEL=root" }
}
'''


def _boot(tmp_path: Path, out: io.StringIO) -> boot_state.Boot:
    boot = boot_state.Boot(boot_state.Options(sys_root=tmp_path / "sys"), Events([out]))
    boot.facts = net.NetFacts("eth0", "52:54:00:12:34:56", "10.0.2.15", 24, "10.0.2.2",
                              ["10.0.2.3"], None, "dhcp")
    return boot


def _events(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line[len(PREFIX):]) for line in out.getvalue().splitlines()
            if line.startswith(PREFIX)]


def test_plan_dns_replaces_the_dhcp_servers(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.hcl"
    plan_file.write_text(PLAN)
    out = io.StringIO()
    boot = _boot(tmp_path, out)
    boot.plan_dns = list(load_plan(plan_file, arch="x86_64").dns)
    resolv = tmp_path / "etc" / "resolv.conf"
    assert netboot.use_plan_dns(boot, resolv)
    assert resolv.read_text() == "nameserver 192.0.2.53\nnameserver 192.0.2.54\n"
    assert boot.facts.dns == ["192.0.2.53", "192.0.2.54"]
    assert boot.facts.placeholders()["DNS"] == "192.0.2.53,192.0.2.54"
    dns = [e for e in _events(out) if e["phase"] == "dns"]
    assert dns and dns[0]["source"] == "plan" and dns[0]["servers"] == boot.plan_dns


def test_metadata_dns_outranks_the_plan(tmp_path: Path) -> None:
    boot = _boot(tmp_path, io.StringIO())
    boot.plan_dns, boot.metadata_dns = ["192.0.2.53"], True
    resolv = tmp_path / "resolv.conf"
    assert not netboot.use_plan_dns(boot, resolv)
    assert not resolv.exists() and boot.facts.dns == ["10.0.2.3"]


def test_plan_source_applies_dns_when_the_network_is_up(tmp_path: Path,
                                                        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    plan_file = tmp_path / "plan.hcl"
    plan_file.write_text(PLAN)
    resolv = tmp_path / "resolv.conf"
    monkeypatch.setattr(net, "RESOLV", resolv)
    out = io.StringIO()
    boot = _boot(tmp_path, out)
    src = init_main.plan_source(boot, plan_file)
    assert src.device == "LABEL=root"
    assert resolv.read_text().startswith("nameserver 192.0.2.53\n")


def test_a_plan_without_dns_leaves_resolv_alone(tmp_path: Path) -> None:
    boot = _boot(tmp_path, io.StringIO())
    resolv = tmp_path / "resolv.conf"
    assert not netboot.use_plan_dns(boot, resolv)
    assert not resolv.exists()
