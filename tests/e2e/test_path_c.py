"""Path C on QEMU x86_64: UKI → cloudboot-init stages on the cache ESP, writes Boot####,
reboots → OVMF starts the staged kernel's EFI stub → the target's userspace."""

from __future__ import annotations

import pytest

from lab.cells import DISTROS, FILESYSTEMS, Cell
from lab.images import debian
from lab.paths.a import run_bootstrap
from lab.paths.c import path_c_problems, run_menu_boot, run_path_c_disk

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

SMOKE = {"qemu-x86_64-C-debian-12-ext4"}
CELLS = [Cell("qemu", "x86_64", "C", d, fs) for d in DISTROS for fs in FILESYSTEMS]


@pytest.mark.parametrize("cell", [
    pytest.param(c, id=c.id, marks=[pytest.mark.smoke] if c.id in SMOKE else []) for c in CELLS
])
def test_path_c_from_local_disk(cell: Cell, tmp_path, settle_cell) -> None:
    run = run_path_c_disk(cell, tmp_path)
    result = run.result
    settle_cell(result)
    # Once through cloudboot-init, phases in order, our entry first in BootOrder with HD()
    # from the cache disk's partition table, foreign entries untouched, staged files as
    # reported, fsck clean: lab.paths.c.path_c_problems names whatever is off.
    assert not (bad := path_c_problems(run)), bad
    assert "root=UUID=" in run.ours[0]["optional_data"]


def test_no_cache_disk_is_a_handoff_fatal_that_says_what_to_do(tmp_path) -> None:
    image = debian.build("bookworm", "ext4")
    result, _ = run_bootstrap(Cell("qemu", "x86_64", "C", "debian-12", "nocache"), tmp_path,
                              f"cloudboot.disk=LABEL={image.fs_label} cloudboot.exit=reboot",
                              [image.path], timeout=400)
    assert (result.status, result.category) == ("fail", "handoff"), result.evidence
    assert "no cache ESP" in result.evidence and "cloudboot cache-disk" in result.evidence
    assert "staged" not in result.phase_times and "bootvar-written" not in result.phase_times


def test_menu_choice_typed_on_hvc0(tmp_path) -> None:
    """The plan's menu {} on the consoles; "2" typed on hvc0 boots the second target."""
    image = debian.build("bookworm", "ext4")
    plan = tmp_path / "plan.hcl"
    plan.write_text(f'''
default_target = "first"
menu {{
  timeout = 0
}}
target "first" {{
  disk {{
    device = "UUID={image.fs_uuid}"
  }}
  cmdline = ["root=UUID={image.fs_uuid}", "ro", "console=ttyS0", "cb.pick=first"]
}}
target "second" {{
  label = "the other one"
  disk {{
    device = "UUID={image.fs_uuid}"
  }}
  cmdline = ["root=UUID={image.fs_uuid}", "ro", "console=ttyS0", "cb.pick=second"]
}}
''')
    result = run_menu_boot(Cell("qemu", "x86_64", "A", "debian-12", "menu"), tmp_path, plan,
                           [image.path], "2\r")
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    assert result.userspace is not None and "cb.pick=second" in result.userspace["cmdline"]
    assert result.phase_times["menu"] < result.phase_times["menu-choice"]
