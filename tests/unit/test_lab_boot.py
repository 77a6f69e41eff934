"""One real boot through the QEMU lane (OVMF under TCG, no boot media) and the KVM probe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.console import parse_log
from lab.failures import classify
from lab.firmware import select_firmware
from lab.hypervisors.accel import host_accel, probe_kvm, select_accel
from lab.hypervisors.qemu import QemuVM
from lab.hypervisors.vmspec import VMError, VMSpec
from lab.profiles import get_profile


@pytest.mark.boot
def test_ovmf_boots_to_shell_and_quits_gracefully(tmp_path: Path) -> None:
    profile = get_profile("x86_64")
    fw = select_firmware(profile)
    spec = VMSpec(profile, fw, fw.fresh_vars(tmp_path), memory_mib=256, hard_timeout=180)
    vm = QemuVM(spec, tmp_path)
    try:
        vm.start()
        assert vm.status() == "running"
        boot = vm.wait_for(r"BdsDxe: (loading|starting) Boot\d{4}", 120)
        shell = vm.wait_for(r"UEFI Interactive Shell v[\d.]+", 60)
        assert shell.start() > boot.start()  # the cursor moves forward
        with pytest.raises(VMError, match="timed out .* waiting for 'never printed'") as err:
            vm.wait_for("never printed", 0.3)
        assert "UEFI Interactive Shell" in err.value.console_tail
        assert "-nic" in err.value.command
    finally:
        how = vm.shutdown()
    assert how == "quit" and not vm.is_running() and not vm.timed_out
    stamps = [line.t for line in vm.lines()]
    assert stamps == sorted(stamps) and 0 < stamps[0] < 120
    logged = vm.console_log.read_text().splitlines()
    assert any(line.split("\t", 1)[1].startswith("BdsDxe") for line in logged)
    assert parse_log(vm.console_log).events == []
    verdict = classify(vm.text(), [], reached_userspace=False, timed_out=True)
    assert verdict.category == "firmware" and "EFI shell" in verdict.evidence


def test_launch_failure_carries_command_and_stderr(tmp_path: Path) -> None:
    spec = VMSpec(get_profile("x86_64"), extra_args=["-device", "no-such-device-xyz"])
    with pytest.raises(VMError, match="exited with status 1 at launch") as err:
        QemuVM(spec, tmp_path).start()
    assert "no-such-device-xyz" in err.value.stderr
    assert err.value.command[0] == "qemu-system-x86_64"
    assert "no-such-device-xyz" in str(err.value)


def test_hard_timeout_kills_a_silent_guest(tmp_path: Path) -> None:
    # No firmware, no disks, no kernel: SeaBIOS finds nothing and the serial stays silent.
    spec = VMSpec(get_profile("x86_64"), memory_mib=128, hard_timeout=2.0)
    vm = QemuVM(spec, tmp_path)
    vm.start()
    rc = vm.wait_exit(30)
    assert vm.timed_out and rc != 0
    verdict = classify(vm.text(), [], False, vm.timed_out)
    assert verdict.category in ("firmware", "timeout")


def test_kvm_probe_boots_firmware_for_real() -> None:
    choice = probe_kvm(timeout=30)
    assert choice.source == "probe"
    if choice.accel == "kvm":
        assert "reached BdsDxe" in choice.reason
    else:
        # On the project's machines /dev/kvm exists but KVM cannot run OVMF: the probe must
        # notice (internal-error state) rather than trust the device node.
        assert choice.accel == "tcg" and choice.reason
        if os.access("/dev/kvm", os.W_OK):
            assert "KVM" in choice.reason


def test_accel_choice_cache_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDBOOT_CACHE", str(tmp_path))
    monkeypatch.delenv("CLOUDBOOT_ACCEL", raising=False)
    first = host_accel(refresh=True)
    assert first.source == "probe"
    again = host_accel()
    assert (again.source, again.accel) == ("cache", first.accel)
    assert list((tmp_path / "accel").glob("*.json"))
    monkeypatch.setenv("CLOUDBOOT_ACCEL", "kvm")
    assert (host_accel().accel, host_accel().source) == ("kvm", "env")
    monkeypatch.setenv("CLOUDBOOT_ACCEL", "tcg")
    assert select_accel(get_profile("riscv64")).accel == "tcg"
    monkeypatch.setenv("CLOUDBOOT_ACCEL", "hvf")
    with pytest.raises(ValueError, match="CLOUDBOOT_ACCEL='hvf'"):
        host_accel()
