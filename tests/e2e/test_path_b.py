"""Path B on QEMU: firmware → the native loader (loader/b) → the distro kernel's EFI stub.

Cells: the Debian target disk (ext4) on x86_64, aarch64 and armv7 (AAVMF32, the loader built
for thumbv7, the armmp zImage's own EFI stub), and a UKI on a separate ESP
(`\\EFI\\Linux\\<name>.efi`).  Failure cases assert the loader's console line and its fatal
event category; every run reads CloudBootMark back from the vars file on the host.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.cells import Cell
from lab.images import debian
from lab.matrix import judge
from lab.paths.b import run_path_b, uki_disk
from tests.helpers import require_lane

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

X86 = Cell("qemu", "x86_64", "B", "debian-12", "ext4")
X86_13 = Cell("qemu", "x86_64", "B", "debian-13", "ext4")
ARM = Cell("qemu", "aarch64", "B", "debian-12", "ext4")
ARMV7 = Cell("qemu", "armv7", "B", "debian-12", "ext4")
UKI = Cell("qemu", "x86_64", "B", "debian-12", "ext4-uki")
# TCG on 2 shared cores: a lone boot reaches userspace in ~25 s (x86_64); leave 10× room.
TIMEOUT = 420.0


def _require(arch: str) -> None:
    if shutil.which("clang") is None or shutil.which("lld-link") is None:
        pytest.fail("clang/lld-link missing (python -m cloudboot.debian.hostdeps ensure tests)")
    require_lane(arch)


def _assert_pass(run, cell: Cell) -> None:  # type: ignore[no-untyped-def]
    r = run.result
    assert r.status == "pass", f"{r.category}: {r.evidence}\n{run.loader_error}"
    times = r.phase_times
    assert times["loader-start"] < times["loader-handoff"] < times["userspace"]
    assert run.mark is not None and run.mark.startswith("b:boot "), run.mark
    print(f"{cell.id}: firmware reset -> loader {times['loader-start']:.1f} s, "
          f"kernel handoff {times['loader-handoff']:.1f} s, userspace {times['userspace']:.1f} s")


@pytest.mark.parametrize("cell", [
    pytest.param(X86, id=X86.id, marks=[pytest.mark.smoke]),
    pytest.param(X86_13, id=X86_13.id),
])
def test_path_b_x86_64_ext4(cell: Cell, tmp_path: Path, record_cell) -> None:
    """CloudBootTarget=ext4:, no command line: the loader finds the root, adds root=UUID=."""
    _require("x86_64")
    run = run_path_b(cell, tmp_path, target="ext4:", timeout=TIMEOUT)
    reason = judge(run.result)
    record_cell(run.result)
    if reason:
        pytest.xfail(reason)
    _assert_pass(run, cell)
    image = debian.build(cell.release, "ext4", "x86_64")
    assert run.mark == f"b:boot ext4 {image.fs_uuid} /boot/vmlinuz-{image.kernel_version}"


def test_path_b_aarch64_ext4(tmp_path: Path, record_cell) -> None:
    """aarch64 (AAVMF, trixie's VARS template): CloudBootCmdline without root= gets one."""
    _require("aarch64")
    run = run_path_b(ARM, tmp_path, target="ext4:LABEL=cbroot",
                     cmdline="console=ttyAMA0 panic=-1", timeout=900)
    record_cell(run.result)
    _assert_pass(run, ARM)
    assert "panic=-1" in str((run.result.userspace or {}).get("cmdline"))


ARMV7_TIMEOUT = 600.0  # a lone boot reaches userspace in ~115-120 s on 2 busy cores


@pytest.mark.timeout(ARMV7_TIMEOUT + 300)
@pytest.mark.parametrize("cell", [pytest.param(ARMV7, id=ARMV7.id)])
def test_path_b_armv7_ext4(cell: Cell, tmp_path: Path, settle_cell) -> None:
    """armv7 (AAVMF32, cortex-a15 under TCG): CloudBootTarget=ext4:, no command line. The
    loader reads the armmp zImage (PE32, machine 0x01c2) and its initrd from ext4, keeps the
    pages behind the loaded zImage free for its decompressor, and hands the initrd over by
    LoadFile2."""
    _require("armv7")
    run = run_path_b(cell, tmp_path, target="ext4:", timeout=ARMV7_TIMEOUT)
    settle_cell(run.result)
    _assert_pass(run, cell)
    image = debian.build(cell.release, "ext4", "armv7")
    assert run.mark == f"b:boot ext4 {image.fs_uuid} /boot/vmlinuz-{image.kernel_version}"
    assert "reserved for the zImage decompressor" in run.text


def test_path_b_uki_on_esp(tmp_path: Path, record_cell) -> None:
    """CloudBootTarget=debian: \\EFI\\Linux\\debian.efi (a UKI of the target's kernel) on
    another disk's ESP; the loader's own volume is never used."""
    _require("x86_64")
    disk = uki_disk(UKI, tmp_path, "debian")
    image = debian.build("bookworm", "ext4", "x86_64")
    run = run_path_b(UKI, tmp_path, target="debian", extra_disks=[disk], userspace_of=image,
                     timeout=TIMEOUT)
    record_cell(run.result)
    _assert_pass(run, UKI)
    assert run.mark == "b:boot \\EFI\\Linux\\debian.efi"


# --- failure cases: one clear console line, a fatal event, back to the firmware ----------

def _fail(tmp_path: Path, **kw):  # type: ignore[no-untyped-def]
    _require("x86_64")
    run = run_path_b(Cell("qemu", "x86_64", "B", "debian-12", "ext4-fail"), tmp_path,
                     timeout=300, **kw)
    assert run.result.status == "fail", run.result.evidence
    assert run.mark == "b:start", f"CloudBootMark {run.mark!r}: the loader must write it first"
    return run


def test_fail_variable_missing(tmp_path: Path) -> None:
    run = _fail(tmp_path, target=None, with_target_image=False)
    assert run.loader_error is not None and "CloudBootTarget is not set" in run.loader_error
    assert run.result.category == "init-plan"


def test_fail_variable_garbage(tmp_path: Path) -> None:
    run = _fail(tmp_path, target=None, raw_vars={"CloudBootTarget": b"\xff\xfe\x01garbage"},
                with_target_image=False)
    assert run.loader_error is not None
    assert "CloudBootTarget holds no usable text" in run.loader_error
    assert run.result.category == "init-plan"


def test_fail_target_file_missing(tmp_path: Path) -> None:
    run = _fail(tmp_path, target="nosuchuki", with_target_image=False)
    assert run.loader_error is not None
    assert "\\EFI\\Linux\\nosuchuki.efi not found on any FAT volume" in run.loader_error
    assert run.result.category == "init-disk"


def test_fail_no_ext4_root(tmp_path: Path) -> None:
    """No disk but the loader's own: no root. (The \\cmdline beside the loader is read first.)"""
    run = _fail(tmp_path, target="ext4:", with_target_image=False,
                file_cmdline="console=ttyS0 quiet")
    assert "cloudboot-loader: command line from \\cmdline" in run.text
    assert run.loader_error is not None and "no ext4 distro root found" in run.loader_error
    assert run.result.category == "init-disk"


def test_fail_kernel_not_efi(tmp_path: Path) -> None:
    """A FAT volume whose \\EFI\\Linux\\broken.efi is not a PE image."""
    from cloudboot.loader.media import esp_disk

    disk = tmp_path / "broken.img"
    esp_disk(disk, {"EFI/Linux/broken.efi": b"\x7fELF not a PE image" * 64}, label="BROKEN")
    _require("x86_64")
    run = run_path_b(Cell("qemu", "x86_64", "B", "debian-12", "ext4-fail"), tmp_path,
                     target="broken", extra_disks=[disk], with_target_image=False, timeout=300)
    assert run.result.status == "fail"
    assert run.loader_error is not None and "kernel is not an EFI image" in run.loader_error
    assert run.result.category == "target-kernel"
    assert run.mark == "b:boot \\EFI\\Linux\\broken.efi"
