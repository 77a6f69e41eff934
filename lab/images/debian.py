"""Debian target disk images for the lab: one root filesystem on a GPT disk, with the
reporter unit, plus host copies of the image's kernel and initrd.

    build("bookworm", "ext4") -> TargetImage   (cached; files are read-only, boot them
                                                 with QEMU snapshot=on or copy them)
    build_blank("xfs", "cbroot") -> Path       (a labelled filesystem with no kernel)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cloudboot.arch import Arch, as_arch
from cloudboot.fsutil import cache_dir
from lab.images import userspace
from lab.images.buildcache import build_once, progress, remove_tree
from lab.images.diskimage import gpt_disk, root_type
from lab.images.filesystems import FILESYSTEMS, make_filesystem, read_label_uuid
from lab.images.recipe import (
    BUILDER_VERSION,
    FileSpec,
    ImageRecipe,
    canonical_hash,
    derive_uuid,
)
from lab.images.rootfs import RELEASES, base_packages, build_rootfs, in_chroot

LABEL = "cbroot"
HOSTNAME = "cbtarget"


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class TargetImage:
    path: Path  # raw GPT disk, read-only in the cache
    release: str
    fs: str
    arch: str
    kernel_version: str
    fs_label: str
    fs_uuid: str
    part_uuid: str
    part_label: str
    kernel: Path  # host copy of /boot/vmlinuz-<kernel_version>
    initrd: Path  # host copy of /boot/initrd.img-<kernel_version>
    os_id: str
    version_id: str | None
    key: str

    def to_json(self) -> dict[str, object]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, object], directory: Path) -> TargetImage:
        # Paths are stored relative so a moved cache still works.
        fields = dict(data)
        for name in ("path", "kernel", "initrd"):
            fields[name] = directory / Path(str(fields[name])).name
        return cls(**fields)  # type: ignore[arg-type]


def image_files(fs: str) -> tuple[FileSpec, ...]:
    """The files an image adds on top of its root tree."""
    wants = f"etc/systemd/system/sysinit.target.wants/{userspace.UNIT_NAME}"
    files = [
        FileSpec("etc/fstab", 0o644, userspace.fstab(fs, LABEL)),
        FileSpec("etc/hostname", 0o644, HOSTNAME + "\n"),
        # Empty machine-id: systemd makes a transient one per boot, no first-boot logic.
        FileSpec("etc/machine-id", 0o444, ""),
        FileSpec(userspace.SCRIPT_PATH, 0o755, userspace.SCRIPT),
        FileSpec(f"etc/systemd/system/{userspace.UNIT_NAME}", 0o644, userspace.UNIT),
        FileSpec(wants, 0o777, symlink=f"/etc/systemd/system/{userspace.UNIT_NAME}"),
    ]
    files += [FileSpec(f"etc/systemd/system/{unit}", 0o777, symlink="/dev/null")
              for unit in userspace.MASKED_UNITS]
    files += [FileSpec(f"etc/systemd/system-generators/{gen}", 0o777, symlink="/dev/null")
              for gen in userspace.MASKED_GENERATORS]
    return tuple(files)


def recipe(release: str, fs: str, arch: Arch | str = "x86_64") -> ImageRecipe:
    if release not in RELEASES:
        raise ImageError(f"unknown Debian release {release!r} (known: {', '.join(RELEASES)})")
    if fs not in FILESYSTEMS:
        raise ImageError(f"unknown filesystem {fs!r} (known: {', '.join(FILESYSTEMS)})")
    name = as_arch(arch).name  # recipes are data: the arch by name, as their key hashes it
    return ImageRecipe(release, fs, name, LABEL, base_packages(name), image_files(fs),
                       purge=userspace.purged_packages(fs))


def build(release: str, fs: str, arch: Arch | str = "x86_64") -> TargetImage:
    """The cached target image for (release, fs, arch), built on first use."""
    r = recipe(release, fs, arch)
    final = cache_dir("images") / f"{release}-{fs}-{r.arch}-{r.key()[:16]}"
    build_once(final, lambda tmp: _build_image(r, tmp))
    progress(f"image {release}/{fs}/{r.arch}: {final / 'disk.raw'}")
    data = json.loads((final / "image.json").read_text())
    return TargetImage.from_json(data, final)


def _write_files(root: Path, files: tuple[FileSpec, ...]) -> None:
    for spec in files:
        path = root / spec.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        if spec.symlink is not None:
            os.symlink(spec.symlink, path)
        else:
            path.write_text(spec.text)
            os.chmod(path, spec.mode)


def os_release(root: Path) -> dict[str, str]:
    """Fields of the tree's os-release (its /etc symlink is resolved inside the tree)."""
    for rel in ("etc/os-release", "usr/lib/os-release"):
        path = root / rel
        if path.is_symlink():
            target = os.readlink(path)
            path = (path.parent / target) if not target.startswith("/") else root / target[1:]
        if path.is_file():
            fields = {}
            for line in path.read_text().splitlines():
                m = re.match(r"^([A-Z0-9_]+)=(.*)$", line.strip())
                if m:
                    fields[m.group(1)] = m.group(2).strip().strip("\"'")
            return fields
    raise ImageError(f"{root}: no etc/os-release or usr/lib/os-release")


# Debian names the kernel vmlinuz-<v> where it is compressed, vmlinux-<v> where it is not
# (riscv64). From forky on (linux 6.17+ packaging) the kernel package ships
# /usr/lib/modules/<v>/vmlinuz and /boot/vmlinuz-<v> is only made by maintainer scripts, so
# that location is the fallback (cloudboot-init's discovery reads it too).
KERNEL_PREFIXES = ("vmlinuz-", "vmlinux-")
MODULES_KERNEL_NAMES = ("vmlinuz", "vmlinux")


def _boot_kernel(root: Path, version: str) -> Path | None:
    for prefix in KERNEL_PREFIXES:
        path = root / "boot" / f"{prefix}{version}"
        # An absolute symlink would resolve on the host: only a real file or relative link.
        if path.is_file() and not (path.is_symlink() and os.readlink(path).startswith("/")):
            return path
    return None


def kernel_file_of(root: Path, version: str) -> Path:
    found = _boot_kernel(root, version)
    if found is not None:
        return found
    for name in MODULES_KERNEL_NAMES:
        path = root / "usr/lib/modules" / version / name
        if path.is_file():
            return path
    raise ImageError(f"{root}: no kernel file for {version} in /boot or "
                     f"/usr/lib/modules/{version}")


def kernel_version_of(root: Path) -> str:
    versions = sorted(p.name[len(prefix):] for prefix in KERNEL_PREFIXES
                      for p in (root / "boot").glob(f"{prefix}*"))
    if not versions:
        versions = sorted({p.parent.name for name in MODULES_KERNEL_NAMES
                           for p in (root / "usr/lib/modules").glob(f"*/{name}")})
    if len(versions) != 1:
        raise ImageError(f"{root}: expected one /boot/vmlinuz-*, /boot/vmlinux-* or "
                         f"/usr/lib/modules/*/vmlinuz, found {versions or 'none'}")
    version = versions[0]
    if not (root / "boot" / f"initrd.img-{version}").is_file():
        raise ImageError(f"{root}/boot: kernel {version} has no initrd.img-{version}")
    return version


def purge_script(packages: tuple[str, ...]) -> str:
    """Purge `packages` and leave an initrd without their hooks, building it only once.

    Removing a package with an initramfs hook fires initramfs-tools' trigger, which rebuilds
    the initrd inside `dpkg --purge`; a second explicit rebuild would double the slowest step
    of a foreign-arch image (~5-20 min of mkinitramfs under qemu-user). The explicit rebuild
    runs only when the trigger left every initrd as it was."""
    return ("set -e; before=$(stat -c %Y /boot/initrd.img-*); "
            f"dpkg --purge {' '.join(packages)}; "
            'if [ "$(stat -c %Y /boot/initrd.img-*)" = "$before" ]; then '
            "update-initramfs -u -k all; fi")


def _build_image(r: ImageRecipe, work: Path) -> None:
    started = time.monotonic()
    tree = build_rootfs(r.rootfs()) / "tree"
    staging = work / "root"
    t = time.monotonic()
    # --reflink=auto: free on btrfs/xfs hosts, a plain copy elsewhere (~1-2 s for ~300 MB).
    subprocess.run(["cp", "-a", "--reflink=auto", f"{tree}/.", str(staging)], check=True)
    _write_files(staging, r.files)
    progress(f"{r.release}/{r.fs}: staged root tree", t)
    if r.purge:
        t = time.monotonic()
        in_chroot(staging, purge_script(r.purge),
                  f"removing {', '.join(r.purge)} from the {r.release}/{r.fs} tree {staging}")
        progress(f"{r.release}/{r.fs}: removed {', '.join(r.purge)}, initrd rebuilt", t)

    version = kernel_version_of(staging)
    kernel = work / f"vmlinuz-{version}"
    initrd = work / f"initrd.img-{version}"
    shutil.copyfile(kernel_file_of(staging, version), kernel)
    shutil.copyfile(staging / "boot" / f"initrd.img-{version}", initrd)
    osr = os_release(staging)

    fs_uuid, part_uuid = r.derived_uuid("fs"), r.derived_uuid("part")
    fs_image = work / "fs.img"
    t = time.monotonic()
    make_filesystem(staging, fs_image, r.fs, r.label, fs_uuid)
    progress(f"{r.release}/{r.fs}: filesystem {fs_image.stat().st_size // 2**20} MiB", t)
    remove_tree(staging)
    fs_type, label, found_uuid = read_label_uuid(fs_image)
    if (fs_type, label, found_uuid) != (r.fs, r.label, fs_uuid):
        raise ImageError(f"{fs_image}: blkid sees {fs_type}/{label}/{found_uuid}, "
                         f"wanted {r.fs}/{r.label}/{fs_uuid}")
    disk = work / "disk.raw"
    gpt_disk(fs_image, disk, part_name=r.label, part_uuid=part_uuid,
             disk_uuid=r.derived_uuid("disk"), type_guid=root_type(r.arch))
    fs_image.unlink()

    image = TargetImage(
        path=disk, release=r.release, fs=r.fs, arch=r.arch, kernel_version=version,
        fs_label=r.label, fs_uuid=fs_uuid, part_uuid=part_uuid, part_label=r.label,
        kernel=kernel, initrd=initrd, os_id=osr.get("ID", ""),
        version_id=osr.get("VERSION_ID"), key=r.key(),
    )
    # File names only: the directory is renamed into place after this.
    record = {**image.to_json(), "path": disk.name, "kernel": kernel.name, "initrd": initrd.name}
    (work / "image.json").write_text(json.dumps(record, indent=2) + "\n")
    (work / "recipe.json").write_text(json.dumps(asdict(r), indent=2) + "\n")
    for path in (disk, kernel, initrd, work / "image.json", work / "recipe.json"):
        path.chmod(0o444)
    progress(f"image {r.release}/{r.fs}/{r.arch} built", started)


def build_blank(fs: str, label: str) -> Path:
    """A small GPT disk whose only partition (named `label`) holds an empty `fs` labelled
    `label`: a root that looks right but has no kernel."""
    if fs not in FILESYSTEMS:
        raise ImageError(f"unknown filesystem {fs!r} (known: {', '.join(FILESYSTEMS)})")
    key = canonical_hash({"kind": "blank", "fs": fs, "label": label,
                          "builder": BUILDER_VERSION})
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", label)
    final = cache_dir("images") / f"blank-{fs}-{safe}-{key[:16]}"

    def make(work: Path) -> None:
        root = work / "root"
        (root / "boot").mkdir(parents=True)
        (root / "etc").mkdir()
        (root / "README").write_text("cloudboot lab: a root filesystem with no kernel\n")
        fs_image = work / "fs.img"
        make_filesystem(root, fs_image, fs, label, derive_uuid(key, "fs"))
        gpt_disk(fs_image, work / "disk.raw", part_name=label,
                 part_uuid=derive_uuid(key, "part"), disk_uuid=derive_uuid(key, "disk"))
        fs_image.unlink()
        remove_tree(root)
        (work / "disk.raw").chmod(0o444)

    build_once(final, make)
    return final / "disk.raw"
