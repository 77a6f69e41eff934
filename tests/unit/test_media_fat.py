import datetime as dt
import os
import subprocess

import pytest
from pyfatfs.FSInfo import FSInfo

from cloudboot.media.fat import FatBuilder, FatError, geometry
from tests.helpers import need_tools, pyfat

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


# pyfatfs: an independent Python reader. Every pyfatfs warning (FATs that differ, a FAT type
# its two rules disagree on, clusters over 32 KiB, a dirty volume) is turned into an error.


TREE: dict[str, bytes | None] = {
    "EFI/BOOT/BOOTX64.EFI": os.urandom(300_001),  # many clusters, the last one partly used
    "EFI/Linux/debian-13.1_x-vmlinuz.efi": b"k" * 5000,
    "EFI/Linux/debian-13.1_x-initrd": b"i" * 1024,
    "a/b/c/d/e/deep file, with spaces.txt": b"deep",
    "empty.txt": b"",
    "empty-dir": None,
    "MixedCase.Txt": b"mixed",
    "UPPER.TXT": b"upper",
    "thirteen-char": b"13",  # exactly one LFN entry of 13 characters
    "Grüße.txt": "grüße".encode(),
    "x" * 255: b"longest name FAT allows",
    # A directory spanning several clusters: 40 long names need ~120 entries of 32 bytes.
    **{f"many/Entry number {i:02d}.conf": bytes([i]) * i for i in range(40)},
}


def _dirs(tree: dict[str, bytes | None]) -> set[str]:
    out = set()
    for name, data in tree.items():
        parts = name.split("/")
        out.update("/" + "/".join(parts[:i]) for i in range(1, len(parts) + (data is None)))
    return out


@pytest.mark.parametrize("bits,size", [(16, 8 << 20), (32, 40 << 20)])
def test_pyfatfs_reads_names_sizes_and_bytes(tmp_path, bits, size):
    # Written 1 MiB into a larger file, as on a partition; pyfatfs reads it at that offset.
    b = FatBuilder()
    for name, data in TREE.items():
        b.mkdir(name) if data is None else b.add_file(name, data)
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        f.truncate((1 << 20) + size + (1 << 20))
        g = b.write(f, 1 << 20, size, fat_bits=bits, label="TestVol", volume_id=0xCAFE,
                    timestamp=TS, hidden_sectors=2048, max_cluster_bytes=1024)
    with pyfat(path, offset=1 << 20) as fs:
        boot = fs.fs.bpb_header
        assert fs.fs.fat_type == bits
        assert boot["BS_VolLab"] == b"TESTVOL    " and boot["BS_VolID"] == 0xCAFE
        assert boot["BS_FilSysType"] == f"FAT{bits}   ".encode()
        assert boot["BPB_HiddSec"] == 2048
        assert fs.fs.bytes_per_cluster == g.cluster_bytes
        files = {name for name, data in TREE.items() if data is not None}
        assert set(fs.walk.files()) == {"/" + n for n in files}
        assert set(fs.walk.dirs()) == _dirs(TREE)
        assert fs.listdir("/empty-dir") == []
        for name in files:
            assert fs.readbytes(name) == TREE[name], name
            info = fs.getinfo(name, namespaces=["details"])
            assert info.size == len(TREE[name] or b"")
            assert info.modified == TS.replace(tzinfo=dt.UTC)
        # The file's cluster chain is exactly as long as its data needs; an empty file has none.
        big = fs._get_dir_entry("/EFI/BOOT/BOOTX64.EFI")
        chain = list(fs.fs.get_cluster_chain(big.get_cluster()))
        assert len(chain) == -(-300_001 // g.cluster_bytes)
        assert fs._get_dir_entry("/empty.txt").get_cluster() == 0
        many = list(fs.fs.get_cluster_chain(fs._get_dir_entry("/many").get_cluster()))
        assert len(many) > 1 and len(fs.listdir("/many")) == 40


def test_pyfatfs_fat32_fsinfo_matches_the_fat(tmp_path):
    path = _image(tmp_path, 32, 40 << 20, {k: v for k, v in TREE.items() if v is not None})
    with pyfat(path) as fs:
        boot = fs.fs.bpb_header
        raw = path.read_bytes()
        info = FSInfo()
        info.parse_header(raw[boot["BPB_FSInfo"] * 512 :][:512])
        assert info["FSI_LeasSig"] == FSInfo.LEAD_SIG_MAGIC
        assert info["FSI_StrucSig"] == FSInfo.STRUCT_SIG_MAGIC
        assert info["FSI_TrailSig"] == FSInfo.TRAIL_SIG_MAGIC
        clusters = (boot["BPB_TotSec32"] - fs.fs.first_data_sector) // boot["BPB_SecPerClus"]
        entries = fs.fs.fat[2 : clusters + 2]
        assert info["FSI_Free_Count"] == entries.count(0)
        assert info["FSI_Nxt_Free"] == entries.index(0) + 2
        backup = boot["BPB_BkBootSec"] * 512
        assert raw[backup : backup + 512] == raw[:512]


def test_generated_short_names_never_repeat_a_real_one(tmp_path):
    """`debian-0-vmlinuz.efi` needs an alias; `DEBIAN~1.EFI` is a name of its own. The alias
    must not be DEBIAN~1.EFI too (it was: pyfatfs then read the other file's bytes)."""
    need_tools("fsck.vfat")
    files = {"d/DEBIAN~1.EFI": b"eight-dot-three", "d/debian-0-vmlinuz.efi": b"long name",
             "d/debian-1-vmlinuz.efi": b"another", "d/DEBIAN~2.EFI": b"also 8.3"}
    path = _image(tmp_path, 16, 8 << 20, files)
    with pyfat(path) as fs:
        for name, data in files.items():
            assert fs.readbytes(name) == data, name
        entries = fs._get_dir_entry("/d").get_entries()[1]
        shorts = [str(e.get_short_name()) for e in entries]
        assert len(shorts) == len(set(shorts)) == 4, shorts
    r = subprocess.run(["fsck.vfat", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_geometry_limits_hold_for_pyfatfs(tmp_path):
    with pytest.raises(FatError, match="FAT12 is not supported"):
        geometry(4 << 20, 12)  # the FAT would be sized for 12-bit entries and written as 16
    with pytest.raises(FatError, match="too large for FAT16"):
        geometry(2048 << 20, 16)  # it would take 64 KiB clusters, which fatgen103 forbids
    # The largest FAT16 uses 32 KiB clusters; pyfatfs (warning over 32 KiB) reads it.
    path = _image(tmp_path, 16, 2047 << 20, {"a.txt": b"a"})
    with pyfat(path) as fs:
        assert fs.fs.fat_type == 16 and fs.fs.bytes_per_cluster == 32768
        assert fs.readbytes("/a.txt") == b"a"
    # "too small" names the least size that works, and that size works.
    for bits in (16, 32):
        with pytest.raises(FatError, match="too small") as err:
            geometry(2 << 20, bits)
        least = int(str(err.value).rsplit("at least ", 1)[1].split()[0])
        with pytest.raises(FatError):
            geometry((least - 1) << 20, bits)
        path = _image(tmp_path, bits, least << 20, {"a.txt": b"a"})
        with pyfat(path) as fs:
            assert fs.fs.fat_type == bits and fs.readbytes("/a.txt") == b"a"
