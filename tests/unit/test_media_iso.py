import datetime as dt
import io
import subprocess

from cloudboot.init.storage.gptread import read_gpt
from cloudboot.media import gpt, iso
from cloudboot.media.fat import FatBuilder
from tests.helpers import need_tools


def _hybrid(tmp_path, name="boot.iso"):
    fat = FatBuilder()
    fat.add_file("EFI/BOOT/BOOTX64.EFI", b"MZ" + b"\0" * 1000)
    size = 4 << 20
    buf = io.BytesIO()
    buf.truncate(size)
    fat.write(buf, 0, size, fat_bits=16, label="CLOUDBOOT", volume_id=1, timestamp=dt.datetime(
        2024, 1, 1))
    path = tmp_path / name
    with open(path, "wb") as out:
        iso.write_hybrid(out, io.BytesIO(buf.getvalue()), size, volume_id="CLOUDBOOT",
                         timestamp=dt.datetime(2024, 1, 1),
                         disk_guid=gpt.stable_guid("d"), esp_guid=gpt.stable_guid("e"))
    return path


def test_xorriso_sees_uefi_el_torito(tmp_path):
    need_tools("xorriso")
    path = _hybrid(tmp_path)
    r = subprocess.run(["xorriso", "-indev", str(path), "-report_el_torito", "plain"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "UEFI" in r.stdout and "/EFIBOOT.IMG" in r.stdout
    assert "GPT" in r.stderr + r.stdout


def test_gpt_is_valid_and_covers_the_fat_image(tmp_path):
    need_tools("sgdisk", "fsck.vfat")
    path = _hybrid(tmp_path)
    r = subprocess.run(["sgdisk", "-v", str(path)], capture_output=True, text=True)
    assert "No problems found" in r.stdout, r.stdout
    table = read_gpt(path)
    assert table is not None and len(table.partitions) == 1
    esp = table.partitions[0]
    assert esp.type_guid.lower() == gpt.ESP_TYPE
    assert esp.first_lba == iso.ESP_START_BLOCK * 4
    # The partition's bytes are a clean FAT file system.
    data = path.read_bytes()[esp.first_lba * 512 : (esp.last_lba + 1) * 512]
    esp_file = tmp_path / "esp.img"
    esp_file.write_bytes(data)
    assert subprocess.run(["fsck.vfat", "-n", str(esp_file)], capture_output=True).returncode == 0


def test_sector_zero_has_boot_signature(tmp_path):
    data = _hybrid(tmp_path).read_bytes()
    assert data[510:512] == b"\x55\xaa"  # Apple VZ refuses disks without it
    assert data[0x8001:0x8006] == b"CD001"


def test_reproducible(tmp_path):
    assert _hybrid(tmp_path, "a.iso").read_bytes() == _hybrid(tmp_path, "b.iso").read_bytes()
