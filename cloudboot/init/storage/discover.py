"""Find the distro kernel (and its initrd and BLS options) on a mounted filesystem tree.

The tree is either a whole root filesystem (kernels under /boot) or a separate /boot
partition (kernels at its top). Conventions, in order of preference: Boot Loader Specification
entries, /boot/vmlinuz-V and friends, the /vmlinuz symlinks, /usr/lib/modules/V/vmlinuz.
Every path, symlinks included, is resolved inside the tree: an absolute link target such as
/usr/lib/modules/V/Image means <tree>/usr/lib/modules/V/Image, never the host's file.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cloudboot.init.storage import kernelimage, version

KERNEL_PREFIXES = ("vmlinuz-", "vmlinux-", "Image-", "zImage-", "kernel-")
_LINK_NAMES = ("vmlinuz", "vmlinux", "Image")
_SKIP_SUFFIXES = (".old", ".sig", ".hmac", ".bak", ".efi", ".cmdline", ".sha256", ".asc")
_SUBVOLUME_ROOTS = ("@", "@root", "@rootfs", "root")
_SOURCE_RANK = {"bls": 0, "boot-dir": 1, "symlink": 1, "modules-dir": 2}


class NoKernelFound(FileNotFoundError):
    """No kernel on the tree; `looked` lists every path that was examined."""

    def __init__(self, root: Path, looked: list[str]) -> None:
        self.root = root
        self.looked = looked
        listing = "\n  ".join(looked) or "(nothing)"
        super().__init__(f"no kernel found on {root}; looked at:\n  {listing}")


@dataclass(frozen=True)
class KernelCandidate:
    kernel: Path
    initrd: Path | None
    version: str
    options: str | None = None  # from a BLS entry; None when the convention has none
    source: str = "boot-dir"  # "bls" | "boot-dir" | "symlink" | "modules-dir"
    title: str | None = None

    @property
    def is_rescue(self) -> bool:
        return "rescue" in self.kernel.name or "rescue" in self.version


def resolve_in(root: Path, rel: str) -> Path | None:
    """Follow `rel` inside `root` as if `root` were /; None if it leaves nothing to find.

    ".." never climbs above `root`, and absolute link targets restart at `root`.
    """
    todo = [p for p in rel.split("/") if p not in ("", ".")]
    cur: list[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if cur:
                cur.pop()
            continue
        here = root.joinpath(*cur, part)
        try:
            st = os.lstat(here)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                return None  # a link loop
            target = os.readlink(here)
            if target.startswith("/"):
                cur = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        cur.append(part)
    return root.joinpath(*cur)


def _is_file(p: Path | None) -> bool:
    return p is not None and p.is_file() and not p.is_symlink()


def _is_dir(p: Path | None) -> bool:
    return p is not None and p.is_dir() and not p.is_symlink()


@dataclass
class _Scan:
    root: Path
    looked: list[str] = field(default_factory=list)
    found: dict[Path, KernelCandidate] = field(default_factory=dict)

    def look(self, rel: str) -> Path | None:
        self.looked.append(str(self.root / rel) if rel else str(self.root))
        return resolve_in(self.root, rel)

    def add(self, cand: KernelCandidate) -> None:
        # The same file reached by several conventions keeps the richest (first) description.
        self.found.setdefault(cand.kernel, cand)

    def rel(self, p: Path) -> str:
        return str(p.relative_to(self.root))


def _boot_dirs(scan: _Scan) -> list[str]:
    """Directories (relative to root) that may hold kernels: /boot, then the top itself."""
    dirs: dict[Path, str] = {}
    for rel in ("boot", ""):
        p = scan.look(rel)
        if _is_dir(p) and p is not None:
            dirs.setdefault(p, scan.rel(p) if p != scan.root else "")
    return list(dirs.values())


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def _modules_version(root: Path, flavor: str) -> str | None:
    """Alpine names kernels by flavour (vmlinuz-virt); its modules dir carries the version."""
    best = None
    for mods in ("lib/modules", "usr/lib/modules"):
        d = resolve_in(root, mods)
        if not _is_dir(d) or d is None:
            continue
        for name in os.listdir(d):
            if name.endswith("-" + flavor) and (best is None or version.compare(name, best) > 0):
                best = name
    return best


def _version_of(root: Path, kernel: Path, suffix: str) -> str:
    if any(c.isdigit() for c in suffix):
        return suffix
    from_modules = _modules_version(root, suffix) if suffix else None
    if from_modules:
        return from_modules
    try:
        with open(kernel, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        head = b""
    return kernelimage.version_string(head) or suffix or "unknown"


def _find_initrd(scan: _Scan, dirs: list[str], names: list[str]) -> Path | None:
    """The first existing initrd among `names` (e.g. "1.2"/"virt") in `dirs`."""
    for d in dirs:
        for v in names:
            for pattern in (
                "initrd.img-{}",
                "initramfs-{}.img",
                "initrd-{}",
                "initrd-{}.img",
                "initramfs-{}",
            ):
                p = scan.look(_join(d, pattern.format(v)))
                if _is_file(p):
                    return p
    return None


def _skip(name: str) -> bool:
    return name.endswith(_SKIP_SUFFIXES) or ".dpkg-" in name or name.startswith(".")


def _scan_boot_dirs(scan: _Scan, dirs: list[str]) -> None:
    for d in dirs:
        base = resolve_in(scan.root, d)
        if base is None:
            continue
        for name in sorted(os.listdir(base)):
            prefix = next((p for p in KERNEL_PREFIXES if name.startswith(p)), None)
            if prefix is None or _skip(name):
                continue
            kernel = scan.look(_join(d, name))
            if not _is_file(kernel) or kernel is None:
                continue
            suffix = name[len(prefix) :]
            ver = _version_of(scan.root, kernel, suffix)
            initrd = _find_initrd(scan, [d, *dirs], list(dict.fromkeys([suffix, ver])))
            scan.add(KernelCandidate(kernel, initrd, ver, None, "boot-dir"))


def _scan_symlinks(scan: _Scan, dirs: list[str]) -> None:
    """Debian's /vmlinuz and /boot/vmlinuz (with /initrd.img beside them)."""
    for d in dirs:
        for link in _LINK_NAMES:
            kernel = scan.look(_join(d, link))
            if not _is_file(kernel) or kernel is None:
                continue
            name = kernel.name
            prefix = next((p for p in KERNEL_PREFIXES if name.startswith(p)), "")
            suffix = name[len(prefix) :] if prefix else ""
            ver = _version_of(scan.root, kernel, suffix)
            initrd = scan.look(_join(d, "initrd.img" if link == "vmlinuz" else "initrd"))
            if not _is_file(initrd):
                kdir = scan.rel(kernel.parent) if kernel.parent != scan.root else ""
                initrd = _find_initrd(scan, [kdir, *dirs], list(dict.fromkeys([suffix, ver])))
            scan.add(KernelCandidate(kernel, initrd, ver, None, "symlink"))


def _scan_modules(scan: _Scan, dirs: list[str]) -> None:
    """Fedora/Arch/openSUSE also keep the kernel as /usr/lib/modules/V/vmlinuz (or Image)."""
    for mods in ("usr/lib/modules", "lib/modules"):
        base = scan.look(mods)
        if not _is_dir(base) or base is None:
            continue
        for ver in sorted(os.listdir(base)):
            for fname in ("vmlinuz", "Image", "vmlinux"):
                kernel = scan.look(_join(mods, ver, fname))
                if _is_file(kernel) and kernel is not None:
                    initrd = _find_initrd(scan, dirs, [ver]) or next(
                        (p for p in (scan.look(_join(mods, ver, "initrd")),) if _is_file(p)), None
                    )
                    scan.add(KernelCandidate(kernel, initrd, ver, None, "modules-dir"))
                    break


def _read_grubenv(scan: _Scan) -> dict[str, str]:
    for rel in ("boot/grub2/grubenv", "grub2/grubenv", "boot/grub/grubenv", "grub/grubenv"):
        p = resolve_in(scan.root, rel)
        if _is_file(p) and p is not None:
            text = p.read_text(errors="replace")
            return dict(
                line.split("=", 1)
                for line in text.splitlines()
                if "=" in line and not line.startswith("#")
            )
    return {}


def _expand_options(scan: _Scan, options: str) -> str:
    """RHEL 8 style `$kernelopts` comes from grubenv; unknown `$vars` expand to nothing."""
    if "$" not in options:
        return options
    env = _read_grubenv(scan)
    out = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), options)
    return " ".join(out.split())


def _parse_bls(text: str) -> dict[str, list[str]]:
    entry: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        entry.setdefault(key, []).append(value.strip())
    return entry


def _scan_bls(scan: _Scan) -> None:
    """Boot Loader Specification type #1 entries; paths are relative to the entries' fs."""
    seen: set[Path] = set()
    for bls_rel in ("boot", "", "efi", "boot/efi"):
        entries = scan.look(_join(bls_rel, "loader/entries"))
        if not _is_dir(entries) or entries is None or entries in seen:
            continue
        seen.add(entries)
        bls_root = scan.rel(entries.parent.parent) if entries.parent.parent != scan.root else ""
        for conf in sorted(entries.glob("*.conf")):
            entry = _parse_bls(conf.read_text(errors="replace"))
            if "linux" not in entry:
                continue
            kernel = _bls_path(scan, bls_root, entry["linux"][0])
            if kernel is None:
                continue
            initrd = None
            if "initrd" in entry:
                initrd = _bls_path(scan, bls_root, entry["initrd"][0].split()[0])
            ver = (entry.get("version") or [""])[0]
            if not ver:
                prefix = next((p for p in KERNEL_PREFIXES if kernel.name.startswith(p)), "")
                ver = kernel.name[len(prefix) :] if prefix else conf.stem
            opts = " ".join(entry.get("options", [])) or None
            if opts is not None:
                opts = _expand_options(scan, opts) or None
            title = entry["title"][0] if "title" in entry else None
            scan.add(KernelCandidate(kernel, initrd, ver, opts, "bls", title))


def _bls_path(scan: _Scan, bls_root: str, value: str) -> Path | None:
    # Relative to the BLS root; when /boot is not separate, grub writes /boot/… paths instead.
    for rel in dict.fromkeys((_join(bls_root, value), _join(value))):
        p = scan.look(rel)
        if _is_file(p):
            return p
    return None


def _order(a: KernelCandidate, b: KernelCandidate) -> int:
    ka = (a.is_rescue, _SOURCE_RANK.get(a.source, 3))
    kb = (b.is_rescue, _SOURCE_RANK.get(b.source, 3))
    if ka != kb:
        return -1 if ka < kb else 1
    return -version.compare(a.version, b.version)


def _find_here(scan: _Scan) -> list[KernelCandidate]:
    dirs = _boot_dirs(scan)
    _scan_bls(scan)
    _scan_boot_dirs(scan, dirs)
    _scan_symlinks(scan, dirs)
    if not scan.found:
        _scan_modules(scan, dirs)
    return sorted(scan.found.values(), key=functools.cmp_to_key(_order))


def _subvolume_roots(root: Path) -> list[Path]:
    """Where a btrfs top level (subvolid=5) keeps the real root: @, root, snapshots (newest)."""
    out = [root / n for n in _SUBVOLUME_ROOTS]
    for base in (root / "@" / ".snapshots", root / ".snapshots"):
        if _is_dir(base):
            nums = sorted((n for n in os.listdir(base) if n.isdigit()), key=int, reverse=True)
            out += [base / n / "snapshot" for n in nums]
    return [p for p in out if _is_dir(p)]


def find_kernels(root: Path) -> list[KernelCandidate]:
    """All kernels on the tree at `root`, best first: BLS before other conventions, newest
    version first, rescue kernels last. Empty if there are none."""
    return _find(Path(root), [])


def _find(root: Path, looked: list[str]) -> list[KernelCandidate]:
    scan = _Scan(root)
    found = _find_here(scan)
    looked += scan.looked
    if found:
        return found
    for sub in _subvolume_roots(root):
        found = _find(sub, looked)
        if found:
            return found
    return []


def pick(root: Path) -> KernelCandidate:
    """The kernel to boot from the tree at `root`; NoKernelFound lists where it looked."""
    looked: list[str] = []
    found = _find(Path(root), looked)
    if not found:
        raise NoKernelFound(Path(root), list(dict.fromkeys(looked)))
    return found[0]


def default_cmdline(root: Path) -> str | None:
    """The distro's default kernel command line from /etc/kernel/cmdline (kernel-install)."""
    for rel in ("etc/kernel/cmdline", "usr/lib/kernel/cmdline"):
        p = resolve_in(Path(root), rel)
        if _is_file(p) and p is not None:
            lines = p.read_text(errors="replace").splitlines()
            text = " ".join(" ".join(ln.split()) for ln in lines if not ln.startswith("#"))
            text = text.strip()
            if text:
                return text
    return None
