"""Path C with a UKI assembled in the guest (cloudboot.stage=uki, issue 7).

cloudboot-init lays the bootstrap's own systemd-stub, the target kernel, its initrd and the
target command line out as one UKI, streams it onto the cache ESP as
\\EFI\\Linux\\<safe>-uki.efi, writes a Boot#### pointing at it with no load options, and
restarts; the firmware starts the UKI, the stub hands the kernel its .initrd and .cmdline, and
the target reaches userspace. x86_64 and aarch64 stubs honour `initrd=` too (their default
stays "split"); the UKI form is what armv7, riscv64 and loongarch64 need (DESIGN §7), and
their cells run once the lanes can boot a target there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudboot.efi.loadopt import staged_paths
from cloudboot.init.pathc.bootentry import uki_path
from lab.cells import Cell
from lab.images import debian
from lab.paths.c import PathCMachine, PathCRun, path_c_problems, reset_stalled

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

TIMEOUT = 900.0  # a lone x86_64 Path C boot takes ~2 min under TCG; the host is shared
SMOKE = {"qemu-x86_64-C-debian-12-ext4-uki"}
ARCHES = ("x86_64", "aarch64")


def run_uki_cell(cell: Cell, workdir: Path, extra: str = "cloudboot.stage=uki") -> PathCRun:
    image = debian.build(cell.release, "ext4", cell.arch)
    m = PathCMachine.create(cell, workdir, image=image)
    return m.boot(m.iso(m.cmdline(extra)), timeout=TIMEOUT)


def uki_problems(run: PathCRun) -> list[str]:
    """path_c_problems (which knows the UKI form), plus: the staged event names the UKI, the
    split files of the target are not on the ESP, the target booted with the cmdline the
    UKI carries."""
    bad = path_c_problems(run)
    staged = run.event("staged") or {}
    if staged.get("form") != "uki":
        bad.append(f"staged form {staged.get('form')!r}, not 'uki'")
    if not run.ours:
        return bad
    target = run.ours[0]["description"].removeprefix("cloud-boot ")
    if not run.ours[0]["device_path"].endswith("/" + uki_path(target)):
        bad.append(f"Boot#### points at {run.ours[0]['device_path']}, not the UKI")
    files = {p.replace("/", "\\").lower() for p in run.esp_files}
    for split in staged_paths(target):
        if split.lower() in files:
            bad.append(f"{split} is on the ESP next to the UKI")
    if staged.get("linux_bytes", 0) < 1 << 20 or staged.get("initrd_bytes", 0) < 1 << 20:
        bad.append(f"UKI sections too small: {staged}")
    u = run.result.userspace or {}
    if "root=UUID=" not in str(u.get("cmdline", "")):
        bad.append(f"target userspace cmdline {u.get('cmdline')!r} lacks the root= the UKI "
                   "carries")
    return bad


@pytest.mark.timeout(1800)  # one ~5 min Path C boot pair; the shared host can triple it
@pytest.mark.parametrize("arch", [
    pytest.param(a, id=f"qemu-{a}-C-debian-12-ext4-uki",
                 marks=[pytest.mark.smoke] if f"qemu-{a}-C-debian-12-ext4-uki" in SMOKE else [])
    for a in ARCHES
])
def test_path_c_staged_uki(arch: str, tmp_path: Path, settle_cell) -> None:
    cell = Cell("qemu", arch, "C", "debian-12", "ext4-uki")
    run = run_uki_cell(cell, tmp_path)
    settle_cell(run.result)
    assert not (bad := uki_problems(run)), bad


# The arches whose kernel stub ignores initrd=: the default form ("auto") is the UKI there,
# so these cells run Path C exactly as a user would, with no cloudboot.stage= at all. Each on
# the release that has the arch (as tests/e2e/test_path_a_arches.py); target images are built
# under qemu-user on first use (40+ minutes cold), hence not smoke.
ARCH_CELLS = [
    Cell("qemu", "armv7", "C", "debian-12", "ext4"),
    Cell("qemu", "riscv64", "C", "debian-13", "ext4"),
    Cell("qemu", "loongarch64", "C", "debian-14", "ext4"),
]
ARCH_TIMEOUT = 1500.0


# A cold lane builds its target image (40+ min under qemu-user) and bootstrap initramfs first.
@pytest.mark.timeout(4 * 3600)
@pytest.mark.parametrize("cell", [pytest.param(c, id=c.id) for c in ARCH_CELLS])
def test_path_c_uki_by_default_on_arches_that_need_it(cell: Cell, tmp_path: Path,
                                                      settle_cell) -> None:
    from lab.arch_lanes import LaneGap
    from lab.qemu_private import PrivateQemuError

    # a [[not_run]] cell (no image yet) is skipped with its reason by lab.pytest_plugin
    try:
        image = debian.build(cell.release, "ext4", cell.arch)
        m = PathCMachine.create(cell, tmp_path, image=image)
        run = m.boot(m.iso(m.cmdline()), timeout=ARCH_TIMEOUT)
    except (LaneGap, PrivateQemuError) as e:
        pytest.fail(f"{cell.id}: the lane cannot build or boot its bootstrap: {e}")
    if reset_stalled(run):
        # The platform never reset (loongarch64: a known emulator failure). What cloudboot staged is
        # still checked: a host power cycle, same VARS and cache disk, boots the staged UKI
        # (a pass proves the target's kernel, os-release and root=, lab.verdict.check_userspace).
        cycled = m.boot(m.iso(m.cmdline()), timeout=ARCH_TIMEOUT)
        r = cycled.result
        assert r.status == "pass", f"after a host power cycle: {r.category}: {r.evidence}"
        run.result.evidence += (f"; a host power cycle then booted the staged UKI to the "
                                f"target's userspace in {r.phase_times['userspace']:.0f} s")
    settle_cell(run.result)
    assert not (bad := uki_problems(run)), bad
