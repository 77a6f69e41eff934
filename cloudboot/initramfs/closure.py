"""The Python module closure of the guest entry point, found by walking import statements.

We do not use `modulefinder`: it consults the HOST interpreter's builtin modules and extension
suffixes, which are wrong for a foreign-arch target. Instead the module namespace is the union
of a few roots (the target's stdlib and lib-dynload, the cloudboot sources), builtins come from
the target interpreter, and every `import` anywhere in a module (also inside functions) counts.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# Never allowed in the guest: these are host tools' dependencies (DESIGN.md §4).
HOST_ONLY = frozenset({
    "pefile", "pycdlib", "oras", "libvirt", "pyfatfs", "fs", "virt", "rich", "qemu", "pexpect",
    "hcl2", "lark", "requests", "pytest", "hypothesis", "lab",
})

# Stdlib modules that the stdlib imports optionally (try/except ImportError) but the guest can
# do without; a guest module that imports one itself still gets it. `_hashlib` and `ssl` pull
# in libcrypto + libssl (~2 MB gzip): hashlib falls back to the builtin _sha256/_sha512/_md5
# and urllib works without ssl for http:// (an HTTPS client must `import ssl` itself).
DEFAULT_EXCLUDE = frozenset({
    "_hashlib", "ssl", "_ssl", "tkinter", "_tkinter", "turtle", "idlelib", "test", "unittest",
    "lib2to3",
    "ensurepip", "distutils", "pydoc", "pydoc_data", "doctest", "pdb", "_pyrepl", "curses",
    "_curses", "readline", "sqlite3", "_sqlite3", "dbm", "_dbm", "_gdbm", "multiprocessing",
    "concurrent", "asyncio", "xmlrpc", "idna", "_testcapi", "_ctypes_test", "nt", "_winapi",
    "winreg", "msvcrt", "_winreg", "_overlapped", "_msi", "_wmi", "_scproxy", "_osx_support",
    "java", "org", "vms_lib", "_frozen_importlib", "_frozen_importlib_external", "_pyio",
    "_pydecimal", "decimal", "_decimal", "tracemalloc", "cProfile", "profile", "pstats",
    "trace", "tty", "pty", "getpass", "webbrowser", "http.server", "socketserver", "smtplib",
    "imaplib", "poplib", "ftplib", "nntplib", "telnetlib", "mailbox", "xml.dom", "xml.sax",
    "pyexpat", "xml", "plistlib", "_aix_support", "_bootsubprocess", "ossaudiodev", "audioop",
    "_lzma", "lzma", "_bz2", "bz2", "mimetypes", "zipimport", "zipfile", "tarfile", "shelve",
})


# Submodules with no file of their own: a module of the package installs them in sys.modules
# (3.13 dropped collections/abc.py; collections/__init__.py registers _collections_abc as
# collections.abc; os.py does the same for os.path). Used only where no file exists.
VIRTUAL_MODULES = {"collections.abc": "_collections_abc", "os.path": "posixpath"}
# Python modules that an extension (or builtin) module imports from C, where no import
# statement shows it: 3.14's _ctypes builds every Structure layout with ctypes._layout.
# Optional: absent in the versions that do not have them.
EXTENSION_IMPORTS = {"_ctypes": ("ctypes._layout",)}


# The importer recorded for `seeds` (Finder.run): imports of guest code walked elsewhere.
GUEST_IMPORTER = "<guest>"
# A module another walk found imported: (name, optional, droppable), as Finder.require takes.
Seed = tuple[str, bool, bool]


class ClosureError(RuntimeError):
    pass


@dataclass(frozen=True)
class Root:
    """A directory that contributes modules, and where its files live in the guest."""

    host: Path
    guest: str
    extensions: bool = False  # lib-dynload: holds only top-level extension modules
    only: frozenset[str] | None = None  # top-level names this root may provide (None: any)


@dataclass(frozen=True)
class Module:
    name: str
    kind: str  # "source", "package", "extension", "builtin" or "virtual" (VIRTUAL_MODULES)
    host_path: Path | None = None
    guest_path: str | None = None  # .py or .so path as the guest would see it


@dataclass
class Closure:
    modules: dict[str, Module] = field(default_factory=dict)
    # unresolved imports: name -> importers; "optional" ones sat in try/except ImportError
    missing: dict[str, set[str]] = field(default_factory=dict)
    optional_missing: dict[str, set[str]] = field(default_factory=dict)
    excluded: dict[str, set[str]] = field(default_factory=dict)
    lazy_skipped: dict[str, set[str]] = field(default_factory=dict)
    via: dict[str, str] = field(default_factory=dict)  # module -> the importer that pulled it

    def chain(self, name: str) -> list[str]:
        """Why `name` is in the closure: entry first, `name` last."""
        out = [name]
        while out[-1] in self.via and len(out) < 64:
            out.append(self.via[out[-1]])
        return out[::-1]

    def names(self) -> set[str]:
        return set(self.modules)

    def top_level(self) -> set[str]:
        return {n.split(".")[0] for n in self.modules}


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    t = handler.type
    if t is None:
        return True
    elts = t.elts if isinstance(t, ast.Tuple) else [t]
    return any(isinstance(e, ast.Name) and e.id in {"ImportError", "ModuleNotFoundError",
                                                     "Exception", "BaseException"}
               for e in elts)


_DYNAMIC_IMPORT = re.compile(rb"""(?:import_module|__import__)\(\s*["']([A-Za-z_][\w.]*)["']""")


class _ImportCollector:
    """Collects imports from one module's statements (expressions are not walked: fast).

    Each is (absolute name, from-list, optional, lazy): optional = guarded by an
    `except ImportError`; lazy = inside a function, i.e. not run when the module is imported.
    """

    def __init__(self, package: str) -> None:
        self.package = package
        self.found: list[tuple[str, tuple[str, ...], bool, bool]] = []

    def collect(self, source: bytes, tree: ast.Module) -> None:
        self._walk(tree.body, False, False)
        # importlib.import_module("x") / __import__("x") with a literal name: count as lazy
        for m in _DYNAMIC_IMPORT.finditer(source):
            self.found.append((m.group(1).decode(), (), False, True))

    def _walk(self, body: list[ast.stmt], optional: bool, lazy: bool) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.found.append((alias.name, (), optional, lazy))
            elif isinstance(node, ast.ImportFrom):
                base = self._absolute(node)
                if base is not None:
                    names = tuple(a.name for a in node.names if a.name != "*")
                    self.found.append((base, names, optional, lazy))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self._walk(node.body, optional, True)
            elif isinstance(node, ast.Try | ast.TryStar):
                guarded = any(_catches_import_error(h) for h in node.handlers)
                self._walk(node.body, optional or guarded, lazy)
                for h in node.handlers:
                    self._walk(h.body, optional, lazy)
                self._walk(node.orelse, optional, lazy)
                self._walk(node.finalbody, optional, lazy)
            elif isinstance(node, ast.Match):
                for case in node.cases:
                    self._walk(case.body, optional, lazy)
            else:
                for attr in ("body", "orelse"):
                    sub = getattr(node, attr, None)
                    if isinstance(sub, list):
                        self._walk(sub, optional, lazy)

    def _absolute(self, node: ast.ImportFrom) -> str | None:
        base = node.module or ""
        if not node.level:
            return base
        parts = self.package.split(".") if self.package else []
        if node.level - 1 > len(parts):
            return None  # beyond the top level: Python would fail too
        parts = parts[:len(parts) - (node.level - 1)]
        return ".".join(parts + ([base] if base else []))


class Finder:
    def __init__(self, roots: Iterable[Root], builtins: Iterable[str],
                 exclude: Iterable[str] = DEFAULT_EXCLUDE,
                 follow_lazy: Iterable[str] = ("cloudboot",)) -> None:
        self.roots = list(roots)
        self.follow_lazy = set(follow_lazy)
        self.builtins = set(builtins)
        self.exclude = set(exclude)
        self.closure = Closure()
        self._queue: list[Module] = []

    def _excluded(self, name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[:i]) in self.exclude for i in range(1, len(parts) + 1))

    def locate(self, name: str) -> Module | None:
        if "." not in name and name in self.builtins:
            return Module(name, "builtin")
        rel = name.replace(".", "/")
        leaf = name.rsplit(".", 1)[-1]
        for root in self.roots:
            if root.only is not None and name.split(".")[0] not in root.only:
                continue
            if root.extensions:
                if "." in name:
                    continue
                so = sorted(root.host.glob(f"{leaf}.cpython-*.so")) + sorted(
                    root.host.glob(f"{leaf}.abi3.so")) + sorted(root.host.glob(f"{leaf}.so"))
                if so:
                    return Module(name, "extension", so[0], f"{root.guest}/{so[0].name}")
                continue
            init = root.host / rel / "__init__.py"
            if init.is_file():
                return Module(name, "package", init, f"{root.guest}/{rel}/__init__.py")
            src = root.host / f"{rel}.py"
            if src.is_file():
                return Module(name, "source", src, f"{root.guest}/{rel}.py")
        return None

    def _note(self, table: dict[str, set[str]], name: str, importer: str) -> None:
        table.setdefault(name, set()).add(importer)

    def require(self, name: str, importer: str, optional: bool = False,
                droppable: bool = False) -> bool:
        """Add `name` and its parent packages; False when it cannot be found or is dropped.

        The exclude list only drops `droppable` imports: optional or lazy ones made by the
        stdlib. A module's unconditional top-level imports are always followed (or it would
        fail to import in the guest), and so is everything the guest code imports itself.
        """
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            sub = ".".join(parts[:i])
            if sub in self.closure.modules:
                continue
            if droppable and self._excluded(sub):
                self._note(self.closure.excluded, sub, importer)
                return False
            mod = self.locate(sub)
            if mod is None and sub in VIRTUAL_MODULES and i > 1:
                mod = Module(sub, "virtual")
                self.closure.modules[sub] = mod
                self.closure.via[sub] = importer
                if not self.require(VIRTUAL_MODULES[sub], sub, optional, droppable):
                    return False
                continue
            if mod is None:
                self._note(self.closure.optional_missing if optional else self.closure.missing,
                           sub, importer)
                return False
            self.closure.modules[sub] = mod
            self.closure.via[sub] = importer
            self._queue.append(mod)
        return True

    def _scan(self, mod: Module) -> None:
        for implied in EXTENSION_IMPORTS.get(mod.name, ()):
            self.require(implied, mod.name, optional=True)
        if mod.kind not in ("source", "package") or mod.host_path is None:
            return
        source = mod.host_path.read_bytes()
        try:
            tree = ast.parse(source, str(mod.host_path))
        except SyntaxError as e:
            raise ClosureError(f"{mod.host_path}:{e.lineno}: cannot parse module "
                               f"{mod.name}: {e.msg}") from None
        package = mod.name if mod.kind == "package" else mod.name.rpartition(".")[0]
        collector = _ImportCollector(package)
        collector.collect(source, tree)
        follow_lazy = mod.name.split(".")[0] in self.follow_lazy
        for base, names, optional, lazy in collector.found:
            if not base:
                continue
            if lazy and not follow_lazy:
                # a function-level import in the stdlib runs only on that code path; leave it
                # out (a guest module that needs it imports it itself)
                if base not in self.closure.modules:
                    self._note(self.closure.lazy_skipped, base, mod.name)
                continue
            droppable = (optional or lazy) and not follow_lazy
            self.follow(mod.name, base, names, optional, droppable)

    def follow(self, importer: str, base: str, names: tuple[str, ...], optional: bool,
               droppable: bool) -> None:
        """One import statement of `importer`: `import base` or `from base import names`."""
        if not self.require(base, importer, optional, droppable):
            return
        target = self.closure.modules[base]
        if target.kind == "package":
            for n in names:
                # `from pkg import name`: a submodule if one exists, else an attribute
                sub = f"{base}.{n}"
                if sub not in self.closure.modules and self.locate(sub) is not None:
                    self.require(sub, importer, optional, droppable)

    def run(self, entries: Iterable[str], seeds: Iterable[Seed] = ()) -> Closure:
        """Walk from `entries` (each must exist) and `seeds`: imports that guest code walked
        elsewhere makes (`layers`), recorded as made by GUEST_IMPORTER."""
        for e in entries:
            if not self.require(e, "<entry>"):
                raise ClosureError(f"entry module {e!r} not found in "
                                   f"{', '.join(str(r.host) for r in self.roots)}")
        for name, optional, droppable in seeds:
            self.require(name, GUEST_IMPORTER, optional, droppable)
        while self._queue:
            self._scan(self._queue.pop())
        return self.closure


def find_closure(entries: Iterable[str], roots: Iterable[Root], builtins: Iterable[str],
                 exclude: Iterable[str] = DEFAULT_EXCLUDE,
                 follow_lazy: Iterable[str] = ("cloudboot",),
                 seeds: Iterable[Seed] = ()) -> Closure:
    """Modules needed to import `entries` (and the guest's imports `seeds`, see Finder.run).

    Every import in modules of the `follow_lazy` packages counts (also inside functions);
    elsewhere (the stdlib) only imports that run at module import time do.
    """
    return Finder(roots, builtins, exclude, follow_lazy).run(entries, seeds)


def check_guest_imports(closure: Closure, guest_packages: Iterable[str] = ("cloudboot",),
                        packed: Iterable[str] = ()) -> None:
    """Fail when a guest module imports a host-only package or something not in the target.

    `packed` names third-party packages deliberately shipped (e.g. an HCL parser).
    """
    prefixes = tuple(guest_packages)
    allowed = set(packed)
    problems = []
    for name in sorted(closure.top_level() & (HOST_ONLY - allowed)):
        problems.append(f"host-only package {name!r} is in the guest closure")
    for table, what in ((closure.missing, "imports"), (closure.excluded, "imports excluded")):
        for name, importers in sorted(table.items()):
            guests = sorted(i for i in importers if i.split(".")[0] in prefixes)
            if guests:
                kind = "host-only" if name.split(".")[0] in HOST_ONLY else "unavailable"
                problems.append(f"{', '.join(guests)} {what} {kind} module {name!r}")
    if problems:
        raise ClosureError("guest module closure is not self-contained:\n  " +
                           "\n  ".join(problems))
