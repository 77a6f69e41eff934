"""Where the bootstrap UKI of the riscv64, loongarch64 and armv7 lanes comes from.

Each lane names the suite of its kernel and of its systemd-stub, and the Python its bootstrap
initramfs would carry:

- armv7: bookworm's linux-image-armmp (host apt, armhf added), trixie's systemd-stub 257
  (bookworm's armhf stub is rejected, DESIGN §7), bookworm's Python 3.11.
- riscv64: trixie's linux-image-riscv64 and systemd-stub; trixie has Python 3.13 only.
- loongarch64: forky's linux-image-loong64 (split into linux-binary-*/linux-modules-*) and
  systemd-stub; forky has Python 3.14 only.

riscv64 first appears in trixie and loong64 in forky, neither with Python 3.11: their
bootstrap initramfs carries the suite's Python (`python_runtime`: packages from the lane's
suite through lab.aptsuites, .pyc compiled by that interpreter under qemu-user). The qemu-user
is bookworm-backports' 10.0 (`qemu_user`): the host's qemu-user-static 7.2 runs trixie's riscv64
python3.13 but dies with SIGILL on forky's loong64 python3.14 (QEMU < 8.1 lacks instructions
forky's glibc/python use). The firmware → stub → kernel → /init chain is also proven with a
probe initramfs: the arch's static busybox printing PROBE_MARKER (`probe_initramfs`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from cloudboot import debpkg
from cloudboot.arch import Arch, get_arch
from cloudboot.build import BuildRequest, build
from cloudboot.fsutil import atomic_output
from cloudboot.initramfs import pyruntime
from cloudboot.media import cpio
from lab import aptsuites

PROBE_MARKER = "CLOUDBOOT-LANE-PROBE"
# qemu-user for running a lane's interpreter on the host (compiling its .pyc).
QEMU_USER_SUITE = "bookworm-backports"
QEMU_USER_NAMES = {"riscv64": "riscv64", "loongarch64": "loongarch64", "armv7": "arm"}


class LaneGap(RuntimeError):
    """Something this lane cannot build yet; the message is the precise reason."""


@dataclass(frozen=True)
class Lane:
    arch: str
    kernel_suite: str | None  # None: the host's own apt (bookworm)
    stub_suite: str
    python: str  # the Python version the lane's suites offer

    def kernel_roots(self) -> list[Path]:
        """Unpacked roots of the kernel: the image package, plus the linux-binary-* and
        linux-modules-* packages forky splits it into."""
        a = get_arch(self.arch)
        if self.kernel_suite is None:
            return [debpkg.unpacked(a.kernel_package, a.debian)]
        suite = aptsuites.get_suite(self.kernel_suite)
        image = aptsuites.resolve_metapackage(suite, a.kernel_package, a.debian)
        roots = [aptsuites.unpacked(suite, image, a.debian)]
        for dep in aptsuites.depends(suite, image, a.debian):
            # linux-base-* holds modules.builtin (+ .modinfo): the initramfs builder needs it
            if dep.startswith(("linux-binary-", "linux-modules-", "linux-base-")):
                roots.append(aptsuites.unpacked(suite, dep, a.debian))
        return roots

    def kernel(self) -> Path:
        a = get_arch(self.arch)
        roots = self.kernel_roots()
        kernels = sorted(k for r in roots for k in (*r.glob("boot/vmlinu[xz]-*"),
                                                    *r.glob("usr/lib/modules/*/vmlinu[xz]")))
        if not kernels:
            raise LaneGap(f"no vmlinuz in {a.kernel_package} ({', '.join(map(str, roots))})")
        return kernels[-1]

    def kernel_release(self) -> str:
        k = self.kernel()
        return k.name.split("-", 1)[1] if "-" in k.name else k.parent.name

    def stub(self) -> Path:
        a = get_arch(self.arch)
        root = aptsuites.unpacked(aptsuites.get_suite(self.stub_suite), "systemd-boot-efi",
                                  a.debian)
        stub = root / "usr/lib/systemd/boot/efi" / a.stub_file
        if not stub.is_file():
            raise LaneGap(f"systemd-boot-efi ({self.stub_suite}, {a.debian}) has no "
                          f"{a.stub_file}")
        return stub

    def python_runtime(self) -> pyruntime.Runtime:
        """The Python the lane's initramfs carries: the host apt's 3.11 on a bookworm lane,
        else the lane suite's version, fetched from that suite, compiled under qemu-user."""
        if self.kernel_suite is None:
            if self.python != pyruntime.PY_VERSION:
                raise LaneGap(f"{self.arch}: the host apt (bookworm) has python"
                              f"{pyruntime.PY_VERSION}, the lane table says {self.python}")
            return pyruntime.DEFAULT_RUNTIME
        suite = aptsuites.get_suite(self.kernel_suite)

        def fetch(package: str, debian_arch: str) -> Path:
            return aptsuites.unpacked(suite, package, debian_arch)

        return pyruntime.Runtime(version=self.python, fetch=fetch, source=suite.codename,
                                 soname_packages=pyruntime.T64_SONAME_PACKAGES,
                                 emulator=qemu_user(self.arch))

    def bootstrap_initramfs(self) -> Path:
        """cloudboot-init's initramfs for this lane (built once per set of inputs, cached)."""
        from cloudboot.initramfs import builder

        runtime = self.python_runtime()
        if runtime == pyruntime.DEFAULT_RUNTIME:
            return builder.default_initramfs(get_arch(self.arch))
        return builder.default_initramfs(get_arch(self.arch), runtime=runtime,
                                         kernel_roots=self.kernel_roots())

    def busybox(self) -> Path:
        a = get_arch(self.arch)
        suite = self.kernel_suite or self.stub_suite
        root = aptsuites.unpacked(aptsuites.get_suite(suite), "busybox-static", a.debian)
        for rel in ("usr/bin/busybox", "bin/busybox"):
            if (root / rel).is_file():
                return root / rel
        raise LaneGap(f"busybox-static ({suite}, {a.debian}) has no busybox binary ({root})")


LANES: dict[str, Lane] = {
    lane.arch: lane
    for lane in (
        Lane("armv7", None, "trixie", "3.11"),
        Lane("riscv64", "trixie", "trixie", "3.13"),
        Lane("loongarch64", "forky", "forky", "3.14"),
    )
}


def qemu_user(arch: str) -> Path:
    """bookworm-backports' qemu-user (QEMU 10, static-pie) binary for `arch`, fetched once.

    Not the host's qemu-user-static 7.2: that one dies with SIGILL on forky's loong64
    python3.14 (measured); QEMU 10 runs both trixie's riscv64 and forky's loong64 userspace."""
    name = QEMU_USER_NAMES.get(get_arch(arch).name)
    if name is None:
        raise LaneGap(f"no qemu-user binary name known for {arch}")
    suite = aptsuites.get_suite(QEMU_USER_SUITE)
    root = aptsuites.unpacked(suite, "qemu-user", suite.arches[0])
    binary = root / "usr/bin" / f"qemu-{name}"
    if not binary.is_file():
        raise LaneGap(f"qemu-user ({QEMU_USER_SUITE}) has no usr/bin/qemu-{name} ({root})")
    return binary


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
