"""Path C on QEMU x86_64: UKI → cloudboot-init stages on the cache ESP, writes Boot####,
reboots → OVMF starts the staged kernel's EFI stub → the target's userspace."""

from __future__ import annotations

import pytest

from cloudboot.efi.loadopt import staged_paths
from cloudboot.init.bootentry import build_option
from lab.cells import DISTROS, FILESYSTEMS, Cell
from lab.images import debian
from lab.matrix import judge
from lab.path_c import run_menu_boot, run_path_c_disk
from lab.runner import run_bootstrap

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

SMOKE = {"qemu-x86_64-C-debian-12-ext4"}
CELLS = [Cell("qemu", "x86_64", "C", d, fs) for d in DISTROS for fs in FILESYSTEMS]


@pytest.mark.parametrize("cell", [
    pytest.param(c, id=c.id, marks=[pytest.mark.smoke] if c.id in SMOKE else []) for c in CELLS
])
def test_path_c_from_local_disk(cell: Cell, tmp_path, record_cell) -> None:
    run = run_path_c_disk(cell, tmp_path)
    result = run.result
    xfail = judge(result)
    record_cell(result)
    if xfail:
        pytest.xfail(xfail)
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    # The second pass was the firmware starting the staged kernel, not cloudboot-init again.
    assert result.banners == 1, "cloudboot-init must run exactly once"
    times = result.phase_times
    # Host arrival times: lines read in one batch share a timestamp, hence <=.
    assert times["staged"] <= times["bootvar-written"] <= times["rebooting"] < times["userspace"]

    # Our entry, first in BootOrder, pointing at the cache disk's ESP.
    ours = [e for e in run.vars_after["entries"] if e.get("cloudboot")]
    assert len(ours) == 1, run.vars_after
    entry = ours[0]
    assert entry["description"].startswith("cloud-boot ")
    assert run.vars_after["boot_order"][0] == entry["number"]
    assert len(set(run.vars_after["boot_order"])) == len(run.vars_after["boot_order"])
    esp = run.esp
    assert esp is not None
    target = entry["description"].removeprefix("cloud-boot ")
    kernel_path, initrd_path = staged_paths(target)
    # HD() from the partition table the host reads on the cache disk after the run.
    assert entry["device_path"] == build_option(target, esp, "").path_text(), entry
    assert f"HD({esp.number},GPT,{esp.part_guid}," in entry["device_path"]
    assert entry["optional_data"].startswith(f"initrd={initrd_path} ")
    assert "root=UUID=" in entry["optional_data"]

    # Someone else's entries: byte for byte as planted, and still in BootOrder.
    assert run.foreign_before, "no foreign entries were planted"
    for name, data in run.foreign_before.items():
        assert run.raw_after.get(name) == data, f"{name} was changed"
        assert int(name[4:], 16) in run.order_after, f"{name} fell out of BootOrder"

    # The staged files on the cache disk's FAT, the sizes the guest reported.
    staged = run.event("staged")
    assert staged is not None
    files = {p.lower(): size for p, size in run.esp_files.items()}
    kfile = kernel_path.replace("\\", "/").lower()
    ifile = initrd_path.replace("\\", "/").lower()
    assert kfile in files and ifile in files, run.esp_files
    assert files[kfile] == staged["kernel_bytes"]
    assert files[ifile] == staged["initrd_bytes"]
    assert files[kfile] > 1 << 20 and files[ifile] > 1 << 20
    assert not any(p.endswith(".cbtmp") for p in files), "a temporary file was left behind"
    assert run.fsck is not None and run.fsck.returncode == 0, run.fsck.stdout + run.fsck.stderr


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
