"""Build the native UEFI loaders with clang + lld-link (Debian's packages, no gnu-efi).

`build_loader(arch, "b" | "d", out)` compiles `loader/lib/*.c` + `loader/<program>/*.c` for
x86_64 or aarch64 (a freestanding PE32+ EFI application) or armv7 (PE32, Thumb-2), warnings
as errors, and caches the result by the hash of every source, the flags and the compiler
version under `cache_dir("loader")`: a second build of the same tree is a copy.

armv7 (clang's thumbv7-windows target, Debian's clang 14):
- `-mfpu=none`: the Windows target assumes VFPv3 + NEON and its vectoriser uses NEON at -O2
  (a u64 copy loop becomes vld1.64/vadd.i64/vst1.64). UEFI's ARM calling convention uses no
  FP extensions and a firmware need not enable the FPU for an application, so the loader
  carries no FP/SIMD instruction at all (the code has no floats; the hard-float ABI the
  target keeps is then the same as base AAPCS; tests/unit/test_loader_build.py checks the
  assembly). Likewise `-mno-unaligned-access`: byte accesses for packed structures,
  whatever SCTLR.A says.
- armv7-A has no guaranteed hardware divide, so `/` and `%` become calls to the MSVC
  runtime's `__rt_udiv` / `__rt_udiv64`: `loader/lib/rt_arm.c`, linked into armv7 builds
  only (ARCH_ONLY).
- lld-link writes COFF machine 0x01c4 (ARMNT); EDK2 on ARM loads 0x01c2 (ARM Thumb mixed)
  only, so the field is rewritten after the link (`_set_machine`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from cloudboot.arch import Arch, get_arch
from cloudboot.fsutil import atomic_output, cache_dir

PROGRAMS = ("b", "d")
SOURCE_ROOT = Path(os.environ.get("CLOUDBOOT_LOADER_SRC")
                   or Path(__file__).resolve().parents[2] / "loader")

_TARGETS = {"x86_64": "x86_64-unknown-windows", "aarch64": "aarch64-unknown-windows",
            "armv7": "thumbv7-unknown-windows"}
_MACHINES = {"x86_64": "x64", "aarch64": "arm64", "armv7": "arm"}
# COFF machine to write over lld-link's after the link: EDK2's ARM build loads 0x01c2 (ARM
# Thumb mixed) only and refuses lld-link's 0x01c4 (ARMNT) with EFI_UNSUPPORTED (measured:
# AAVMF32's BdsDxe "failed to load Boot0001 ... Unsupported"). Thumb-2 code is valid under
# either, and the entry point's RVA already has the Thumb bit set.
_MACHINE_OVERRIDE = {"armv7": 0x01C2}
# Sources under loader/ that only one architecture builds (relative path -> arch).
ARCH_ONLY = {"lib/rt_arm.c": "armv7"}
CFLAGS = [
    "-std=c11", "-O2", "-ffreestanding", "-fshort-wchar", "-fno-stack-protector",
    "-mno-stack-arg-probe", "-fno-builtin", "-fno-strict-aliasing",
    "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
]
CFLAGS_ARCH = {"x86_64": ["-mno-red-zone", "-mgeneral-regs-only"],
               "aarch64": ["-mgeneral-regs-only"],
               "armv7": ["-mfpu=none", "-mno-unaligned-access"]}


class LoaderBuildError(RuntimeError):
    """The loader could not be built; the message says which tool, file and why."""


def _tool(*names: str) -> str:
    for n in names:
        path = shutil.which(n)
        if path:
            return path
    raise LoaderBuildError(
        f"{names[0]} not found (install Debian's clang and lld: "
        f"python -m cloudboot.debian.hostdeps ensure tests)")


def sources(program: str, arch: str | None = None) -> list[Path]:
    """The C files that make up `program` for `arch` (None: the shared ones only), shared
    library first, sorted."""
    if program not in PROGRAMS:
        raise LoaderBuildError(f"unknown loader program {program!r} (known: b, d)")
    lib = sorted((SOURCE_ROOT / "lib").glob("*.c"))
    own = sorted((SOURCE_ROOT / program).glob("*.c"))
    if not own:
        raise LoaderBuildError(f"{SOURCE_ROOT / program}: no C sources")
    return [f for f in lib + own
            if ARCH_ONLY.get(f.relative_to(SOURCE_ROOT).as_posix(), arch) == arch]


def _headers() -> list[Path]:
    return sorted(SOURCE_ROOT.glob("**/*.h"))


def _version(cc: str) -> str:
    r = subprocess.run([cc, "--version"], capture_output=True, text=True)
    return r.stdout.splitlines()[0] if r.stdout else ""


def _key(arch: Arch, program: str, cc: str, files: list[Path]) -> str:
    h = hashlib.sha256()
    h.update(f"{arch.name}\0{program}\0{_version(cc)}\0{' '.join(CFLAGS)}\0"
             f"{' '.join(CFLAGS_ARCH[arch.name])}\n".encode())
    if arch.name in _MACHINE_OVERRIDE:  # (x86_64/aarch64 keys stay as they were)
        h.update(f"machine=0x{_MACHINE_OVERRIDE[arch.name]:04x}\n".encode())
    for f in files + _headers():
        h.update(str(f.relative_to(SOURCE_ROOT)).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:24]


def _run(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        out = (r.stderr or r.stdout).strip()
        raise LoaderBuildError(f"{what} failed (exit {r.returncode}):\n{out}")


def _set_machine(path: Path, machine: int) -> None:
    """Rewrite the COFF Machine field of the PE image at `path`. The optional header's
    CheckSum stays valid: lld-link writes 0 there (no /release), which firmware ignores."""
    data = bytearray(path.read_bytes())
    pe = int.from_bytes(data[0x3C:0x40], "little")
    if data[pe:pe + 4] != b"PE\0\0":
        raise LoaderBuildError(f"{path}: lld-link wrote no PE header at 0x{pe:x}")
    if int.from_bytes(data[pe + 24 + 64:pe + 24 + 68], "little") != 0:
        raise LoaderBuildError(f"{path}: PE CheckSum is set; rewriting Machine would break it")
    data[pe + 4:pe + 6] = machine.to_bytes(2, "little")
    path.write_bytes(bytes(data))


def build_loader(arch: Arch | str, program: str, out: Path | None = None) -> Path:
    """Compile loader `program` ("b" or "d") for `arch`; returns the cached .efi, also copied
    to `out` when given (atomically)."""
    if isinstance(arch, str):
        arch = get_arch(arch)
    if arch.name not in _TARGETS:
        raise LoaderBuildError(
            f"the native loader builds for x86_64, aarch64 and armv7 only, not {arch.name} "
            f"(clang 14 has no PE/COFF target for it)")
    files = sources(program, arch.name)
    cc = _tool("clang", "clang-16", "clang-14")
    ld = _tool("lld-link", "lld-link-16", "lld-link-14")
    cached = cache_dir("loader") / f"{program}-{arch.name}-{_key(arch, program, cc, files)}.efi"
    if not cached.exists():
        with tempfile.TemporaryDirectory(prefix="cb-loader-") as tmp:
            objs = []
            for src in files:
                obj = Path(tmp) / f"{src.parent.name}-{src.stem}.o"
                _run([cc, f"--target={_TARGETS[arch.name]}", *CFLAGS,
                      *CFLAGS_ARCH[arch.name], "-I", str(SOURCE_ROOT / "include"),
                      "-c", str(src), "-o", str(obj)], f"clang {src}")
                objs.append(str(obj))
            linked = Path(tmp) / "loader.efi"
            _run([ld, "/subsystem:efi_application", "/entry:efi_main", "/nodefaultlib",
                  f"/machine:{_MACHINES[arch.name]}", "/nologo", f"/out:{linked}", *objs],
                 f"lld-link {program} ({arch.name})")
            if arch.name in _MACHINE_OVERRIDE:
                _set_machine(linked, _MACHINE_OVERRIDE[arch.name])
            with atomic_output(cached) as t:
                shutil.copyfile(linked, t)
    if out is not None:
        with atomic_output(Path(out)) as t:
            shutil.copyfile(cached, t)
        return Path(out)
    return cached
