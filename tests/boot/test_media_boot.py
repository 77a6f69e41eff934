"""OVMF boots what `cloudboot build` makes: as a CD-ROM and as a read-only virtio-blk disk."""

from __future__ import annotations

import pytest

from cloudboot.arch import get_arch
from cloudboot.bootstrap.build import BuildRequest, build
from lab.firmware import select_firmware
from lab.hypervisors.accel import select_accel
from lab.hypervisors.qemu import QemuVM
from lab.hypervisors.vmspec import Disk, VMSpec
from lab.profiles import get_profile
from tests.helpers import MARKER, marker_initramfs, need_tools

pytestmark = [pytest.mark.boot, pytest.mark.smoke]


@pytest.fixture(scope="module")
def boot_iso(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    initrd = marker_initramfs(d / "initrd.gz")
    build(BuildRequest(arch=get_arch("x86_64"), output=d / "boot.iso", initramfs=initrd,
                       cmdline="console=ttyS0 panic=-1 cloudboot.test=media"))
    return d / "boot.iso"


@pytest.mark.parametrize("interface", ["cdrom", "virtio-blk"])
def test_ovmf_boots_boot_iso(boot_iso, tmp_path, interface):
    need_tools("qemu-system-x86_64")
    profile = get_profile("x86_64")
    fw = select_firmware(profile)
    spec = VMSpec(
        profile=profile, firmware=fw, vars_path=fw.fresh_vars(tmp_path),
        disks=[Disk(boot_iso, interface=interface, readonly=True)],
        accel=select_accel(profile).accel, no_reboot=True, hard_timeout=240,
        name=f"media-{interface}",
    )
    with QemuVM(spec, tmp_path / "vm") as vm:
        m = vm.wait_for(rf"{MARKER} cmdline=([^\n]*)\n", timeout=200)
        assert "cloudboot.test=media" in m.group(1)
        assert vm.wait_exit(60) == 0
