"""Variable store files: entries made by virt-fw-vars and by OVMF itself, our entry, reset."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloudboot.efi import devpath as dp
from cloudboot.efi import guid, loadopt, varstore

OVMF_CODE_4M = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS_4M = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
OVMF_VARS_2M = Path("/usr/share/OVMF/OVMF_VARS.fd")
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")
PART = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
G = guid.EFI_GLOBAL_VARIABLE

# virt-firmware's CLI is the independent oracle here. It is a declared dependency, so it is
# installed next to the running interpreter; missing is a failure, and PATH does not matter.
VIRT_FW_VARS = Path(sys.executable).parent / "virt-fw-vars"


def virt_fw_vars(*args: str) -> subprocess.CompletedProcess[str]:
    assert VIRT_FW_VARS.is_file(), f"{VIRT_FW_VARS} is missing (virt-firmware installs it)"
    return subprocess.run([str(VIRT_FW_VARS), *args], capture_output=True, text=True,
                          timeout=60)


def our_option(target: str = "debian") -> loadopt.LoadOption:
    kernel, initrd = loadopt.staged_paths(target)
    return loadopt.cloudboot_option(target, 1, 2048, 522240, PART, kernel, initrd,
                                    "console=ttyS0")


def virt_fw_print(path: Path) -> str:
    r = virt_fw_vars("-i", str(path), "--print")
    assert r.returncode == 0, f"virt-fw-vars --print {path} failed: {r.stderr}"
    return r.stdout


def raw_boot_vars(path: Path) -> dict[str, tuple[int, bytes]]:
    store = varstore.VarStore(path)
    return {e.name: (e.attributes, e.data) for e in store.boot_entries().values()}


@pytest.fixture(scope="module")
def foreign_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OVMF_VARS_4M with two entries virt-fw-vars made: a file path (BootOrder) and a URI
    (BootNext)."""
    out = tmp_path_factory.mktemp("foreign") / "vars.fd"
    r = virt_fw_vars("-i", str(OVMF_VARS_4M), "-o", str(out),
                     "--append-boot-filepath", "\\EFI\\debian\\grubx64.efi",
                     "--set-boot-uri", "http://example.invalid/boot.iso")
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture
def foreign_store(foreign_template: Path, tmp_path: Path) -> Path:
    out = tmp_path / "vars.fd"
    shutil.copy(foreign_template, out)
    return out


def test_foreign_entries_decode(foreign_store: Path) -> None:
    d = varstore.describe(foreign_store)
    json.dumps(d)  # JSON-able
    by_name = {e["name"]: e for e in d["entries"]}
    assert by_name["Boot0000"]["device_path"] == "\\EFI\\debian\\grubx64.efi"
    assert by_name["Boot0099"]["device_path"] == "Uri(http://example.invalid/boot.iso)"
    assert not any(e["cloudboot"] for e in d["entries"])
    assert d["boot_order"] == ["0000"] and d["boot_next"] == "0099"


def test_add_then_reset_keeps_foreign_entries_byte_for_byte(foreign_store: Path) -> None:
    before = raw_boot_vars(foreign_store)
    n = varstore.add_cloudboot_entry(foreign_store, our_option())
    assert n == 1  # lowest free; 0000 and 0099 are foreign
    assert varstore.add_cloudboot_entry(foreign_store, our_option()) == 1  # reused
    varstore.set_cloudboot_var(foreign_store, guid.CLOUDBOOT_TARGET, b"debian")
    store = varstore.VarStore(foreign_store)
    assert store.boot_order() == [1, 0]
    assert store.boot_entries()[1].option == our_option()
    assert store.cloudboot_vars() == {"CloudBootTarget": (7, b"debian")}
    printed = virt_fw_print(foreign_store)
    assert 'title="cloud-boot debian"' in printed and "FilePath(\\EFI\\Linux\\debian" in printed

    dry = varstore.reset(foreign_store, dry_run=True)
    snapshot = foreign_store.read_bytes()
    lines = varstore.reset(foreign_store)
    assert lines == dry
    assert lines == [
        f"delete Boot0001 'cloud-boot debian': HD(1,GPT,{PART},0x800,0x7F800)/"
        "\\EFI\\Linux\\debian-vmlinuz.efi",
        "BootOrder 0001,0000 -> 0000",
    ]
    assert foreign_store.read_bytes() != snapshot
    assert raw_boot_vars(foreign_store) == before
    after = varstore.VarStore(foreign_store)
    assert after.boot_order() == [0] and after.boot_next() == 0x99
    assert "cloud-boot" not in virt_fw_print(foreign_store)
    assert varstore.reset(foreign_store) == []  # nothing left to do


def test_reset_drops_boot_next_naming_ours_and_dry_run_writes_nothing(
    foreign_store: Path,
) -> None:
    varstore.add_cloudboot_entry(foreign_store, our_option("a"))
    n = varstore.add_cloudboot_entry(foreign_store, our_option("b"), boot_next=True)
    assert n == 1  # an earlier entry of ours is reused, never a foreign one
    assert varstore.VarStore(foreign_store).boot_next() == 1
    snapshot = foreign_store.read_bytes()
    lines = varstore.reset(foreign_store, dry_run=True)
    assert foreign_store.read_bytes() == snapshot
    assert "delete BootNext (was 0001)" in lines
    varstore.reset(foreign_store)
    after = varstore.VarStore(foreign_store)
    assert after.boot_next() is None and after.boot_order() == [0]
    assert sorted(after.boot_entries()) == [0, 0x99]


@pytest.mark.skipif(not OVMF_VARS_2M.exists(),
                    reason="host: this distribution's ovmf ships no 2M OVMF_VARS.fd")
def test_2m_store_and_file_mode_kept(tmp_path: Path) -> None:
    p = tmp_path / "vars.fd"
    shutil.copy(OVMF_VARS_2M, p)
    p.chmod(0o600)
    assert varstore.add_cloudboot_entry(p, our_option()) == 0
    assert p.stat().st_mode & 0o777 == 0o600
    assert p.stat().st_size == OVMF_VARS_2M.stat().st_size
    assert varstore.describe(p)["entries"][0]["optional_data"] == (
        "initrd=\\EFI\\Linux\\debian-initrd console=ttyS0"
    )
    assert [x.name for x in tmp_path.iterdir()] == ["vars.fd"]  # no temp file left behind


def test_unusable_files_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(varstore.VarStoreError, match="no such variable store file"):
        varstore.VarStore(tmp_path / "missing.fd")
    zeros = tmp_path / "zeros.fd"
    zeros.write_bytes(bytes(256 * 1024))  # like bookworm's AAVMF_VARS.fd template
    with pytest.raises(varstore.VarStoreError, match=r"zeros.fd: no edk2 NvData"):
        varstore.describe(zeros)
    with pytest.raises(varstore.VarStoreError, match="not a cloudboot entry"):
        varstore.add_cloudboot_entry(zeros, loadopt.LoadOption(1, "grub"))


# ---- entries OVMF writes itself -----------------------------------------------------------


@pytest.fixture(scope="session")
def ovmf_booted_vars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VARS copy after one OVMF boot: BDS has written its own Boot#### (DVD, disk, PXE/HTTP
    over a restricted user NIC, shell, UiApp). Booted once per session."""
    qemu = shutil.which("qemu-system-x86_64")
    assert qemu is not None, "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
    d = tmp_path_factory.mktemp("ovmf")
    vars_fd, serial, disk = d / "vars.fd", d / "serial.log", d / "blank.img"
    shutil.copy(OVMF_VARS_4M, vars_fd)
    disk.write_bytes(bytes(1 << 20))
    cmd = [
        qemu, "-machine", "q35", "-accel", "tcg", "-m", "256", "-display", "none",
        "-monitor", "none", "-serial", f"file:{serial}", "-no-reboot",
        # restrict=on: the NIC exists (so OVMF adds PXE/HTTP entries) but reaches nothing.
        "-nic", "user,model=virtio-net-pci,restrict=on",
        "-drive", f"if=none,id=d0,format=raw,file={disk}", "-device", "virtio-blk-pci,drive=d0",
        "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE_4M}",
        "-drive", f"if=pflash,format=raw,file={vars_fd}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            log = serial.read_bytes() if serial.exists() else b""
            # BDS writes Boot####/BootOrder before it tries (and reports) the first one.
            if b"BdsDxe" in log or b"Shell>" in log:
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"OVMF did not reach BDS within 90 s: {' '.join(cmd)}\n"
                        f"serial tail: {serial.read_bytes()[-500:]!r}")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    return vars_fd


def test_ovmf_entries_decode_and_repack_identically(ovmf_booted_vars: Path) -> None:
    store = varstore.VarStore(ovmf_booted_vars)
    entries = store.boot_entries()
    assert len(entries) >= 5, f"OVMF wrote only {[e.name for e in entries.values()]}"
    kinds: set[type] = set()
    for e in entries.values():
        assert e.option is not None, e.error
        assert e.option.pack() == e.data, f"{e.name} did not re-pack byte-identically"
        assert not loadopt.is_cloudboot(e.option)
        kinds |= {type(n) for n in e.option.file_path_list}
    # Every node OVMF wrote here is one we model (none fell back to raw bytes).
    assert dp.RawNode not in kinds
    assert {dp.Fv, dp.FvFile, dp.Acpi, dp.Pci, dp.Sata, dp.MacAddr, dp.IPv4, dp.IPv6,
            dp.Uri} <= kinds
    texts = [e.option.path_text() for e in entries.values() if e.option]
    assert "PciRoot(0x0)/Pci(0x1F,0x2)/Sata(0x2,0xFFFF,0x0)" in texts
    assert store.boot_order() == sorted(entries)


def test_reset_after_ovmf_boot_keeps_ovmf_entries(ovmf_booted_vars: Path,
                                                   tmp_path: Path) -> None:
    p = tmp_path / "vars.fd"
    shutil.copy(ovmf_booted_vars, p)
    store = varstore.VarStore(p)
    before = store.variables()
    # OVMF keeps one name under two GUIDs (network config); a by-name rewrite would lose one.
    names = [name for name, _ in before]
    assert len(set(names)) < len(names)
    order = store.boot_order()
    assert order is not None
    n = varstore.add_cloudboot_entry(p, our_option())
    assert n == max(order) + 1  # OVMF numbered its entries densely from 0
    assert varstore.VarStore(p).boot_order() == [n, *order]
    assert len(varstore.reset(p)) == 2
    after = varstore.VarStore(p)
    assert after.variables() == before  # every variable, BootOrder included, as it was
    # Records other than the BootOrder we rewrote keep their bytes and their place.
    untouched = [r for r in store.records if r.name != "BootOrder"]
    assert [r for r in after.records[: len(store.records)] if r.name != "BootOrder"] == untouched
    assert all(after.blob[r.offset : r.offset + r.size] == store.blob[r.offset : r.offset + r.size]
               for r in untouched)
    assert "UEFI Misc Device" in virt_fw_print(p)


def test_full_store_is_compacted_without_losing_anything(tmp_path: Path) -> None:
    p = tmp_path / "vars.fd"
    shutil.copy(OVMF_VARS_4M, p)
    store = varstore.VarStore(p)
    before = store.variables()
    big = bytes(range(256)) * 160  # 40 KiB: a 256 KiB store fills after a few rewrites
    for i in range(12):
        store.set("CloudBootMark", guid.CLOUDBOOT_VENDOR, big[i:] + big[:i])
    assert store.get("CloudBootMark", guid.CLOUDBOOT_VENDOR) == (7, big[11:] + big[:11])
    assert len(store.records) < 12  # deleted copies were reclaimed along the way
    store.save()
    reread = varstore.VarStore(p).variables()
    del reread[("CloudBootMark", guid.CLOUDBOOT_VENDOR)]
    assert reread == before
    with pytest.raises(varstore.VarStoreError, match="variable store full: CloudBootCmdline"):
        store.set("CloudBootCmdline", guid.CLOUDBOOT_VENDOR, bytes(300 * 1024))
