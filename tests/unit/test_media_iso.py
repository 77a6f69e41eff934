"""The hybrid ISO writer, checked by xorriso, sgdisk and fsck.vfat, and read back by pycdlib (the
ISO 9660 tree and El Torito catalog) with pyfatfs reading the FAT image it holds."""

import datetime as dt
import io
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pycdlib
import pytest
from pycdlib.dates import DirectoryRecordDate, VolumeDescriptorDate

from cloudboot.cli.main import main
from cloudboot.init.storage.gptread import read_gpt
from cloudboot.media import gpt, iso
from cloudboot.media.fat import FatBuilder
from tests.helpers import marker_initramfs, need_tools, pyfat

TS = dt.datetime(2024, 5, 6, 7, 8, 10)
BOOT_FILE = "EFI/BOOT/BOOTX64.EFI"
BOOT_DATA = b"MZ" + bytes(range(256)) * 40


def _hybrid_and_fat(tmp_path: Path, name: str = "boot.iso", bits: int = 16,
                    size: int = 4 << 20) -> tuple[Path, bytes]:
    """A hybrid image and the FAT image it was made from (`size` bytes)."""
    fat = FatBuilder()
    fat.add_file(BOOT_FILE, BOOT_DATA)
    buf = io.BytesIO()
    fat.write(buf, 0, size, fat_bits=bits, label="CLOUDBOOT", volume_id=1, timestamp=TS)
    image = buf.getvalue().ljust(size, b"\0")
    path = tmp_path / name
    with open(path, "wb") as out:
        iso.write_hybrid(out, io.BytesIO(image), size, volume_id="CLOUDBOOT", timestamp=TS,
                         disk_guid=gpt.stable_guid("d"), esp_guid=gpt.stable_guid("e"))
    return path, image


def _hybrid(tmp_path: Path, name: str = "boot.iso") -> Path:
    return _hybrid_and_fat(tmp_path, name)[0]


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


# pycdlib: an independent ISO 9660 / El Torito reader. It recognises only syslinux's isohybrid
# MBR (`isohybrid_mbr` stays None for our protective MBR + GPT), so the GPT side is sgdisk's
# and read_gpt's above; here the GPT only has to point at the bytes pycdlib calls EFIBOOT.IMG.


@contextmanager
def pycd(path: Path) -> Iterator[pycdlib.PyCdlib]:
    reader = pycdlib.PyCdlib()
    reader.open(str(path))
    try:
        yield reader
    finally:
        reader.close()


def _read(reader: pycdlib.PyCdlib, iso_path: str) -> bytes:
    buf = io.BytesIO()
    reader.get_file_from_iso_fp(buf, iso_path=iso_path)
    return buf.getvalue()


def _fat_files(image: bytes, tmp_path: Path) -> dict[str, tuple[bytes, dt.datetime]]:
    """Every file in a FAT image with its modification time, read by pyfatfs (whose warnings
    are errors)."""
    path = tmp_path / "efiboot.img"
    path.write_bytes(image)
    with pyfat(path) as fs:
        assert fs.fs.bpb_header["BS_VolLab"] == b"CLOUDBOOT  "
        return {name: (fs.readbytes(name), fs.getinfo(name, namespaces=["details"]).modified)
                for name in fs.walk.files()}


def _check_uefi_catalog(reader: pycdlib.PyCdlib, image_size: int) -> None:
    """One El Torito entry, bootable, no emulation, UEFI, and it is EFIBOOT.IMG's extent."""
    catalog = reader.eltorito_boot_catalog
    assert catalog is not None
    assert catalog.validation_entry.platform_id == 0xEF
    assert catalog.validation_entry.id_string == b"CLOUDBOOT".ljust(24, b"\0")
    assert catalog.sections == []  # the default entry is the only one
    entry = catalog.initial_entry
    assert (entry.boot_indicator, entry.boot_media_type, entry.system_type) == (0x88, 0, 0)
    assert entry.load_segment == 0
    # El Torito counts 512-byte virtual sectors in 16 bits; past 32 MiB we write 1, which EDK2's
    # partition driver reads as "to the end of the volume". (EDK2 multiplies a no-emulation
    # count by the CD's 2048-byte block, so its partition outgrows the image; harmless, the
    # FAT inside bounds every read. Boots from CD are the lab's to prove, not pycdlib's.)
    assert entry.sector_count == (image_size // 512 if image_size // 512 <= 0xFFFF else 1)
    record = reader.get_record(iso_path="/EFIBOOT.IMG;1")
    assert entry.get_rba() == record.extent_location() and entry.inode is record.inode
    assert record.data_length == image_size
    # The boot record's catalog pointer leads to the file the tree calls BOOT.CAT.
    assert [r.file_ident for r in catalog.dirrecords] == [b"BOOT.CAT;1"]
    assert catalog.extent_location() == reader.get_record(iso_path="/BOOT.CAT;1").extent_location()


def _date(d: VolumeDescriptorDate | DirectoryRecordDate, when: dt.datetime) -> None:
    if isinstance(d, VolumeDescriptorDate):
        got = (d.year, d.month, d.dayofmonth, d.hour, d.minute, d.second, d.gmtoffset)
    else:
        got = (1900 + d.years_since_1900, d.month, d.day_of_month, d.hour, d.minute, d.second,
               d.gmtoffset)
    assert got == (when.year, when.month, when.day, when.hour, when.minute, when.second, 0)


def test_pycdlib_reads_the_volume_descriptor_and_tree(tmp_path):
    path, _ = _hybrid_and_fat(tmp_path)
    with pycd(path) as reader:
        pvd = reader.pvd
        assert pvd.volume_identifier == b"CLOUDBOOT".ljust(32)
        assert pvd.logical_block_size() == 2048
        assert pvd.space_size * 2048 == path.stat().st_size  # the volume is the whole image
        _date(pvd.volume_creation_date, TS)
        _date(pvd.volume_modification_date, TS)
        assert pvd.volume_expiration_date.date_str == pvd.volume_expiration_date.EMPTY_STRING
        assert not (reader.has_rock_ridge() or reader.has_joliet() or reader.has_udf())
        tree = [(top, sorted(dirs), sorted(files)) for top, dirs, files in reader.walk(
            iso_path="/")]
        assert tree == [("/", [], ["BOOT.CAT;1", "EFIBOOT.IMG;1"])]
        for name in ("/BOOT.CAT;1", "/EFIBOOT.IMG;1"):
            _date(reader.get_record(iso_path=name).date, TS)
        assert reader.get_record(iso_path="/BOOT.CAT;1").data_length == 2048


@pytest.mark.parametrize("bits,size", [(16, 4 << 20), (32, 40 << 20)], ids=["4MiB", "40MiB"])
def test_pycdlib_finds_the_uefi_boot_image_we_wrote(tmp_path, bits, size):
    """40 MiB is past El Torito's 16-bit sector count (32 MiB): the count becomes 1, and pycdlib
    still ties the entry to EFIBOOT.IMG by its extent and reads all of it through the tree."""
    path, image = _hybrid_and_fat(tmp_path, bits=bits, size=size)
    with pycd(path) as reader:
        _check_uefi_catalog(reader, size)
        got = _read(reader, "/EFIBOOT.IMG;1")
        load_rba = reader.eltorito_boot_catalog.initial_entry.get_rba()
    assert got == image
    # The GPT's ESP is the same bytes: firmware gets one FAT from a CD or from a disk.
    table = read_gpt(path)
    assert table is not None
    (esp,) = table.partitions
    assert (esp.first_lba, esp.last_lba + 1) == (load_rba * 4, load_rba * 4 + size // 512)
    assert _fat_files(got, tmp_path) == {"/" + BOOT_FILE: (BOOT_DATA, TS.replace(tzinfo=dt.UTC))}


@pytest.fixture(scope="module")
def initrd(tmp_path_factory):
    return marker_initramfs(tmp_path_factory.mktemp("initrd") / "initrd.gz")


def test_pycdlib_and_pyfatfs_read_a_real_build(tmp_path, initrd, monkeypatch):
    """`cloudboot build` (Debian's kernel and systemd-stub from the test cache): pycdlib finds
    the UEFI image, pyfatfs finds in it exactly the UKI the same build wrote with --uki."""
    epoch = 1700000000  # an even second: FAT keeps 2-second times
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(epoch))
    when = dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None)
    iso_path, uki_path = tmp_path / "boot.iso", tmp_path / "boot.efi"
    assert main(["build", "--arch", "amd64", "--initramfs", str(initrd), "--uki", str(uki_path),
                 "-o", str(iso_path)]) == 0
    with pycd(iso_path) as reader:
        assert reader.pvd.volume_identifier == b"CLOUDBOOT".ljust(32)
        _date(reader.pvd.volume_creation_date, when)
        size = reader.get_record(iso_path="/EFIBOOT.IMG;1").data_length
        assert size % 2048 == 0
        _check_uefi_catalog(reader, size)
        image = _read(reader, "/EFIBOOT.IMG;1")
    assert _fat_files(image, tmp_path) == {
        "/" + BOOT_FILE: (uki_path.read_bytes(), when.replace(tzinfo=dt.UTC))}
