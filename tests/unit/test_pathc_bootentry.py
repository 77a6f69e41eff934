"""The Path C Boot####: bytes checked against virt-firmware's decoder, and the variable rules
(never overwrite a foreign entry, ours first in BootOrder, BootNext, reset) exercised through
cloudboot.efi.efivarfs on a plain directory laid out like efivarfs."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
import virt.firmware.efi.bootentry as bootentry_mod  # type: ignore[import-untyped]

from cloudboot.efi import bootvars, efivarfs, loadopt
from cloudboot.efi.guid import EFI_GLOBAL_VARIABLE as G
from cloudboot.init.pathc import bootentry
from cloudboot.init.storage.gptread import GptPartition, read_gpt
from cloudboot.media import cachedisk

PART = GptPartition(1, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
                    "0ea965ad-b721-4c8d-b92d-148614ca572c", "cloud-boot-cache", 2048, 522239)
CMDLINE = "root=UUID=00fcfd1b-a610-5f60-b825-1495e0a27318 ro console=ttyS0"


def foreign(title: str, path: str) -> bytes:
    return loadopt.LoadOption(1, title, [loadopt.devpath.FilePath.of(path),
                                         loadopt.devpath.End()]).pack()


def test_option_bytes_agree_with_virt_firmware() -> None:
    opt = bootentry.build_option("debian-12", PART, CMDLINE)
    vf = bootentry_mod.BootEntry(data=opt.pack())
    assert vf.attr == loadopt.LOAD_OPTION_ACTIVE
    assert str(vf.title) == "cloud-boot debian-12"
    hd = vf.devicepath[0]
    assert hd.is_type(4, 1)  # MEDIA / HardDrive
    assert str(hd.get_partuuid()) == PART.part_guid
    pnr, start, size = struct.unpack_from("<LQQ", hd.data)
    assert (pnr, start, size) == (1, 2048, 522239 - 2048 + 1)
    assert str(vf.devicepath[1].get_filepath()) == "\\EFI\\Linux\\debian-12-vmlinuz.efi"
    text = vf.optdata.decode("utf-16-le")
    assert text == f"initrd=\\EFI\\Linux\\debian-12-initrd {CMDLINE}\0"
    # And back: virt-firmware's re-encoding is byte-identical to ours.
    assert bytes(vf) == opt.pack()
    without = bootentry.build_option("debian-12", PART, CMDLINE, has_initrd=False)
    assert without.optional_text() == CMDLINE


def test_option_from_a_real_cache_disk(tmp_path: Path) -> None:
    cache = tmp_path / "cache.raw"
    cachedisk.create(cache, 64)
    table = read_gpt(cache)
    assert table is not None
    part = table.partitions[0]
    opt = bootentry.build_option("t", part, "ro")
    out = subprocess.run(["sgdisk", "-i", "1", str(cache)], capture_output=True, text=True,
                         check=True).stdout
    assert part.part_guid.upper() in out
    assert f"First sector: {part.first_lba} " in out and f"Last sector: {part.last_lba} " in out
    assert opt.path_text().startswith(f"HD(1,GPT,{part.part_guid},0x{part.first_lba:x},")


@pytest.fixture
def varsdir(tmp_path: Path) -> Path:
    """Boot0000 and Boot0001 written by someone else, BootOrder 0001,0000."""
    d = tmp_path / "efivars"
    d.mkdir()
    efivarfs.write_var("Boot0000", G, foreign("UiApp", "\\EFI\\x\\ui.efi"), root=d)
    efivarfs.write_var("Boot0001", G, foreign("debian", "\\EFI\\debian\\shimx64.efi"), root=d)
    efivarfs.write_var("BootOrder", G, bootvars.pack_boot_order([1, 0]), root=d)
    return d


def test_write_takes_lowest_free_and_keeps_foreign(varsdir: Path) -> None:
    before = {n: efivarfs.read_var(n, G, varsdir) for n in ("Boot0000", "Boot0001")}
    w = bootentry.write(bootentry.build_option("a", PART, CMDLINE), root=varsdir)
    assert (w.number, w.name, w.replaced) == (2, "Boot0002", False)
    assert w.boot_order == [2, 1, 0]
    for n, v in before.items():
        assert efivarfs.read_var(n, G, varsdir) == v
    got = efivarfs.read_var("BootOrder", G, varsdir)
    assert got is not None and bootvars.unpack_boot_order(got[1]) == [2, 1, 0]
    # Another target reuses our entry; BootOrder has no duplicates.
    w2 = bootentry.write(bootentry.build_option("b", PART, CMDLINE), root=varsdir)
    assert (w2.number, w2.replaced, w2.boot_order) == (2, True, [2, 1, 0])
    stored = efivarfs.read_var("Boot0002", G, varsdir)
    assert stored is not None and loadopt.unpack(stored[1]).description == "cloud-boot b"


def test_bootnext_leaves_boot_order_alone(varsdir: Path) -> None:
    w = bootentry.write(bootentry.build_option("a", PART, CMDLINE), boot_next=True, root=varsdir)
    assert w.boot_next == 2 and w.boot_order is None
    nxt = efivarfs.read_var("BootNext", G, varsdir)
    assert nxt is not None and bootvars.unpack_boot_next(nxt[1]) == 2
    order = efivarfs.read_var("BootOrder", G, varsdir)
    assert order is not None and bootvars.unpack_boot_order(order[1]) == [1, 0]


def test_undecodable_entry_counts_as_foreign(varsdir: Path) -> None:
    efivarfs.write_var("Boot0002", G, b"\x01\x00", root=varsdir)  # garbage: someone's anyway
    entries = bootentry.read_entries(varsdir)
    assert entries[2] is None
    w = bootentry.write(bootentry.build_option("a", PART, CMDLINE), root=varsdir)
    assert w.number == 3
    assert efivarfs.read_var("Boot0002", G, varsdir) == (efivarfs.NV_BS_RT, b"\x01\x00")


def test_refuses_to_write_an_entry_that_is_not_ours(varsdir: Path) -> None:
    with pytest.raises(bootentry.BootEntryError, match="not a cloudboot entry"):
        bootentry.write(loadopt.LoadOption(1, "grub", []), root=varsdir)
    assert sorted(bootentry.read_entries(varsdir)) == [0, 1]


def test_reset_removes_only_ours(varsdir: Path) -> None:
    bootentry.write(bootentry.build_option("a", PART, CMDLINE), root=varsdir)
    bootentry.write(bootentry.build_option("a", PART, CMDLINE), boot_next=True, root=varsdir)
    lines = bootentry.reset(varsdir)
    assert any("Boot0002" in line for line in lines) and "delete BootNext" in lines
    assert efivarfs.read_var("Boot0002", G, varsdir) is None
    assert efivarfs.read_var("BootNext", G, varsdir) is None
    assert efivarfs.read_var("Boot0000", G, varsdir) is not None
    order = efivarfs.read_var("BootOrder", G, varsdir)
    assert order is not None and bootvars.unpack_boot_order(order[1]) == [1, 0]
    assert bootentry.reset(varsdir) == []  # nothing of ours left
