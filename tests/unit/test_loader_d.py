"""Path D loader, host side: the pure-C parts (sha256, JSON scanner, OCI parsing, the
configuration block) compiled with the host's cc and run, plus the Python that fills the
configuration in, checked against the C layout and the real compiled loader."""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cloudboot.arch import get_arch
from cloudboot.cli import loader as cli_loader
from cloudboot.loader import netconfig
from cloudboot.loader.netconfig import NetConfig, NetConfigError, embed_config, read_config
from tests.helpers import need_tools

ROOT = Path(__file__).resolve().parents[2]
LOADER = ROOT / "loader"
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
FLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"]
HAVE_CLANG = shutil.which("clang") is not None and shutil.which("lld-link") is not None


@pytest.fixture(autouse=True)
def _compilers() -> None:
    need_tools("cc", "clang", "lld-link")



def _sanitizers(tmp: Path) -> list[str]:
    """ASan+UBSan when the host toolchain links them (it does on Debian with gcc)."""
    probe = tmp / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    flags = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    r = subprocess.run([str(CC), *flags, str(probe), "-o", str(tmp / "probe")],
                       capture_output=True)
    return flags if r.returncode == 0 else []


_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="module")
def bindir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("loader-d-host")


def _build(tmp: Path, test: str, *sources: str) -> Path:
    """Compile loader/tests/<test>.c with the loader/d sources it needs (once per run)."""
    if test in _BUILT and _BUILT[test].exists():
        return _BUILT[test]
    out = tmp / test
    cmd = [str(CC), *FLAGS, *_sanitizers(tmp), str(LOADER / "tests" / f"{test}.c"),
           *(str(LOADER / "d" / s) for s in sources), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr}"
    _BUILT[test] = out
    return out


def _run(exe: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
    return subprocess.run([str(exe), *args], input=stdin, capture_output=True, env=env,
                          timeout=120)


def test_sha256_nist_vectors(bindir: Path) -> None:
    r = _run(_build(bindir, "test_d_sha256", "sha256.c"))
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    for name in ("empty", "abc", "448-bit", "896-bit", "million-a", "55-a", "56-a"):
        assert f"ok {name}\n" in out


@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 119, 120, 4095, 65536 + 7,
                                  3 * 1024 * 1024 + 1])
def test_sha256_matches_hashlib(bindir: Path, size: int) -> None:
    exe = _build(bindir, "test_d_sha256", "sha256.c")
    data = os.urandom(size)
    r = _run(exe, "-", stdin=data)
    assert r.returncode == 0
    assert r.stdout.decode().strip() == hashlib.sha256(data).hexdigest()


def test_json_scanner(bindir: Path) -> None:
    r = _run(_build(bindir, "test_d_json", "json.c"))
    assert r.returncode == 0 and r.stdout.decode().endswith("ok json\n"), \
        r.stdout.decode() + r.stderr.decode()


def test_oci_index_and_manifest_parsing(bindir: Path) -> None:
    r = _run(_build(bindir, "test_d_oci", "oci.c", "json.c"))
    out = r.stdout.decode()
    assert r.returncode == 0 and out.endswith("ok oci\n"), out + r.stderr.decode()
    # The exact line the loader prints for an index without this platform.
    assert ("platform error: no manifest for linux/amd64 in the image index (it has: "
            "linux/arm64, linux/riscv64)") in out


def test_config_layout_matches_python(bindir: Path) -> None:
    r = _run(_build(bindir, "test_d_config", "config.c"), "layout")
    assert r.returncode == 0
    layout = {}
    for line in r.stdout.decode().splitlines():
        name, *nums = line.split()
        layout[name] = tuple(int(n) for n in nums)
    assert layout["total"] == (netconfig.BLOCK_SIZE,)
    assert layout["magic"] == (0, len(netconfig.MAGIC))
    assert layout["size"][0] == 16 and layout["flags"][0] == 20
    for name, off, size in netconfig.FIELDS:
        assert layout[name] == (off, size), name


def _blank_block() -> bytes:
    import struct

    return (netconfig.MAGIC + struct.pack("<II", netconfig.BLOCK_SIZE, 0)).ljust(
        netconfig.BLOCK_SIZE, b"\0")


def _check_in_c(tmp_path: Path, block: bytes, bindir: Path) -> str:
    f = tmp_path / "block.bin"
    f.write_bytes(block)
    r = _run(_build(bindir, "test_d_config", "config.c"), "check", str(f))
    return r.stdout.decode().strip()


def test_python_fills_what_c_reads(tmp_path: Path, bindir: Path) -> None:
    blob = b"\x90" * 100 + _blank_block() + b"\xcc" * 50
    assert "no configuration embedded" in _check_in_c(tmp_path, _blank_block(), bindir)
    cfg = NetConfig("10.0.2.2:5000", "debian/bookworm", "12",
                    "root=UUID=abc ro console=ttyS0 quiet=\"x y\"", insecure=True)
    out = embed_config(blob, cfg)
    assert len(out) == len(blob) and out[:100] == blob[:100] and out[-50:] == blob[-50:]
    block = out[100:100 + netconfig.BLOCK_SIZE]
    assert _check_in_c(tmp_path, block, bindir) == (
        'ok registry=10.0.2.2:5000 repository=debian/bookworm reference=12 insecure=1 '
        'cmdline=root=UUID=abc ro console=ttyS0 quiet="x y"')
    assert read_config(out) == cfg
    # Re-embedding replaces every field completely (no tail of a longer old value).
    cfg2 = NetConfig("reg.example:443", "a/b", "sha256:" + "0" * 64)
    out2 = embed_config(out, cfg2)
    assert read_config(out2) == cfg2
    block2 = out2[100:100 + netconfig.BLOCK_SIZE]
    assert "insecure=0 cmdline=" in _check_in_c(tmp_path, block2, bindir)


@pytest.mark.parametrize(("cfg", "says"), [
    (NetConfig("10.0.2.2", "a/b", "t"), None),
    (NetConfig("10.0.2.2:0", "a/b", "t"), "--registry"),
    (NetConfig("10.0.2.2:99999", "a/b", "t"), "--registry"),
    (NetConfig("http://x:1", "a/b", "t"), "--registry"),
    (NetConfig("x:1", "A/b", "t"), "--repo"),
    (NetConfig("x:1", "a//b", "t"), "--repo"),
    (NetConfig("x:1", "a/b", "-t"), "--tag"),
    (NetConfig("x:1", "a/b", "sha256:abc"), "--digest"),
    (NetConfig("x:1", "a/b", "t", "a\nb"), "--cmdline"),
    (NetConfig("x:1", "a/b", "t", "x" * 2048), "cmdline: 2048 bytes do not fit"),
    (NetConfig("x:1", "a/b", "t", "x" * 2047), None),
    (NetConfig("x:1", "a/" + "b" * 300, "t"), "repository: 302 bytes do not fit"),
])
def test_bad_values_are_refused_with_the_field_named(cfg: NetConfig, says: str | None) -> None:
    blob = _blank_block()
    if says is None:
        assert read_config(embed_config(blob, cfg)) == cfg
        return
    with pytest.raises(NetConfigError, match=says.replace("(", r"\(")):
        embed_config(blob, cfg)


def test_blocks_that_are_missing_twice_or_foreign() -> None:
    cfg = NetConfig("x:1", "a/b", "t")
    with pytest.raises(NetConfigError, match="no CLOUDBOOT-D-CFG1"):
        embed_config(b"MZ" + b"\0" * 4000, cfg)
    with pytest.raises(NetConfigError, match="more than one"):
        embed_config(_blank_block() * 2, cfg)
    with pytest.raises(NetConfigError, match="cut off"):
        embed_config(_blank_block()[:100], cfg)
    import struct

    other = bytearray(_blank_block())
    struct.pack_into("<I", other, 16, 4096)
    with pytest.raises(NetConfigError, match="rebuild the loader"):
        embed_config(bytes(other), cfg)
    with pytest.raises(NetConfigError, match="exactly one of --tag and --digest"):
        NetConfig.make("x:1", "a/b")


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_real_loader_carries_one_block(arch: str) -> None:
    from cloudboot.loader.compile import build_loader

    efi = build_loader(arch, "d").read_bytes()
    assert efi[:2] == b"MZ"
    assert efi.count(netconfig.MAGIC) == 1
    assert read_config(efi) is None  # built unconfigured: the loader says so at boot
    cfg = NetConfig("10.0.2.2:5000", "debian/bookworm", "12", "console=ttyS0", True)
    filled = embed_config(efi, cfg)
    assert read_config(filled) == cfg and len(filled) == len(efi)


def test_build_d_media_writes_an_esp_with_the_loader(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "boot.iso"
    args = argparse.Namespace(arch=get_arch("x86_64"), registry="10.0.2.2:5000",
                              repo="debian/bookworm",
                              tag=None, digest="sha256:" + "a" * 64, cmdline="console=ttyS0",
                              insecure=True, iso=str(out))
    assert cli_loader.cmd_build_d(args) == 0
    said = capsys.readouterr().out
    assert "pulls http://10.0.2.2:5000/debian/bookworm@sha256:" + "a" * 64 in said
    efi = _loader_from_image(out)
    cfg = read_config(efi)
    assert cfg is not None and cfg.reference == "sha256:" + "a" * 64 and cfg.insecure
    assert cfg.cmdline == "console=ttyS0" and efi[:2] == b"MZ"


def _loader_from_image(image: Path) -> bytes:
    """\\EFI\\BOOT\\BOOTX64.EFI read from the image's GPT ESP with cloudboot's FAT reader."""
    from cloudboot.init.storage.gptread import read_gpt
    from cloudboot.media.fatread import FatReader

    table = read_gpt(image)
    assert table is not None, "boot.iso has no GPT"
    with open(image, "rb") as f:
        for p in table.partitions:
            try:
                return FatReader(f, p.first_lba * 512).read("/EFI/BOOT/BOOTX64.EFI")
            except (ValueError, KeyError):
                continue
    raise AssertionError("no ESP with /EFI/BOOT/BOOTX64.EFI")


def test_cli_build_path_d(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cloudboot.cli.main import main

    out = tmp_path / "d.img"
    assert main(["build", "--path", "d", "--arch", "arm64", "--registry", "10.0.2.2:5000",
                 "--repo", "debian/bookworm", "--tag", "12", "-o", str(out)]) == 0
    assert "pulls https://10.0.2.2:5000/debian/bookworm:12" in capsys.readouterr().out
    assert out.stat().st_size > 1024 * 1024
    # Bad input: one line that names the option, exit status 1, no file left behind.
    bad = tmp_path / "bad.iso"
    assert main(["build", "--path", "d", "--registry", "10.0.2.2:5000", "--repo", "Debian",
                 "--tag", "12", "-o", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cloudboot build: error: --repo 'Debian': not an OCI repository")
    assert not bad.exists()
    assert main(["build", "--path", "d", "--repo", "a/b", "--tag", "1", "-o", str(bad)]) == 1
    assert "--path d needs --registry" in capsys.readouterr().err
    assert main(["build", "--path", "d", "--registry", "h:1", "--repo", "a/b", "--tag", "1",
                 "--cmdline", "x" * 3000, "-o", str(bad)]) == 1
    assert "cmdline: 3000 bytes do not fit the loader's 2047-byte field" in \
        capsys.readouterr().err
    assert not bad.exists()
