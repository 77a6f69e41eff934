"""Debian root trees from packages: debootstrap minbase + kernel, cached per recipe.

One tree per (release, arch, package list) is shared by every filesystem built from it.
The tree stays a plain directory in the cache; image builds copy it before customising.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cloudboot.arch import get_arch, host_arch
from cloudboot.fsutil import cache_dir
from lab.images import foreign
from lab.images.buildcache import build_once, mounts_under, progress

# Bump when the steps below change what ends up in the tree.
ROOTFS_VERSION = 1
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# forky (Debian 14, testing) is here for loong64, which enters the main archive with it.
RELEASES = ("bookworm", "trixie", "forky")

# MODULES=most keeps every block/fs driver the cloud kernel has as a module, so the initrd
# finds the root on ext4, xfs and btrfs alike; xfsprogs/btrfs-progs bring their hooks.
INITRAMFS_CONF = "MODULES=most\n"

# Trees are for booting under TCG, not for reading: documentation only costs copy time.
PRUNE = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
         "var/cache/apt/archives", "var/lib/apt/lists")


class RootfsError(RuntimeError):
    pass


def base_packages(arch: str) -> tuple[str, ...]:
    kernel = get_arch(arch).kernel_package
    return ("systemd-sysv", "udev", "initramfs-tools", kernel, "xfsprogs", "btrfs-progs",
            "zstd")


@dataclass(frozen=True)
class RootfsRecipe:
    release: str
    arch: str
    packages: tuple[str, ...]
    version: int = ROOTFS_VERSION

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _run(cmd: list[str], what: str, log: Path | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if log is not None:
        log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip()[-1500:]
        raise RootfsError(f"{what}: `{' '.join(cmd)}` exited {proc.returncode}:\n{tail}")


def in_chroot(tree: Path, script: str, what: str) -> None:
    """Run a shell script inside `tree` with /proc mounted in a private mount namespace."""
    wrapped = f"mount -t proc proc /proc && {{ {script} ; }}; rc=$?; umount /proc; exit $rc"
    _run(["unshare", "--mount", "--propagation", "private", "chroot", str(tree),
          "/bin/sh", "-c", wrapped], what)


def build_rootfs(recipe: RootfsRecipe) -> Path:
    """The cached root tree for `recipe`, running debootstrap the first time."""
    if recipe.release not in RELEASES:
        raise RootfsError(f"unknown Debian release {recipe.release!r} (known: {RELEASES})")
    arch = get_arch(recipe.arch)
    if foreign.is_foreign(arch):
        try:
            foreign.ensure_binfmt(arch)
        except foreign.ForeignError as e:
            raise RootfsError(f"root tree for {arch.name} on a {host_arch().name} host: "
                              f"{e}") from None
    final = cache_dir("images", "rootfs") / f"{recipe.release}-{arch.debian}-{recipe.key()[:16]}"
    return build_once(final, lambda tmp: _debootstrap(recipe, tmp))


def _debootstrap_log_tail(tree: Path, lines: int = 25) -> str:
    """The first errors in the tree's debootstrap.log (with the lines leading to them: a retry
    loop repeats only "skipping" afterwards) and its last lines."""
    log = tree / "debootstrap" / "debootstrap.log"
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no {log})"
    firsts = [n for n, line in enumerate(text) if _LOG_ERROR.search(line)][:3]
    out = []
    for n in firsts:
        out += [f"--- {log.name} line {n + 1}:", *text[max(n - 12, 0):n + 3]]
    out += [f"--- last {min(lines, len(text))} lines of {log}:", *text[-lines:]]
    return "\n".join(out)


_LOG_ERROR = re.compile(r"(?i)\berror\b|\bfailed\b|exit status|returned error")


def _write_initramfs_conf(conf: Path) -> None:
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(INITRAMFS_CONF)


def _initrds_older_than(tree: Path, conf: Path) -> list[str]:
    """The initrds in the tree's /boot built before `conf` was written (or none at all)."""
    initrds = sorted((tree / "boot").glob("initrd.img-*"))
    if not initrds:
        return ["no initrd yet"]
    written = conf.stat().st_mtime
    return [p.name for p in initrds if p.stat().st_mtime <= written]


def _debootstrap(recipe: RootfsRecipe, work: Path) -> None:
    arch = get_arch(recipe.arch)
    tree = work / "tree"
    debs = cache_dir("images", "debootstrap-debs", f"{recipe.release}-{arch.debian}")
    mirror = os.environ.get("CLOUDBOOT_DEBIAN_MIRROR", DEFAULT_MIRROR)
    started = time.monotonic()
    progress(f"debootstrap {recipe.release}/{arch.debian} + {','.join(recipe.packages)}")
    # A foreign arch takes two runs: --foreign unpacks, the second stage runs under qemu-user.
    try:
        steps = foreign.debootstrap_commands(
            recipe.release, arch, tree, mirror, recipe.packages, debs,
            foreign.debootstrap_script(recipe.release, work))
    except foreign.ForeignError as e:
        raise RootfsError(f"root tree {recipe.release}/{arch.debian}: {e}") from None
    conf = tree / "etc/initramfs-tools/conf.d/cloudboot.conf"
    for n, cmd in enumerate(steps, 1):
        try:
            _run(cmd, f"debootstrap ({n}/{len(steps)}) of {recipe.release}/{arch.debian} into "
                 f"{tree}", log=work / f"debootstrap-{n}.log")
        except RootfsError as e:
            # debootstrap's own stdout only says "see debootstrap.log"; that log goes away with
            # the unfinished tree, so its tail (the failing maintainer script) goes in the error.
            raise RootfsError(f"{e}\n{_debootstrap_log_tail(tree)}") from None
        if n == 1 and len(steps) > 1:
            # Before the second stage: its kernel postinst then builds the one initrd with our
            # settings (each mkinitramfs under qemu-user costs 5-20 min).
            _write_initramfs_conf(conf)
    progress(f"debootstrap {recipe.release}/{arch.debian} done", started)

    if not conf.is_file():
        _write_initramfs_conf(conf)
    if stale := _initrds_older_than(tree, conf):
        t = time.monotonic()
        in_chroot(tree, "update-initramfs -u -k all", f"update-initramfs in {tree}")
        progress(f"initramfs regenerated for {recipe.release} ({', '.join(stale)})", t)

    for rel in PRUNE:
        target = tree / rel
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    for rel in ("etc/resolv.conf", "var/lib/dbus/machine-id"):
        (tree / rel).unlink(missing_ok=True)
    if mounts := mounts_under(tree):
        raise RootfsError(f"debootstrap left mounts under {tree}: {mounts}")
    progress(f"root tree {recipe.release}/{arch.debian} ready", started)

