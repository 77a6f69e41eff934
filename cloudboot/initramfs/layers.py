"""Cached layers of a foreign runtime's Python: a cloudboot edit recompiles only cloudboot.

For a runtime the host cannot compile (riscv64: trixie's 3.13, loong64: forky's 3.14) the
import-closure walk and the .pyc compile run in the target interpreter under qemu-user: about
five minutes a build, nearly all of it spent on the standard library, which does not change when
cloudboot's sources do. So the build is split:

1. The guest walk, on the host: cloudboot's modules (written for 3.11, the host's parser reads
   them) and the imports they make of the runtime's modules (stdlib, lib-dynload, builtins):
   the seeds, e.g. ("json", optional=False, droppable=False).
2. The runtime walk, by the target interpreter, from STARTUP_MODULES plus the seeds, over the
   runtime's roots only; cached by a key of what it depends on: the runtime (packages and their
   file lists), the seeds, the walk's parameters and the walker's sources. Not the guest
   sources: an edit that imports no new runtime module reuses it, one that does changes the key.
3. The .pyc, content-addressed: one file per (runtime, compiler driver, source bytes, path shown
   in tracebacks, optimisation level). The stdlib's are compiled once per runtime; after an edit
   only the changed guest modules go through the target interpreter (one batch).

The merged closure is the one the single walk over all roots finds: which modules that walk
takes does not depend on the order it visits them, the runtime never imports guest code, and
each side is walked with the same rules. Where that argument does not hold (a guest module that
shadows a runtime one, an entry module on the other side) the single walk runs instead.
Bytecode does not depend on what else the interpreter compiled before (measured for 3.13 and
3.14: alone, reversed and mixed batches give the same bytes), so the output is byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from cloudboot.fsutil import atomic_output, cache_dir, file_lock
from cloudboot.initramfs import foreignpyc
from cloudboot.initramfs.closure import GUEST_IMPORTER, Closure, Finder, Module, Root, Seed
from cloudboot.initramfs.pyruntime import Tree

LAYER_VERSION = "1"  # bump when the layout or meaning of a cached layer changes
_HERE = Path(__file__).resolve().parent
WALKER_SOURCES = (_HERE / "closure.py", _HERE / "closuredriver.py")
COMPILER_SOURCES = (_HERE / "pycdriver.py",)
TABLES = ("missing", "optional_missing", "excluded", "lazy_skipped")


class LayerError(RuntimeError):
    pass


def default_cache(tree: Tree) -> Path:
    return cache_dir("initramfs", tree.arch.name, "layers")


def _digest(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()


def _sources_digest(paths: Iterable[Path]) -> str:
    return _digest(*(p.read_bytes() for p in paths))


def runtime_identity(tree: Tree) -> str:
    """The runtime's packages (their unpacked roots carry the .deb's name and version) and the
    file list they contribute (guest path, size or link target): what the target interpreter
    is and what its stdlib holds."""
    rt = tree.runtime
    parts: list[object] = [LAYER_VERSION, tree.arch.name, rt.version, rt.source]
    parts += [f"{pkg}={Path(root).name}" for pkg, root in sorted(tree.packages.items())]
    for guest, host in sorted(tree.files.items()):
        what = f"-> {host.readlink()}" if host.is_symlink() else host.lstat().st_size
        parts.append(f"{guest} {what}")
    return _digest(*parts)


def runtime_walk_key(identity: str, startup: Sequence[str], seeds: Iterable[Seed],
                     runtime_roots: Sequence[Root], builtins: Iterable[str],
                     exclude: Iterable[str], follow_lazy: Iterable[str]) -> str:
    """The runtime walk's cache key: the runtime, the walker's code and the walk's inputs; the
    guest code enters only through the seeds (which runtime modules it imports)."""
    return _digest(
        "runtime-walk", identity, _sources_digest(WALKER_SOURCES),
        json.dumps(list(startup)), json.dumps(sorted(set(seeds))),
        json.dumps([[r.guest, r.extensions, sorted(r.only or ())] for r in runtime_roots]),
        json.dumps(sorted(builtins)), json.dumps(sorted(exclude)),
        json.dumps(sorted(follow_lazy)))


class GuestWalk(Finder):
    """The single walk's guest half, run on the host over all roots: guest modules are parsed
    and followed here; an import that resolves to the runtime is recorded as a seed (with the
    guest modules that make it) instead of being followed."""

    def __init__(self, roots: Sequence[Root], guest_roots: Sequence[Root],
                 builtins: Iterable[str], exclude: Iterable[str],
                 follow_lazy: Iterable[str]) -> None:
        super().__init__(roots, builtins, exclude, follow_lazy)
        self._guest_only = Finder(guest_roots, (), exclude, follow_lazy)
        self.seeds: dict[Seed, set[str]] = {}

    def side(self, name: str) -> str | None:
        """Which half provides `name`'s top-level module: "guest", "runtime" or None."""
        top = name.split(".")[0]
        found = self.locate(top)
        if found is None:
            return None
        mine = self._guest_only.locate(top) if found.kind != "builtin" else None
        return "guest" if mine is not None and mine.host_path == found.host_path else "runtime"

    def follow(self, importer: str, base: str, names: tuple[str, ...], optional: bool,
               droppable: bool) -> None:
        if self.side(base) != "runtime":
            super().follow(importer, base, names, optional, droppable)
            return
        self.seeds.setdefault((base, optional, droppable), set()).add(importer)
        pkg = self.locate(base)
        if pkg is not None and pkg.kind == "package":
            for n in names:  # `from pkg import name`: a submodule if one exists
                if self.locate(f"{base}.{n}") is not None:
                    self.seeds.setdefault((f"{base}.{n}", optional, droppable),
                                          set()).add(importer)

    def foreign_modules(self) -> list[str]:
        """Modules this walk took that the guest roots do not provide (the split is not exact
        then)."""
        return [m.name for m in self.closure.modules.values()
                if m.host_path is None
                or getattr(self._guest_only.locate(m.name), "host_path", None) != m.host_path]


def _closure_to_json(found: Closure) -> dict[str, object]:
    return {
        "modules": [[m.name, m.kind, None if m.host_path is None else str(m.host_path),
                     m.guest_path] for m in found.modules.values()],
        **{t: {k: sorted(v) for k, v in getattr(found, t).items()} for t in TABLES},
        "via": found.via,
    }


def _closure_from_json(data: dict[str, object]) -> Closure:
    found = Closure()
    for name, kind, host, guest in data["modules"]:  # type: ignore[attr-defined]
        found.modules[name] = Module(name, kind, None if host is None else Path(host), guest)
    for t in TABLES:
        setattr(found, t, {k: set(v) for k, v in data[t].items()})  # type: ignore[attr-defined]
    found.via = dict(data["via"])  # type: ignore[call-overload]
    return found


class ForeignLayers:
    """The layered closure walk and compile of one build with a foreign runtime.

        layers = ForeignLayers(tree, target)
        found = layers.closure(entries, guest_roots, runtime_roots, builtins, exclude, follow)
        pycs = layers.compile(jobs)
    """

    def __init__(self, tree: Tree, target: foreignpyc.TargetPython,
                 cache: Path | None = None) -> None:
        self.tree = tree
        self.target = target
        self.cache = Path(cache) if cache is not None else default_cache(tree)
        self.cache.mkdir(parents=True, exist_ok=True)
        self.identity = runtime_identity(tree)
        self.tag = f"py{tree.runtime.version}"
        # what happened, for reports and tests
        self.runtime_walk_cached: bool | None = None  # None: the single walk ran (no split)
        self.layer_path: Path | None = None
        self.compiled = 0  # .pyc compiled by the target in this build (the rest were cached)
        self.reused = 0
        self.compile_seconds = 0.0

    # -- the closure -------------------------------------------------------------------------

    def closure(self, entries: Sequence[str], guest_roots: Sequence[Root],
                runtime_roots: Sequence[Root], builtins: Iterable[str],
                exclude: Iterable[str], follow_lazy: Iterable[str]) -> Closure:
        """What `closure.find_closure(entries, guest_roots + runtime_roots, …)` returns (its
        module set and, for guest importers, its tables); entries[0] is the guest's entry."""
        builtins, exclude, follow_lazy = set(builtins), set(exclude), set(follow_lazy)
        roots = [*guest_roots, *runtime_roots]
        guest = GuestWalk(roots, guest_roots, builtins, exclude, follow_lazy)
        entry, startup = entries[0], list(entries[1:])
        if guest.side(entry) != "guest" or any(guest.side(s) == "guest" for s in startup):
            return self._single_walk(entries, roots, builtins, exclude, follow_lazy)
        guest_found = guest.run([entry])
        if guest.foreign_modules():
            return self._single_walk(entries, roots, builtins, exclude, follow_lazy)
        seeds = sorted(guest.seeds)
        runtime_found = self._runtime_walk(startup, seeds, runtime_roots, builtins, exclude,
                                           follow_lazy)
        if any(guest.side(name) == "guest" for name in self._names(runtime_found)):
            # a guest module shadows one the runtime's modules import: only the single walk
            # resolves that as the guest would
            return self._single_walk(entries, roots, builtins, exclude, follow_lazy)
        return _merge(guest_found, runtime_found, guest.seeds)

    @staticmethod
    def _names(found: Closure) -> set[str]:
        names = set(found.modules)
        for t in ("missing", "optional_missing", "excluded"):
            names |= set(getattr(found, t))
        return names

    def _single_walk(self, entries: Sequence[str], roots: Sequence[Root], builtins: set[str],
                     exclude: set[str], follow_lazy: set[str]) -> Closure:
        self.runtime_walk_cached = None
        return self.target.closure(entries, roots, builtins, exclude, follow_lazy)

    def _runtime_walk(self, startup: Sequence[str], seeds: Sequence[Seed],
                      runtime_roots: Sequence[Root], builtins: set[str], exclude: set[str],
                      follow_lazy: set[str]) -> Closure:
        key = runtime_walk_key(self.identity, startup, seeds, runtime_roots, builtins, exclude,
                               follow_lazy)
        path = self.cache / f"closure-{self.tag}-{key[:24]}.json"
        self.layer_path = path
        found = self._load_walk(path, key)
        if found is not None:
            self.runtime_walk_cached = True
            return found
        with file_lock(self.cache / f".{path.name}.lock"):
            found = self._load_walk(path, key)  # another worker may have written it meanwhile
            if found is not None:
                self.runtime_walk_cached = True
                return found
            found = self.target.closure(startup, runtime_roots, builtins, exclude,
                                        follow_lazy, seeds)
            with atomic_output(path) as tmp:
                tmp.write_text(json.dumps({"key": key, **_closure_to_json(found)}))
        self.runtime_walk_cached = False
        return found

    @staticmethod
    def _load_walk(path: Path, key: str) -> Closure | None:
        """The cached runtime walk, or None when absent, from another key, unreadable, or
        naming files that are gone (the package cache was rebuilt elsewhere)."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        try:
            found = _closure_from_json(data)
        except (KeyError, TypeError, ValueError):
            return None
        if any(m.host_path is not None and not m.host_path.is_file()
               for m in found.modules.values()):
            return None
        return found

    # -- the bytecode ------------------------------------------------------------------------

    def pyc_key(self, job: foreignpyc.Job, source: bytes, compiler: str) -> str:
        return _digest("pyc", self.identity, compiler, job.shown, job.optimize, source)

    def compile(self, jobs: Sequence[foreignpyc.Job]) -> list[bytes]:
        """One .pyc per job (same order): from the store, or compiled by the target in one
        batch (only those the store lacks) and stored."""
        store = self.cache / f"pyc-{self.tag}"
        store.mkdir(exist_ok=True)
        compiler = _sources_digest(COMPILER_SOURCES)
        keys = [self.pyc_key(j, j.source.read_bytes(), compiler) for j in jobs]
        start = time.monotonic()
        with file_lock(store / ".lock"):
            todo = [i for i, k in enumerate(keys) if not (store / f"{k}.pyc").is_file()]
            if todo:
                batch = self.target.compile([jobs[i] for i in todo])
                for i, pyc in zip(todo, batch.pycs, strict=True):
                    with atomic_output(store / f"{keys[i]}.pyc") as tmp:
                        tmp.write_bytes(pyc)
        self.compile_seconds = time.monotonic() - start
        self.compiled, self.reused = len(todo), len(jobs) - len(todo)
        pycs = [(store / f"{k}.pyc").read_bytes() for k in keys]
        magics = {p[:4] for p in pycs}
        if len(magics) > 1 or any(len(p) < 17 for p in pycs):
            raise LayerError(f"{store}: cached .pyc disagree on their magic number or are "
                             f"truncated ({sorted(m.hex() for m in magics)}); remove the "
                             "directory to rebuild it")
        return pycs


def _merge(guest: Closure, runtime: Closure, seeds: dict[Seed, set[str]]) -> Closure:
    """One closure out of the two halves; the runtime walk's GUEST_IMPORTER is replaced by the
    guest modules whose imports led there."""

    def importers(name: str) -> set[str]:
        return {imp for (seed, _, _), imps in seeds.items()
                if seed == name or seed.startswith(name + ".") for imp in imps}

    merged = Closure()
    merged.modules = {**guest.modules, **runtime.modules}
    for t in TABLES:
        table: dict[str, set[str]] = {k: set(v) for k, v in getattr(guest, t).items()}
        for name, imps in getattr(runtime, t).items():
            if GUEST_IMPORTER in imps:
                imps = (imps - {GUEST_IMPORTER}) | (importers(name) or {GUEST_IMPORTER})
            table.setdefault(name, set()).update(imps)
        setattr(merged, t, table)
    merged.via = dict(guest.via)
    for name, importer in runtime.via.items():
        if importer == GUEST_IMPORTER:
            importer = min(importers(name), default=GUEST_IMPORTER)
        merged.via[name] = importer
    return merged

