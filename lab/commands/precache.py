"""Build and fetch what a set of cells needs before any boot timeout starts.

`python -m lab precache [--smoke | CELL…]` and the pytest plugin (before the first test of a
session) call `precache(cells)`: the Debian target images (lab/images/debian.build), the
bootstrap kernel, systemd-stub and initramfs per arch, and the firmware a Path C cell edits
(trixie's AAVMF VARS template on aarch64). It returns name -> "sha256:…" for the results'
provenance: the .debs apt fetched (apt verified them; the hash records which ones were used),
the built initramfs and the target image keys.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from lab.cells import Cell


def _progress(message: str) -> None:
    print(f"[lab.commands.precache] {message}", file=sys.stderr, flush=True)


def _deb_of(path: Path) -> Path | None:
    """The cached .deb an unpacked file came from (its tree's `.complete` names it)."""
    from cloudboot.fsutil import cache_root

    for parent in path.parents:
        marker = parent / ".complete"
        if marker.is_file():
            name = marker.read_text().strip()
            rel = parent.relative_to(cache_root() / "unpacked")  # <arch> or <suite>/<arch>
            deb = cache_root() / "debs" / rel.parent / name
            return deb if deb.is_file() else None
    return None


def _runnable(cells: Iterable[Cell]) -> list[Cell]:
    from lab.commands.boot import not_run_reason

    return [c for c in cells if not_run_reason(c) is None]


def precache(cells: Iterable[Cell], report: Callable[[str], None] = _progress
             ) -> dict[str, str]:
    from cloudboot.bootstrap.build import default_initramfs, default_kernel, default_stub
    from lab.assets import debian_deb_digest, sha256_file
    from lab.firmware import select_firmware, with_editable_vars
    from lab.images import debian
    from lab.images.vz import vz_image
    from lab.profiles import get_profile

    selected = _runnable(cells)
    out: dict[str, str] = {}
    if not selected:
        return out
    t0 = time.monotonic()
    report(f"{len(selected)} cells: " + ", ".join(c.id for c in selected))
    for arch in sorted({c.arch for c in selected}, key=str):
        report(f"bootstrap pieces for {arch}")
        for what, path in (("kernel", default_kernel(arch)), ("stub", default_stub(arch))):
            deb = _deb_of(path)
            if deb is not None:
                out[f"deb:{deb.name}"] = debian_deb_digest(deb)
            else:
                out[f"{arch}:{what}"] = "sha256:" + sha256_file(path)
        initramfs = default_initramfs(arch, None)
        out[f"{arch}:initramfs:{initramfs.name}"] = "sha256:" + sha256_file(initramfs)
    for release, fs, arch_name in sorted({(c.release, c.fs, c.arch.name) for c in selected}):
        report(f"target image {release}/{fs}/{arch_name}")
        image = debian.build(release, fs, arch_name)
        out[f"image:{release}-{fs}-{arch_name}"] = f"recipe:{image.key}"
    for release, fs, arch_name in sorted({(c.release, c.fs, c.arch.name) for c in selected
                                          if c.hypervisor == "vz"}):
        report(f"target image {release}/{fs}/{arch_name} (vz)")
        image = vz_image(release, fs, arch_name)
        out[f"image:{release}-{fs}-{arch_name}-vz"] = f"recipe:{image.key}"
    for profile_name in sorted({c.profile_name for c in selected if c.path == "C"}):
        fw = with_editable_vars(select_firmware(get_profile(profile_name)))
        deb = _deb_of(fw.vars_template)
        if deb is not None:
            out[f"deb:{deb.name}"] = debian_deb_digest(deb)
    report(f"done in {time.monotonic() - t0:.0f} s")
    return out
