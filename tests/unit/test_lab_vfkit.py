"""Golden vfkit command lines (the seed quickstart's form); vfkit itself runs on macOS only.

Regenerate with UPDATE_GOLDEN=1 after a deliberate change, and review the diff.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

from lab.hypervisors.vfkit import (
    NOT_RUN_REASON,
    VfkitError,
    VfkitUnavailable,
    VfkitVM,
    build_command,
    unavailable_reason,
)
from lab.hypervisors.vmspec import Disk, UserNet, VMSpec
from lab.profiles import get_profile

GOLDEN = Path(__file__).parent / "golden"
RUN = Path("/run/lab/cell")
STORE, LOG = RUN / "nvram.fd", RUN / "vm.log"
VZ = get_profile("vz")
NAT = UserNet(restrict=False)  # vfkit's NAT cannot restrict the guest


def _quickstart(nic: UserNet | None = NAT) -> VMSpec:
    """The seed quickstart's Path C boot: boot.iso, the cache disk, the Trixie disk, NAT."""
    return VMSpec(VZ, None, None, disks=[
        Disk(Path("uki/boot.iso"), readonly=True),
        Disk(Path("uki/menu-cache.raw")),
        Disk(Path("trixie.raw")),
    ], nic=nic, name="quickstart")


CASES: dict[str, tuple[VMSpec, dict]] = {
    "quickstart": (_quickstart(), {}),
    "quickstart-gui": (_quickstart(), {"gui": True}),
    "cell": (VMSpec(VZ, None, None, disks=[Disk(Path("/img/boot.iso"), readonly=True),
                                            Disk(Path("/img/root.raw"), snapshot=True)],
                    name="cell"), {"copies": {1: RUN / "disk1.raw"}}),
    "direct": (VMSpec(VZ, None, None, kernel=Path("/k/vmlinuz"), initrd=Path("/k/initrd.img"),
                      append="console=hvc0", cpus=2, memory_mib=2048, name="direct"), {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_vfkit_command(case: str) -> None:
    spec, kwargs = CASES[case]
    text = "\n".join(build_command(spec, STORE, LOG, **kwargs)) + "\n"
    golden = GOLDEN / f"vfkit-{case}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.is_file(), f"{golden} missing: run with UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{case}: vfkit command line differs from {golden}"


def test_quickstart_devices_are_exactly_the_seeds() -> None:
    cmd = build_command(_quickstart(), STORE, LOG)
    devices = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--device"]
    assert devices == [
        "virtio-blk,path=uki/boot.iso,readonly",
        "virtio-blk,path=uki/menu-cache.raw",
        "virtio-blk,path=trixie.raw",
        "virtio-net,nat,mac=auto",
        f"virtio-serial,logFilePath={LOG}",
    ]
    assert cmd[cmd.index("--bootloader") + 1] == f"efi,variable-store={STORE},create"
    assert "--gui" not in cmd
    assert build_command(_quickstart(), STORE, LOG, gui=True)[1] == "--gui"


def test_no_nic_unless_planned() -> None:
    cmd = build_command(_quickstart(nic=None), STORE, LOG)
    assert not any(a.startswith("virtio-net") for a in cmd)


def test_what_vz_cannot_do_is_refused() -> None:
    snap = VMSpec(VZ, None, None, disks=[Disk(Path("/img/root.raw"), snapshot=True)])
    with pytest.raises(VfkitError, match="no overlays"):
        build_command(snap, STORE, LOG)
    scsi = VMSpec(get_profile("aarch64"), None, None, disks=[Disk(Path("/a.raw"), "virtio-scsi")])
    with pytest.raises(VfkitError, match="virtio-blk only"):
        build_command(scsi, STORE, LOG)
    qcow = VMSpec(VZ, None, None, disks=[Disk(Path("/a.qcow2"), format="qcow2")])
    with pytest.raises(VfkitError, match="raw images only"):
        build_command(qcow, STORE, LOG)
    for nic in (UserNet(restrict=False, hostfwd=("tcp::2222-:22",)), UserNet()):
        with pytest.raises(VfkitError, match="restrict, forwards"):
            build_command(_quickstart(nic), STORE, LOG)


@pytest.mark.skipif(platform.system() == "Darwin", reason="host: checks the non-macOS refusal")
def test_elsewhere_vfkit_cells_are_not_run_with_the_reason(tmp_path: Path) -> None:
    reason = unavailable_reason()
    assert reason is not None and reason.startswith(NOT_RUN_REASON)
    vm = VfkitVM(CASES["cell"][0], tmp_path)
    with pytest.raises(VfkitUnavailable, match="Virtualization.framework"):
        vm.start()
    assert vm.proc is None and not vm.is_running()
