"""The KVM probe on this real host: a failing verdict says what QEMU itself printed.

Where /dev/kvm opens but KVM cannot run firmware (DESIGN §7), QEMU says why on its stderr:
QEMU 7.2 with `-cpu host` aborts at once ("failed to set MSR 0x10a"), other CPU models run into
"KVM internal error. Suberror: 1 … emulation failure". The probe used to report how the lab
noticed instead ("cannot connect QMP … Connection reset by peer").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cloudboot.arch import host_arch
from lab.firmware import select_firmware
from lab.hypervisors import accel
from lab.profiles import get_profile

# Verbatim stderr of qemu-system-x86_64 7.2.22 under KVM with OVMF on this host.
MSR_ABORT = """\
qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69
qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == \
cpu->kvm_msr_buf->nmsrs' failed.
"""
INTERNAL_ERROR = """\
qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.pni [bit 0]
KVM internal error. Suberror: 1
extra data[0]: 0x0000000000000001
extra data[1]: 0xed742dd9e3db9b0f
emulation failure
EAX=00000000 EBX=00807000 ECX=00000001 EDX=00807154
EIP=fffced45 EFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0
ES =0008 00000000 ffffffff 00c09300 DPL=0 DS   [-WA]
TR =0000 00000000 0000ffff 00008b00 DPL=0 TSS32-busy
GDT=     ffffff30 0000001f
CR0=40000033 CR2=00000000 CR3=00000000 CR4=00000640
DR6=00000000ffff0ff0 DR7=0000000000000400
EFER=0000000000000000
Code=66 90 90 cd 03 c3 66 90 66 90 66 90 66 90 66 90 66 90 90 53 <9b> db e3 d9 2d 74 ed fc ff
qemu-system-x86_64: terminating on signal 15 from pid 31384 (timeout)
"""


def test_qemu_message_keeps_the_reason_and_drops_the_register_dump() -> None:
    assert accel.qemu_message(INTERNAL_ERROR) == \
        "KVM internal error. Suberror: 1; emulation failure"
    assert accel.qemu_message(MSR_ABORT) == (
        "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69; qemu-system-x86_64: "
        "../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == "
        "cpu->kvm_msr_buf->nmsrs' failed.")
    # A warning is all QEMU said: it is still what QEMU said.
    warning = INTERNAL_ERROR.splitlines()[0]
    assert accel.qemu_message(warning + "\n") == warning
    assert accel.qemu_message("\n\n") == ""


def qemu_under_kvm_by_hand(tmp: Path) -> tuple[str, str]:
    """The oracle: the probe's machine (profile, firmware, -cpu) started by hand under KVM,
    console on stdout, no QMP and no lab code in between; (stderr, console) after ≤ 10 s."""
    profile = get_profile(host_arch().name)
    fw = select_firmware(profile)
    vars_copy = tmp / "vars.fd"
    shutil.copy(fw.vars_template, vars_copy)
    argv = [profile.qemu_binary, "-nodefaults", "-machine", profile.machine, "-accel", "kvm",
            "-cpu", profile.cpu("kvm"), "-m", "256", "-display", "none", "-monitor", "none",
            "-serial", "stdio", *profile.extra_args,
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={fw.code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}", "-nic", "none"]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        out, err = done.stdout, done.stderr
    except subprocess.TimeoutExpired as e:  # KVM runs (or hangs in internal-error)
        out, err = e.stdout or b"", e.stderr or b""
    return err.decode(errors="replace"), out.decode(errors="replace")


def test_real_kvm_probe_reports_what_qemu_printed(tmp_path: Path) -> None:
    choice = accel.probe_kvm()
    assert choice.source == "probe"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):  # a fact of the host: say so, no boot
        assert choice == accel.AccelChoice("tcg", "/dev/kvm is missing or not read-writable",
                                           "probe")
        return
    stderr, console = qemu_under_kvm_by_hand(tmp_path)
    if choice.accel == "kvm":
        assert "BdsDxe" in choice.reason and "BdsDxe" in console, (choice, stderr)
        return
    # KVM cannot run the firmware here: the reason is QEMU's own words, not the lab's QMP.
    assert "QMP" not in choice.reason and "Connection reset" not in choice.reason, choice
    said = [line.strip() for line in stderr.splitlines()
            if line.strip() and "terminating on signal" not in line]
    assert said, f"QEMU by hand printed nothing on stderr; the probe said: {choice.reason}"
    assert any(line in choice.reason for line in said), (choice.reason, stderr)
    assert "KVM internal error" in choice.reason or "qemu-system-" in choice.reason


def test_a_cached_verdict_of_the_old_probe_is_probed_again(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setenv("CLOUDBOOT_CACHE", str(tmp_path))
    monkeypatch.delenv(accel.ENV, raising=False)
    stale = {"accel": "tcg", "source": "probe", "reason": "KVM probe failed: cannot connect "
             "QMP at /tmp/x/qmp.sock: Failed to establish session: [Errno 104] Connection "
             "reset by peer"}
    accel._cache_file().write_text(json.dumps(stale))
    fresh = accel.host_accel()
    assert fresh.source == "probe" and "cannot connect QMP" not in fresh.reason
    again = accel.host_accel()  # still cached per host boot
    assert (again.accel, again.reason, again.source) == (fresh.accel, fresh.reason, "cache")
    assert accel.boot_id() in accel._cache_file().name
