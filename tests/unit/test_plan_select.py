"""Target selection, subplans, cmdline placeholders and the check/show helpers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cloudboot.plan import (
    MAX_SUBPLAN_DEPTH,
    PlanError,
    check_main,
    eligible_targets,
    file_resolver,
    parse_plan,
    render_cmdline,
    select_target,
    show,
)
from cloudboot.plan.tool import check_main as check_to

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "plan.hcl"

MULTI = """\
target "pc" {
  arch   = "x86_64"
  kernel = "k:${arch}"
}
target "pi" {
  arch   = "arm64"
  kernel = "k:${arch}"
}
target "any" {
  kernel = "k:${arch}"
}
"""


def test_eligible_targets_accept_every_alias() -> None:
    plan = parse_plan(MULTI, "m.hcl", arch="x86_64")
    for arch in ("x86_64", "amd64", "x64"):
        assert [t.name for t in eligible_targets(plan, arch)] == ["pc", "any"]
    for arch in ("aarch64", "arm64"):
        got = eligible_targets(plan, arch)
        assert [(t.name, t.kernel) for t in got] == [("pi", "k:arm64"), ("any", "k:arm64")]
    assert [t.name for t in eligible_targets(plan, "riscv64")] == ["any"]


def test_select_by_name_reevaluates_for_the_arch() -> None:
    plan = parse_plan(MULTI, "m.hcl", arch="x86_64")
    target = select_target(plan, "arm64", "any")
    assert (target.name, target.kernel) == ("any", "k:arm64")
    assert select_target(plan, "amd64", "PC").name == "pc"  # names fold case when unique


def test_select_single_eligible_and_errors() -> None:
    two = parse_plan(MULTI.split('target "any"')[0], "m.hcl", arch="x86_64")
    assert select_target(two, "arm64").name == "pi"
    with pytest.raises(PlanError) as e:
        select_target(two, "riscv64")
    assert str(e.value) == "m.hcl: no target fits riscv64 (and no default_target)"
    three = parse_plan(MULTI, "m.hcl", arch="x86_64")
    with pytest.raises(PlanError) as e:
        select_target(three, "x86_64")
    assert str(e.value) == ("m.hcl: 2 targets fit x86_64 (pc, any) and there is no "
                            "default_target: choose one with cloudboot.target=")
    with pytest.raises(PlanError) as e:
        select_target(three, "x86_64", "nope")
    assert str(e.value) == 'm.hcl: no target "nope" (targets: pc, pi, any)'
    with pytest.raises(PlanError) as e:
        select_target(three, "x86_64", "pi")
    assert str(e.value) == 'm.hcl:5: target "pi": is for arm64, this machine is x86_64'
    with pytest.raises(PlanError) as e:
        select_target(three, "sparc")
    assert str(e.value).startswith("m.hcl: unknown architecture 'sparc'")


def test_default_target_wins_unless_a_name_is_given() -> None:
    plan = parse_plan('default_target = arch == "arm64" ? "pi" : "pc"\n' + MULTI, "m.hcl",
                      arch="x86_64")
    assert select_target(plan, "x86_64").name == "pc"
    assert select_target(plan, "arm64").name == "pi"
    assert select_target(plan, "arm64", "any").name == "any"
    with pytest.raises(PlanError) as e:
        select_target(parse_plan('default_target = "pi"\n' + MULTI, "m.hcl"), "amd64")
    assert str(e.value) == 'm.hcl:1: target "pi": is for arm64, this machine is x86_64'


def test_arch_inside_a_target_is_its_own_arch() -> None:
    plan = parse_plan(MULTI, "m.hcl", arch="x86_64")
    assert [t.kernel for t in plan.targets] == ["k:amd64", "k:arm64", "k:amd64"]


def write_plans(tmp_path: Path, plans: dict[str, str]) -> None:
    for name, text in plans.items():
        (tmp_path / name).write_text(text)


def test_subplans_are_followed_with_a_resolver(tmp_path: Path) -> None:
    write_plans(tmp_path, {
        "root.hcl": 'default_target = "lab"\ntarget "lab" {\n  subplan = "lab.hcl"\n}\n',
        "lab.hcl": 'default_target = "deb"\ntarget "deb" {\n  kernel = "deb:${arch}"\n}\n'
                   'target "x" {\n  subplan = "file://none.hcl"\n}\n',
    })
    root = parse_plan((tmp_path / "root.hcl").read_text(), str(tmp_path / "root.hcl"),
                      arch="arm64")
    assert select_target(root, "arm64").subplan == "lab.hcl"  # without resolver: the pointer
    target = select_target(root, "arm64", resolver=file_resolver(tmp_path))
    assert (target.name, target.kernel) == ("deb", "deb:arm64")
    assert target.filename == str(tmp_path / "lab.hcl")


def test_subplan_loops_and_depth_are_refused(tmp_path: Path) -> None:
    write_plans(tmp_path, {
        "a.hcl": 'target "t" {\n  subplan = "b.hcl"\n}\n',
        "b.hcl": '\ntarget "u" {\n  subplan = "a.hcl"\n}\n',
    })
    a = str(tmp_path / "a.hcl")
    b = str(tmp_path / "b.hcl")
    plan = parse_plan((tmp_path / "a.hcl").read_text(), a)
    with pytest.raises(PlanError) as e:
        select_target(plan, "x86_64", resolver=file_resolver(tmp_path))
    assert str(e.value) == f'{b}:2: target "u": subplan loop: {a} -> {b} -> {a}'

    deep = {f"p{i}.hcl": f'target "t{i}" {{\n  subplan = "p{i + 1}.hcl"\n}}\n'
            for i in range(MAX_SUBPLAN_DEPTH + 2)}
    write_plans(tmp_path, deep)
    top = str(tmp_path / "p0.hcl")
    plan = parse_plan(deep["p0.hcl"], top)
    with pytest.raises(PlanError) as e:
        select_target(plan, "x86_64", resolver=file_resolver(tmp_path))
    assert str(e.value) == (f'{tmp_path / "p8.hcl"}:1: target "t8": subplans nest deeper '
                            f"than {MAX_SUBPLAN_DEPTH}")

    with pytest.raises(PlanError) as e:
        select_target(parse_plan('target "m" {\n  subplan = "gone.hcl"\n}\n', "r.hcl"),
                      "x86_64", resolver=file_resolver(tmp_path))
    assert str(e.value).startswith('r.hcl:1: target "m": cannot load subplan gone.hcl: ')


def test_render_cmdline() -> None:
    facts = {"IP": "10.0.2.15", "IPSpec": "10.0.2.15::10.0.2.2:255.255.255.0::eth0:none",
             "Gateway": "10.0.2.2", "Iface": "eth0", "DNS": "10.0.2.3",
             "Registry": "10.0.2.2:5000", "Hostname": "vm1", "MAC": "52:54:00:12:34:56"}
    text = ("ip={{.IPSpec}} gw={{ .Gateway }} {{.IP}}/{{.Iface}}/{{.DNS}}/{{.Registry}}/"
            "{{.Hostname}}/{{.MAC}} {{.IP}}")
    assert render_cmdline(text, facts) == (
        "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:none gw=10.0.2.2 "
        "10.0.2.15/eth0/10.0.2.3/10.0.2.2:5000/vm1/52:54:00:12:34:56 10.0.2.15")
    assert render_cmdline("console=ttyS0 {x}", {}) == "console=ttyS0 {x}"
    with pytest.raises(PlanError) as e:
        render_cmdline("a {{.Foo}}", facts)
    assert str(e.value).startswith("unknown cmdline placeholder {{.Foo}} (known: {{.IP}},")
    target = select_target(parse_plan('target "t" {\n  kernel = "k"\n  cmdline = "ip={{.IP}}"\n'
                                      "}\n", "p.hcl"), "x86_64")
    with pytest.raises(PlanError) as e:
        render_cmdline(target.cmdline or "", {"Iface": "eth0", "IP": ""}, target=target)
    assert str(e.value) == ('p.hcl:1: target "t": cmdline placeholder {{.IP}} has no value '
                            "here (facts known: Iface)")


def test_show_is_json_and_resolved() -> None:
    from cloudboot.plan import load_plan

    data = show(load_plan(EXAMPLE), "riscv64")
    data = json.loads(json.dumps(data))
    assert data["arch"] == "riscv64" and data["selected"] == "debian"
    rescue = data["targets"][1]
    assert rescue["kernel"].endswith("/rescue/kernel:6.1-riscv64")
    assert rescue["source"] == "oci" and rescue["eligible"] is True


def test_check_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_main(str(EXAMPLE), "arm64") == 0
    assert f"{EXAMPLE}: ok, 2 targets (2 for aarch64), default debian" in capsys.readouterr().out
    write_plans(tmp_path, {
        "root.hcl": 'target "a" {\n  subplan = "sub.hcl"\n}\n'
                    'target "b" {\n  subplan = "oci://reg/plan:1"\n}\n',
        "sub.hcl": 'target "c" {\n  kernel = "k"\n  disk {}\n}\n',
    })
    out, err = io.StringIO(), io.StringIO()
    assert check_to(tmp_path / "root.hcl", "x86_64", out=out, err=err) == 1
    assert "subplan oci://reg/plan:1 is remote, not checked" in out.getvalue()
    sub = (tmp_path / "sub.hcl").resolve()
    assert err.getvalue() == (f'error: {sub}:3: target "c": two sources (kernel and disk); '
                              "a target has exactly one\n")
