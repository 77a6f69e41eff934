"""The target's Python runtime: interpreter, shared-library closure and compiled stdlib.

Everything comes from Debian packages of the TARGET architecture, unpacked side by side; a
`Tree` overlays them into one guest file namespace. Shared libraries are found by reading
DT_NEEDED ourselves (the arch may be foreign, so no ldd).

A `Runtime` says which Python and where its packages come from. The default is bookworm's
Python 3.11 from the host's apt (x86_64, aarch64, armv7), compiled to .pyc in-process by the
host's 3.11. Debian has no 3.11 for riscv64 (trixie: 3.13) or loong64 (forky: 3.14): the lab
passes a Runtime with that version, a fetch function for that suite (`cloudboot/` never imports
`lab/`) and a qemu-user emulator, and `foreignpyc` compiles with the target interpreter.
"""

from __future__ import annotations

import importlib.util
import marshal
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cloudboot.arch import Arch
from cloudboot.debian import debpkg
from cloudboot.initramfs import elf

PY_VERSION = "3.11"  # the default runtime's (bookworm's) Python
HOST_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"
INTERPRETER = f"/usr/bin/python{PY_VERSION}"
STDLIB = f"/usr/lib/python{PY_VERSION}"
LIB_DYNLOAD = f"{STDLIB}/lib-dynload"

# Besides python + libpython: the sonames the interpreter and _ctypes need (same names in
# bookworm, trixie and forky).
SUPPORT_PACKAGES = ("libc6", "zlib1g", "libexpat1", "libffi8")


def base_packages(version: str) -> tuple[str, ...]:
    return (f"python{version}-minimal", f"libpython{version}-minimal",
            f"libpython{version}-stdlib", *SUPPORT_PACKAGES)


BASE_PACKAGES = base_packages(PY_VERSION)

# soname -> Debian package that ships it (bookworm names); consulted when a NEEDED library
# is in none of the packages unpacked so far.
SONAME_PACKAGES = {
    "libz.so.1": "zlib1g",
    "libexpat.so.1": "libexpat1",
    "libffi.so.8": "libffi8",
    "libcrypto.so.3": "libssl3",
    "libssl.so.3": "libssl3",
    "liblzma.so.5": "liblzma5",
    "libbz2.so.1.0": "libbz2-1.0",
    "libmpdec.so.3": "libmpdec3",
    "libuuid.so.1": "libuuid1",
    "libsqlite3.so.0": "libsqlite3-0",
    "libtinfo.so.6": "libtinfo6",
    "libncursesw.so.6": "libncursesw6",
    "libpanelw.so.6": "libncursesw6",
    "libreadline.so.8": "libreadline8",
    "libcrypt.so.1": "libcrypt1",
    "libnsl.so.2": "libnsl2",
    "libtirpc.so.3": "libtirpc3",
    "libdb-5.3.so": "libdb5.3",
    "libgdbm.so.6": "libgdbm6",
    "libgcc_s.so.1": "libgcc-s1",
    "libzstd.so.1": "libzstd1",
}

# trixie and later: the 64-bit time_t transition renamed packages (libssl3 -> libssl3t64, …)
# and libmpdec moved to soname 4.
T64_SONAME_PACKAGES = {
    **SONAME_PACKAGES,
    "libcrypto.so.3": "libssl3t64",
    "libssl.so.3": "libssl3t64",
    "libmpdec.so.4": "libmpdec4",
    "libreadline.so.8": "libreadline8t64",
    "libdb-5.3.so": "libdb5.3t64",
    "libgdbm.so.6": "libgdbm6t64",
    "libtirpc.so.3": "libtirpc3t64",
}

# Imported by the interpreter itself before any user code (python -I -S), so the import walk
# of the entry module cannot see them (several are frozen in 3.11, shipping them is harmless),
# and codecs looked up by name at run time: socket.getaddrinfo encodes host names with idna;
# GPT partition names and EFI variables are UTF-16-LE, FAT long names UCS-2.
STARTUP_MODULES = (
    "encodings", "encodings.aliases", "encodings.utf_8", "encodings.ascii",
    "encodings.latin_1", "encodings.idna", "encodings.utf_8_sig",
    "encodings.raw_unicode_escape", "encodings.unicode_escape", "encodings.utf_16",
    "encodings.utf_16_le", "encodings.utf_16_be", "codecs", "io", "abc", "os",
    "stat", "posixpath", "genericpath", "_collections_abc",
)

# Initialised by the runtime without a PyInit_* export.
CORE_BUILTINS = ("sys", "builtins", "marshal", "_warnings", "_imp")


class PyRuntimeError(RuntimeError):
    pass


Fetch = Callable[[str, str], Path]  # (package, Debian arch) -> its unpacked root


@dataclass(frozen=True)
class Runtime:
    """Which Python the initramfs carries and where its Debian packages come from."""

    version: str = PY_VERSION
    fetch: Fetch = debpkg.unpacked
    source: str = "host apt"  # for messages and reports: "host apt", "trixie", "forky"
    soname_packages: Mapping[str, str] = field(default_factory=lambda: dict(SONAME_PACKAGES))
    # qemu-user binary that runs the target's interpreter on this host (foreign runtimes only)
    emulator: Path | None = None

    @property
    def interpreter(self) -> str:
        return f"/usr/bin/python{self.version}"

    @property
    def stdlib(self) -> str:
        return f"/usr/lib/python{self.version}"

    @property
    def lib_dynload(self) -> str:
        return f"{self.stdlib}/lib-dynload"

    @property
    def base_packages(self) -> tuple[str, ...]:
        return base_packages(self.version)

    @property
    def host_compiles(self) -> bool:
        """True when the host interpreter writes this runtime's bytecode (same version)."""
        return self.version == HOST_VERSION

    def describe(self) -> str:
        return f"python{self.version} from {self.source}"


DEFAULT_RUNTIME = Runtime()
USRMERGE_DIRS = ("lib", "lib64", "bin", "sbin")


class Tree:
    """Guest paths -> files in the unpacked packages (first package wins on overlap)."""

    def __init__(self, arch: Arch, fetch: Fetch | None = None,
                 runtime: Runtime = DEFAULT_RUNTIME) -> None:
        self.arch = arch
        self.runtime = runtime
        self.fetch = fetch or runtime.fetch
        self.files: dict[str, Path] = {}
        self.packages: dict[str, Path] = {}
        self._usrmerged: tuple[int, bool] | None = None

    def add_package(self, package: str) -> Path:
        if package in self.packages:
            return self.packages[package]
        root = self.fetch(package, self.arch.debian)
        self.packages[package] = root
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            base = "" if rel == "." else "/" + rel
            # symlinked directories are files for our purposes
            for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                if base == "" and n == ".complete":
                    continue
                self.files.setdefault(f"{base}/{n}", Path(dirpath) / n)
        return root

    @property
    def usrmerged(self) -> bool:
        """The packages ship /usr/lib only (trixie on): /lib, /lib64, /bin are symlinks into
        /usr on the installed system (base-files), so ELF interpreters such as
        /lib/ld-linux-riscv64-lp64d.so.1 live under /usr."""
        key = len(self.packages)
        if self._usrmerged is None or self._usrmerged[0] != key:
            merged = any(p.endswith("/libc.so.6") and p.startswith("/usr/") for p in self.files)
            self._usrmerged = (key, merged)
        return self._usrmerged[1]

    def canonical(self, guest: str) -> str | None:
        """`guest` as the packages ship it (/lib/x -> /usr/lib/x when usrmerged), or None."""
        if guest in self.files:
            return guest
        top = guest.lstrip("/").split("/", 1)[0]
        if top in USRMERGE_DIRS and self.usrmerged and f"/usr{guest}" in self.files:
            return f"/usr{guest}"
        return None

    def host(self, guest: str) -> Path:
        found = self.canonical(guest)
        if found is None:
            owners = ", ".join(self.packages) or "no packages"
            raise PyRuntimeError(f"{guest} is not in the unpacked packages ({owners})")
        return self.files[found]

    def resolve(self, guest: str) -> list[str]:
        """`guest` followed through symlinks: every path on the way, the real file last."""
        chain = [self.canonical(guest) or guest]
        for _ in range(16):
            host = self.host(chain[-1])
            if not host.is_symlink():
                return chain
            target = os.readlink(host)
            nxt = target if target.startswith("/") else \
                os.path.normpath(os.path.join(os.path.dirname(chain[-1]), target))
            chain.append(self.canonical(nxt) or nxt)
        raise PyRuntimeError(f"{guest}: too many levels of symbolic links")

    def find_soname(self, soname: str) -> str | None:
        # the dynamic loader's default search path: multiarch dirs first, then /lib, /usr/lib
        libdirs = sorted({os.path.dirname(p) for p in self.files if p.endswith("/libc.so.6")})
        for d in libdirs + [f"/usr{d}" for d in libdirs] + ["/lib", "/usr/lib"]:
            if f"{d}/{soname}" in self.files:
                return f"{d}/{soname}"
        return None


def target_magic(tree: Tree) -> bytes:
    """The .pyc magic number of the packaged interpreter, read from its importlib source.

    Up to 3.13 the source spells the number out; 3.14 takes it from `_imp` at run time (ask
    the interpreter itself: `foreignpyc.compile_batch` reports it)."""
    stdlib = tree.runtime.stdlib
    src = tree.host(f"{stdlib}/importlib/_bootstrap_external.py").read_text()
    m = re.search(r"^MAGIC_NUMBER = \((\d+)\)\.to_bytes\(2, 'little'\) \+ b'\\r\\n'", src, re.M)
    if not m:
        raise PyRuntimeError(f"{stdlib}/importlib/_bootstrap_external.py: no literal "
                             "MAGIC_NUMBER line (Python 3.14 and later compute it at run time)")
    return int(m.group(1)).to_bytes(2, "little") + b"\r\n"


def check_magic(tree: Tree) -> bytes:
    magic = target_magic(tree)
    host = importlib.util.MAGIC_NUMBER
    if magic != host:
        version = tree.runtime.version
        raise PyRuntimeError(
            f"bytecode mismatch: target python{version} ({tree.arch.debian}) uses .pyc magic "
            f"{int.from_bytes(magic[:2], 'little')}, the host Python {sys.version.split()[0]} "
            f"writes {int.from_bytes(host[:2], 'little')}; run the builder with Python "
            f"{version}, or give the runtime a qemu-user emulator to compile with the target's")
    return magic


def target_builtins(tree: Tree) -> set[str]:
    """Modules compiled into the target interpreter (its exported PyInit_* symbols)."""
    interpreter = tree.runtime.interpreter
    syms = elf.dynamic_symbols(tree.host(interpreter))
    names = {s[len("PyInit_"):] for s in syms if s.startswith("PyInit_")}
    if not names:
        raise PyRuntimeError(f"{interpreter}: exports no PyInit_* symbols; cannot tell which "
                            "modules are builtin")
    return names | set(CORE_BUILTINS)


def compile_pyc(source: bytes, guest_source_path: str, magic: bytes, optimize: int = 0) -> bytes:
    """Sourceless .pyc (timestamp form, mtime and size zero: it is never checked).

    The loader accepts a sourceless .pyc whatever its optimisation level, so the stdlib can
    go in as -OO bytecode (no docstrings: about a quarter smaller).
    """
    code = compile(source, guest_source_path, "exec", dont_inherit=True, optimize=optimize)
    return magic + bytes(12) + marshal.dumps(code)


def library_closure(tree: Tree, elves: Iterable[str],
                    extra_packages: dict[str, str] | None = None) -> list[str]:
    """Guest paths (symlinks and real files) of every shared library `elves` need, recursively.

    Missing sonames are fetched via SONAME_PACKAGES (plus `extra_packages`).
    """
    table = {**tree.runtime.soname_packages, **(extra_packages or {})}
    out: list[str] = []
    seen: set[str] = set()
    todo = [(p, "") for p in elves]
    while todo:
        guest, needed_by = todo.pop(0)
        chain = tree.resolve(guest)
        for p in chain:
            if p not in seen:
                seen.add(p)
                out.append(p)
        info = elf.read_elf(tree.host(chain[-1]))
        deps = list(info.needed) + ([info.interp] if info.interp else [])
        for soname in deps:
            if soname.startswith("/"):
                path: str | None = tree.canonical(soname)
                if path is None:
                    tree.add_package("libc6")
                    path = tree.canonical(soname)
            else:
                path = tree.find_soname(soname)
                if path is None and soname in table:
                    tree.add_package(table[soname])
                    path = tree.find_soname(soname)
            if path is None or path not in tree.files:
                raise PyRuntimeError(
                    f"{soname}, needed by {chain[-1]}{needed_by}, is in none of the packages "
                    f"{', '.join(tree.packages)}; add it to the runtime's soname_packages "
                    f"(SONAME_PACKAGES / T64_SONAME_PACKAGES in {__name__})")
            if path not in seen:
                todo.append((path, f" (via {guest})" if guest != chain[-1] else ""))
    return out
