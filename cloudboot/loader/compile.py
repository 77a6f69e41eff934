"""Build the native UEFI loaders with clang + lld-link (Debian's packages, no gnu-efi).

`build_loader(arch, "b" | "d", out)` compiles `loader/lib/*.c` + `loader/<program>/*.c` for
x86_64 or aarch64 as a freestanding PE32+ EFI application, warnings as errors, and caches the
result by the hash of every source, the flags and the compiler version under
`cache_dir("loader")`: a second build of the same tree is a copy.
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

_TARGETS = {"x86_64": "x86_64-unknown-windows", "aarch64": "aarch64-unknown-windows"}
_MACHINES = {"x86_64": "x64", "aarch64": "arm64"}
CFLAGS = [
    "-std=c11", "-O2", "-ffreestanding", "-fshort-wchar", "-fno-stack-protector",
    "-mno-stack-arg-probe", "-fno-builtin", "-fno-strict-aliasing",
    "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
]
CFLAGS_ARCH = {"x86_64": ["-mno-red-zone", "-mgeneral-regs-only"],
               "aarch64": ["-mgeneral-regs-only"]}


class LoaderBuildError(RuntimeError):
    """The loader could not be built; the message says which tool, file and why."""


def _tool(*names: str) -> str:
    for n in names:
        path = shutil.which(n)
        if path:
            return path
    raise LoaderBuildError(
        f"{names[0]} not found (install Debian's clang and lld: "
        f"python -m cloudboot.hostdeps ensure tests)")


def sources(program: str) -> list[Path]:
    """The C files that make up `program`, shared library first, sorted."""
    if program not in PROGRAMS:
        raise LoaderBuildError(f"unknown loader program {program!r} (known: b, d)")
    lib = sorted((SOURCE_ROOT / "lib").glob("*.c"))
    own = sorted((SOURCE_ROOT / program).glob("*.c"))
    if not own:
        raise LoaderBuildError(f"{SOURCE_ROOT / program}: no C sources")
    return lib + own


def _headers() -> list[Path]:
    return sorted(SOURCE_ROOT.glob("**/*.h"))


def _version(cc: str) -> str:
    r = subprocess.run([cc, "--version"], capture_output=True, text=True)
    return r.stdout.splitlines()[0] if r.stdout else ""


def _key(arch: Arch, program: str, cc: str, files: list[Path]) -> str:
    h = hashlib.sha256()
    h.update(f"{arch.name}\0{program}\0{_version(cc)}\0{' '.join(CFLAGS)}\0"
             f"{' '.join(CFLAGS_ARCH[arch.name])}\n".encode())
    for f in files + _headers():
        h.update(str(f.relative_to(SOURCE_ROOT)).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()[:24]


def _run(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        out = (r.stderr or r.stdout).strip()
        raise LoaderBuildError(f"{what} failed (exit {r.returncode}):\n{out}")


def build_loader(arch: Arch | str, program: str, out: Path | None = None) -> Path:
    """Compile loader `program` ("b" or "d") for `arch`; returns the cached .efi, also copied
    to `out` when given (atomically)."""
    if isinstance(arch, str):
        arch = get_arch(arch)
    if arch.name not in _TARGETS:
        raise LoaderBuildError(
            f"the native loader builds for x86_64 and aarch64 only, not {arch.name}")
    files = sources(program)
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
            with atomic_output(cached) as t:
                shutil.copyfile(linked, t)
    if out is not None:
        with atomic_output(Path(out)) as t:
            shutil.copyfile(cached, t)
        return Path(out)
    return cached
