"""The lab's riscv64, loongarch64 and armv7 lanes: their bootstrap parts plus lab-only extras.

Where a lane's kernel, systemd-stub and initramfs Python come from is cloudboot's own table
(cloudboot/bootstrap/archsources.py), so `cloudboot build --arch X` and the lab build the same UKI
from the same cached packages. This module adds what only the lab needs: the arch's static busybox,
a probe initramfs printing PROBE_MARKER (proves firmware → stub → kernel → /init with nothing of
cloudboot) and `build_lane_iso`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from cloudboot.arch import Arch, get_arch
from cloudboot.bootstrap import archsources
from cloudboot.bootstrap.build import BuildRequest, build
from cloudboot.fsutil import atomic_output
from cloudboot.media import cpio

PROBE_MARKER = "CLOUDBOOT-LANE-PROBE"

# Something a lane cannot build; the message is the precise reason. The lab's name for
# cloudboot's error, so `except LaneGap` also catches a failed fetch of the lane's parts.
LaneGap = archsources.ArchSourceError


@dataclass(frozen=True)
class Lane(archsources.ArchSources):
    """A cloudboot.bootstrap.archsources table entry with the lab's extras."""

    def busybox(self) -> Path:
        a = get_arch(self.arch)
        suite = self.kernel_suite or self.stub_suite
        root = self.unpacked(suite, "busybox-static", a.debian,
                             "skip the probe initramfs (it needs the arch's busybox-static)")
        for rel in ("usr/bin/busybox", "bin/busybox"):
            if (root / rel).is_file():
                return root / rel
        raise LaneGap(f"busybox-static ({suite}, {a.debian}) has no busybox binary ({root})")


LANES: dict[str, Lane] = {
    name: Lane(s.arch, s.kernel_suite, s.stub_suite, s.python)
    for name, s in archsources.TABLE.items()
}


def get_lane(arch: str) -> Lane:
    name = get_arch(arch).name
    try:
        return LANES[name]
    except KeyError:
        raise LaneGap(f"no lane table entry for {name} (lanes: {', '.join(LANES)})") from None


def probe_initramfs(lane: Lane, out: Path) -> Path:
    """A newc cpio: the arch's static busybox as /init's shell, printing PROBE_MARKER.

    Proves firmware → stub → kernel → initramfs → userspace of that arch, nothing of cloudboot.
    """
    busybox = lane.busybox().read_bytes()
    script = (f"#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n"
              f"/bin/busybox echo \"{PROBE_MARKER} arch=$(/bin/busybox uname -m) "
              f"kernel=$(/bin/busybox uname -r)\"\n"
              "/bin/busybox poweroff -f\n").encode()
    entries = [cpio.Entry.directory("/proc"), cpio.Entry.directory("/dev"),
               cpio.Entry.chardev("/dev/console", 5, 1),
               cpio.Entry.file("/bin/busybox", busybox, 0o755),
               cpio.Entry.file("/init", script, 0o755)]
    buf = io.BytesIO()
    cpio.write(buf, cpio.with_parents(entries))
    with atomic_output(out) as tmp:
        tmp.write_bytes(buf.getvalue())
    return out


def build_lane_iso(lane: Lane, cmdline: str, out: Path, initramfs: Path) -> Path:
    """boot.iso with the lane's UKI (its kernel, its stub, `initramfs`, `cmdline`)."""
    arch: Arch = get_arch(lane.arch)
    build(BuildRequest(arch=arch, output=out, kernel=lane.kernel(), stub=lane.stub(),
                       initramfs=initramfs, cmdline=cmdline))
    return out
