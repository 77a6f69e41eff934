"""Kernel module selection from real Debian kernel packages.

The oracles are real tools, not lists written here: depmod (kmod), run with -b on a copy of a
module tree, says what each module needs; zstd says what a compressed module holds. No
kernel version or dependency list is named: the trees are whatever kernels the archive serves,
fetched with cloudboot's own apt code into the suite's cache (CLOUDBOOT_CACHE).

- `.ko`: the host apt's kernel (bookworm's ships its modules uncompressed).
- `.ko.xz`: trixie's cloud kernel as shipped (CONFIG_MODULE_COMPRESS_XZ).
- `.ko.zst`: no Debian kernel ships zstd-compressed modules (bookworm: uncompressed; trixie's
  6.12 and forky's 7.2: xz), so this tree is the host kernel's own .ko files compressed with
  the real `zstd` tool, and its modules must come back byte for byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloudboot.arch import host_arch
from cloudboot.debian import aptsuites, debpkg
from cloudboot.initramfs import kmods

ARCH = host_arch()
# (suite, package, Debian arch): amd64 whatever the host, since the modules are only read,
# decompressed and given to depmod here, never loaded.
XZ_KERNEL = ("trixie", "linux-image-cloud-amd64", "amd64")
INSTALL = "python -m cloudboot.debian.hostdeps ensure tests installs it"


def tool(name: str) -> str:
    found = shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/sbin") if os.access(p := f"{d}/{name}", os.X_OK)), None)
    if found is None:
        pytest.fail(f"{name} missing ({INSTALL})", pytrace=False)
    return found


@dataclass(frozen=True)
class Tree:
    kind: str  # the module suffix the tree holds
    root: Path  # what kmods.select takes
    originals: Path | None = None  # the uncompressed modules it was made from, if any

    @property
    def kernel(self) -> kmods.KernelTree:
        return kmods.KernelTree(self.root)


def shipped_bytes(path: Path) -> bytes:
    """A module's uncompressed bytes, as the real zstd tool gives them (it reads xz too, so
    the test needs no tool the set-up does not install)."""
    if path.name.endswith(".ko"):
        return path.read_bytes()
    fmt = {".xz": "xz", ".zst": "zstd"}[path.suffix]
    return subprocess.run([tool("zstd"), "-dcq", f"--format={fmt}"], input=path.read_bytes(),
                          capture_output=True, check=True).stdout


def mirror(src: Path, base: Path, version: str) -> Path:
    """`base`/lib/modules/`version`: symlinks to every file of the module directory `src`
    (the cache stays untouched, and the alias index, keyed by real paths, is shared)."""
    dst = base / "lib/modules" / version
    for dirpath, _, files in os.walk(src):
        here = dst / os.path.relpath(dirpath, src)
        here.mkdir(parents=True, exist_ok=True)
        for f in files:
            (here / f).symlink_to(os.path.join(dirpath, f))
    return dst


def depmod(tree: kmods.KernelTree, base: Path) -> dict[str, list[str]]:
    """modules.dep as the real depmod writes it for a copy of the tree: module -> every module
    it needs, directly or not."""
    dst = mirror(tree.dir, base, tree.version)
    (dst / "modules.dep").unlink(missing_ok=True)
    (base / "depmod.d").mkdir()  # no configuration of the host's
    proc = subprocess.run([tool("depmod"), "-b", str(base), "-C", str(base / "depmod.d"),
                           tree.version], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"depmod -b {base}: {proc.stderr}"
    deps: dict[str, list[str]] = {}
    for line in (dst / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[kmods.modname(mod)] = [kmods.modname(d) for d in rest.split()]
    assert set(deps) == set(tree.paths), "depmod saw other modules than the selector"
    return deps


@pytest.fixture(scope="module")
def kroot() -> Path:
    try:
        return debpkg.unpacked(ARCH.kernel_package, ARCH.debian)
    except debpkg.PackageError as e:
        pytest.fail(f"the kernel package could not be fetched: {e}", pytrace=False)


@pytest.fixture(scope="module")
def ko_tree(kroot: Path) -> Tree:
    return Tree(".ko", kroot)


@pytest.fixture(scope="module")
def xz_tree() -> Tree:
    suite, package, arch = XZ_KERNEL
    try:
        root = aptsuites.unpacked(aptsuites.get_suite(suite), package, arch)
    except aptsuites.SuiteError as e:
        pytest.fail(f"{suite}'s {package}:{arch} could not be fetched: {e}", pytrace=False)
    return Tree(".ko.xz", root)


@pytest.fixture(scope="module")
def zst_tree(kroot: Path, tmp_path_factory: pytest.TempPathFactory) -> Tree:
    src = kmods.KernelTree(kroot)
    root = tmp_path_factory.mktemp("zst")
    dst = root / "lib/modules" / src.version
    dst.mkdir(parents=True)
    modules = sorted(src.paths.values())
    assert all(rel.endswith(".ko") for rel in modules), "the host kernel compresses already"
    proc = subprocess.run([tool("zstd"), "-q", "--output-dir-mirror", str(dst), "--", *modules],
                          cwd=src.dir, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    for meta in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (src.dir / meta).is_file():
            shutil.copy(src.dir / meta, dst / meta)
    return Tree(".ko.zst", root, src.dir)


@pytest.fixture(params=["ko", "xz", "zst"])
def tree(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
         tmp_path_factory: pytest.TempPathFactory) -> Tree:
    t: Tree = request.getfixturevalue(f"{request.param}_tree")
    if t.root.is_relative_to(tmp_path_factory.getbasetemp()):
        # a tree made for this run: its alias index goes to a cache of its own
        monkeypatch.setenv("CLOUDBOOT_CACHE", str(t.root.parent / f"{t.root.name}-cache"))
    kernel = t.kernel
    kinds = {rel[rel.rfind(".ko"):] for rel in kernel.paths.values()}
    assert kinds == {t.kind}, f"{kernel.dir}: modules are {kinds}, not {t.kind}"
    assert not (kernel.dir / "modules.dep").exists(), "then modinfo's lists go unread"
    return t


def test_selection_follows_depmod(tree: Tree, tmp_path: Path) -> None:
    kernel = tree.kernel
    deps = depmod(kernel, tmp_path / "depmod")
    s = kmods.select(tree.root)
    names = [kmods.modname(rel) for rel, _ in s.modules]
    assert len(names) == len(set(names))
    pos = {n: i for i, n in enumerate(names)}
    for name in names:  # everything depmod says a module needs is there, and loads before it
        missing = [d for d in deps[name] if d not in pos]
        assert not missing, f"{name} needs {missing} (depmod), not selected"
        late = [d for d in deps[name] if pos[d] > pos[name]]
        assert not late, f"{name} is loaded before {late}, which it needs (depmod)"
    for rel, direct in s.deps.items():  # the packed modules.dep says nothing depmod does not
        assert {kmods.modname(d) for d in direct} <= set(deps[kmods.modname(rel)]), rel
    for raw in kmods.DEFAULT_MODULES:  # each asked-for module is packed or built in
        name = kmods.modname(raw)
        assert (name in pos) != (name in s.builtin), name
        assert name not in s.builtin or kernel.is_builtin(name), name
    assert "nls_iso8859_1" in pos or "nls_iso8859_1" in s.builtin  # nls_iso8859-1.ko: - is _
    for rel, data in s.modules:  # plain .ko names, the bytes the real tools decompress
        assert rel.endswith(".ko"), rel
        assert data == shipped_bytes(kernel.dir / kernel.paths[kmods.modname(rel)]), rel
        if tree.originals is not None:
            assert data == (tree.originals / rel).read_bytes(), rel


def test_order_does_not_hang_on_how_dependencies_are_listed(tree: Tree, tmp_path: Path) -> None:
    """The order a module's `depends=` lists its dependencies in is modpost's, not a load
    order (bookworm's virtio_blk lists "virtio,virtio_ring", virtio_pci "virtio_ring,...,
    virtio"). From modinfo's direct lists, from depmod's modules.dep, and from that file with
    every list reversed, the selector must give one order."""
    kernel = tree.kernel
    deps = depmod(kernel, tmp_path / "depmod")
    orders = {}
    for how, lists in (("modinfo", None), ("modules.dep", deps),
                       ("reversed", {m: d[::-1] for m, d in deps.items()})):
        if lists is None:
            root = tree.root
        else:
            root = tmp_path / how
            dst = mirror(kernel.dir, root, kernel.version)
            (dst / "modules.dep").unlink(missing_ok=True)  # never write through a symlink
            (dst / "modules.dep").write_text("".join(
                f"{kernel.paths[m]}: {' '.join(kernel.paths[d] for d in ds)}\n"
                for m, ds in reversed(list(lists.items()))))
        orders[how] = [rel for rel, _ in kmods.select(root).modules]
    assert orders["modinfo"] == orders["modules.dep"] == orders["reversed"]


def test_ties_follow_modules_order(tree: Tree, tmp_path: Path) -> None:
    """Where the dependencies leave a choice, the kernel's link order (modules.order) decides,
    as it does for built-in code: a module follows one that comes later in modules.order only
    if it needs that one (depmod), or a softdep says so."""
    kernel = tree.kernel
    assert (kernel.dir / "modules.order").is_file(), "the kernel package ships modules.order"
    deps = depmod(kernel, tmp_path / "depmod")
    for raw in kmods.DEFAULT_MODULES:
        if kmods.modname(raw) not in kernel.paths:
            continue
        names = [kmods.modname(rel) for rel, _ in kmods.select(tree.root, [raw]).modules]
        for before, after in zip(names, names[1:], strict=False):
            if kernel.link_rank(after) > kernel.link_rank(before):
                continue
            pre, _ = kernel.softdeps(after)
            _, post = kernel.softdeps(before)
            assert before in deps[after] or before in pre or after in post, \
                f"{raw}: {after} follows {before}, which comes later in modules.order and " \
                "which it does not need"


def test_compressed_module_needs_its_tool(zst_tree: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = zst_tree.kernel
    path = kernel.dir / sorted(kernel.paths.values())[0]
    assert kmods.decompress(path)[:4] == b"\x7fELF"
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(kmods.KernelModuleError, match="zstd"):
        kmods.decompress(path)


def test_unknown_module_is_an_error(kroot: Path) -> None:
    with pytest.raises(kmods.KernelModuleError, match="no_such_module"):
        kmods.select(kroot, ["no_such_module"])
