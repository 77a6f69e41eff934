"""The vz target image: the lab's Debian image plus one drop-in. hvc0 is VZ's only console,
and Debian's cloud kernel has its driver (virtio_console) as a module that udev loads only
after the userspace marker unit has run (it is ordered early). So on vz the marker first loads
virtio_console and waits, at most 10 s, until hvc0 is an active console. Without that, the
target's userspace would be invisible on VZ; the staged kernel and initrd stay Debian's own.
"""

from __future__ import annotations

import dataclasses
import json

from cloudboot.arch import Arch
from cloudboot.fsutil import cache_dir
from lab.cells import Cell
from lab.images import debian, userspace
from lab.images.buildcache import build_once, progress
from lab.images.recipe import FileSpec

HYPERVISOR = "vz"

_WRAPPER_PATH = "usr/local/sbin/cloudboot-userspace-vz"
_WRAPPER = f"""#!/bin/sh
# vz (lab/images/vz.py): hvc0 is the only console and virtio_console is a module udev loads later:
# load it now and wait (at most 10 s) until hvc0 is an active console, then report.
case " $(cat /proc/cmdline) " in
*" console=hvc0"*)
    modprobe virtio_console 2>/dev/null
    i=0
    while [ "$i" -lt 100 ]; do
        grep -qw hvc0 /sys/class/tty/console/active 2>/dev/null && break
        sleep 0.1
        i=$((i + 1))
    done ;;
esac
exec /{userspace.SCRIPT_PATH}
"""
VZ_FILES = (
    FileSpec(_WRAPPER_PATH, 0o755, _WRAPPER),
    FileSpec(f"etc/systemd/system/{userspace.UNIT_NAME}.d/vz.conf", 0o644,
             f"[Service]\nExecStart=\nExecStart=/{_WRAPPER_PATH}\n"),
)


def vz_image(release: str, fs: str, arch: Arch | str = "aarch64") -> debian.TargetImage:
    """The lab's Debian target image with the vz console drop-in, cached like the others."""
    base = debian.recipe(release, fs, arch)
    r = dataclasses.replace(base, files=base.files + VZ_FILES)
    final = cache_dir("images") / f"{release}-{fs}-{r.arch}-vz-{r.key()[:16]}"
    build_once(final, lambda tmp: debian._build_image(r, tmp))
    progress(f"image {release}/{fs}/{r.arch} (vz): {final / 'disk.raw'}")
    data = json.loads((final / "image.json").read_text())
    return debian.TargetImage.from_json(data, final)


def target_image(cell: Cell) -> debian.TargetImage:
    """The target disk a cell boots: the vz variant for vz cells."""
    if cell.hypervisor == HYPERVISOR:
        return vz_image(cell.release, cell.fs, cell.arch)
    return debian.build(cell.release, cell.fs, cell.arch)
