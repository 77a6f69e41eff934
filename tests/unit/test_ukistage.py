"""Path C's "uki" form: a UKI assembled in the guest from the bootstrap's systemd-stub, the
target kernel, initrd and command line, streamed onto the cache ESP
(cloudboot/init/pathc/ukistage.py).

Every arch's real stub and real kernel: the Debian packages the bootstrap of that arch is
built from (x86_64/aarch64: the host builder's; armv7/riscv64/loongarch64: the lane's)."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tracemalloc
from pathlib import Path

import pytest

from cloudboot import pe
from cloudboot.arch import Arch, get_arch
from cloudboot.bootstrap.build import STUB_PATH, stub_overlay
from cloudboot.init import cmdline
from cloudboot.init.pathc import bootentry, staging, ukistage
from cloudboot.init.storage.gptread import GptPartition
from cloudboot.pe import uki

ARCHES = ("x86_64", "aarch64", "armv7", "riscv64", "loongarch64")
CMDLINE = "root=UUID=00fcfd1b-a610-5f60-b825-1495e0a27318 ro console=ttyS0"
PART = GptPartition(1, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
                    "0ea965ad-b721-4c8d-b92d-148614ca572c", "cloud-boot-cache", 2048, 522239)


def real_parts(arch: Arch) -> tuple[bytes, bytes]:
    """(systemd-stub, kernel as the firmware starts it) from that arch's Debian packages."""
    if arch.name in ("x86_64", "aarch64"):
        from tests.helpers import debian_kernel, debian_stub

        stub, kernel = debian_stub(arch), debian_kernel(arch)
    else:
        from lab.arch_lanes import get_lane

        lane = get_lane(arch.name)
        stub, kernel = lane.stub(), lane.kernel()
    return stub.read_bytes(), staging.kernel_for_firmware(kernel.read_bytes(), arch.pe_machine)


def write_initrd(path: Path, size: int) -> Path:
    seed = hashlib.sha256(path.name.encode()).digest()
    with open(path, "wb") as f:
        block = seed * (1 << 15)  # 1 MiB
        left = size
        while left:
            f.write(block[: min(left, len(block))])
            left -= min(left, len(block))
    return path


@pytest.mark.parametrize("name", ARCHES)
def test_guest_uki_passes_the_pe_check_with_each_arch_real_stub(name: str,
                                                                 tmp_path: Path) -> None:
    arch = get_arch(name)
    stub, kernel = real_parts(arch)
    initrd = write_initrd(tmp_path / "initrd.img", 3 * 1024 * 1024 + 17)
    osrel = ukistage.osrel_for("debian-12", "6.1.0-56-cloud", None)
    asm = ukistage.prepare(stub, kernel, initrd, CMDLINE, arch=arch, osrel=osrel,
                           version="6.1.0-56-cloud")
    got = staging.stage_uki(tmp_path / "esp", "debian 12", asm.size, asm.chunks())
    assert got.form == "uki" and got.initrd is None
    assert got.kernel.efi_path == "\\EFI\\Linux\\debian12-uki.efi"
    data = (tmp_path / "esp/EFI/Linux/debian12-uki.efi").read_bytes()
    assert len(data) == asm.size == got.kernel.size
    assert got.kernel.sha256 == hashlib.sha256(data).hexdigest()
    assert pe.check_uki(data, arch.pe_machine) == []
    img = pe.parse(data)
    assert [s.name for s in img.sections][-5:] == [".osrel", ".cmdline", ".uname", ".initrd",
                                                   ".linux"]
    assert img.section_data(".linux") == kernel
    assert img.section_data(".initrd") == initrd.read_bytes()
    assert img.section_data(".cmdline") == CMDLINE.encode()
    assert img.section_data(".uname") == b"6.1.0-56-cloud"
    # Byte for byte what the host builder makes of the same parts, bar the PE checksum the
    # guest leaves at 0 (see ukistage's docstring).
    host = bytearray(uki.assemble(uki.UKIParts(stub, kernel, initrd.read_bytes(), CMDLINE,
                                               osrel, "6.1.0-56-cloud"), arch))
    struct.pack_into("<I", host, asm.layout.checksum_offset, 0)
    assert bytes(host) == data


def test_streaming_holds_no_copy_of_the_initrd(tmp_path: Path) -> None:
    """A ~40 MB UKI in a 1 GiB guest: only the stub, the kernel and 1 MiB chunks in memory."""
    arch = get_arch("x86_64")
    stub, kernel = real_parts(arch)
    initrd = write_initrd(tmp_path / "initrd.img", 32 << 20)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        asm = ukistage.prepare(stub, kernel, initrd, CMDLINE, arch=arch, osrel="ID=x\n")
        got = staging.stage_uki(tmp_path / "esp", "big", asm.size, asm.chunks())
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert got.kernel.size > 40 << 20
    assert peak < 6 << 20, f"peak {peak} bytes while staging a {got.kernel.size}-byte UKI"


def test_form_by_arch_and_setting() -> None:
    auto = {a: ukistage.choose_form("auto", get_arch(a)) for a in ARCHES}
    assert auto == {"x86_64": "split", "aarch64": "split", "armv7": "uki", "riscv64": "uki",
                    "loongarch64": "uki"}
    assert ukistage.choose_form("uki", get_arch("x86_64")) == "uki"
    assert ukistage.choose_form("split", get_arch("riscv64")) == "split"
    with pytest.raises(ukistage.UkiStageError, match="expected one of auto, uki, split"):
        ukistage.choose_form("both", get_arch("x86_64"))


def test_cmdline_key() -> None:
    assert cmdline.parse("cloudboot.exit=reboot").stage == "auto"
    assert cmdline.parse("cloudboot.stage=uki cloudboot.stage=split").stage == "split"
    assert "cloudboot.stage" in cmdline.known_keys()
    with pytest.raises(cmdline.CmdlineError, match=r"cloudboot.stage='yes': expected one of"):
        cmdline.parse("cloudboot.stage=yes")


def test_stub_errors_say_what_to_do(tmp_path: Path) -> None:
    x86 = get_arch("x86_64")
    with pytest.raises(ukistage.UkiStageError, match="rebuild boot.iso .* cloudboot.stage=split"):
        ukistage.read_stub(x86, tmp_path / "missing.efi")
    stub, kernel = real_parts(x86)
    (tmp_path / "stub.efi").write_bytes(stub)
    assert ukistage.read_stub(x86, tmp_path / "stub.efi") == stub
    with pytest.raises(ukistage.UkiStageError, match="stub for x86_64, this machine is aarch64"):
        ukistage.read_stub(get_arch("aarch64"), tmp_path / "stub.efi")
    (tmp_path / "junk.efi").write_bytes(b"\x7fELF" + bytes(100))
    with pytest.raises(ukistage.UkiStageError, match="no MZ header"):
        ukistage.read_stub(x86, tmp_path / "junk.efi")
    made = uki.assemble(uki.UKIParts(stub, kernel, b"i", "", ""), x86)
    (tmp_path / "uki.efi").write_bytes(made)
    with pytest.raises(ukistage.UkiStageError, match="already a UKI"):
        ukistage.read_stub(x86, tmp_path / "uki.efi")
    with pytest.raises(ukistage.UkiStageError, match="command line is 3000 bytes"):
        ukistage.prepare(stub, kernel, None, "x" * 3000, arch=x86, osrel="")
    with pytest.raises(ukistage.UkiStageError, match="not a PE/COFF file"):
        ukistage.prepare(stub, b"\x7fELF" + bytes(4096), None, "", arch=x86, osrel="")
    with pytest.raises(ukistage.UkiStageError, match="initrd .*missing"):
        ukistage.prepare(stub, kernel, tmp_path / "missing", "", arch=x86, osrel="")


def test_no_initrd_and_no_uname(tmp_path: Path) -> None:
    x86 = get_arch("x86_64")
    stub, kernel = real_parts(x86)
    asm = ukistage.prepare(stub, kernel, None, "ro", arch=x86, osrel="ID=x\n", version="12")
    data = b"".join(bytes(c) for c in asm.chunks())
    assert pe.check_uki(data, x86.pe_machine) == []
    names = [s.name for s in pe.parse(data).sections]
    assert ".initrd" not in names and ".uname" not in names and names[-1] == ".linux"


def test_an_initrd_that_changes_under_us_leaves_nothing(tmp_path: Path) -> None:
    x86 = get_arch("x86_64")
    stub, kernel = real_parts(x86)
    initrd = write_initrd(tmp_path / "initrd.img", 2 << 20)
    asm = ukistage.prepare(stub, kernel, initrd, "ro", arch=x86, osrel="ID=x\n")
    with open(initrd, "ab") as f:
        f.write(b"more")
    with pytest.raises(staging.StagingError, match=r"\.initrd: source gave .*laid out for"):
        staging.stage_uki(tmp_path, "t", asm.size, asm.chunks())
    assert list((tmp_path / "EFI/Linux").iterdir()) == []


def test_osrel_from_the_target_or_made_up(tmp_path: Path) -> None:
    made = ukistage.osrel_for('deb"ian', "12", None)
    assert "PRETTY_NAME=\"cloud-boot deb'ian\"" in made and 'VERSION_ID="12"' in made
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    assert ukistage.osrel_for("t", "x", tmp_path) == 'ID=debian\nVERSION_ID="12"\n'
    # An absolute symlink resolves inside the target, not in the bootstrap's root.
    (tmp_path / "etc/os-release").unlink()
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/lib/os-release").write_text("ID=target\n")
    (tmp_path / "etc/os-release").symlink_to("/usr/lib/os-release")
    assert ukistage.osrel_for("t", "x", tmp_path) == "ID=target\n"


def test_switching_forms_removes_the_other_forms_files(tmp_path: Path) -> None:
    x86 = get_arch("x86_64")
    stub, kernel = real_parts(x86)
    initrd = write_initrd(tmp_path / "initrd.img", 1 << 20)
    esp = tmp_path / "esp"
    d = esp / "EFI/Linux"
    staging.stage(esp, "t", kernel, initrd)
    assert sorted(p.name for p in d.iterdir()) == ["t-initrd", "t-vmlinuz.efi"]
    asm = ukistage.prepare(stub, kernel, initrd, "ro", arch=x86, osrel="ID=x\n")
    staging.stage_uki(esp, "t", asm.size, asm.chunks())
    assert sorted(p.name for p in d.iterdir()) == ["t-uki.efi"]
    assert staging.staged_targets(esp).keys() == {"t"}
    staging.stage(esp, "t", kernel, None)
    assert sorted(p.name for p in d.iterdir()) == ["t-vmlinuz.efi"]


def test_retention_prune_and_reset_know_ukis(tmp_path: Path) -> None:
    x86 = get_arch("x86_64")
    stub, kernel = real_parts(x86)
    for n, name in enumerate(["a", "b", "c"]):
        asm = ukistage.prepare(stub, kernel, None, "ro", arch=x86, osrel="ID=x\n")
        staging.stage_uki(tmp_path, name, asm.size, asm.chunks())
        os.utime(tmp_path / f"EFI/Linux/{name}-uki.efi", (1000 + n, 1000 + n))
    refs = staging.referenced_names([bootentry.uki_path("A"), "\\EFI\\BOOT\\BOOTX64.EFI"])
    assert refs == {"a"}
    got = staging.stage(tmp_path, "d", kernel, None, referenced=refs)
    assert got.dropped == ["b"]
    assert set(staging.staged_targets(tmp_path)) == {"a", "c", "d"}
    (tmp_path / "EFI/Linux/other.efi").write_bytes(b"y")
    assert staging.remove_all(tmp_path) == ["\\EFI\\Linux\\a-uki.efi", "\\EFI\\Linux\\c-uki.efi",
                                            "\\EFI\\Linux\\d-vmlinuz.efi"]
    assert [p.name for p in (tmp_path / "EFI/Linux").iterdir()] == ["other.efi"]


def test_full_esp_fails_before_writing(tmp_path: Path) -> None:
    """A real small file system (tmpfs, 4 MiB): "is full", nothing written."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or os.system(f"mount -t tmpfs -o size=4m cbtest {mnt}") != 0:
        pytest.skip("host: cannot mount a small tmpfs here (needs root)")
    try:
        x86 = get_arch("x86_64")
        stub, kernel = real_parts(x86)
        initrd = write_initrd(tmp_path / "initrd.img", 8 << 20)
        asm = ukistage.prepare(stub, kernel, initrd, "ro", arch=x86, osrel="ID=x\n")
        with pytest.raises(staging.StagingError, match=r"is full: .* \(UKI \d+\)"):
            staging.stage_uki(mnt, "t", asm.size, asm.chunks())
        assert list((mnt / "EFI/Linux").iterdir()) == []
    finally:
        os.system(f"umount {mnt}")


def test_boot_entry_for_a_uki_has_no_options() -> None:
    from cloudboot.efi import loadopt

    opt = bootentry.build_option("debian-12", PART, CMDLINE, True, "uki")
    assert opt.file_path == "\\EFI\\Linux\\debian-12-uki.efi"
    assert opt.optional_data == b"" and loadopt.is_cloudboot(opt)
    back = loadopt.unpack(opt.pack())
    assert back == opt
    split = bootentry.build_option("debian-12", PART, CMDLINE)
    assert split.path_text().split("/")[0] == opt.path_text().split("/")[0]  # same HD()
    with pytest.raises(ValueError, match="unknown staging form"):
        bootentry.build_option("debian-12", PART, CMDLINE, True, "zip")


def test_build_puts_its_stub_into_the_initramfs() -> None:
    """The cpio overlay `cloudboot build` appends: the stub at STUB_PATH, reproducible."""
    stub, _ = real_parts(get_arch("x86_64"))
    a, b = stub_overlay(stub), stub_overlay(stub)
    assert a == b and len(a) % 4 == 0
    members = read_newc(a)
    assert members[STUB_PATH] == stub
    assert f"/{STUB_PATH}" == str(ukistage.STUB_PATH)


def read_newc(data: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    f = io.BytesIO(data)
    while True:
        head = f.read(110)
        assert head[:6] == b"070701"
        size, namesize = int(head[54:62], 16), int(head[94:102], 16)
        name = f.read(namesize)[:-1].decode()
        f.read(-(110 + namesize) % 4)
        body = f.read(size)
        f.read(-size % 4)
        if name == "TRAILER!!!":
            return out
        out[name] = body


def test_inspect_lists_a_staged_uki_on_a_cache_disk(tmp_path: Path) -> None:
    """`cloudboot inspect` of a cache disk: the staged UKI's command line, os-release, uname."""
    import shutil
    import subprocess

    from cloudboot.cli.inspect import inspect_path
    from cloudboot.init.storage.gptread import read_gpt
    from cloudboot.media import cachedisk

    if shutil.which("mcopy") is None:
        pytest.fail("mtools is not installed (python -m cloudboot.debian.hostdeps ensure tests)")
    x86 = get_arch("x86_64")
    stub, kernel = real_parts(x86)
    initrd = write_initrd(tmp_path / "initrd.img", 1 << 20)
    asm = ukistage.prepare(stub, kernel, initrd, CMDLINE, arch=x86, osrel="ID=debian\n",
                           version="6.1.0-56-cloud-amd64")
    staging.stage_uki(tmp_path / "esp", "debian-12", asm.size, asm.chunks())
    cache = tmp_path / "cache.raw"
    cachedisk.create(cache, 64)
    table = read_gpt(cache)
    assert table is not None
    img = f"{cache}@@{table.partitions[0].first_lba * 512}"
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    for d in ("::/EFI", "::/EFI/Linux"):  # the cache disk may have them already
        subprocess.run(["mmd", "-i", img, d], check=False, env=env, capture_output=True)
    subprocess.run(["mcopy", "-i", img, str(tmp_path / "esp/EFI/Linux/debian-12-uki.efi"),
                    "::/EFI/Linux/debian-12-uki.efi"], check=True, env=env, capture_output=True)
    report = inspect_path(cache)
    [staged] = report["staged_ukis"]
    assert staged["path"].lower() == "/efi/linux/debian-12-uki.efi"
    assert staged["kind"] == "uki" and staged["machine"] == "x86_64"
    assert staged["cmdline"] == CMDLINE and staged["uname"] == "6.1.0-56-cloud-amd64"
    assert staged["osrel"] == "ID=debian\n" and staged["problems"] == []
