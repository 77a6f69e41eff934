"""Architecture profiles: the facts each lab guest depends on."""

from __future__ import annotations

import pytest

from lab import profiles
from lab.profiles import PROFILES, VZ_APPROXIMATIONS, UnknownProfile, get_profile


def test_every_arch_has_a_profile_with_its_console_and_boot_file() -> None:
    expect = {"x86_64": ("ttyS0", "BOOTX64.EFI", "q35"),
              "aarch64": ("ttyAMA0", "BOOTAA64.EFI", "virt"),
              "riscv64": ("ttyS0", "BOOTRISCV64.EFI", "virt"),
              "loongarch64": ("ttyS0", "BOOTLOONGARCH64.EFI", "virt"),
              "armv7": ("ttyAMA0", "BOOTARM.EFI", "virt,highmem=off")}
    for name, (console, boot_file, machine) in expect.items():
        p = PROFILES[name]
        assert (p.console, p.efi_boot_file, p.machine) == (console, boot_file, machine)


def test_tcg_cpu_models_are_the_measured_fast_ones() -> None:
    assert get_profile("arm64").cpu("tcg") == "cortex-a57"
    assert get_profile("armhf").cpu("tcg") == "cortex-a15"
    assert get_profile("amd64").cpu("kvm") == "host"


def test_vz_profile_is_a_documented_approximation() -> None:
    vz = get_profile("vz")
    assert vz.console == "hvc0" and vz.console_transport == "virtconsole"
    assert vz.disk_interfaces == ("virtio-blk",)
    assert not vz.firmware_nic
    assert "sysctl.kernel.kexec_load_disabled=1" in vz.guest_cmdline
    assert vz.notes == VZ_APPROXIMATIONS and len(vz.notes) >= 4


def test_unknown_profile_lists_known_ones() -> None:
    with pytest.raises(UnknownProfile, match="known: .*aarch64.*vz"):
        get_profile("sparc64")


def test_tcg_cpu_quirk_follows_the_qemu_release(monkeypatch: pytest.MonkeyPatch) -> None:
    p = get_profile("x86_64")
    monkeypatch.setattr(profiles, "installed_qemu_version", lambda binary: (7, 2))
    assert p.cpu("tcg") == "max,cx16=off"
    assert p.cpu("kvm") == "host"  # hardware CMPXCHG16B is fine
    monkeypatch.setattr(profiles, "installed_qemu_version", lambda binary: (10, 0))
    assert p.cpu("tcg") == "max"
    monkeypatch.setattr(profiles, "installed_qemu_version", lambda binary: None)
    assert p.cpu("tcg") == "max"  # no QEMU to ask: nothing to work around
    assert get_profile("aarch64").cpu("tcg") == "cortex-a57"


def test_installed_qemu_version_reads_the_real_binary() -> None:

    version = profiles.installed_qemu_version("qemu-system-x86_64")
    assert version is not None and version >= (5, 0)
    assert profiles.installed_qemu_version("/nonexistent/qemu") is None
