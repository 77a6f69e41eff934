"""Build the bootstrap initramfs: Python runtime closure + cloudboot guest code + kernel modules.

Output is a gzip'ed newc cpio, byte-for-byte reproducible from the same inputs.

The Python runtime is a `pyruntime.Runtime`: bookworm's 3.11 by default (compiled in-process by
the host's 3.11), or another suite's version for arches Debian has no 3.11 for (riscv64: trixie
3.13, loong64: forky 3.14), compiled by that interpreter under qemu-user (`foreignpyc`); its
stdlib walk and every .pyc are cached in layers (`layers`), so an edit of cloudboot's sources
costs seconds of emulation (the edited modules), not minutes (the stdlib). Trees from trixie on
are usrmerged: everything lands under /usr and /lib, /lib64, /bin, /sbin are symlinks, as on
the installed system.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cloudboot
from cloudboot.arch import Arch
from cloudboot.debian import debpkg
from cloudboot.fsutil import atomic_output, cache_dir, file_lock
from cloudboot.initramfs import closure as closure_mod
from cloudboot.initramfs import foreignpyc, kmods, layers, pyruntime
from cloudboot.initramfs.closure import Root
from cloudboot.initramfs.pyruntime import DEFAULT_RUNTIME, INTERPRETER, Runtime, Tree
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
    python_version: str = pyruntime.PY_VERSION
    compile_seconds: float = 0.0  # writing the .pyc (the emulated batch for a foreign runtime)

    def summary(self) -> str:
        mib = 1024 * 1024
        return (f"{self.path}: {self.compressed_size / mib:.2f} MiB gzip "
                f"({self.uncompressed_size / mib:.2f} MiB cpio, {self.file_count} files); "
                f"python{self.python_version} closure {self.python_modules} modules, "
                f"{self.pyc_size / 1024:.0f} KiB .pyc (compiled in {self.compile_seconds:.1f} s)"
                f"; kernel {self.kernel_version}, {self.module_count} modules; "
                f"sha256 {self.sha256}")


def init_script(entry: str, interpreter: str = INTERPRETER) -> bytes:
    module, _, func = entry.partition(":")
    func = func or "main"
    return (f"#!{interpreter} -IS\n"
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
    return _guest_roots(source_roots) + _runtime_roots(tree)


def _guest_roots(source_roots: Sequence[Path]) -> list[Root]:
    roots = [Root(Path(r), GUEST_LIB) for r in source_roots]
    roots.append(Root(_REPO_ROOT, GUEST_LIB, only=frozenset({"cloudboot"})))
    return roots


def _runtime_roots(tree: Tree) -> list[Root]:
    roots = []
    rt = tree.runtime
    for pkg_root in tree.packages.values():
        stdlib = pkg_root / rt.stdlib.lstrip("/")
        if stdlib.is_dir():
            roots.append(Root(stdlib, rt.stdlib))
    for pkg_root in tree.packages.values():
        dyn = pkg_root / rt.lib_dynload.lstrip("/")
        if dyn.is_dir():
            roots.append(Root(dyn, rt.lib_dynload, extensions=True))
    return roots


def _guest_packages(source_roots: Sequence[Path]) -> set[str]:
    return {p.name for r in source_roots for p in Path(r).iterdir()
            if (p / "__init__.py").is_file()}


def merge_kernel_roots(roots: Sequence[Path], dest: Path) -> Path:
    """One kernel root out of several packages' roots (forky splits the kernel into
    linux-image-*, linux-binary-*, linux-modules-* and linux-base-*: modules in one,
    modules.builtin in another): a symlink farm of their lib/modules trees under `dest`."""
    for root in roots:
        for base in ("lib/modules", "usr/lib/modules"):
            src = Path(root) / base
            if not src.is_dir():
                continue
            for dirpath, _, filenames in os.walk(src):
                rel = os.path.relpath(dirpath, src)
                target_dir = dest / "lib/modules" / rel
                target_dir.mkdir(parents=True, exist_ok=True)
                for name in filenames:
                    link = target_dir / name
                    if not os.path.lexists(link):
                        os.symlink(os.path.join(dirpath, name), link)
    return dest


def _kernel_root(arch: Arch, kernel_root: Path | Sequence[Path] | None, tmp: Path) -> Path:
    if kernel_root is None:
        return debpkg.unpacked(arch.kernel_package, arch.debian)
    if isinstance(kernel_root, Path | str):
        return Path(kernel_root)
    roots = [Path(r) for r in kernel_root]
    if len(roots) == 1:
        return roots[0]
    if not roots:
        raise BuildError("kernel_root: an empty list of kernel package roots")
    return merge_kernel_roots(roots, tmp / "kernel")


def build(arch: Arch, out: Path, *, kernel_root: Path | Sequence[Path] | None = None,
          plan_file: Path | None = None, extra_files: dict[str, bytes] | None = None,
          entry: str = DEFAULT_ENTRY, source_roots: Sequence[Path] = (),
          modules: Sequence[str] = kmods.DEFAULT_MODULES,
          exclude: Iterable[str] = closure_mod.DEFAULT_EXCLUDE,
          packed: Iterable[str] = (), pyc_budget: int = PYC_BUDGET,
          runtime: Runtime = DEFAULT_RUNTIME, layer_cache: Path | None = None) -> Report:
    """Write the initramfs for `arch` to `out` and describe what went in.

    `entry` is "module" or "module:function" run by /init; `source_roots` are extra
    directories whose packages ship to /usr/lib/cloudboot (the cloudboot package always does).
    `kernel_root` is the unpacked kernel package, or several packages' roots to merge.
    A foreign runtime's stdlib walk and .pyc are cached in `layer_cache` (default:
    the cache's initramfs/<arch>/layers; see `layers`).
    """
    with tempfile.TemporaryDirectory(prefix="initramfs-") as tmp:
        return _build(arch, out, _kernel_root(arch, kernel_root, Path(tmp)), plan_file,
                      extra_files, entry, source_roots, modules, exclude, packed, pyc_budget,
                      runtime, layer_cache)


def _build(arch: Arch, out: Path, kroot: Path, plan_file: Path | None,
           extra_files: dict[str, bytes] | None, entry: str, source_roots: Sequence[Path],
           modules: Sequence[str], exclude: Iterable[str], packed: Iterable[str],
           pyc_budget: int, runtime: Runtime, layer_cache: Path | None = None) -> Report:
    tree = Tree(arch, runtime=runtime)
    for pkg in runtime.base_packages:
        tree.add_package(pkg)
    if runtime.host_compiles:
        return _assemble(tree, None, out, kroot, plan_file, extra_files, entry, source_roots,
                         modules, exclude, packed, pyc_budget)
    # another Python version: its own interpreter walks the closure and compiles (qemu-user)
    # (the stdlib part is cached in layers: a cloudboot edit recompiles only cloudboot)
    with foreignpyc.TargetPython(tree) as target:
        return _assemble(tree, layers.ForeignLayers(tree, target, layer_cache), out, kroot,
                         plan_file, extra_files, entry, source_roots, modules, exclude, packed,
                         pyc_budget)


def _assemble(tree: Tree, target: layers.ForeignLayers | None, out: Path, kroot: Path,
              plan_file: Path | None, extra_files: dict[str, bytes] | None, entry: str,
              source_roots: Sequence[Path], modules: Sequence[str], exclude: Iterable[str],
              packed: Iterable[str], pyc_budget: int) -> Report:
    runtime = tree.runtime
    builtins = pyruntime.target_builtins(tree)
    guest_packages = _guest_packages(source_roots) | {"cloudboot"}
    exclude = frozenset(exclude)
    walk_entries = [entry.partition(":")[0], *pyruntime.STARTUP_MODULES]
    if target is None:
        found = closure_mod.find_closure(walk_entries, _roots(tree, source_roots), builtins,
                                         exclude, guest_packages | set(packed))
    else:
        found = target.closure(walk_entries, _guest_roots(source_roots), _runtime_roots(tree),
                               builtins, exclude, guest_packages | set(packed))
    closure_mod.check_guest_imports(found, guest_packages, packed)

    entries: dict[str, Entry] = {}
    extensions: list[str] = []
    jobs: list[foreignpyc.Job] = []
    for mod in found.modules.values():
        if mod.guest_path is None or mod.host_path is None:
            continue  # builtin
        if mod.kind == "extension":
            extensions.append(mod.guest_path)
            continue
        # the stdlib is tested under -OO upstream; guest code keeps its asserts and docstrings
        level = 0 if mod.name.split(".")[0] in guest_packages else 2
        jobs.append(foreignpyc.Job(mod.host_path, mod.guest_path, level))
    start = time.monotonic()
    if target is None:
        magic = pyruntime.check_magic(tree)
        pycs = [pyruntime.compile_pyc(j.source.read_bytes(), j.shown, magic, j.optimize)
                for j in jobs]
    else:
        pycs = target.compile(jobs)
    compile_seconds = time.monotonic() - start
    pyc_size = 0
    for job, pyc in zip(jobs, pycs, strict=True):
        pyc_size += len(pyc)
        entries[job.shown + "c"] = Entry.file(job.shown + "c", pyc)
    if pyc_size > pyc_budget:
        raise BuildError(f"python closure of {entry} is {pyc_size} bytes of .pyc, over the "
                         f"budget of {pyc_budget}; biggest: " + ", ".join(_biggest(entries)))

    for guest in pyruntime.library_closure(tree, [runtime.interpreter, *sorted(extensions)]):
        entries[guest] = _file_entry(guest, tree.host(guest))

    kset = kmods.select(kroot, list(modules))
    base = kmods.select(kroot, [m for m in modules if m not in kmods.FS_MODULES])
    # usrmerged: the modules live under /usr/lib and /lib is a symlink (init reads /lib/modules)
    moddir = f"{'/usr' if tree.usrmerged else ''}/lib/modules/{kset.version}"
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

    for d in ("/dev", "/proc", "/sys", "/run", "/tmp", "/etc", "/root", "/mnt",
              runtime.lib_dynload):
        entries[d] = Entry.directory(d, 0o1777 if d == "/tmp" else 0o755)
    if tree.usrmerged:
        for d in foreignpyc.USRMERGE_DIRS:
            if d != "lib64" or any(p.startswith("/usr/lib64/") for p in entries):
                entries[f"/{d}"] = Entry.symlink(f"/{d}", f"usr/{d}")
    # Before init mounts devtmpfs: the console for PID 1's stdio, and urandom because Python
    # falls back to it for its hash seed while the kernel's CRNG is not ready (getrandom
    # EAGAIN); without it the interpreter dies with "failed to get random numbers".
    for name, (major, minor, perm) in DEV_NODES.items():
        entries[f"/dev/{name}"] = Entry.chardev(f"/dev/{name}", major, minor, perm)
    entries["/init"] = Entry.file("/init", init_script(entry, runtime.interpreter), 0o755)
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
        module_count=len(kset.modules), sha256=hashlib.sha256(blob).hexdigest(),
        python_version=runtime.version, compile_seconds=compile_seconds)


def _biggest(entries: dict[str, Entry], n: int = 8) -> list[str]:
    pycs = sorted((len(e.data), p) for p, e in entries.items() if p.endswith(".pyc"))
    return [f"{p} ({size // 1024} KiB)" for size, p in reversed(pycs[-n:])]


def _input_key(arch: Arch, modules: Sequence[str], runtime: Runtime = DEFAULT_RUNTIME,
               kernel_roots: Sequence[Path] | None = None) -> str:
    """Hash of everything the build depends on: the Python version, each package's .deb
    (the default runtime and kernel come from the host's apt; any other runtime's packages are
    named by their unpacked roots, which carry the .deb's name), the kernel, our sources."""
    h = hashlib.sha256()
    if runtime == DEFAULT_RUNTIME:
        for pkg in runtime.base_packages:
            h.update(debpkg.download(debpkg.resolve(pkg, arch.debian), arch.debian).name.encode())
            h.update(b"\0")
    else:
        h.update(f"python{runtime.version}\0{runtime.source}\0".encode())
        for pkg in runtime.base_packages:
            h.update(runtime.fetch(pkg, arch.debian).name.encode() + b"\0")
    if kernel_roots is None:
        deb = debpkg.download(debpkg.resolve(arch.kernel_package, arch.debian), arch.debian)
        h.update(deb.name.encode() + b"\0")
    else:
        for root in kernel_roots:
            h.update(Path(root).name.encode() + b"\0")
    pkg_dir = _REPO_ROOT / "cloudboot"
    for src in sorted(pkg_dir.rglob("*.py")):
        h.update(str(src.relative_to(pkg_dir)).encode() + b"\0" + src.read_bytes() + b"\0")
    h.update(" ".join(modules).encode())
    return h.hexdigest()


def default_initramfs(arch: Arch, runtime: Runtime = DEFAULT_RUNTIME,
                      kernel_roots: Sequence[Path] | None = None) -> Path:
    """The default initramfs for `arch`, built once per set of inputs into the cache.

    `runtime` and `kernel_roots` (unpacked kernel packages) override the host-apt defaults,
    as the riscv64 and loongarch64 lanes do."""
    key = _input_key(arch, kmods.DEFAULT_MODULES, runtime, kernel_roots)
    tag = "" if runtime == DEFAULT_RUNTIME else f"py{runtime.version}-"
    path = cache_dir("initramfs", arch.name) / f"initramfs-{tag}{key[:20]}.cpio.gz"
    if path.is_file():
        return path
    # One builder per key: a foreign runtime's build takes minutes of emulated Python, and
    # parallel test sessions would otherwise all build the same file.
    with file_lock(path.parent / f".{path.name}.lock"):
        if not path.is_file():
            build(arch, path, runtime=runtime,
                  kernel_root=list(kernel_roots) if kernel_roots is not None else None)
    return path
