"""Path A on QEMU x86_64: firmware → UKI → cloudboot-init → kexec → the target's userspace."""

from __future__ import annotations

import pytest

from lab.cells import DISTROS, FILESYSTEMS, Cell
from lab.images import debian
from lab.paths.a import run_bootstrap, run_path_a_disk

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

SMOKE = {"qemu-x86_64-A-debian-12-ext4"}
CELLS = [Cell("qemu", "x86_64", "A", d, fs) for d in DISTROS for fs in FILESYSTEMS]


@pytest.mark.parametrize("cell", [
    pytest.param(c, id=c.id, marks=[pytest.mark.smoke] if c.id in SMOKE else []) for c in CELLS
])
def test_path_a_from_local_disk(cell: Cell, tmp_path, settle_cell) -> None:
    result = run_path_a_disk(cell, tmp_path)
    settle_cell(result)
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    assert result.banners == 1, "cloudboot-init must run exactly once"
    # The handoff really was a kexec, and it came after the target was found on the disk.
    times = result.phase_times
    assert times["disk-found"] < times["kexec-load"] < times["userspace"]


def _fail_cell(name: str) -> Cell:
    return Cell("qemu", "x86_64", "A", "debian-12", name)


@pytest.mark.smoke
def test_no_such_disk_is_an_init_disk_fatal(tmp_path) -> None:
    result, _ = run_bootstrap(_fail_cell("nodisk"), tmp_path,
                              "cloudboot.disk=LABEL=nosuchdisk cloudboot.disk.timeout=3", [],
                              timeout=300)
    assert (result.status, result.category) == ("fail", "init-disk"), result.evidence
    assert "nosuchdisk" in result.evidence


@pytest.mark.smoke
def test_disk_without_kernel_is_an_init_disk_fatal(tmp_path) -> None:
    blank = debian.build_blank("ext4", "cbempty")
    result, _ = run_bootstrap(_fail_cell("nokernel"), tmp_path, "cloudboot.disk=LABEL=cbempty",
                              [blank], timeout=300)
    assert (result.status, result.category) == ("fail", "init-disk"), result.evidence
    assert "kernel" in result.evidence.lower()


@pytest.mark.smoke
def test_kexec_refused_is_a_handoff_fatal(tmp_path) -> None:
    image = debian.build("bookworm", "ext4")
    result, _ = run_bootstrap(
        _fail_cell("nokexec"), tmp_path,
        f"cloudboot.disk=LABEL={image.fs_label} sysctl.kernel.kexec_load_disabled=1",
        [image.path], timeout=300)
    assert (result.status, result.category) == ("fail", "handoff"), result.evidence
    assert "EPERM" in result.evidence


@pytest.mark.smoke
def test_embedded_plan_disk_target(tmp_path) -> None:
    """`cloudboot build --plan-file`: the plan's disk target and its command line are used."""
    image = debian.build("bookworm", "ext4")
    plan = tmp_path / "plan.hcl"
    plan.write_text(f'''
default_target = "debian"
target "debian" {{
  label = "Debian 12 from the local disk"
  disk {{
    device = "UUID={image.fs_uuid}"
  }}
  cmdline = ["root=UUID={image.fs_uuid}", "ro", "console=ttyS0", "cb.from=plan"]
}}
''')
    result, _ = run_bootstrap(Cell("qemu", "x86_64", "A", "debian-12", "plan"), tmp_path, "",
                              [image.path], plan_file=plan)
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    assert result.userspace is not None
    assert result.userspace["kernel"] == image.kernel_version
    assert "cb.from=plan" in result.userspace["cmdline"]
