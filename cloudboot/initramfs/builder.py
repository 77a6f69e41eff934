"""Build the bootstrap initramfs: Python runtime closure + cloudboot guest code + kernel modules.

Output is a gzip'ed newc cpio, byte-for-byte reproducible from the same inputs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cloudboot
from cloudboot import debpkg
from cloudboot.arch import Arch
from cloudboot.fsutil import atomic_output, cache_dir
from cloudboot.initramfs import closure as closure_mod
from cloudboot.initramfs import kmods, pyruntime
from cloudboot.initramfs.closure import Root
from cloudboot.initramfs.pyruntime import INTERPRETER, LIB_DYNLOAD, STDLIB, Tree
from cloudboot.media.cpio import Entry, with_parents, write

DEFAULT_ENTRY = "cloudboot.init.main"
GUEST_LIB = "/usr/lib/cloudboot"
PLAN_PATH = "/etc/cloud-boot/plan.hcl"
PYC_BUDGET = 3 * 1024 * 1024  # bytes of .pyc the closure may take

DEV_NODES = {
    "console": (5, 1, 0o600), "null": (1, 3, 0o666), "zero": (1, 5, 0o666),
    "random": (1, 8, 0o666), "urandom": (1, 9, 0o666), "kmsg": (1, 11, 0o644),
    "tty": (5, 0, 0o666),
}

_REPO_ROOT = Path(cloudboot.__file__).resolve().parent.parent


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Report:
    path: Path
    compressed_size: int
    uncompressed_size: int
    file_count: int
    python_modules: int  # modules in the import closure (any kind)
    pyc_size: int  # bytes of compiled .pyc shipped
    kernel_version: str
    module_count: int  # kernel modules shipped
    sha256: str

    def summary(self) -> str:
        mib = 1024 * 1024
        return (f"{self.path}: {self.compressed_size / mib:.2f} MiB gzip "
                f"({self.uncompressed_size / mib:.2f} MiB cpio, {self.file_count} files); "
                f"python closure {self.python_modules} modules, {self.pyc_size / 1024:.0f} KiB "
                f".pyc; kernel {self.kernel_version}, {self.module_count} modules; "
                f"sha256 {self.sha256}")


def init_script(entry: str) -> bytes:
    module, _, func = entry.partition(":")
    func = func or "main"
    return (f"#!{INTERPRETER} -IS\n"
            f"import sys\n"
            f"sys.path.insert(0, {GUEST_LIB!r})\n"
            f"from {module} import {func}\n"
            f"{func}()\n").encode()


def _file_entry(guest: str, host: Path) -> Entry:
    if host.is_symlink():
        return Entry.symlink(guest, os.readlink(host))
    perm = 0o755 if host.stat().st_mode & stat.S_IXUSR else 0o644
    return Entry.file(guest, host.read_bytes(), perm)


def _roots(tree: Tree, source_roots: Sequence[Path]) -> list[Root]:
    roots = [Root(Path(r), GUEST_LIB) for r in source_roots]
    roots.append(Root(_REPO_ROOT, GUEST_LIB, only=frozenset({"cloudboot"})))
    for pkg_root in tree.packages.values():
        stdlib = pkg_root / STDLIB.lstrip("/")
        if stdlib.is_dir():
            roots.append(Root(stdlib, STDLIB))
    for pkg_root in tree.packages.values():
        dyn = pkg_root / LIB_DYNLOAD.lstrip("/")
        if dyn.is_dir():
            roots.append(Root(dyn, LIB_DYNLOAD, extensions=True))
    return roots


def _guest_packages(source_roots: Sequence[Path]) -> set[str]:
    return {p.name for r in source_roots for p in Path(r).iterdir()
            if (p / "__init__.py").is_file()}


def build(arch: Arch, out: Path, *, kernel_root: Path | None = None,
          plan_file: Path | None = None, extra_files: dict[str, bytes] | None = None,
          entry: str = DEFAULT_ENTRY, source_roots: Sequence[Path] = (),
          modules: Sequence[str] = kmods.DEFAULT_MODULES,
          exclude: Iterable[str] = closure_mod.DEFAULT_EXCLUDE,
          packed: Iterable[str] = (), pyc_budget: int = PYC_BUDGET) -> Report:
    """Write the initramfs for `arch` to `out` and describe what went in.

    `entry` is "module" or "module:function" run by /init; `source_roots` are extra
    directories whose packages ship to /usr/lib/cloudboot (the cloudboot package always does).
    """
    tree = Tree(arch)
    for pkg in pyruntime.BASE_PACKAGES:
        tree.add_package(pkg)
    magic = pyruntime.check_magic(tree)
    builtins = pyruntime.target_builtins(tree)

    guest_packages = _guest_packages(source_roots) | {"cloudboot"}
    found = closure_mod.find_closure([entry.partition(":")[0], *pyruntime.STARTUP_MODULES],
                                     _roots(tree, source_roots), builtins, exclude,
                                     follow_lazy=guest_packages | set(packed))
    closure_mod.check_guest_imports(found, guest_packages, packed)

    entries: dict[str, Entry] = {}
    pyc_size = 0
    extensions: list[str] = []
    for mod in found.modules.values():
        if mod.guest_path is None or mod.host_path is None:
            continue  # builtin
        if mod.kind == "extension":
            extensions.append(mod.guest_path)
            continue
        # the stdlib is tested under -OO upstream; guest code keeps its asserts and docstrings
        level = 0 if mod.name.split(".")[0] in guest_packages else 2
        pyc = pyruntime.compile_pyc(mod.host_path.read_bytes(), mod.guest_path, magic, level)
        pyc_size += len(pyc)
        entries[mod.guest_path + "c"] = Entry.file(mod.guest_path + "c", pyc)
    if pyc_size > pyc_budget:
        raise BuildError(f"python closure of {entry} is {pyc_size} bytes of .pyc, over the "
                         f"budget of {pyc_budget}; biggest: " + ", ".join(_biggest(entries)))

    for guest in pyruntime.library_closure(tree, [INTERPRETER, *sorted(extensions)]):
        entries[guest] = _file_entry(guest, tree.host(guest))

    kroot = kernel_root or debpkg.unpacked(arch.kernel_package, arch.debian)
    kset = kmods.select(kroot, list(modules))
    base = kmods.select(kroot, [m for m in modules if m not in kmods.FS_MODULES])
    moddir = f"/lib/modules/{kset.version}"
    for rel, data in kset.modules:
        entries[f"{moddir}/{rel}"] = Entry.file(f"{moddir}/{rel}", data)
    meta = {kmods.ORDER_FILE: base.order_text(), "modules.dep": kset.dep_text()}
    in_base = {rel for rel, _ in base.modules}
    for fs in (m for m in modules if m in kmods.FS_MODULES):
        group = kmods.select(kroot, [fs])
        meta[kmods.fs_order_file(fs)] = "".join(
            f"{rel}\n" for rel, _ in group.modules if rel not in in_base)
    builtin_list = kmods.KernelTree(kroot, kset.version).dir / "modules.builtin"
    if builtin_list.is_file():
        meta["modules.builtin"] = builtin_list.read_text()
    for name, text in meta.items():
        entries[f"{moddir}/{name}"] = Entry.file(f"{moddir}/{name}", text.encode())

    for d in ("/dev", "/proc", "/sys", "/run", "/tmp", "/etc", "/root", "/mnt", LIB_DYNLOAD):
        entries[d] = Entry.directory(d, 0o1777 if d == "/tmp" else 0o755)
    # Before init mounts devtmpfs: the console for PID 1's stdio, and urandom because Python
    # falls back to it for its hash seed while the kernel's CRNG is not ready (getrandom
    # EAGAIN); without it the interpreter dies with "failed to get random numbers".
    for name, (major, minor, perm) in DEV_NODES.items():
        entries[f"/dev/{name}"] = Entry.chardev(f"/dev/{name}", major, minor, perm)
    entries["/init"] = Entry.file("/init", init_script(entry), 0o755)
    if plan_file is not None:
        entries[PLAN_PATH] = Entry.file(PLAN_PATH, Path(plan_file).read_bytes())
    for path, data in (extra_files or {}).items():
        guest = "/" + path.lstrip("/")
        entries[guest] = Entry.file(guest, data, 0o755 if data.startswith(b"#!") else 0o644)

    raw = io.BytesIO()
    write(raw, with_parents(entries.values()))
    cpio = raw.getvalue()
    out = Path(out)
    # mtime=0 and no file name in the gzip header: reproducible output
    with atomic_output(out) as tmp, open(tmp, "wb") as f, \
            gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=6) as gz:
        gz.write(cpio)
    blob = out.read_bytes()
    return Report(
        path=out, compressed_size=len(blob), uncompressed_size=len(cpio),
        file_count=sum(1 for e in entries.values() if stat.S_ISREG(e.mode)),
        python_modules=len(found.modules), pyc_size=pyc_size, kernel_version=kset.version,
        module_count=len(kset.modules), sha256=hashlib.sha256(blob).hexdigest())


def _biggest(entries: dict[str, Entry], n: int = 8) -> list[str]:
    pycs = sorted((len(e.data), p) for p, e in entries.items() if p.endswith(".pyc"))
    return [f"{p} ({size // 1024} KiB)" for size, p in reversed(pycs[-n:])]


def _input_key(arch: Arch, modules: Sequence[str]) -> str:
    """Hash of everything the default build depends on."""
    h = hashlib.sha256()
    for pkg in (*pyruntime.BASE_PACKAGES, arch.kernel_package):
        h.update(debpkg.download(debpkg.resolve(pkg, arch.debian), arch.debian).name.encode())
        h.update(b"\0")
    pkg_dir = _REPO_ROOT / "cloudboot"
    for src in sorted(pkg_dir.rglob("*.py")):
        h.update(str(src.relative_to(pkg_dir)).encode() + b"\0" + src.read_bytes() + b"\0")
    h.update(" ".join(modules).encode())
    return h.hexdigest()


def default_initramfs(arch: Arch) -> Path:
    """The default initramfs for `arch`, built once per set of inputs into the cache."""
    key = _input_key(arch, kmods.DEFAULT_MODULES)
    path = cache_dir("initramfs", arch.name) / f"initramfs-{key[:20]}.cpio.gz"
    if not path.is_file():
        build(arch, path)
    return path
