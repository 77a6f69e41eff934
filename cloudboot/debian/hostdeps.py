"""Install the host packages cloudboot and its lab need (Debian/Ubuntu), and say what is missing.

`python -m cloudboot.debian.hostdeps ensure tests|matrix|build` installs what the named job needs
with apt-get (as root, or through `sudo -n`), then checks that every required command is present. It
prints one line per package it could not install, with apt's reason, and exits non-zero only when
something the job cannot run without is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass


@dataclass(frozen=True)
class Need:
    package: str
    command: str | None  # a command (or file) proving it is installed
    required: bool = True
    why: str = ""


BUILD = [
    Need("dpkg-dev", "dpkg-deb", why="unpack Debian packages"),
    Need("busybox-static", "/bin/busybox", why="test initramfs"),
    Need("cpio", "cpio"),
    Need("xorriso", "xorriso", why="check hybrid ISOs; write OpenStack config drives"),
    Need("gdisk", "sgdisk", why="check GPTs"),
    Need("mtools", "mcopy"),
    Need("dosfstools", "fsck.vfat"),
    Need("e2fsprogs", "mkfs.ext4"),
    Need("xfsprogs", "mkfs.xfs"),
    Need("btrfs-progs", "mkfs.btrfs"),
    Need("zstd", "zstd"),
    Need("kmod", "modinfo"),
    Need("fdisk", "sfdisk"),
    Need("util-linux", "blkid"),
    Need("device-tree-compiler", "dtc", why="check arm64 kexec DTBs"),
    Need("git", "git", why="the commit in each matrix run's provenance and id"),
]
# What each QEMU lane needs from the host's apt. One table for every job: the unit tests
# exercise every lane (golden command lines, kexec planners on QEMU's own device trees, the
# foreign runtimes' closures), so `tests` installs exactly what `matrix` does; a test never
# skips for a package this table could have installed. riscv64 and loongarch64 need nothing
# here: their QEMU 10, firmware and packages come through private apt roots into the cache
# (lab/qemu_private.py, cloudboot/debian/aptsuites.py) when a test or cell first asks.
LANE_PACKAGES: dict[str, list[Need]] = {
    "x86_64": [
        Need("qemu-system-x86", "qemu-system-x86_64"),
        Need("qemu-utils", "qemu-img"),
        Need("ovmf", "/usr/share/OVMF/OVMF_CODE_4M.fd"),
    ],
    "aarch64": [
        Need("qemu-system-arm", "qemu-system-aarch64", why="aarch64/armv7 lanes"),
        Need("qemu-efi-aarch64", "/usr/share/AAVMF/AAVMF_CODE.fd", why="aarch64 lane firmware"),
        # Foreign-arch target images: the debootstrap second stage runs under qemu-user,
        # which binfmt-support registers with binfmt_misc (lab/images/foreign.py).
        Need("qemu-user-static", "/usr/libexec/qemu-binfmt/aarch64-binfmt-P",
             why="foreign-arch target images; the armv7 loader's division runtime"),
        Need("binfmt-support", "update-binfmts", why="foreign-arch target images"),
    ],
    "armv7": [
        Need("qemu-system-arm", "qemu-system-arm", why="armv7 lane"),
        Need("qemu-efi-arm", "/usr/share/AAVMF/AAVMF32_CODE.fd", why="armv7 lane firmware"),
    ],
    "riscv64": [],
    "loongarch64": [],
}
# dpkg architectures a lane adds so `apt-get download pkg:arch` finds its packages: the arm64
# kernel, systemd-stub and Python runtime of the aarch64 bootstrap; bookworm's armmp kernel and
# Python 3.11 for armv7.
FOREIGN_ARCHES: dict[str, str] = {"aarch64": "arm64", "armv7": "armhf"}
IMAGES = [
    Need("debootstrap", "debootstrap", why="build the lab's Debian target images"),
    Need("debian-archive-keyring", "/usr/share/keyrings/debian-archive-keyring.gpg"),
]
SERVICES = [
    Need("dnsmasq-base", "dnsmasq", why="DHCP tests in network namespaces"),
    Need("docker-registry", "docker-registry",
         why="OCI registry for push/pull tests and network-plan cells"),
    Need("iproute2", "ip", why="network namespaces for the DHCP tests"),
    Need("socat", "socat",
         why="per-connection guestfwd from guests to lab services (registry, metadata)"),
]
# The libvirt lane: the daemon and QEMU driver (the lab starts a private session libvirtd),
# virsh/virt-xml-validate (+ xmllint) for the golden domain XML, and what `pip install
# libvirt-python` builds against.
LIBVIRT = [
    Need("libvirt-daemon", "libvirtd", why="libvirt lane"),
    # Its driver .so sits under a multiarch path; the copyright file is arch-independent.
    Need("libvirt-daemon-driver-qemu", "/usr/share/doc/libvirt-daemon-driver-qemu/copyright",
         why="libvirt lane"),
    Need("libvirt-clients", "virt-xml-validate", why="libvirt lane"),
    Need("libxml2-utils", "xmllint", why="validate golden domain XML"),
    Need("libvirt-dev", "/usr/include/libvirt/libvirt.h", why="build libvirt-python"),
    Need("pkg-config", "pkg-config", why="build libvirt-python"),
    Need("gcc", "gcc", why="build libvirt-python"),
    # The headers of the Python that runs this (a venv's base interpreter): Debian's python3
    # needs python3-dev, a pyenv or python.org build carries its own.
    Need("python3-dev", os.path.join(sysconfig.get_paths()["include"], "Python.h"),
         why="build libvirt-python"),
]

# The native UEFI loaders of Paths B and D (loader/, cloudboot/loader/compile.py).
LOADER = [
    Need("clang", "clang", why="compile the Path B/D UEFI loaders"),
    Need("lld", "lld-link", why="link the Path B/D UEFI loaders"),
]

# The run's HTML page (lab/report/html.py) is tested in headless Chromium through selenium
# and ChromeDriver (tests/unit/test_report_html.py); the browser is Debian's, never a download.
REPORT = [
    Need("chromium", "chromium", why="render and click the matrix page (matrix.html) in tests"),
    Need("chromium-driver", "chromedriver", why="drive Chromium from selenium in tests"),
]


def lane_needs(arches: tuple[str, ...] | None = None) -> list[Need]:
    """The host packages of the named lanes (all lanes by default), each package once."""
    seen: dict[str, Need] = {}
    for arch in arches or tuple(LANE_PACKAGES):
        for need in LANE_PACKAGES[arch]:
            seen.setdefault(need.package + "\0" + str(need.command), need)
    return list(seen.values())


EVERY_LANE = BUILD + lane_needs() + IMAGES + SERVICES + LIBVIRT + LOADER + REPORT
JOBS = {
    "build": BUILD,
    "tests": EVERY_LANE,
    "matrix": EVERY_LANE,
}
# Which dpkg architectures a job adds: those of the lanes it installs.
JOB_FOREIGN_ARCHES = {job: tuple(FOREIGN_ARCHES.values()) for job in ("tests", "matrix")}


def present(need: Need) -> bool:
    if need.command is None:
        return True
    if need.command.startswith("/"):
        return os.path.exists(need.command)
    return shutil.which(need.command) is not None or any(
        os.path.exists(os.path.join(d, need.command)) for d in ("/usr/sbin", "/sbin"))


def _apt(args: list[str]) -> subprocess.CompletedProcess[str]:
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            return subprocess.CompletedProcess(args, 1, "", "not root and no sudo")
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(prefix + ["apt-get", *args], capture_output=True, text=True, env=env)


def _sudo() -> list[str] | None:
    if os.geteuid() == 0:
        return []
    return ["sudo", "-n"] if shutil.which("sudo") else None


def add_foreign_arches(job: str) -> int:
    """`dpkg --add-architecture` for what `job` needs, then one `apt-get update` if any was
    added. Returns how many could not be added (each named on stderr)."""
    wanted = JOB_FOREIGN_ARCHES.get(job, ())
    if not wanted or shutil.which("dpkg") is None:
        return 0
    out = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True,
                         text=True)
    have = set(out.stdout.split())
    prefix = _sudo()
    failed = added = 0
    for arch in (a for a in wanted if a not in have):
        r = subprocess.run([*(prefix or []), "dpkg", "--add-architecture", arch],
                           capture_output=True, text=True) if prefix is not None else None
        if r is None or r.returncode != 0:
            why = r.stderr.strip() if r is not None else "not root and no sudo"
            print(f"hostdeps: warning: cannot add dpkg architecture {arch} ({why}); "
                  f"its lanes cannot fetch {arch} packages", file=sys.stderr)
            failed += 1
        else:
            added += 1
    if added:
        _apt(["update", "-q"])
    return failed


def ensure(job: str, *, quiet: bool = False) -> int:
    add_foreign_arches(job)
    needs = JOBS[job]
    missing = [n for n in needs if not present(n)]
    if not missing:
        if not quiet:
            print(f"hostdeps: everything {job} needs is installed")
        return 0
    if shutil.which("apt-get") is None:
        for n in missing:
            print(f"hostdeps: cannot install {n.package}: this host has no apt-get",
                  file=sys.stderr)
        return 1 if any(n.required for n in missing) else 0
    packages = list(dict.fromkeys(n.package for n in missing))
    print(f"hostdeps: installing {' '.join(packages)}")
    result = _apt(["install", "-y", "-q", "--no-install-recommends", *packages])
    if result.returncode != 0:
        _apt(["update", "-q"])
        result = _apt(["install", "-y", "-q", "--no-install-recommends", *packages])
    if result.returncode != 0:
        # Install one by one so that one unavailable package does not block the rest.
        for p in packages:
            _apt(["install", "-y", "-q", "--no-install-recommends", p])
    still = [n for n in missing if not present(n)]
    for n in still:
        level = "error" if n.required else "warning"
        why = f" ({n.why})" if n.why else ""
        reason = (result.stderr.strip().splitlines() or ["unknown"])[-1]
        print(f"hostdeps: {level}: {n.package}{why} could not be installed: {reason}",
              file=sys.stderr)
    return 1 if any(n.required for n in still) else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cloudboot.debian.hostdeps")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("ensure")
    e.add_argument("job", choices=sorted(JOBS))
    e.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    return ensure(args.job, quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
