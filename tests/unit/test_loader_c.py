"""The loader's pure C (loader/lib: ext4 reader, UCS-2, dpkg version order, PE check), built
with the host's cc into loader/tests/harness and run against real `mkfs.ext4 -d` images."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from cloudboot.loader.compile import SOURCE_ROOT

PURE = ["lib/libc.c", "lib/ucs2.c", "lib/ext4.c", "lib/peimage.c"]


def _build_harness(tmp_path_factory: pytest.TempPathFactory, *defines: str) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.fail("no host C compiler (apt-get install gcc)")
    work = tmp_path_factory.mktemp("harness")
    out = work / "harness"
    # ASan + UBSan where the host toolchain links them (Debian's gcc does).
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    (work / "probe.c").write_text("int main(void) { return 0; }\n")
    if subprocess.run([cc, *sanitize, str(work / "probe.c"), "-o", str(work / "probe")],
                      capture_output=True).returncode != 0:
        sanitize = []
    r = subprocess.run([cc, "-std=c11", "-D_FILE_OFFSET_BITS=64", "-D_POSIX_C_SOURCE=200809L",
                        "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fno-builtin", *sanitize,
                        *defines,
                        "-I", str(SOURCE_ROOT / "include"), "-o", str(out),
                        str(SOURCE_ROOT / "tests/harness.c"),
                        *(str(SOURCE_ROOT / p) for p in PURE)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_harness(tmp_path_factory)


@pytest.fixture(scope="module")
def harness_armv7(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same harness with the PE check built as the armv7 loader's (machine 0x01c2)."""
    return _build_harness(tmp_path_factory, "-DCB_TEST_NATIVE_MACHINE=0x01c2")


def run(harness: Path, *args: str) -> str:
    r = subprocess.run([str(harness), *args], capture_output=True, timeout=60,
                       env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1"})
    assert not r.stderr, r.stderr.decode(errors="replace")
    return r.stdout.decode("utf-8", "surrogateescape")


def run_bytes(harness: Path, *args: str) -> bytes:
    r = subprocess.run([str(harness), *args], capture_output=True, timeout=60)
    assert r.returncode == 0 and not r.stderr, (r.stdout[-200:], r.stderr)
    return r.stdout


def mkfs(tree: Path, image: Path, *extra: str, size_mib: int = 64) -> str:
    if shutil.which("mkfs.ext4") is None:
        pytest.fail("mkfs.ext4 missing (e2fsprogs)")
    fs_uuid = str(uuid.uuid4())
    with open(image, "wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-U", fs_uuid, "-L", "cbtest", *extra,
                    "-d", str(tree), str(image)], check=True, capture_output=True, timeout=120,
                   env={**os.environ, "E2FSPROGS_FAKE_TIME": "1700000000"})
    return fs_uuid


def distro_tree(root: Path) -> dict[str, bytes]:
    """A small distro root: two kernels with initrds, one without, symlinks, a big dir."""
    files = {
        "boot/vmlinuz-6.1.0-9-cloud-amd64": os.urandom(70_000),
        "boot/initrd.img-6.1.0-9-cloud-amd64": os.urandom(30_000),
        "boot/vmlinuz-6.1.0-10-cloud-amd64": os.urandom(300_001),
        "boot/initrd.img-6.1.0-10-cloud-amd64": os.urandom(123_457),
        # newest by version, but no initrd: must be skipped
        "boot/vmlinuz-6.1.0-11-cloud-amd64": os.urandom(1000),
        "usr/lib/os-release": b'ID=debian\nVERSION_ID="12"\n',
    }
    for i in range(400):
        files[f"usr/share/many/file-{i:04d}.txt"] = f"entry {i}\n".encode()
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "etc").mkdir()
    os.symlink("../usr/lib/os-release", root / "etc/os-release")
    os.symlink("boot/vmlinuz-6.1.0-10-cloud-amd64", root / "vmlinuz")
    deep = "/usr/share/many/" + "/".join(["."] * 30) + "/file-0007.txt"  # > 60 bytes: slow link
    os.symlink(deep, root / "slowlink")
    return files


@pytest.mark.parametrize("options", [
    (),                                   # 4 KiB blocks, 64bit, 64-byte descriptors
    ("-b", "1024", "-O", "^64bit"),       # first data block 1, 32-byte descriptors
], ids=["4k-64bit", "1k-32bit"])
def test_ext4_reads_a_real_image(harness: Path, tmp_path: Path, options: tuple[str, ...]) -> None:
    tree = tmp_path / "tree"
    files = distro_tree(tree)
    image = tmp_path / "fs.img"
    fs_uuid = mkfs(tree, image, *options)
    info = run(harness, "ext4-info", str(image))
    assert f"uuid {fs_uuid}\n" in info and "label cbtest\n" in info
    for rel, data in files.items():
        assert run_bytes(harness, "ext4-cat", str(image), "/" + rel) == data, rel
    assert run_bytes(harness, "ext4-cat", str(image), "/etc/os-release").startswith(b"ID=debian")
    assert run_bytes(harness, "ext4-cat", str(image), "/slowlink") == b"entry 7\n"
    assert run_bytes(harness, "ext4-cat", str(image), "/vmlinuz") == \
        files["boot/vmlinuz-6.1.0-10-cloud-amd64"]
    names = {line.split()[0] for line in run(harness, "ext4-ls", str(image),
                                             "/usr/share/many").splitlines()}
    assert names == {".", ".."} | {f"file-{i:04d}.txt" for i in range(400)}
    assert run(harness, "ext4-kernel", str(image)) == (
        "kernel /boot/vmlinuz-6.1.0-10-cloud-amd64\n"
        "initrd /boot/initrd.img-6.1.0-10-cloud-amd64\n"
        "version 6.1.0-10-cloud-amd64\n")
    missing = subprocess.run([str(harness), "ext4-cat", str(image), "/boot/nope"],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stdout.startswith("lookup-error e")  # NOT_FOUND


def test_ext4_extent_tree_and_holes(harness: Path, tmp_path: Path) -> None:
    """A sparse file with 12 data runs needs more extents than the inode holds (4): an extent
    tree of depth 1; the holes read as zeros."""
    tree = tmp_path / "tree"
    tree.mkdir()
    chunk = 64 * 1024
    data = bytearray(24 * chunk)
    with open(tree / "sparse.bin", "wb") as f:
        for i in range(0, 24, 2):
            piece = os.urandom(chunk)
            f.seek(i * chunk)
            f.write(piece)
            data[i * chunk:(i + 1) * chunk] = piece
        f.truncate(len(data))
    image = tmp_path / "fs.img"
    mkfs(tree, image)
    stat = subprocess.run(["debugfs", "-R", "stat /sparse.bin", str(image)],
                          capture_output=True, text=True)
    if "(ETB0)" not in stat.stdout and "ETB" not in stat.stdout:
        pytest.skip("host: mkfs.ext4 -d kept no holes on this file system (no extent tree)")
    assert run_bytes(harness, "ext4-cat", str(image), "/sparse.bin") == bytes(data)


def test_ext4_fallback_symlinks_and_not_ext4(harness: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "boot").mkdir(parents=True)
    (tree / "boot/vmlinuz-6.1.0-5-arm64").write_bytes(b"K" * 5000)
    (tree / "boot/initrd.img-6.1.0-4-arm64").write_bytes(b"I" * 5000)  # versions differ
    os.symlink("boot/vmlinuz-6.1.0-5-arm64", tree / "vmlinuz")
    os.symlink("boot/initrd.img-6.1.0-4-arm64", tree / "initrd.img")
    image = tmp_path / "fs.img"
    mkfs(tree, image)
    assert run(harness, "ext4-kernel", str(image)) == \
        "kernel /vmlinuz\ninitrd /initrd.img\nversion \n"
    blank = tmp_path / "blank.img"
    blank.write_bytes(b"\0" * 65536)
    r = subprocess.run([str(harness), "ext4-info", str(blank)], capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout.strip() == "open-error e"  # EFI_NOT_FOUND


VERSIONS = [
    ("6.1.0-10-cloud-amd64", "6.1.0-9-cloud-amd64"),
    ("6.1.0-9-cloud-amd64", "6.1.0-10-cloud-amd64"),
    ("6.12.107+deb13-cloud-amd64", "6.12.9+deb13-cloud-amd64"),
    ("6.1.0-28-cloud-amd64", "6.1.0-28-cloud-amd64"),
    ("6.1.0~rc1-cloud", "6.1.0-cloud"),
    ("6.1.0-cloud", "6.1.0~rc1-cloud"),
    ("1.0~", "1.0"),
    ("1.0a", "1.0+"),
    ("1.0", "1.0.0"),
    ("2.0", "10.0"),
    ("007", "7"),
]


def test_version_order_matches_dpkg(harness: Path) -> None:
    if shutil.which("dpkg") is None:
        pytest.fail("dpkg missing")
    for a, b in VERSIONS:
        got = int(run(harness, "vercmp", a, b))
        want = next(r for r, op in ((-1, "lt"), (0, "eq"), (1, "gt"))
                    if subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0)
        assert got == want, (a, b, got, want)


def test_ucs2(harness: Path) -> None:
    def to_ucs2(text: bytes, cap: int = 512) -> str:
        return run(harness, "utf8-to-ucs2", text.hex(), str(cap)).strip()

    assert to_ucs2("root=UUID=x é €".encode()) == "".join(
        f"{ord(c):04x}" for c in "root=UUID=x é €")
    assert to_ucs2(b"\xff") == "error"                       # not UTF-8
    assert to_ucs2(b"\xc0\xaf") == "error"                   # overlong
    assert to_ucs2("😀".encode()) == "error"                 # beyond UCS-2
    assert to_ucs2(b"\xe2\x82") == "error"                   # truncated
    assert to_ucs2(b"abcd", 4) == "error" and to_ucs2(b"abc", 4) == "006100620063"
    back = run(harness, "ucs2-to-utf8", "x é €".encode("utf-16-le").hex()).strip()
    assert bytes.fromhex(back).decode() == "x é €"
    assert run(harness, "ucs2-to-utf8", "00d8").strip() == "error"  # lone surrogate


@pytest.mark.parametrize(("data", "want"), [
    (b"debian", "debian"),
    (b"ext4:\0", "ext4:"),
    ("ext4:LABEL=cbroot".encode("utf-16-le") + b"\0\0", "ext4:LABEL=cbroot"),
    ("console=ttyS0 é".encode(), "console=ttyS0 é"),
    (b"", "garbage"),
    (b"\0\0", "garbage"),
    (b"\xff\xfe\x01garbage", "garbage"),
    (b"line\nbreak", "garbage"),
    (b"a\0b", "garbage"),
    (b"x" * 300, "too-long"),
])
def test_variable_text(harness: Path, data: bytes, want: str) -> None:
    assert run(harness, "vartext", data.hex()).rstrip("\n") == want


def test_pe_check(harness: Path, tmp_path: Path) -> None:
    from cloudboot.loader.compile import build_loader

    if shutil.which("clang") is None or shutil.which("lld-link") is None:
        pytest.fail("clang/lld-link missing (python -m cloudboot.debian.hostdeps ensure tests)")
    assert run(harness, "pe", str(build_loader("x86_64", "b"))) == "efi 8664\n"
    assert run(harness, "pe", str(build_loader("aarch64", "b"))) == "not-efi aa64\n"
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + os.urandom(4000))
    assert run(harness, "pe", str(junk)) == "not-efi 0000\n"
    mz = tmp_path / "mz"
    mz.write_bytes(b"MZ" + b"\0" * 58 + (0xFFFFFF).to_bytes(4, "little") + b"\0" * 100)
    assert run(harness, "pe", str(mz)) == "not-efi 0000\n"


def _pe(machine: int, magic: int) -> bytes:
    """A minimal PE header: MZ, e_lfanew 0x40, COFF header, optional header magic."""
    head = bytearray(0x40)
    head[:2] = b"MZ"
    head[0x3C:0x40] = (0x40).to_bytes(4, "little")
    coff = b"PE\0\0" + machine.to_bytes(2, "little") + b"\0" * 14 + (0xE0).to_bytes(2, "little")
    coff += b"\0\0" + magic.to_bytes(2, "little")
    return bytes(head) + coff + b"\0" * 0x100


def test_pe_check_armv7(harness: Path, harness_armv7: Path, tmp_path: Path) -> None:
    """armv7 kernels (the armmp zImage) and loaders are PE32 with machine 0x01c2: the armv7
    build accepts exactly those; the x86_64 build names the machine it refuses."""
    cases = {"pe32-arm": _pe(0x01C2, 0x10B), "pe32plus-arm": _pe(0x01C2, 0x20B),
             "pe32-armnt": _pe(0x01C4, 0x10B), "pe32plus-x64": _pe(0x8664, 0x20B)}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert run(harness_armv7, "pe", str(tmp_path / "pe32-arm")) == "efi 01c2\n"
    assert run(harness_armv7, "pe", str(tmp_path / "pe32plus-arm")) == "not-efi 01c2\n"
    assert run(harness_armv7, "pe", str(tmp_path / "pe32-armnt")) == "not-efi 01c4\n"
    assert run(harness_armv7, "pe", str(tmp_path / "pe32plus-x64")) == "not-efi 8664\n"
    assert run(harness, "pe", str(tmp_path / "pe32-arm")) == "not-efi 01c2\n"
    assert run(harness, "pe", str(tmp_path / "pe32plus-x64")) == "efi 8664\n"


def test_built_armv7_loader_passes_its_own_pe_check(harness_armv7: Path) -> None:
    """The armv7 loader itself is an armv7 EFI image after the Machine rewrite."""
    from cloudboot.loader.compile import build_loader

    assert run(harness_armv7, "pe", str(build_loader("armv7", "b"))) == "efi 01c2\n"
    assert run(harness_armv7, "pe", str(build_loader("x86_64", "b"))) == "not-efi 8664\n"
