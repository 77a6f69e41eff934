"""Building the native loader (clang + lld-link), its Path B media, and `cloudboot vars set`
/ `cloudboot build --path b` on real OVMF variable stores and real FAT/GPT images."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloudboot.arch import get_arch
from cloudboot.cli.main import main
from cloudboot.efi import varstore
from cloudboot.loader import compile as loader_compile
from cloudboot.loader.compile import LoaderBuildError, build_loader
from cloudboot.loader.media import build_b_media

OVMF_VARS_4M = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")

@pytest.mark.parametrize(("arch", "machine", "magic"), [
    ("x86_64", 0x8664, 0x20B), ("aarch64", 0xAA64, 0x20B),
    # armv7: PE32, and 0x01c2 (ARM Thumb mixed, what AAVMF32 loads) over lld-link's 0x01c4.
    ("armv7", 0x01C2, 0x10B)])
def test_build_loader_is_a_small_efi_application(arch: str, machine: int, magic: int,
                                                 tmp_path: Path) -> None:
    out = build_loader(arch, "b", tmp_path / "b.efi")
    data = out.read_bytes()
    assert data[:2] == b"MZ" and 8_000 < len(data) < 200_000
    pe = int.from_bytes(data[0x3C:0x40], "little")
    assert data[pe:pe + 4] == b"PE\0\0"
    assert int.from_bytes(data[pe + 4:pe + 6], "little") == machine
    opt = pe + 24
    assert int.from_bytes(data[opt:opt + 2], "little") == magic  # PE32+ / PE32
    # Subsystem sits at 68 in both layouts (PE32's BaseOfData makes up its 4-byte ImageBase).
    assert int.from_bytes(data[opt + 68:opt + 70], "little") == 10  # EFI application
    # the second build is the cached file
    t0 = time.monotonic()
    assert build_loader(arch, "b").read_bytes() == data
    assert time.monotonic() - t0 < 5


def test_warnings_are_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "loader"
    shutil.copytree(loader_compile.SOURCE_ROOT, src)
    (src / "b" / "warn.c").write_text("int unused_fn(void) { int x; return 0; }\n")
    monkeypatch.setattr(loader_compile, "SOURCE_ROOT", src)
    with pytest.raises(LoaderBuildError, match=r"(?s)clang .*warn\.c failed.*unused variable"):
        build_loader("x86_64", "b")


def test_bad_requests_are_named() -> None:
    with pytest.raises(LoaderBuildError, match="unknown loader program 'z'"):
        build_loader("x86_64", "z")
    with pytest.raises(LoaderBuildError, match="x86_64, aarch64 and armv7 only, not riscv64"):
        build_loader("riscv64", "b")


@pytest.mark.parametrize("program", ["b", "d"])
def test_armv7_code_has_no_fp_simd_or_hardware_divide(program: str, tmp_path: Path) -> None:
    """The armv7 objects exactly as compile.py builds them: no VFP/NEON instruction (the
    firmware need not enable the FPU for an application), no UDIV/SDIV (not in every armv7-A
    core), and no runtime helper other than the two rt_arm.c provides."""
    for src in loader_compile.sources(program, "armv7"):
        asm = tmp_path / f"{src.stem}.s"
        r = subprocess.run(["clang", f"--target={loader_compile._TARGETS['armv7']}",
                            *loader_compile.CFLAGS, *loader_compile.CFLAGS_ARCH["armv7"],
                            "-I", str(loader_compile.SOURCE_ROOT / "include"), "-S", str(src),
                            "-o", str(asm)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        code = [ln.split()[0] for ln in asm.read_text().splitlines()
                if ln.startswith("\t") and not ln.lstrip().startswith((".", "@"))]
        assert code, src
        assert not [m for m in code if m.startswith("v")], f"{src}: VFP/NEON instructions"
        assert not [m for m in code if m in ("udiv", "sdiv")], f"{src}: hardware divide"
        helpers = set(re.findall(r"\bbl\s+(__rt_\w+)", asm.read_text()))
        assert helpers <= {"__rt_udiv", "__rt_udiv64"}, f"{src}: {helpers}"


def _mdir(image: Path, offset: int, path: str) -> str:
    r = subprocess.run(["mdir", "-b", "-i", f"{image}@@{offset}", path], capture_output=True,
                       text=True, env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"})
    return r.stdout


def test_b_media_disk_and_iso(tmp_path: Path) -> None:
    arch = get_arch("x86_64")
    disk = build_b_media(arch, tmp_path / "b.img", cmdline="console=ttyS0 quiet")
    assert disk.kind == "disk"
    table = subprocess.run(["sfdisk", "-J", str(disk.path)], capture_output=True, text=True,
                           check=True).stdout
    assert "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" in table
    listing = _mdir(disk.path, 2048 * 512, "::/EFI/BOOT")
    assert "BOOTX64.EFI" in listing.upper()
    r = subprocess.run(["mtype", "-i", f"{disk.path}@@{2048 * 512}", "::/cmdline"],
                       capture_output=True, text=True, env={"MTOOLS_SKIP_CHECK": "1"})
    assert r.stdout == "console=ttyS0 quiet\n"
    iso = build_b_media(arch, tmp_path / "b.iso")
    assert iso.kind == "iso" and iso.path.read_bytes()[0x8001:0x8006] == b"CD001"
    with pytest.raises(Exception, match="control characters"):
        build_b_media(arch, tmp_path / "x.img", cmdline="a\nb")
    assert not (tmp_path / "x.img").exists()


@pytest.fixture
def vars_file(tmp_path: Path) -> Path:
    out = tmp_path / "vars.fd"
    shutil.copyfile(OVMF_VARS_4M, out)
    return out


def test_vars_set_round_trip(vars_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = varstore.VarStore(vars_file).variables()
    assert main(["vars", "set", "--vars", str(vars_file), "--target", "ext4:LABEL=cbroot",
                 "--cmdline", "console=ttyS0 panic=-1"]) == 0
    ours = varstore.VarStore(vars_file).cloudboot_vars()
    assert ours["CloudBootTarget"] == (7, b"ext4:LABEL=cbroot")
    assert ours["CloudBootCmdline"] == (7, b"console=ttyS0 panic=-1")
    after = varstore.VarStore(vars_file).variables()
    assert {k: v for k, v in after.items() if k[0] not in ours} == before  # nothing else moved
    # changing the target keeps the command line; --clear-mark removes an old mark
    varstore.set_cloudboot_var(vars_file, "CloudBootMark", b"b:start")
    assert main(["vars", "set", "--vars", str(vars_file), "--target", "debian",
                 "--clear-mark"]) == 0
    ours = varstore.VarStore(vars_file).cloudboot_vars()
    assert ours["CloudBootTarget"][1] == b"debian" and "CloudBootMark" not in ours
    assert ours["CloudBootCmdline"][1] == b"console=ttyS0 panic=-1"
    # virt-firmware's own reader still takes the store (its CLI is installed with the package).
    virt_fw_vars = Path(sys.executable).parent / "virt-fw-vars"
    assert virt_fw_vars.is_file(), f"{virt_fw_vars} is missing (virt-firmware installs it)"
    r = subprocess.run([str(virt_fw_vars), "-i", str(vars_file), "--print"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["--target", ""], "empty or holds control characters"),
    (["--target", "a\tb"], "empty or holds control characters"),
    (["--target", "x", "--cmdline", "y" * 1001], "at most 1000"),
])
def test_vars_set_refuses_bad_values(vars_file: Path, argv: list[str], message: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    blob = vars_file.read_bytes()
    assert main(["vars", "set", "--vars", str(vars_file), *argv]) == 1
    assert message in capsys.readouterr().err
    assert vars_file.read_bytes() == blob


def test_vars_set_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vars", "set", "--vars", str(tmp_path / "nope.fd"), "--target", "x"]) == 1
    assert "nope.fd: no such vars file" in capsys.readouterr().err


def test_cli_build_path_b(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b.iso"
    assert main(["build", "--path", "b", "--arch", "aarch64", "-o", str(out)]) == 0
    assert "BOOTAA64.EFI" in capsys.readouterr().out and out.exists()
    assert main(["build", "--path", "b", "--plan", "oci://x", "-o", str(tmp_path / "c.iso")]) == 1
    assert "--plan belong to Path A/C" in capsys.readouterr().err
