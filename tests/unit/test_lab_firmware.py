"""Firmware selection on this host's real QEMU descriptor files, and the CODE/VARS pair check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.firmware import (
    SYSTEM_DESCRIPTOR_DIRS,
    Firmware,
    FirmwareError,
    load_descriptors,
    select_firmware,
)
from lab.profiles import get_profile

HAVE_DESCRIPTORS = any(d.is_dir() and any(d.glob("*.json")) for d in SYSTEM_DESCRIPTOR_DIRS)
# ovmf, qemu-efi-aarch64 and qemu-efi-arm are installed by the set-up
# (cloudboot.debian.hostdeps.LANE_PACKAGES): their firmware and descriptors are facts these
# tests rely on.
assert HAVE_DESCRIPTORS, ("no QEMU firmware descriptors "
                          "(python -m cloudboot.debian.hostdeps ensure tests)")


def test_x86_64_picks_plain_ovmf_from_descriptors() -> None:
    fw = select_firmware(get_profile("x86_64"))
    # Secure-boot and SMM builds are listed first (40-, 50-); the plain 4M build must win.
    assert fw.descriptor is not None and fw.descriptor.name == "60-edk2-x86_64.json"
    assert fw.code == Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
    assert fw.vars_template == Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
    assert "secure-boot" not in fw.features and "requires-smm" not in fw.features
    assert fw.package_versions().get("ovmf", "").startswith("20")


@pytest.mark.parametrize(("profile", "code"), [
    ("aarch64", "/usr/share/AAVMF/AAVMF_CODE.fd"),
    ("vz", "/usr/share/AAVMF/AAVMF_CODE.fd"),
    ("armv7", "/usr/share/AAVMF/AAVMF32_CODE.fd"),
])
def test_arm_picks_plain_aavmf(profile: str, code: str) -> None:
    fw = select_firmware(get_profile(profile))
    assert fw.code == Path(code)
    assert fw.code.stat().st_size == fw.vars_template.stat().st_size  # pflash pair
    assert "secure-boot" not in fw.features


def test_fallback_paths_without_descriptors(tmp_path: Path) -> None:
    fw = select_firmware(get_profile("x86_64"), dirs=[tmp_path])
    assert fw.descriptor is None
    assert fw.code == Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
    with pytest.raises(FirmwareError, match="no UEFI firmware for x86_64"):
        select_firmware(get_profile("x86_64"), dirs=[tmp_path], fallback=False)


def test_unknown_firmware_reports_what_it_tried(tmp_path: Path) -> None:
    prof = get_profile("riscv64")
    if any(Path(c).is_file() for c in ("/usr/share/qemu-efi-riscv64/RISCV_VIRT_CODE.fd",)):
        pytest.skip("host: riscv64 EDK2 is installed system-wide; the missing case cannot be shown")
    with pytest.raises(FirmwareError, match=r"riscv64 .*RISCV_VIRT_CODE.fd is missing"):
        select_firmware(prof, dirs=[tmp_path])


def _descriptor(dirpath: Path, name: str, code: Path, nvram: Path, features: list[str]) -> None:
    dirpath.mkdir(parents=True, exist_ok=True)
    (dirpath / name).write_text(json.dumps({
        "description": name, "interface-types": ["uefi"],
        "mapping": {"device": "flash", "executable": {"filename": str(code), "format": "raw"},
                    "nvram-template": {"filename": str(nvram), "format": "raw"}},
        "targets": [{"architecture": "aarch64", "machines": ["virt-*"]}],
        "features": features, "tags": []}))


def test_mismatched_pair_is_skipped_and_overrides_apply(tmp_path: Path) -> None:
    code, small, good = tmp_path / "c.fd", tmp_path / "small.fd", tmp_path / "v.fd"
    code.write_bytes(b"\0" * 8192)
    small.write_bytes(b"\0" * 4096)
    good.write_bytes(b"\0" * 8192)
    sys_dir, user_dir = tmp_path / "sys", tmp_path / "user"
    _descriptor(sys_dir, "10-bad.json", code, small, [])
    _descriptor(sys_dir, "20-sb.json", code, good, ["secure-boot"])
    _descriptor(sys_dir, "30-good.json", code, good, [])
    with pytest.raises(FirmwareError, match="not a pair"):
        Firmware("aarch64", code, small, "x", None).check_pair()
    fw = select_firmware(get_profile("aarch64"), dirs=[sys_dir], fallback=False)
    assert fw.descriptor == sys_dir / "30-good.json"
    # An empty file of the same name in a later directory masks the system descriptor.
    user_dir.mkdir()
    (user_dir / "30-good.json").write_text("")
    names = [p.name for p, _ in load_descriptors([sys_dir, user_dir])]
    assert names == ["10-bad.json", "20-sb.json"]


def test_fresh_vars_is_a_private_copy(tmp_path: Path) -> None:
    fw = select_firmware(get_profile("x86_64"))
    (tmp_path / "a").mkdir()
    a = fw.fresh_vars(tmp_path / "a")
    a.write_bytes(b"guest wrote here")
    b = fw.fresh_vars(tmp_path)
    assert b.read_bytes() == fw.vars_template.read_bytes()
    assert a.read_bytes() == b"guest wrote here"
