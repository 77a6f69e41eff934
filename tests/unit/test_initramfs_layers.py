"""The foreign runtime's cached layers (cloudboot/initramfs/layers.py): the guest half of the
closure walk runs on the host and hands the runtime walk only the runtime modules it imports
(seeds), so the runtime walk's cache key ignores guest edits that import nothing new; the two
halves give the single walk's closure; .pyc are stored by content, so an edit recompiles only
the edited module.

The walk tests use the host's own bookworm 3.11 runtime (real packages, parsed by the host);
the compile tests run riscv64's trixie python3.13 under qemu-user, as the lane does.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from cloudboot.arch import get_arch
from cloudboot.initramfs import builder, closure, foreignpyc, kmods, layers, pyruntime

FOLLOW = {"cbmini", "cloudboot"}
ENTRY = "cbmini.main"


@pytest.fixture(scope="module")
def tree() -> pyruntime.Tree:
    t = pyruntime.Tree(get_arch("x86_64"))
    for pkg in t.runtime.base_packages:
        t.add_package(pkg)
    return t


def _package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "cbmini"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    for name, text in files.items():
        (pkg / name).write_text(text)
    return root


MAIN = '''"""entry of a small guest package"""
import json
import shutil
import cloudboot.init.events
from os import path
from xml.etree import ElementTree
from . import helper

try:
    import cbmini_not_there
except ImportError:
    cbmini_not_there = None


def run():
    import csv
    return csv, path, json, ElementTree, helper
'''
HELPER = '''from collections import abc
from email import message_from_string  # an attribute of a package, not a submodule


def f():
    import shlex
    return shlex, abc, message_from_string
'''


def _guest(tree: pyruntime.Tree, source_roots: list[Path]) -> layers.GuestWalk:
    guest = layers.GuestWalk(builder._roots(tree, source_roots),
                             builder._guest_roots(source_roots), pyruntime.target_builtins(tree),
                             closure.DEFAULT_EXCLUDE, FOLLOW)
    guest.run([ENTRY])
    return guest


def _split(tree: pyruntime.Tree, source_roots: list[Path]
           ) -> tuple[layers.GuestWalk, closure.Closure]:
    builtins = pyruntime.target_builtins(tree)
    guest = _guest(tree, source_roots)
    guest_found = guest.closure
    runtime_found = closure.find_closure(
        pyruntime.STARTUP_MODULES, builder._runtime_roots(tree), builtins,
        closure.DEFAULT_EXCLUDE, FOLLOW, sorted(guest.seeds))
    return guest, layers._merge(guest_found, runtime_found, guest.seeds)


def _guest_table(table: dict[str, set[str]]) -> dict[str, set[str]]:
    out = {k: {i for i in v if i.split(".")[0] in FOLLOW} for k, v in table.items()}
    return {k: v for k, v in out.items() if v}


def test_split_walk_is_the_single_walk(tree: pyruntime.Tree, tmp_path: Path) -> None:
    roots = [_package(tmp_path, {"main.py": MAIN, "helper.py": HELPER})]
    single = closure.find_closure([ENTRY, *pyruntime.STARTUP_MODULES],
                                  builder._roots(tree, roots), pyruntime.target_builtins(tree),
                                  closure.DEFAULT_EXCLUDE, FOLLOW)
    guest, merged = _split(tree, roots)
    assert not guest.foreign_modules()
    assert merged.modules == single.modules
    # guest code's own imports are never dropped: xml is excluded for the stdlib, not for us
    assert {"xml.etree.ElementTree", "csv", "shlex", "cloudboot.init.events",
            "cbmini.helper"} <= set(merged.modules)
    assert "email.message_from_string" not in merged.modules
    for table in ("missing", "optional_missing", "excluded"):
        assert _guest_table(getattr(merged, table)) == _guest_table(getattr(single, table))
    assert merged.optional_missing["cbmini_not_there"] == {"cbmini.main"}
    # the runtime walk's importer is mapped back to the guest modules that led there
    assert closure.GUEST_IMPORTER not in {i for v in merged.missing.values() for i in v}
    assert merged.chain("xml.etree.ElementTree")[0] == "<entry>"
    # the seeds: runtime modules only, whoever imports them
    names = {name for name, _, _ in guest.seeds}
    assert {"json", "os", "xml.etree", "xml.etree.ElementTree", "csv", "collections",
            "collections.abc", "shlex", "email"} <= names
    assert not any(n.split(".")[0] in FOLLOW for n in names)
    assert guest.seeds[("json", False, False)] >= {"cbmini.main"}


def test_same_for_cloudboot_itself(tree: pyruntime.Tree) -> None:
    entries = [builder.DEFAULT_ENTRY, *pyruntime.STARTUP_MODULES]
    builtins = pyruntime.target_builtins(tree)
    single = closure.find_closure(entries, builder._roots(tree, []), builtins,
                                  closure.DEFAULT_EXCLUDE, {"cloudboot"})
    guest = layers.GuestWalk(builder._roots(tree, []), builder._guest_roots([]), builtins,
                             closure.DEFAULT_EXCLUDE, {"cloudboot"})
    guest_found = guest.run([builder.DEFAULT_ENTRY])
    assert set(guest_found.modules) == {m for m in single.modules if m.startswith("cloudboot")}
    runtime_found = closure.find_closure(pyruntime.STARTUP_MODULES, builder._runtime_roots(tree),
                                         builtins, closure.DEFAULT_EXCLUDE, {"cloudboot"},
                                         sorted(guest.seeds))
    assert layers._merge(guest_found, runtime_found, guest.seeds).modules == single.modules


def _key(tree: pyruntime.Tree, root: Path) -> tuple[str, set[closure.Seed]]:
    guest = _guest(tree, [root])
    key = layers.runtime_walk_key(layers.runtime_identity(tree), pyruntime.STARTUP_MODULES,
                                  guest.seeds, builder._runtime_roots(tree),
                                  pyruntime.target_builtins(tree), closure.DEFAULT_EXCLUDE,
                                  FOLLOW)
    return key, set(guest.seeds)


def test_runtime_key_follows_imports_not_edits(tree: pyruntime.Tree, tmp_path: Path) -> None:
    root = _package(tmp_path, {"main.py": MAIN, "helper.py": HELPER})
    key0, seeds0 = _key(tree, root)
    # comments, code, a new guest module and an import already made elsewhere: same key
    _package(root, {"main.py": "# edited\n" + MAIN + "\nX = 1\n",
                    "helper.py": HELPER + "\nimport json\nfrom . import extra\n",
                    "extra.py": "import os\n"})
    key1, seeds1 = _key(tree, root)
    assert (key1, seeds1) == (key0, seeds0)
    # a runtime module the guest code did not import before: another key
    _package(root, {"extra.py": "import os\nimport heapq\n"})
    key2, seeds2 = _key(tree, root)
    assert seeds2 - seeds1 == {("heapq", False, False)}
    assert key2 != key1
    # the same module, now optional (inside try/except ImportError): another key too
    _package(root, {"extra.py": "import os\ntry:\n    import heapq\nexcept ImportError:\n"
                                "    heapq = None\n"})
    key3, seeds3 = _key(tree, root)
    assert ("heapq", True, False) in seeds3 and key3 not in (key1, key2)


def test_side_tells_guest_from_runtime(tree: pyruntime.Tree, tmp_path: Path) -> None:
    root = _package(tmp_path, {"main.py": MAIN})
    (root / "json").mkdir()
    (root / "json" / "__init__.py").write_text("")
    guest = layers.GuestWalk(builder._roots(tree, [root]), builder._guest_roots([root]),
                             pyruntime.target_builtins(tree), closure.DEFAULT_EXCLUDE, FOLLOW)
    assert guest.side("cbmini.main") == "guest" and guest.side("cloudboot.init") == "guest"
    assert guest.side("os.path") == "runtime" and guest.side("_struct") == "runtime"
    assert guest.side("sys") == "runtime"  # builtin
    assert guest.side("cbmini_nowhere") is None
    # a guest package shadowing a stdlib one: ForeignLayers falls back to the single walk
    assert guest.side("json.decoder") == "guest"


def test_cached_walk_round_trip_and_rejects(tree: pyruntime.Tree, tmp_path: Path) -> None:
    roots = [_package(tmp_path / "src", {"main.py": MAIN, "helper.py": HELPER})]
    _, merged = _split(tree, roots)
    path = tmp_path / "walk.json"
    path.write_text(json.dumps({"key": "k1", **layers._closure_to_json(merged)}))
    back = layers.ForeignLayers._load_walk(path, "k1")
    assert back is not None and back.modules == merged.modules
    assert back.optional_missing == merged.optional_missing and back.via == merged.via
    assert layers.ForeignLayers._load_walk(path, "k2") is None  # another key
    assert layers.ForeignLayers._load_walk(tmp_path / "absent.json", "k1") is None
    data = json.loads(path.read_text())
    data["modules"].append(["gone", "source", str(tmp_path / "gone.py"), "/x/gone.py"])
    path.write_text(json.dumps(data))
    assert layers.ForeignLayers._load_walk(path, "k1") is None  # names a file that is gone
    path.write_text('{"key": "k1", "modules": [')
    assert layers.ForeignLayers._load_walk(path, "k1") is None  # truncated


# -- with riscv64's python3.13 under qemu-user ------------------------------------------------

@pytest.fixture(scope="module")
def riscv_tree() -> pyruntime.Tree:
    from cloudboot.bootstrap import archsources

    try:
        runtime = archsources.TABLE["riscv64"].python_runtime()
        t = pyruntime.Tree(get_arch("riscv64"), runtime=runtime)
        for pkg in runtime.base_packages:
            t.add_package(pkg)
    except archsources.ArchSourceError as e:
        pytest.fail(f"riscv64: the lane's Debian packages could not be fetched: {e}", pytrace=False)
    return t


def test_pyc_store_compiles_only_what_changed(riscv_tree: pyruntime.Tree,
                                              tmp_path: Path) -> None:
    src = _package(tmp_path / "src", {"main.py": MAIN, "helper.py": HELPER}) / "cbmini"
    jobs = [foreignpyc.Job(src / "main.py", "/usr/lib/cloudboot/cbmini/main.py", 0),
            foreignpyc.Job(src / "helper.py", "/usr/lib/cloudboot/cbmini/helper.py", 0),
            foreignpyc.Job(src / "main.py", "/usr/lib/cloudboot/cbmini/main.py", 2)]
    with foreignpyc.TargetPython(riscv_tree) as py:
        store = layers.ForeignLayers(riscv_tree, py, tmp_path / "layers")
        first = store.compile(jobs)
        assert (store.compiled, store.reused, py.runs) == (3, 0, 1)
        assert first[0] != first[2]  # -OO drops the docstring: another .pyc
        again = store.compile(jobs)
        assert again == first and (store.compiled, py.runs) == (0, 1)  # no emulator run
        (src / "helper.py").write_text(HELPER + "\n# an edit\nY = 2\n")
        edited = store.compile(jobs)
        assert (store.compiled, store.reused, py.runs) == (1, 2, 2)
        assert edited[1] != first[1] and edited[::2] == first[::2]
        (src / "helper.py").write_text(HELPER)  # back as it was: from the store again
        assert store.compile(jobs) == first and (store.compiled, py.runs) == (0, 2)
    magic = edited[0][:4]
    assert magic != importlib.util.MAGIC_NUMBER
    assert magic == pyruntime.target_magic(riscv_tree)


# Cold, the runtime walk and the stdlib compile take minutes of emulated Python: lane e2e runs.
@pytest.mark.e2e
def test_foreign_layers_cold_then_warm(riscv_tree: pyruntime.Tree, tmp_path: Path) -> None:
    src = _package(tmp_path / "src", {"main.py": "import json\nfrom . import helper\n",
                                      "helper.py": "import base64\n"})
    builtins = pyruntime.target_builtins(riscv_tree)
    entries = [ENTRY, *pyruntime.STARTUP_MODULES]
    guest_roots = builder._guest_roots([src])
    runtime_roots = builder._runtime_roots(riscv_tree)

    def walk(py: foreignpyc.TargetPython) -> tuple[layers.ForeignLayers, closure.Closure,
                                                   list[bytes]]:
        lay = layers.ForeignLayers(riscv_tree, py, tmp_path / "layers")
        found = lay.closure(entries, guest_roots, runtime_roots, builtins,
                            closure.DEFAULT_EXCLUDE, FOLLOW)
        jobs = [foreignpyc.Job(m.host_path, m.guest_path,
                               0 if m.name.split(".")[0] in FOLLOW else 2)
                for m in found.modules.values()
                if m.host_path is not None and m.guest_path is not None
                and m.kind != "extension"]
        return lay, found, lay.compile(jobs)

    with foreignpyc.TargetPython(riscv_tree) as py:
        cold, found, pycs = walk(py)
        assert cold.runtime_walk_cached is False and cold.compiled == len(pycs) > 20
        single = py.closure(entries, [*guest_roots, *runtime_roots], builtins,
                            closure.DEFAULT_EXCLUDE, FOLLOW)
        assert found.modules == single.modules
    (src / "cbmini" / "helper.py").write_text("# edited\nimport base64\nimport json\n")
    with foreignpyc.TargetPython(riscv_tree) as py:
        warm, found2, pycs2 = walk(py)
        assert warm.runtime_walk_cached is True
        assert (warm.compiled, py.runs) == (1, 1)  # the edited module, one emulator run
        assert found2.modules == found.modules
        assert sum(a != b for a, b in zip(pycs, pycs2, strict=True)) == 1
    (src / "cbmini" / "helper.py").write_text("import base64\nimport heapq\n")
    with foreignpyc.TargetPython(riscv_tree) as py:
        grown, found3, _ = walk(py)
        assert grown.runtime_walk_cached is False and grown.layer_path != warm.layer_path
        assert "heapq" in found3.modules and "heapq" not in found.modules


# -- the kernel modules' alias index, stored across builds ------------------------------------

def test_alias_index_is_stored_by_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every build of a suite kernel's initramfs read the aliases of all ~3000 modules (40 s
    of xz under load); the index now sits in the cache, keyed by the module listing."""
    from cloudboot.debian import debpkg

    arch = get_arch("x86_64")
    try:
        src = kmods.KernelTree(debpkg.unpacked(arch.kernel_package, arch.debian))
    except debpkg.PackageError as e:
        pytest.fail(f"the kernel package could not be fetched: {e}", pytrace=False)
    monkeypatch.setenv("CLOUDBOOT_CACHE", str(tmp_path / "cache"))
    dst = tmp_path / "kernel/lib/modules" / src.version
    for name in ("virtio_ring", "virtio", "virtio_blk"):
        rel = Path(src.paths[name])
        (dst / rel.parent).mkdir(parents=True, exist_ok=True)
        shutil.copy(src.dir / rel, dst / rel)
    index = kmods.KernelTree(tmp_path / "kernel")._stored_alias_index()
    assert "virtio_blk" in index["virtio:d00000002v*"]
    stored = list((tmp_path / "cache/initramfs/kmods").glob(f"alias-{src.version}-*.json"))
    assert len(stored) == 1
    # same listing: read from the store, the modules are not opened (this one is now garbage)
    blk = dst / src.paths["virtio_blk"]
    blk.write_bytes(bytes(blk.stat().st_size))
    assert kmods.KernelTree(tmp_path / "kernel")._stored_alias_index() == index
    # another listing: read again from the modules
    blk.write_bytes(b"not an ELF file")
    with pytest.raises(kmods.KernelModuleError):
        kmods.KernelTree(tmp_path / "kernel")._stored_alias_index()
