"""Golden QEMU command lines per architecture profile (no booting).

Regenerate with UPDATE_GOLDEN=1 after a deliberate change, and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.firmware import Firmware
from lab.hypervisors.qemu import QemuVM
from lab.hypervisors.vmspec import Disk, UserNet, VMSpec, build_command
from lab.profiles import PROFILES, get_profile

# Golden outputs do not depend on this host's QEMU release.
pytestmark = pytest.mark.usefixtures("qemu_without_cpu_quirks")

GOLDEN = Path(__file__).parent / "golden"
RUN = Path("/run/lab/cell")


def _fw(arch: str) -> Firmware:
    return Firmware(arch, Path(f"/fw/{arch}/CODE.fd"), Path(f"/fw/{arch}/VARS.fd"), "test", None)


def _spec(name: str) -> VMSpec:
    profile = get_profile(name)
    fw = _fw(profile.fw_arch)
    disks = [Disk(Path("/img/boot.iso"), "virtio-blk", readonly=True),
             Disk(Path("/img/root.qcow2"), "virtio-blk", snapshot=True, format="qcow2")]
    return VMSpec(profile, fw, RUN / "vars.fd", disks=disks, name=f"golden-{name}")


CASES: dict[str, VMSpec] = {name: _spec(name) for name in PROFILES}
CASES["x86_64-direct"] = VMSpec(
    get_profile("x86_64"), None, None, kernel=Path("/k/vmlinuz"), initrd=Path("/k/initrd.img"),
    append="console=ttyS0 panic=-1", no_reboot=True, accel="kvm", cpus=2, memory_mib=2048,
    name="golden-direct")
CASES["x86_64-net-cdrom-scsi"] = VMSpec(
    get_profile("x86_64"), _fw("x86_64"), RUN / "vars.fd",
    disks=[Disk(Path("/img/boot.iso"), "cdrom"), Disk(Path("/img/cache.raw"), "virtio-scsi")],
    nic=UserNet(net="169.254.0.0/16", hostfwd=("tcp:127.0.0.1:2222-:22",),
                guestfwd=("tcp:169.254.169.254:80-tcp:127.0.0.1:8775",), mac="52:54:00:12:34:56"),
    name="golden-net")
CASES["aarch64-cdrom"] = VMSpec(
    get_profile("aarch64"), _fw("aarch64"), RUN / "vars.fd",
    disks=[Disk(Path("/img/boot.iso"), "cdrom")], extra_args=["-rtc", "base=utc"],
    name="golden-aarch64-cdrom")
CASES["vz-net"] = VMSpec(get_profile("vz"), _fw("aarch64"), RUN / "vars.fd",
                         disks=[Disk(Path("/img/boot.raw"))], nic=UserNet(), name="golden-vz")


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_command(case: str) -> None:
    cmd = QemuVM(CASES[case], RUN).command()
    text = "\n".join(cmd) + "\n"
    golden = GOLDEN / f"qemu-{case}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.is_file(), f"{golden} missing: run with UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{case}: command line differs from {golden}"


def test_edk2_pitfalls_are_in_every_firmware_command() -> None:
    for name in PROFILES:
        cmd = build_command(CASES[name], RUN / "qmp.sock")
        assert cmd[cmd.index("-nic") + 1] == "none", name  # no PXE detour in EDK2
        if name != "x86_64":
            assert cmd[cmd.index("-boot") + 1] == "menu=on,splash-time=0", name
        assert "-S" in cmd and cmd[cmd.index("-display") + 1] == "none"


def test_vz_hides_nic_from_firmware_and_uses_hvc0() -> None:
    cmd = build_command(CASES["vz-net"], RUN / "qmp.sock")
    assert not any(a.startswith("virtio-net") for a in cmd)  # hot-plugged after firmware
    assert "pcie-root-port,id=hotplug0,chassis=1,slot=0" in cmd
    assert "virtconsole,chardev=console,name=console.0" in cmd
    assert cmd[cmd.index("-serial") + 1] == "none"


def test_spec_validation_names_the_problem() -> None:
    vz = get_profile("vz")
    with pytest.raises(ValueError, match=r"disk /img/x.iso: interface cdrom .* profile vz"):
        build_command(VMSpec(vz, disks=[Disk(Path("/img/x.iso"), "cdrom")]), RUN / "q")
    with pytest.raises(ValueError, match="needs vars_path"):
        build_command(VMSpec(get_profile("x86_64"), _fw("x86_64")), RUN / "q")
    with pytest.raises(ValueError, match="without a kernel"):
        build_command(VMSpec(get_profile("x86_64"), append="quiet"), RUN / "q")


def test_a_bound_but_not_listening_qmp_socket_counts_as_refused(tmp_path: Path) -> None:
    """QEMU binds its QMP socket before it listens; a connect in that window is refused and
    QemuVM retries it (the real qemu.qmp exception, not a stand-in)."""
    import socket

    from qemu.qmp.legacy import QEMUMonitorProtocol

    from lab.hypervisors.qemu import _refused

    path = tmp_path / "qmp.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))  # no listen(): the window between bind and listen
    qmp = QEMUMonitorProtocol(str(path))
    try:
        with pytest.raises(Exception) as caught:
            qmp.connect()
    finally:
        qmp.close()
        server.close()
    assert _refused(caught.value)
    assert not _refused(EOFError("QEMU quit after a bad option"))
