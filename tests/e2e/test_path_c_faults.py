"""Path C on QEMU x86_64 across several boots of one machine (same VARS file, same cache
disk), and its failure cases (issue 5): BootNext is one-shot; a power cut after `staged`
never leaves a half-written file to boot; host reset brings the menu back and a typed choice
stages again; a full cache ESP, a full variable store and a non-EFI kernel are each a clear
`handoff` fatal that changes nothing it should not.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from cloudboot.cli.main import main as cloudboot_main
from cloudboot.efi import varstore
from cloudboot.efi.loadopt import staged_paths
from lab.cells import Cell
from lab.paths.c import PathCMachine, PathCRun, cache_esp

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

TIMEOUT = 900.0  # two firmware passes under TCG, with other guests on the same 2 cores


def _cell(fs: str = "ext4") -> Cell:
    return Cell("qemu", "x86_64", "C", "debian-12", fs)


def _foreign_intact(m: PathCMachine, b: PathCRun) -> None:
    for name, data in m.foreign_before.items():
        assert b.raw_after.get(name) == data, f"{name} was changed"
        assert int(name[4:], 16) in b.order_after, f"{name} fell out of BootOrder"


def _staged_files(b: PathCRun) -> list[str]:
    return sorted(p for p in b.esp_files if p.lower().startswith("/efi/linux/"))


def test_bootnext_is_one_shot(tmp_path: Path) -> None:
    m = PathCMachine.create(_cell(), tmp_path)
    iso = m.iso(m.cmdline("cloudboot.bootnext=1"))
    first = m.boot(iso, timeout=TIMEOUT)
    r = first.result
    assert r.status == "pass", f"{r.category}: {r.evidence}"
    assert r.banners == 1
    assert first.event("bootvar-written") is not None
    # Our entry exists, BootNext was consumed by the firmware, ours is not in BootOrder.
    assert len(first.ours) == 1
    assert first.vars_after.get("boot_next") is None, first.vars_after
    assert first.ours[0]["number"] not in first.vars_after["boot_order"]
    _foreign_intact(m, first)

    # The boot after: the firmware follows BootOrder, so cloudboot-init runs again.
    second = m.boot(iso, timeout=TIMEOUT)
    assert second.result.status == "pass", f"{second.result.category}: {second.result.evidence}"
    assert second.result.banners == 1
    assert second.event("staged") is not None, "the bootstrap did not run on the next boot"
    assert len(second.ours) == 1, "the entry was not reused"


def test_power_cut_after_staged_then_the_next_boot_recovers(tmp_path: Path) -> None:
    m = PathCMachine.create(_cell(), tmp_path)
    iso = m.iso(m.cmdline())
    cut = m.boot(iso, timeout=TIMEOUT, kill_at="staged")
    assert cut.killed_at == "staged", cut.result.evidence
    assert cut.fsck is not None and cut.fsck.returncode in (0, 1), cut.fsck  # 1: fixable
    # Whatever reached the disk: no temporary file is ever named by a boot entry.
    for e in cut.ours:
        assert ".cbtmp" not in e["device_path"] and ".cbtmp" not in e["optional_data"]

    again = m.boot(iso, timeout=TIMEOUT)
    r = again.result
    assert r.status == "pass", f"{r.category}: {r.evidence}"
    assert again.fsck is not None and again.fsck.returncode == 0, again.fsck
    assert not any(p.endswith(".cbtmp") for p in again.esp_files), again.esp_files
    kernel, initrd = staged_paths(again.ours[0]["description"].removeprefix("cloud-boot "))
    files = {p.lower() for p in again.esp_files}
    assert kernel.replace("\\", "/").lower() in files
    assert initrd.replace("\\", "/").lower() in files
    assert len(again.ours) == 1
    _foreign_intact(m, again)


MENU_PROMPT = re.compile(r"\[number, name or prefix; Enter = [^\]]+\]")


def test_host_reset_brings_the_menu_back_and_a_typed_choice_stages(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = PathCMachine.create(_cell(), tmp_path)
    first = m.boot(m.iso(m.cmdline()), timeout=TIMEOUT)
    assert first.result.status == "pass", f"{first.result.category}: {first.result.evidence}"
    assert len(first.ours) == 1

    # Host side: the VM is off; reset removes only our entry.
    assert cloudboot_main(["reset", "--vars", str(m.vars_path)]) == 0
    assert "Boot" in capsys.readouterr().out
    store = varstore.VarStore(m.vars_path)
    assert not [o for o in store.options().values() if o and o.description.startswith(
        "cloud-boot ")]

    plan = tmp_path / "plan.hcl"
    plan.write_text(f'''
default_target = "rescue"
menu {{
  timeout = 0
}}
target "rescue" {{
  label = "not this one"
  disk {{
    device = "LABEL=nosuch"
  }}
}}
target "debian" {{
  label = "Debian 12 from the local disk"
  disk {{
    device = "LABEL={m.image.fs_label}"
  }}
}}
''')
    iso = m.iso(m.cmdline(disk=False), plan)
    typed = m.boot(iso, timeout=TIMEOUT, type_at=(MENU_PROMPT, "debian\r"))
    r = typed.result
    assert r.status == "pass", f"{r.category}: {r.evidence}"
    choice = typed.event("menu-choice")
    assert choice is not None and choice["target"] == "debian" and choice["how"] == "typed"
    assert len(typed.ours) == 1
    assert typed.ours[0]["description"] == "cloud-boot debian"
    assert typed.vars_after["boot_order"][0] == typed.ours[0]["number"]
    _foreign_intact(m, typed)


def _fill_esp(m: PathCMachine, leave: int) -> None:
    """Fill the cache ESP with a junk file so that only about `leave` bytes stay free."""
    offset = cache_esp(m.cache).first_lba * 512
    free = _mtools_free(m, offset)
    junk = m.workdir / "junk.bin"
    with junk.open("wb") as f:
        f.truncate(max(free - leave, 0))
    subprocess.run(["mcopy", "-i", f"{m.cache}@@{offset}", str(junk), "::/junk.bin"],
                   check=True, capture_output=True, env={"MTOOLS_SKIP_CHECK": "1"})
    junk.unlink()
    assert _mtools_free(m, offset) <= leave + (64 << 10)


def _mtools_free(m: PathCMachine, offset: int) -> int:
    out = subprocess.run(["mdir", "-i", f"{m.cache}@@{offset}", "::"], capture_output=True,
                         text=True, check=True, env={"MTOOLS_SKIP_CHECK": "1"}).stdout
    found = re.search(r"([\d ]+) bytes free", out)
    assert found, out
    return int(found.group(1).replace(" ", ""))


def test_full_cache_esp_is_a_handoff_fatal_and_touches_no_variable(tmp_path: Path) -> None:
    m = PathCMachine.create(_cell(), tmp_path)
    _fill_esp(m, leave=2 << 20)
    b = m.boot(m.iso(m.cmdline()), timeout=TIMEOUT)
    r = b.result
    assert r.status == "fail" and r.category == "handoff", f"{r.category}: {r.evidence}"
    fatal = b.event("fatal")
    assert fatal is not None and "is full" in fatal["message"], fatal
    assert b.event("bootvar-written") is None
    assert not b.ours
    _foreign_intact(m, b)
    assert b.fsck is not None and b.fsck.returncode == 0, b.fsck
    assert not any(p.endswith(".cbtmp") for p in b.esp_files)


# Linux on x86 refuses an EFI variable write that would leave less than 5 KiB free in the
# store (arch/x86/platform/efi/quirks.c), so leaving 3 KiB makes every write fail while the
# firmware still has room for its own boot-time updates.
VAR_FILLER_GUID = "3f1c9a52-6a0e-4d8e-9c27-4b1f3b0c5a11"


def _fill_var_store(path: Path, leave: int) -> int:
    store = varstore.VarStore(path)
    n = 0
    while store.end - store.free > leave + 4096 + 64:
        store.set(f"CbLabFiller{n:03d}", VAR_FILLER_GUID, bytes(4096))
        n += 1
    last = store.end - store.free - leave - 64 - 40
    if last > 0:
        store.set(f"CbLabFiller{n:03d}", VAR_FILLER_GUID, bytes(last))
    store.save()
    return store.end - varstore.VarStore(path).free


def test_full_variable_store_is_a_handoff_fatal_and_keeps_foreign_entries(
        tmp_path: Path) -> None:
    m = PathCMachine.create(_cell(), tmp_path)
    free = _fill_var_store(m.vars_path, leave=3072)
    assert free < 5120
    b = m.boot(m.iso(m.cmdline()), timeout=TIMEOUT)
    r = b.result
    assert r.status == "fail" and r.category == "handoff", f"{r.category}: {r.evidence}"
    fatal = b.event("fatal")
    assert fatal is not None and "Boot" in fatal["message"], fatal
    assert b.event("bootvar-written") is None
    assert not b.ours
    _foreign_intact(m, b)


def test_non_efi_kernel_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    m = PathCMachine.create(_cell(), tmp_path)
    # An ELF executable from the target's own /usr/bin stands in for a kernel without a stub.
    b = m.boot(m.iso(m.cmdline("cloudboot.disk.kernel=/usr/bin/env "
                               "cloudboot.disk.initrd=/usr/bin/env")), timeout=TIMEOUT)
    r = b.result
    assert r.status == "fail" and r.category == "handoff", f"{r.category}: {r.evidence}"
    fatal = b.event("fatal")
    assert fatal is not None and "not an EFI-stub image" in fatal["message"], fatal
    assert b.event("staged") is None and not b.ours
    assert not _staged_files(b), b.esp_files
    _foreign_intact(m, b)
