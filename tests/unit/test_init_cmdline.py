"""cloudboot-init command-line parsing (cloudboot/init/cmdline.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudboot.init import cmdline
from cloudboot.init.cmdline import CmdlineError, parse, split


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a b=c", [("a", None), ("b", "c")]),
        ('a="b c" d', [("a", "b c"), ("d", None)]),
        ('"a=b c" x', [("a", "b c"), ("x", None)]),  # quote opening the whole argument
        ('a=b"c d"', [("a", 'b"c d"')]),  # quotes inside a value are kept, as the kernel does
        ('x=""', [("x", "")]),
        ("k==v", [("k", "=v")]),
        ("  \t\n ", []),
        ("root=/dev/vda1 -- init-arg x=y", [("root", "/dev/vda1")]),  # after -- is init's argv
        ('"bare"', [("bare", None)]),
    ],
)
def test_split_like_the_kernel(text: str, expected: list[tuple[str, str | None]]) -> None:
    assert split(text) == expected


def test_every_documented_key_typed() -> None:
    cfg = parse(
        "BOOT_IMAGE=/vmlinuz console=tty0 console=ttyS0,115200n8 "
        "cloudboot.disk=LABEL=root cloudboot.disk.fs=xfs cloudboot.disk.kernel=/boot/vmlinuz "
        "cloudboot.disk.initrd=/boot/initrd.img cloudboot.disk.timeout=2.5 "
        "cloudboot.plan=oci://r/p:1 cloudboot.image=oci://r/i:2 cloudboot.target=deb "
        "cloudboot.menu=1 cloudboot.menu.timeout=7 "
        'cloudboot.menu.prompt="Pick one" cloudboot.exit=reboot '
        'cloudboot.cmdline="root=/dev/vda1 ro quiet" cloudboot.insecure '
        "cloudboot.dns=1.1.1.1,9.9.9.9 cloudboot.metadata.url=openstack "
        "cloudboot.metadata.token=s3cret ip=dhcp rd.cloudboot.user=ops rd.cloudboot.pass=pw "
        "cloudboot.shell=1 cloudboot.reboot_delay=0 cloudboot.debug cloudboot.bootnext=1 "
        "cloudboot.reset=0"
    )
    assert (cfg.disk, cfg.disk_fs, cfg.disk_kernel, cfg.disk_initrd) == (
        "LABEL=root", "xfs", "/boot/vmlinuz", "/boot/initrd.img")
    assert cfg.disk_timeout == 2.5
    assert (cfg.plan, cfg.image, cfg.target) == ("oci://r/p:1", "oci://r/i:2", "deb")
    assert (cfg.menu, cfg.menu_timeout, cfg.menu_prompt) == (True, 7, "Pick one")
    assert cfg.exit == "reboot"
    assert cfg.cmdline == "root=/dev/vda1 ro quiet"
    assert cfg.insecure is True  # bare word means "1"
    assert cfg.dns == ["1.1.1.1", "9.9.9.9"]
    assert (cfg.metadata_url, cfg.metadata_token) == ("openstack", "s3cret")
    assert (cfg.ip, cfg.user, cfg.password) == ("dhcp", "ops", "pw")
    assert (cfg.shell, cfg.reboot_delay, cfg.debug, cfg.bootnext, cfg.reset) == (
        True, 0.0, True, True, False)
    assert cfg.consoles == ["tty0", "ttyS0,115200n8"]
    assert cmdline.console_args(cfg) == ["console=tty0", "console=ttyS0,115200n8"]
    assert cfg.warnings == []
    red = cfg.redacted_keys()
    assert red["rd.cloudboot.pass"] == "***" and red["cloudboot.metadata.token"] == "***"
    assert red["cloudboot.disk"] == "LABEL=root"


def test_defaults() -> None:
    cfg = parse("root=/dev/sda quiet")
    assert cfg.exit == "kexec" and cfg.disk is None and cfg.menu is None
    assert cfg.disk_timeout == 15.0 and cfg.reboot_delay == 30.0 and not cfg.shell
    assert cfg.keys == {} and cfg.consoles == []


def test_last_occurrence_wins() -> None:
    cfg = parse("cloudboot.exit=reboot cloudboot.disk=/dev/vda cloudboot.exit=kexec "
                "cloudboot.disk=LABEL=x")
    assert cfg.exit == "kexec" and cfg.disk == "LABEL=x"


def test_last_occurrence_wins_over_an_invalid_earlier_value() -> None:
    assert parse("cloudboot.exit=foo cloudboot.exit=reboot").exit == "reboot"


def test_unknown_keys_are_warnings_once() -> None:
    cfg = parse("cloudboot.bogus=1 cloudboot.bogus=2 rd.cloudboot.nope other.key=1")
    assert cfg.warnings == ["unknown key 'cloudboot.bogus' ignored",
                            "unknown key 'rd.cloudboot.nope' ignored"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("cloudboot.exit=foo", "cloudboot.exit='foo'"),
        ("cloudboot.menu=maybe", "cloudboot.menu='maybe'"),
        ("cloudboot.menu.timeout=-1", "cloudboot.menu.timeout='-1'"),
        ("cloudboot.disk.timeout=0", "cloudboot.disk.timeout='0'"),
        ("cloudboot.reboot_delay=soon", "cloudboot.reboot_delay='soon'"),
        ("cloudboot.dns=,", "cloudboot.dns=','"),
    ],
)
def test_invalid_values_name_key_and_value(text: str, needle: str) -> None:
    with pytest.raises(CmdlineError) as err:
        parse(text)
    assert needle in str(err.value)


def test_all_errors_reported_together_and_secrets_hidden() -> None:
    with pytest.raises(CmdlineError) as err:
        parse("cloudboot.exit=foo cloudboot.shell=x")
    assert "cloudboot.exit" in str(err.value) and "cloudboot.shell" in str(err.value)


def test_console_devices(tmp_path: Path) -> None:
    for name in ("ttyS0", "hvc0"):
        (tmp_path / name).touch()
    assert cmdline.console_devices(["ttyS0,115200", "ttyAMA0"], tmp_path) == ["ttyS0"]
    # none named (or none that exist): the defaults that exist, in DESIGN order
    assert cmdline.console_devices([], tmp_path) == ["ttyS0", "hvc0"]
    assert cmdline.console_devices(["uart8250,io,0x3f8"], tmp_path) == ["ttyS0", "hvc0"]
    assert cmdline.console_name("/dev/hvc0") == "hvc0"


_word = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_never_crashes(text: str) -> None:
    try:
        cfg = parse(text)
    except CmdlineError as e:
        assert str(e).startswith("kernel command line: ")
    else:
        assert cfg.exit in cmdline.EXITS


_value = st.text(alphabet="abcXYZ019=/._-", min_size=1, max_size=10)


@settings(max_examples=200, deadline=None)
@given(st.lists(_value, min_size=1, max_size=5), st.lists(_word, max_size=3))
def test_last_wins_property(values: list[str], noise: list[str]) -> None:
    args = [f"cloudboot.target={v}" for v in values]
    # unrelated words in between must not change the outcome
    safe = [w for w in noise if w and not any(c.isspace() or c == '"' for c in w)
            and not w.startswith(("cloudboot.", "rd.cloudboot.", "ip=", "--"))
            and w != "--" and "cloudboot.target" not in w]
    cfg = parse(" ".join(args + safe))
    assert cfg.target == values[-1]

