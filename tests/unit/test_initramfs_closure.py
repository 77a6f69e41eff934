"""Import closure of the guest entry point, over the real Debian python3.11 packages."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import pytest

from cloudboot.arch import host_arch
from cloudboot.debian import debpkg
from cloudboot.initramfs import builder, closure, elf, pyruntime

ARCH = host_arch()


@pytest.fixture(scope="module")
def tree() -> pyruntime.Tree:
    t = pyruntime.Tree(ARCH)
    try:
        for pkg in pyruntime.BASE_PACKAGES:
            t.add_package(pkg)
    except debpkg.PackageError as e:
        pytest.fail(f"the Debian python packages could not be fetched: {e}", pytrace=False)
    return t


def _closure(tree: pyruntime.Tree, entry: str, roots: Sequence[Path] = ()) -> closure.Closure:
    guests = builder._guest_packages(roots) | {"cloudboot"}
    return closure.find_closure([entry, *pyruntime.STARTUP_MODULES],
                                builder._roots(tree, roots), pyruntime.target_builtins(tree),
                                follow_lazy=guests)


def test_guest_closure_is_stdlib_only_and_in_budget(tree: pyruntime.Tree) -> None:
    c = _closure(tree, builder.DEFAULT_ENTRY)
    leaked = c.top_level() & closure.HOST_ONLY
    assert not leaked, {n: c.chain(n) for n in leaked}
    closure.check_guest_imports(c)  # raises on anything unresolvable from cloudboot code
    assert "cloudboot.init.main" in c.modules and "encodings.utf_8" in c.modules
    magic = pyruntime.check_magic(tree)
    size = 0
    for m in c.modules.values():
        if m.kind in ("source", "package") and m.host_path and m.guest_path:
            size += len(pyruntime.compile_pyc(m.host_path.read_bytes(), m.guest_path, magic, 2))
    print(f"closure: {len(c.modules)} modules, {size // 1024} KiB .pyc")
    assert size <= builder.PYC_BUDGET


def test_host_only_import_is_refused(tree: pyruntime.Tree, tmp_path: Path) -> None:
    pkg = tmp_path / "guestpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "main.py").write_text("import json\n\ndef f():\n    import pefile\n")
    c = _closure(tree, "guestpkg.main", [tmp_path])
    assert "pefile" in c.missing and c.missing["pefile"] == {"guestpkg.main"}
    with pytest.raises(closure.ClosureError, match="host-only module 'pefile'"):
        closure.check_guest_imports(c, ["guestpkg"])


def test_builtins_and_extensions_follow_the_target(tree: pyruntime.Tree) -> None:
    builtins = pyruntime.target_builtins(tree)
    assert {"_struct", "zlib", "posix", "sys"} <= builtins  # Debian links these in
    assert "_ctypes" not in builtins
    c = closure.find_closure(["ctypes", "json"], builder._roots(tree, []), builtins)
    assert c.modules["_ctypes"].kind == "extension"
    assert "_hashlib" not in c.modules  # optional in hashlib, excluded by default


def test_stdlib_lazy_imports_not_followed(tree: pyruntime.Tree) -> None:
    c = closure.find_closure(["traceback"], builder._roots(tree, []),
                             pyruntime.target_builtins(tree))
    # traceback imports ast only inside a function; a guest module needing ast imports it itself
    assert "ast" not in c.modules and "ast" in c.lazy_skipped


def test_magic_matches_host(tree: pyruntime.Tree) -> None:
    assert pyruntime.target_magic(tree) == importlib.util.MAGIC_NUMBER


def test_elf_reader_on_packaged_interpreter(tree: pyruntime.Tree) -> None:
    info = elf.read_elf(tree.host(pyruntime.INTERPRETER))
    assert info.interp and info.interp.startswith("/lib")
    assert "libc.so.6" in info.needed and "libz.so.1" in info.needed
    libs = pyruntime.library_closure(tree, [pyruntime.INTERPRETER])
    assert info.interp in libs
    assert any(p.endswith("/libc.so.6") for p in libs)
    lib = elf.read_elf(tree.host(tree.resolve(tree.find_soname("libz.so.1") or "")[-1]))
    assert lib.soname == "libz.so.1"
