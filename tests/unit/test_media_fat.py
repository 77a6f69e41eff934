import datetime as dt
import os
import subprocess

import pytest

from cloudboot.media.fat import FatBuilder, FatError, geometry
from tests.helpers import need_tools

TS = dt.datetime(2024, 5, 6, 7, 8, 10)


def _image(tmp_path, bits, size, files):
    b = FatBuilder()
    for name, data in files.items():
        if data is None:
            b.mkdir(name)
        else:
            b.add_file(name, data)
    path = tmp_path / f"fat{bits}.img"
    with open(path, "wb") as f:
        f.truncate(size)
        b.write(f, 0, size, fat_bits=bits, label="TESTVOL", volume_id=0xCAFE, timestamp=TS)
    return path


FILES = {
    "EFI/BOOT/BOOTX64.EFI": os.urandom(200_000),
    "EFI/Linux": None,
    "EFI/Linux/debian-13.1_x-vmlinuz.efi": b"k" * 5000,
    "loader/entries/a.conf": b"title A\n",
    "empty.txt": b"",
}


@pytest.mark.parametrize("bits,size", [(16, 8 << 20), (32, 64 << 20)])
def test_fsck_clean_and_files_read_back(tmp_path, bits, size):
    need_tools("fsck.vfat", "mcopy")
    path = _image(tmp_path, bits, size, FILES)
    r = subprocess.run(["fsck.vfat", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    boot = path.read_bytes()[:512]
    fs_type = boot[82:90] if bits == 32 else boot[54:62]
    assert fs_type == f"FAT{bits}   ".encode()
    for name, data in FILES.items():
        if data is None:
            continue
        out = tmp_path / "out"
        subprocess.run(["mcopy", "-n", "-i", str(path), f"::/{name}", str(out)], check=True,
                       env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
        assert out.read_bytes() == data, name
        out.unlink()


def test_long_names_keep_case(tmp_path):
    need_tools("mdir")
    path = _image(tmp_path, 16, 8 << 20, FILES)
    listing = subprocess.run(["mdir", "-b", "-/", "-i", str(path), "::"], capture_output=True,
                             text=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout
    assert "::/EFI/Linux/debian-13.1_x-vmlinuz.efi" in listing


def test_reproducible(tmp_path):
    a = _image(tmp_path, 32, 40 << 20, FILES).read_bytes()
    b = _image(tmp_path, 32, 40 << 20, FILES).read_bytes()
    assert a == b


def test_fat32_too_small_is_a_clear_error():
    with pytest.raises(FatError, match="too small for FAT32"):
        geometry(20 << 20, 32)


def test_files_that_do_not_fit(tmp_path):
    with pytest.raises(FatError, match="do not fit"):
        _image(tmp_path, 16, 4 << 20, {"big.bin": b"x" * (5 << 20)})
