"""Per-arch Python runtimes of the bootstrap initramfs (issue 7): riscv64 carries trixie's
python3.13, loongarch64 forky's python3.14. Their .pyc are compiled by the target interpreter
itself under qemu-user (bookworm-backports' QEMU 10) and loaded back by it here: real packages,
real emulator, nothing mocked.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cloudboot.arch import get_arch
from cloudboot.debian import aptsuites
from cloudboot.initramfs import builder, closure, elf, foreignpyc, pyruntime
from lab.arch_lanes import LaneGap, get_lane

FOREIGN = ("riscv64", "loongarch64")
EXPECTED_VERSION = {"riscv64": "3.13", "loongarch64": "3.14"}
EM = {"riscv64": 243, "loongarch64": 258}  # ELF e_machine

SAMPLE = b'''"""docstring that -OO drops"""


def answer(x):
    """function docstring"""
    assert x > 0, "asserts are kept at level 0"
    return {"sum": x + 41, "doc": answer.__doc__, "match": [y for y in range(3) if y]}
'''

LOADER = '''import importlib.machinery, importlib.util, json, sys
spec = json.load(open(sys.argv[1]))
out = {"magic": importlib.util.MAGIC_NUMBER.hex(), "version": sys.version.split()[0]}
for name, path in spec["modules"]:
    loader = importlib.machinery.SourcelessFileLoader(name, path)
    mod = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    loader.exec_module(mod)
    try:
        mod.answer(-1)
        asserts = False
    except AssertionError:
        asserts = True
    out[name] = {"answer": mod.answer(1), "moddoc": mod.__doc__, "asserts": asserts}
print(json.dumps(out))
'''


@pytest.fixture(scope="module", params=FOREIGN)
def tree(request: pytest.FixtureRequest) -> pyruntime.Tree:
    arch = request.param
    lane = get_lane(arch)
    try:
        runtime = lane.python_runtime()
        t = pyruntime.Tree(get_arch(arch), runtime=runtime)
        for pkg in runtime.base_packages:
            t.add_package(pkg)
    except (aptsuites.SuiteError, LaneGap) as e:
        pytest.fail(f"{arch}: the lane's Debian packages could not be fetched: {e}", pytrace=False)
    return t


def test_lane_runtime_names_the_suite_python(tree: pyruntime.Tree) -> None:
    rt = tree.runtime
    assert rt.version == EXPECTED_VERSION[tree.arch.name]
    assert rt.interpreter == f"/usr/bin/python{rt.version}"
    assert rt.base_packages[:3] == (f"python{rt.version}-minimal",
                                    f"libpython{rt.version}-minimal",
                                    f"libpython{rt.version}-stdlib")
    assert not rt.host_compiles and rt.emulator is not None
    assert elf.read_elf(tree.host(rt.interpreter)).machine == EM[tree.arch.name]


def test_usrmerged_tree_finds_the_loader_and_libraries(tree: pyruntime.Tree) -> None:
    """trixie/forky ship /usr only; the ELF interpreter path /lib(64)/ld-… maps into /usr."""
    assert tree.usrmerged
    interp = elf.read_elf(tree.host(tree.runtime.interpreter)).interp
    assert interp is not None and interp.startswith(("/lib/", "/lib64/"))
    assert interp not in tree.files and tree.canonical(interp) == f"/usr{interp}"
    libs = pyruntime.library_closure(tree, [tree.runtime.interpreter])
    assert f"/usr{interp}" in libs
    assert all(p.startswith("/usr/") for p in libs), libs
    assert any(p.endswith("/libc.so.6") for p in libs) and any("libz.so" in p for p in libs)
    assert {"posix", "_io", "sys"} <= pyruntime.target_builtins(tree)


def test_foreign_pyc_has_target_magic_and_loads_under_target(tree: pyruntime.Tree,
                                                             tmp_path: Path) -> None:
    src = tmp_path / "sample.py"
    src.write_bytes(SAMPLE)
    jobs = [foreignpyc.Job(src, "/usr/lib/cloudboot/sample.py", 0),
            foreignpyc.Job(src, "/usr/lib/cloudboot/sample.py", 2)]
    with foreignpyc.TargetPython(tree) as py:
        batch = py.compile(jobs)
        assert batch.version.startswith(tree.runtime.version + ".")
        assert len(batch.pycs) == 2
        for pyc in batch.pycs:
            assert pyc[:4] == batch.magic and pyc[4:16] == bytes(12)
        # a different bytecode generation than the host's, so the host cannot have written it
        assert batch.magic != importlib.util.MAGIC_NUMBER
        if tree.runtime.version == "3.13":  # 3.14 no longer spells the number in its source
            assert pyruntime.target_magic(tree) == batch.magic
        paths = []
        for i, pyc in enumerate(batch.pycs):
            p = tmp_path / f"sample{i}.pyc"
            p.write_bytes(pyc)
            paths.append([f"sample{i}", str(p)])
        loader = tmp_path / "loader.py"
        loader.write_text(LOADER)
        result, seconds = py.run_driver(loader, {"modules": paths})
    assert result["magic"] == batch.magic.hex()
    level0, level2 = result["sample0"], result["sample1"]
    assert level0["answer"] == {"sum": 42, "doc": "function docstring", "match": [1, 2]}
    assert level0["asserts"] is True and level0["moddoc"].startswith("docstring")
    assert level2["answer"]["doc"] is None and level2["moddoc"] is None
    assert level2["asserts"] is False
    print(f"{tree.arch.name}: python{result['version']} loaded its .pyc in {seconds:.1f} s "
          f"(compiled in {batch.seconds:.1f} s)")


def test_target_walks_its_own_closure(tree: pyruntime.Tree, tmp_path: Path) -> None:
    """The target's parser walks the closure (3.12+ syntax in its stdlib); collections.abc has
    no file in 3.13+ and resolves to _collections_abc."""
    pkg = tmp_path / "cbmini"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "main.py").write_text("import collections.abc\nimport json\nimport traceback\n\n"
                                 "def f():\n    import ctypes\n    return ctypes.Structure\n")
    roots = builder._roots(tree, [tmp_path])
    with foreignpyc.TargetPython(tree) as py:
        found = py.closure(["cbmini.main"], roots, pyruntime.target_builtins(tree),
                           closure.DEFAULT_EXCLUDE, ["cbmini"])
    closure.check_guest_imports(found, ["cbmini"])
    assert found.modules["collections.abc"].kind == "virtual"
    assert "_collections_abc" in found.modules and "traceback" in found.modules
    assert found.modules["_ctypes"].kind == "extension"
    # imported by _ctypes from C (3.14+): no import statement names it
    has_layout = f"{tree.runtime.stdlib}/ctypes/_layout.py" in tree.files
    assert has_layout == (tree.runtime.version == "3.14")
    if has_layout:
        assert found.modules["ctypes._layout"].kind == "source"
    else:
        assert "ctypes._layout" in found.optional_missing
    stdlib = tree.runtime.stdlib
    assert found.modules["json"].guest_path == f"{stdlib}/json/__init__.py"
    # the host's 3.11 parser cannot read the target's traceback.py (PEP 701 f-strings)
    with pytest.raises(closure.ClosureError, match="cannot parse"):
        closure.find_closure(["traceback"], roots, pyruntime.target_builtins(tree))


def test_missing_emulator_is_a_clear_error(tree: pyruntime.Tree, tmp_path: Path) -> None:
    rt = tree.runtime
    bare = pyruntime.Runtime(version=rt.version, fetch=rt.fetch, source=rt.source,
                             soname_packages=rt.soname_packages, emulator=None)
    t = pyruntime.Tree(tree.arch, runtime=bare)
    with pytest.raises(foreignpyc.ForeignPycError, match="no qemu-user emulator"):
        foreignpyc.TargetPython(t)
    bogus = pyruntime.Runtime(version=rt.version, fetch=rt.fetch, emulator=tmp_path / "nope")
    with pytest.raises(foreignpyc.ForeignPycError, match="not an executable file"):
        foreignpyc.TargetPython(pyruntime.Tree(tree.arch, runtime=bogus))


# Builds the lane's bootstrap initramfs: minutes of qemu-user work when the cache is cold, so
# it runs with the lane's e2e cells (nox -s e2e / matrix), not in the CI's unit run.
@pytest.mark.e2e
def test_lane_initramfs_layout(tree: pyruntime.Tree, tmp_path: Path) -> None:
    """The lane's cached bootstrap initramfs: the target's Python at its own paths, usrmerge
    symlinks, target-magic .pyc only, target-arch ELF files only."""
    arch = tree.arch.name
    path = get_lane(arch).bootstrap_initramfs()
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet"], input=gzip.decompress(path.read_bytes()),
                   cwd=root, check=True)
    version = tree.runtime.version
    assert (root / "init").read_text().startswith(f"#!/usr/bin/python{version} -IS\n")
    assert os.readlink(root / "lib") == "usr/lib"
    interp = elf.read_elf(root / f"usr/bin/python{version}").interp
    assert interp is not None and os.path.exists(root / ("usr" + interp))
    assert (root / interp.split("/")[1]).is_symlink()  # /lib or /lib64 -> usr/…
    pycs = list(root.rglob("*.pyc"))
    assert len(pycs) > 100
    magics = {p.read_bytes()[:4] for p in pycs}
    assert len(magics) == 1 and magics != {importlib.util.MAGIC_NUMBER}
    assert (root / f"usr/lib/python{version}/os.pyc").is_file()
    assert (root / "usr/lib/cloudboot/cloudboot/init/main.pyc").is_file()
    assert not list(root.rglob("*.py")), "sources must not ship"
    wrong = [str(p.relative_to(root)) for p in root.rglob("*")
             if p.is_file() and not p.is_symlink() and p.read_bytes()[:4] == b"\x7fELF"
             and elf.read_elf(p).machine != EM[arch]]
    assert not wrong, wrong[:10]
    mods = list((root / "usr/lib/modules").glob("*/cloudboot.order"))
    assert len(mods) == 1 and (root / "usr/lib/modules" / mods[0].parent.name / "modules.dep")
    size = path.stat().st_size
    assert size < 16 * 1024 * 1024
    # The guest's own imports, run by the packed interpreter on the packed files only: the
    # initramfs root as a chroot, the static qemu-user copied in (qemu's -L does not translate
    # stat() paths, so Python would not find its stdlib). Catches modules that C code imports
    # (3.14's _ctypes imports ctypes._layout), which no import statement shows.
    if os.geteuid() != 0:
        pytest.skip("host: chroot needs root")
    code = ("import sys\nsys.path.insert(0, '/usr/lib/cloudboot')\nimport cloudboot.init.main\n"
            "import ctypes, zlib, json\n"
            "class S(ctypes.Structure):\n"
            "    _fields_ = [('a', ctypes.c_uint32), ('b', ctypes.c_uint64)]\n"
            "print('OK', sys.version.split()[0], ctypes.sizeof(S), zlib.crc32(b'cb'), "
            "sys.flags.isolated)\n")
    emulator = tree.runtime.emulator
    assert emulator is not None
    shutil.copy(emulator, root / ".qemu-user")
    proc = subprocess.run(["chroot", str(root), "/.qemu-user", f"/usr/bin/python{version}",
                           "-IS", "-c", code], capture_output=True, text=True, timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    words = proc.stdout.split()
    assert words[0] == "OK" and words[1].startswith(version + "."), proc.stdout
    assert words[2:] == ["16", str(__import__("zlib").crc32(b"cb")), "1"], proc.stdout
    assert proc.stderr == "", proc.stderr
    print(f"{arch}: {path.name} {size / 2**20:.2f} MiB, python{version}, {len(pycs)} .pyc")
