"""Pick kernel modules (with their dependencies) out of an unpacked kernel package.

Debian's kernel .deb carries no modules.dep (depmod runs at install time), so dependencies come
from each module's own `.modinfo` (`depends=`, `softdep=`), which is what depmod would use;
a modules.dep beside the modules is preferred when present.

Load order: dependencies first; where hard dependencies leave a choice, the kernel's own
modules.order (its link order, shipped in the .deb) decides, never the order of `depends=`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cloudboot.fsutil import atomic_output, cache_dir
from cloudboot.initramfs import elf

# What cloudboot-init needs to see disks, CDs, the network, consoles and EFI variables.
DEFAULT_MODULES = (
    "virtio_pci", "virtio_mmio", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_console",
    "sd_mod", "sr_mod", "cdrom", "isofs", "vfat", "nls_cp437", "nls_iso8859_1", "nls_ascii",
    "efivarfs", "ext4", "xfs", "btrfs", "af_packet",
)
# Loaded by init only once the target's superblock says which one it needs: under TCG, btrfs
# alone (raid6 benchmarks, crypto self-tests) takes seconds to load.
FS_MODULES = ("ext4", "xfs", "btrfs")


def fs_order_file(fstype: str) -> str:
    return f"cloudboot.fs.{fstype}.order"

SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
ORDER_FILE = "cloudboot.order"


class KernelModuleError(RuntimeError):
    pass


def modname(name: str) -> str:
    """Canonical module name: the kernel treats '-' and '_' alike."""
    base = os.path.basename(name)
    for suf in SUFFIXES:
        if base.endswith(suf):
            base = base[: -len(suf)]
            break
    return base.replace("-", "_")


def plain_relpath(rel: str) -> str:
    for suf in SUFFIXES[1:]:
        if rel.endswith(suf):
            return rel[: -len(suf) + 3]
    return rel


def decompress(path: Path) -> bytes:
    data = path.read_bytes()
    name = path.name
    if name.endswith(".ko"):
        return data
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith(".zst"):
        tool = shutil.which("zstd")
        if tool is None:
            raise KernelModuleError(f"{path}: zstd-compressed module, but the zstd tool is not "
                                    "installed (apt-get install zstd)")
        # through stdin: zstd skips a symlink given by name ("is a symbolic link, ignoring"),
        # and a merged kernel root (split packages) is a tree of symlinks
        proc = subprocess.run([tool, "-dcq"], input=data, capture_output=True, check=False)
        if proc.returncode:
            raise KernelModuleError(f"{path}: zstd -d failed: {proc.stderr.decode()[-300:]}")
        return proc.stdout
    raise KernelModuleError(f"{path}: unknown module compression")


def modinfo(data: bytes, where: str) -> list[tuple[str, str]]:
    """key=value pairs of a module's .modinfo section."""
    try:
        raw = elf.section_data(data, ".modinfo", where)
    except elf.ElfError as e:
        raise KernelModuleError(str(e)) from None
    if raw is None:
        raise KernelModuleError(f"{where}: no .modinfo section")
    pairs = []
    for item in raw.split(b"\0"):
        if b"=" in item:
            k, _, v = item.decode("utf-8", "replace").partition("=")
            pairs.append((k, v))
    return pairs


@dataclass
class ModuleSet:
    version: str
    # (path relative to /lib/modules/<ver>, uncompressed bytes), dependencies first
    modules: list[tuple[str, bytes]] = field(default_factory=list)
    builtin: list[str] = field(default_factory=list)  # requested names that are built in
    deps: dict[str, list[str]] = field(default_factory=dict)  # relpath -> dep relpaths

    def order_text(self) -> str:
        return "".join(f"{rel}\n" for rel, _ in self.modules)

    def dep_text(self) -> str:
        return "".join(f"{rel}: {' '.join(self.deps.get(rel, []))}".rstrip() + "\n"
                       for rel, _ in self.modules)


class KernelTree:
    def __init__(self, kernel_root: Path, version: str | None = None) -> None:
        base = kernel_root / "lib" / "modules"
        if not base.is_dir():
            base = kernel_root / "usr" / "lib" / "modules"
        versions = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        if version is None:
            if len(versions) != 1:
                raise KernelModuleError(f"{kernel_root}: expected one lib/modules/<version>, "
                                        f"found {versions or 'none'}")
            version = versions[0]
        self.version = version
        self.dir = base / version
        if not self.dir.is_dir():
            raise KernelModuleError(f"{self.dir}: no such module directory")
        self.paths: dict[str, str] = {}  # name -> relpath (possibly compressed)
        for dirpath, _, files in os.walk(self.dir):
            for f in files:
                if f.endswith(SUFFIXES):
                    rel = os.path.relpath(os.path.join(dirpath, f), self.dir)
                    self.paths.setdefault(modname(f), rel)
        self.builtin = self._builtin()
        self._dep_file = self._read_dep_file()
        self._link_order = self._read_link_order()
        self._info: dict[str, list[tuple[str, str]]] = {}
        self._data: dict[str, bytes] = {}

    def _builtin(self) -> tuple[set[str], set[str]]:
        names: set[str] = set()
        aliases: set[str] = set()
        f = self.dir / "modules.builtin"
        if f.is_file():
            names = {modname(line.strip()) for line in f.read_text().splitlines() if line.strip()}
        mi = self.dir / "modules.builtin.modinfo"
        if mi.is_file():
            for item in mi.read_bytes().split(b"\0"):
                key, _, value = item.decode("utf-8", "replace").partition("=")
                if key.endswith(".alias"):
                    aliases.add(value)
        return names, aliases

    def _read_dep_file(self) -> dict[str, list[str]] | None:
        f = self.dir / "modules.dep"
        if not f.is_file():
            return None
        deps: dict[str, list[str]] = {}
        for line in f.read_text().splitlines():
            if ":" in line:
                mod, _, rest = line.partition(":")
                deps[modname(mod)] = [modname(d) for d in rest.split()]
        return deps

    def _read_link_order(self) -> dict[str, int]:
        f = self.dir / "modules.order"
        if not f.is_file():
            return {}
        order: dict[str, int] = {}
        for line in f.read_text().splitlines():
            if line.strip():
                order.setdefault(modname(line.strip()), len(order))
        return order

    def link_rank(self, name: str) -> tuple[int, str]:
        """Where `name` stands in the kernel's modules.order (its link order, the order its
        initcalls would run in if built in); modules it does not list come after, by name."""
        return self._link_order.get(name, len(self._link_order)), name

    def data(self, name: str) -> bytes:
        if name not in self._data:
            self._data[name] = decompress(self.dir / self.paths[name])
        return self._data[name]

    def info(self, name: str) -> list[tuple[str, str]]:
        if name not in self._info:
            self._info[name] = modinfo(self.data(name), str(self.dir / self.paths[name]))
        return self._info[name]

    def is_builtin(self, name: str) -> bool:
        return name in self.builtin[0]

    def depends(self, name: str) -> list[str]:
        if self._dep_file is not None and name in self._dep_file:
            return self._dep_file[name]
        return [modname(d) for k, v in self.info(name) if k == "depends" for d in v.split(",")
                if d]

    def softdeps(self, name: str) -> tuple[list[str], list[str]]:
        pre: list[str] = []
        post: list[str] = []
        for k, v in self.info(name):
            if k != "softdep":
                continue
            bucket = pre
            for word in v.split():
                if word == "pre:":
                    bucket = pre
                elif word == "post:":
                    bucket = post
                else:
                    bucket.extend(self.providers(word))
        return pre, post

    def providers(self, alias: str) -> list[str]:
        """Modules that provide `alias` (a module name or an alias); [] if built in."""
        name = modname(alias)
        if name in self.paths:
            return [name]
        if self.is_builtin(name) or alias in self.builtin[1]:
            return []
        # No modules.alias in the .deb: every module's .modinfo aliases, read once per module
        # directory (decompressing ~3000 .ko.xz took ~90 s CPU per lookup on riscv64).
        return list(self._alias_index().get(alias, ()))

    def _alias_index(self) -> dict[str, tuple[str, ...]]:
        key = str(self.dir)
        if key not in _ALIAS_INDEXES:
            _ALIAS_INDEXES[key] = self._stored_alias_index()
        return _ALIAS_INDEXES[key]

    def _stored_alias_index(self) -> dict[str, tuple[str, ...]]:
        """The alias index from the cache, or read from every module and stored there (under
        TCG-loaded hosts decompressing ~3000 .ko.xz takes 40 s: every initramfs build paid it).
        Keyed by the listing: each module's path, real path and size (a merged kernel root is
        a fresh symlink farm per build; the files it points to are the unpacked packages')."""
        listing = []
        for rel in sorted(self.paths.values()):
            real = os.path.realpath(self.dir / rel)
            listing.append((rel, real, os.stat(real).st_size))
        key = hashlib.sha256(json.dumps([ALIAS_INDEX_VERSION, self.version, listing])
                             .encode()).hexdigest()
        path = cache_dir("initramfs", "kmods") / f"alias-{self.version}-{key[:24]}.json"
        try:
            stored = json.loads(path.read_text())
            if stored.get("key") == key:
                return {a: tuple(m) for a, m in stored["aliases"].items()}
        except (OSError, ValueError, AttributeError, KeyError):
            pass
        index: dict[str, list[str]] = {}
        for mod in sorted(self.paths):
            blob = self._data.get(mod) or decompress(self.dir / self.paths[mod])
            for k, v in modinfo(blob, str(self.dir / self.paths[mod])):
                if k == "alias":
                    index.setdefault(v, []).append(mod)
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps({"key": key, "aliases": index}))
        return {a: tuple(m) for a, m in index.items()}


def _load_order(tree: KernelTree, root: str, loaded: set[str]) -> list[str]:
    """`root` and every module it needs (hard deps, pre/post softdeps) that is not `loaded`,
    each after what it needs; where that leaves a choice, the first in modules.order.

    Not the order `depends=` lists a module's dependencies in: modpost writes them in the order
    it met the undefined symbols, which says nothing about load order. Debian's 6.1 cloud
    kernels list "virtio,virtio_ring" for virtio_blk and "virtio_ring,...,virtio" for
    virtio_pci; in 6.1.176 neither of the two needs the other (in 6.1.192 virtio needs
    virtio_ring's virtio_break_device), so there the order hung on which module was asked for
    first. modules.order is the kernel's link order (shipped in the .deb, the order the
    initcalls would run in if built in): with it 6.1.176 gives what depmod + modprobe give
    (virtio, virtio_ring, virtio_pci_modern_dev, virtio_pci_legacy_dev, virtio_pci), and it
    changes only when the kernel's Makefiles do. Since only "what must come before what"
    counts, the result is the same from modinfo's direct deps as from a modules.dep's
    transitive lists, in whatever order they come."""
    if root in loaded:
        return []
    need: dict[str, set[str]] = {}  # module -> hard deps (not loaded yet)
    soft: dict[str, set[str]] = {}  # module -> modules its softdeps put before it
    stack: list[tuple[str, tuple[str, ...]]] = [(root, (root,))]
    while stack:
        name, chain = stack.pop()
        if name in need:
            continue
        pre, post = tree.softdeps(name)
        hard = []
        for dep in tree.depends(name):
            if dep in tree.paths:
                hard.append(dep)
            elif not tree.is_builtin(dep):
                raise KernelModuleError(f"{name} (via {' -> '.join(chain)}) depends on {dep}, "
                                        f"which is not in {tree.dir}")
        need[name] = set(hard) - loaded
        soft.setdefault(name, set()).update(pre)
        for later in post:
            soft.setdefault(later, set()).add(name)
        stack += [(d, chain + (d,)) for d in (*hard, *pre, *post)
                  if d not in loaded and d not in need]
    order: list[str] = []
    pending = set(need)
    while pending:
        ready = [n for n in pending if not need[n] & pending and not soft.get(n, set()) & pending]
        # softdeps may form a cycle (pre/post pairs); hard deps never do (depmod refuses them)
        ready = ready or [n for n in pending if not need[n] & pending]
        first = min(ready, key=tree.link_rank)
        order.append(first)
        pending.remove(first)
    return order


ALIAS_INDEX_VERSION = 1
# module directory -> alias -> modules: the unpacked kernel packages never change in place
# (each version unpacks into its own directory), so the index lives as long as the process.
_ALIAS_INDEXES: dict[str, dict[str, tuple[str, ...]]] = {}


def select(kernel_root: Path, names: tuple[str, ...] | list[str] = DEFAULT_MODULES,
           version: str | None = None) -> ModuleSet:
    """The requested modules plus dependencies, in a safe load order (dependencies first):
    each requested module in turn, with what it needs that is not in the list yet."""
    tree = KernelTree(kernel_root, version)
    result = ModuleSet(tree.version)
    order: list[str] = []
    for raw in names:
        name = modname(raw)
        if name in tree.paths:
            order += _load_order(tree, name, set(order))
        elif tree.is_builtin(name):
            result.builtin.append(name)
        else:
            raise KernelModuleError(f"kernel module {raw!r} is neither in {tree.dir} nor "
                                    "listed in its modules.builtin")
    for name in order:
        rel = plain_relpath(tree.paths[name])
        result.modules.append((rel, tree.data(name)))
        result.deps[rel] = [plain_relpath(tree.paths[d]) for d in tree.depends(name)
                            if d in tree.paths]
    return result
