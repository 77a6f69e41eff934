"""The private QEMU 10 lanes: which arches use it, the private apt roots, and the real binary."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from cloudboot.debian import aptsuites
from lab import qemu_private
from lab.arch_lanes import LANES, LaneGap, get_lane
from lab.firmware import select_firmware
from lab.profiles import PROFILES, get_profile
from lab.versions import collect


def test_only_riscv64_and_loongarch64_run_on_the_private_qemu() -> None:
    assert set(qemu_private.PRIVATE_BINARIES) == {"riscv64", "loongarch64"}
    for name, profile in PROFILES.items():
        if profile.arch.name in qemu_private.PRIVATE_BINARIES:
            continue
        # x86_64, aarch64, armv7 and vz stay on the system QEMU, untouched.
        assert qemu_private.runnable(profile) is profile, name
    with pytest.raises(qemu_private.PrivateQemuError, match="armv7 runs on the system QEMU"):
        qemu_private.ensure("armv7")


def test_private_apt_roots_never_use_the_hosts_configuration() -> None:
    suite = aptsuites.get_suite("trixie")
    opts = aptsuites.apt_options(suite)
    dirs = [o.split("=", 1)[1] for o in opts if o.startswith("Dir::")]
    assert dirs and all(d.startswith(str(suite.root())) for d in dirs), dirs
    assert "APT::Architectures=riscv64,armhf,amd64" in opts
    text = aptsuites.sources_text(suite, "http://mirror.example/debian")
    assert "Suites: trixie\n" in text and "Architectures: riscv64 armhf amd64\n" in text
    assert f"Signed-By: {aptsuites.KEYRING}\n" in text
    with pytest.raises(aptsuites.SuiteError, match="unknown private apt suite 'jessie'"):
        aptsuites.get_suite("jessie")


def test_deb_versions_and_library_check() -> None:
    assert qemu_private._deb_version(
        "qemu-system-misc_1%3a10.0.2+ds-2+deb13u1~bpo12+1_amd64") == "1:10.0.2+ds-2+deb13u1~bpo12+1"
    # ldd of a host binary: everything resolves.
    assert qemu_private.missing_libraries(Path("/bin/true")) == []
    with pytest.raises(qemu_private.PrivateQemuError, match="ldd .* failed"):
        qemu_private.missing_libraries(Path("/nonexistent/qemu"))


def test_lanes_say_exactly_what_is_missing() -> None:
    assert set(LANES) == {"armv7", "riscv64", "loongarch64"}
    assert get_lane("armhf") is LANES["armv7"] and get_lane("loong64") is LANES["loongarch64"]
    assert (LANES["riscv64"].python, LANES["loongarch64"].python) == ("3.13", "3.14")
    with pytest.raises(LaneGap, match="no lane table entry for x86_64"):
        get_lane("x86_64")


def _assembled(arch: str) -> qemu_private.Installed:
    """The private QEMU and its firmware, fetched into the suite's cache on first use."""
    try:
        qemu_private.ensure_firmware(arch)
        return qemu_private.ensure(arch)
    except qemu_private.PrivateQemuError as e:
        pytest.fail(f"private QEMU for {arch} could not be assembled: {e}", pytrace=False)


@pytest.mark.parametrize("arch", ["riscv64", "loongarch64"])
def test_private_qemu_is_new_enough_and_runs(arch: str) -> None:
    inst = _assembled(arch)
    major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", inst.version).groups())  # type: ignore[union-attr]
    assert (major, minor) >= (8, 1), inst.version
    out = subprocess.run([str(inst.binary), "-L", str(inst.data_dir), "-machine", "help"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert re.search(r"^virt\b", out, re.M), out[:400]
    if arch == "riscv64":
        assert (inst.data_dir / qemu_private.OPENSBI[1]).is_file()  # -bios default
    profile = qemu_private.runnable(get_profile(arch))
    assert profile.qemu_binary == str(inst.binary)
    assert profile.extra_args[-2:] == ("-L", str(inst.data_dir))
    fw = select_firmware(profile)
    assert fw.code.stat().st_size == fw.vars_template.stat().st_size
    tools = collect()
    assert tools["qemu"][f"qemu-system-{arch} (private)"] == inst.version  # type: ignore[index]
    private_fw = tools["firmware_private"]
    assert isinstance(private_fw, dict)
    assert any(k.startswith(qemu_private.FIRMWARE[arch].package) for k in private_fw)
