"""The plan schema: good plans give the right Plan, bad ones an error naming file, line, target."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cloudboot.plan import DiskSource, Menu, PlanError, Target, load_plan, parse_plan

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "plan.hcl"


def plan_of(text: str, arch: str = "x86_64"):  # type: ignore[no-untyped-def]
    return parse_plan(textwrap.dedent(text), "plan.hcl", arch=arch)


def test_full_plan() -> None:
    plan = plan_of(
        """\
        default_target = "deb"
        dns = ["10.0.2.3", "2001:db8::1"]
        menu {
          timeout = "5"
          prompt  = "Pick"
        }
        locals {
          reg = "reg.example:5000"
        }
        locals {
          ver = 12
        }
        target "deb" {
          version = local.ver
          label   = "Debian ${self.version} on ${self.name}"
          cmdline = ["console=ttyS0", ["ro", null], "quiet"]
          disk {
            device = "LABEL=cloudimg-rootfs"
            fs     = "ext4"
            kernel = "/boot/vmlinuz"
            initrd = "/boot/initrd.img"
          }
        }
        target "oci" {
          arch    = "arm64"
          kernel  = "${local.reg}/k:${self.arch}"
          initrd  = "${local.reg}/i:${arch}"
          modules = ["${local.reg}/m:1"]
          cmdline = "ip={{.IPSpec}}"
        }
        target "multi" {
          index = "${local.reg}/idx:1"
        }
        target "chain" {
          subplan = "child.hcl"
        }
        """
    )
    assert plan.default_target == "deb" and plan.default_line == 1
    assert plan.dns == ["10.0.2.3", "2001:db8::1"]
    assert plan.menu == Menu(timeout=5, prompt="Pick")
    assert plan.locals == {"reg": "reg.example:5000", "ver": 12}
    deb, oci, multi, chain = plan.targets
    assert deb == Target(
        name="deb", version="12", label="Debian 12 on deb", cmdline="console=ttyS0 ro quiet",
        disk=DiskSource("LABEL=cloudimg-rootfs", "ext4", "/boot/vmlinuz", "/boot/initrd.img"),
        line=13, filename="plan.hcl",
    )
    assert deb.source == "disk"
    assert (oci.arch, oci.kernel, oci.initrd, oci.modules, oci.source) == (
        "arm64", "reg.example:5000/k:arm64", ["reg.example:5000/i:arm64"],
        ["reg.example:5000/m:1"], "oci")
    assert oci.cmdline == "ip={{.IPSpec}}"
    assert (multi.index, multi.source, multi.line) == ("reg.example:5000/idx:1", "oci", 31)
    assert (chain.subplan, chain.source) == ("child.hcl", "subplan")


def test_menu_defaults_and_empty_disk_block() -> None:
    plan = plan_of('menu {}\ntarget "any" {\n  disk {}\n}\n')
    assert plan.menu == Menu(timeout=10, prompt=None)
    assert plan.targets[0].disk == DiskSource() and plan.default_target is None


def test_the_example_plan() -> None:
    plan = load_plan(EXAMPLE, arch="arm64")
    assert [t.name for t in plan.targets] == ["debian", "rescue"]
    debian, rescue = plan.targets
    assert debian.source == "disk" and debian.disk is not None
    assert rescue.source == "oci" and rescue.kernel and rescue.kernel.endswith(":6.1-arm64")
    assert plan.menu is not None and plan.default_target == "debian"
    assert "console=ttyAMA0" in (debian.cmdline or "")


def test_load_plan_reads_files_and_names_them(tmp_path: Path) -> None:
    path = tmp_path / "p.hcl"
    path.write_text('target "a" {\n  kernel = 1\n  bogus = 2\n}\n')
    with pytest.raises(PlanError) as e:
        load_plan(path)
    assert str(e.value).startswith(f'{path}:3: target "a": unknown attribute "bogus"')
    plan = load_plan("inline.hcl", text='target "b" {\n  kernel = "k"\n}\n')
    assert plan.filename == "inline.hcl" and plan.targets[0].kernel == "k"
    with pytest.raises(PlanError) as e:
        load_plan(tmp_path / "missing.hcl")
    assert str(e.value).startswith(f"{tmp_path / 'missing.hcl'}: cannot read plan:")


BAD = [
    (
        'target "debian" {\n  disk {}\n\n  kernel = "k"\n}\n',
        'plan.hcl:4: target "debian": two sources (disk and kernel); a target has exactly one',
    ),
    (
        'target "t" {\n  subplan = "s"\n  index = "i"\n}\n',
        'plan.hcl:3: target "t": two sources (subplan and index); a target has exactly one',
    ),
    (
        'target "t" {\n  label = "no source"\n}\n',
        'plan.hcl:1: target "t": no source: give index or kernel (OCI), a disk {} block, '
        "or subplan",
    ),
    (
        'target "t" {\n  index = "i"\n  kernel = "k"\n}\n',
        'plan.hcl:3: target "t": index and kernel are alternatives: an index brings its own '
        "kernel and initrd",
    ),
    (
        'target "t" {\n  index = "i"\n  initrd = ["r"]\n}\n',
        'plan.hcl:3: target "t": initrd cannot be added to an index (list it in the index '
        "instead)",
    ),
    (
        'target "t" {\n  modules = "m"\n}\n',
        'plan.hcl:2: target "t": modules without kernel: an OCI target needs kernel or index',
    ),
    (
        'target "t" {\n  kernel = "k"\n  kernal = "k"\n}\n',
        'plan.hcl:3: target "t": unknown attribute "kernal" in target "t" (known: arch, '
        "version, label, index, kernel, initrd, modules, cmdline, subplan)",
    ),
    (
        'target "t" {\n  kernel = "k"\n  dsk {}\n}\n',
        'plan.hcl:3: target "t": unknown block "dsk" in target "t" (blocks here: disk)',
    ),
    (
        'target "t" {\n  disk {\n    dev = "/dev/vda"\n  }\n}\n',
        'plan.hcl:3: target "t": unknown attribute "dev" in disk (known: device, fs, kernel, '
        "initrd)",
    ),
    (
        'target "t" {\n  disk {\n    device = "vda1"\n  }\n}\n',
        'plan.hcl:3: target "t": disk device "vda1" must start with one of /dev/, LABEL=, '
        "UUID=, PARTLABEL=, PARTUUID=",
    ),
    (
        'target "t" {\n  disk {}\n  disk {}\n}\n',
        'plan.hcl:3: target "t": disk is set twice',
    ),
    (
        'target "a" {\n  kernel = "k"\n}\ntarget "a" {\n  kernel = "k"\n}\n',
        'plan.hcl:4: target "a" is defined twice (first on line 1)',
    ),
    (
        'default_target = "b"\ntarget "a" {\n  kernel = "k"\n}\n',
        'plan.hcl:1: default_target "b" names no target (targets: a)',
    ),
    (
        'target "x y" {\n  kernel = "k"\n}\n',
        'plan.hcl:1: target name "x y" may hold only letters, digits, ".", "_" and "-" and '
        "starts with a letter or digit",
    ),
    ('target {\n}\n', 'plan.hcl:1: target takes 1 label: write target "name" { ... }'),
    ('menu "m" {\n}\n', "plan.hcl:1: menu takes no labels: write menu { ... }"),
    ("menu {}\nmenu {}\n", "plan.hcl:2: menu is set twice"),
    (
        "menu {\n  timeout = -1\n}\n",
        "plan.hcl:2: menu timeout must be a whole number of seconds >= 0, got -1",
    ),
    ("menu {\n  delay = 1\n}\n", 'plan.hcl:2: unknown attribute "delay" in menu (known: '
                                 "timeout, prompt)"),
    (
        "targets = 1\n",
        'plan.hcl:1: unknown attribute "targets" in the top level (known: default_target, dns)',
    ),
    (
        "plan {}\n",
        'plan.hcl:1: unknown block "plan" in the top level (blocks here: menu, locals, target)',
    ),
    ('dns = ["10.0.2.3", "dns.example"]\n', "plan.hcl:1: dns: 'dns.example' is not an IP "
                                            "address"),
    ("locals {\n  a = 1\n}\nlocals {\n  a = 2\n}\n",
     'plan.hcl:5: local "a" is set twice (first on line 2)'),
    ("locals {\n  inner {}\n}\n", 'plan.hcl:2: unknown block "inner" in locals (blocks here: '
                                  "none)"),
    (
        'target "t" {\n  arch = "sparc"\n  kernel = "k"\n}\n',
        "plan.hcl:2: target \"t\": unknown architecture 'sparc' (known: aarch64, armv7, "
        "loongarch64, riscv64, x86_64, aa64, amd64, arm, arm64, armhf, armv7l, loong64, x64)",
    ),
    (
        'target "t" {\n  kernel = "k"\n  label = ["a"]\n}\n',
        'plan.hcl:3: target "t": label must be a string, got a list',
    ),
    (
        'target "t" {\n  kernel = "k"\n  cmdline = [{a = 1}]\n}\n',
        'plan.hcl:3: target "t": cmdline must be a string or a list of strings, found an '
        "object",
    ),
    (
        'target "t" {\n  kernel = "k"\n  cmdline = "ip={{.Netmask}}"\n}\n',
        'plan.hcl:3: target "t": unknown cmdline placeholder {{.Netmask}} (known: {{.IP}}, '
        "{{.IPSpec}}, {{.Gateway}}, {{.Iface}}, {{.DNS}}, {{.Registry}}, {{.Hostname}}, "
        "{{.MAC}})",
    ),
    (
        'target "t" {\n  version = self.version\n  kernel = "k"\n}\n',
        'plan.hcl:2: target "t": no attribute .version here (known: arch, name)',
    ),
    (
        'target "t" {\n  kernel = "k:${self.version}"\n}\n',
        'plan.hcl:2: target "t": cannot put a null value into a string',
    ),
    (
        'locals {\n  a = local.b\n  b = local.a\n}\n',
        'plan.hcl:3: local "a" refers to itself',
    ),
    (
        'target "t" {\n  kernel = local.k\n}\nlocals {\n  k = 1 + "x"\n}\n',
        "plan.hcl:5: + needs numbers, got a string",
    ),
    (
        'target "t" {\n  kernel = local.missing\n}\n',
        'plan.hcl:2: target "t": local "missing" is not defined (locals: none)',
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_plans(text: str, message: str) -> None:
    with pytest.raises(PlanError) as e:
        parse_plan(text, "plan.hcl", arch="x86_64")
    assert str(e.value) == message
    assert e.value.filename == "plan.hcl" and e.value.line is not None


def test_error_parts_are_attributes() -> None:
    with pytest.raises(PlanError) as e:
        parse_plan('\n\ntarget "debian" {\n  kernel = "k"\n  disk {}\n}\n', "p.hcl")
    err = e.value
    assert (err.filename, err.line, err.target) == ("p.hcl", 5, "debian")
    assert err.message == "two sources (kernel and disk); a target has exactly one"
