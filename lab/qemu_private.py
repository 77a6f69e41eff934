"""A private QEMU 10 (bookworm-backports) for the arches the system QEMU 7.2 cannot run.

riscv64 EDK2 (separate CODE/VARS pflash banks) and loongarch64 EDK2 need QEMU >= 8.1; bookworm
ships 7.2 and four engineers boot x86_64 guests on it, so it is never upgraded. Instead the
backports .debs are fetched with apt through a private apt root (cloudboot/debian/aptsuites.py),
unpacked into the cloudboot cache and assembled into one small tree:

    <cache>/qemu-private/<version>/usr/bin/qemu-system-{riscv64,loongarch64}
    <cache>/qemu-private/<version>/usr/share/qemu/      (qemu-system-data + OpenSBI)

QEMU finds its data relative to its own executable, and the lab passes `-L` to make it explicit.
Its shared libraries are checked with ldd; any the host lacks would have to come from backports
too (none do on bookworm: QEMU 10's library sonames are all in bookworm).

Firmware for these lanes comes from newer suites (arch `all`): trixie's qemu-efi-riscv64 and
forky's qemu-efi-loongarch64, unpacked beside it (lab/firmware.py finds them).

The table below is the whole policy: the arches not in it use the system QEMU.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cloudboot.debian import aptsuites
from cloudboot.fsutil import cache_root

QEMU_SUITE = "bookworm-backports"
# Debian package holding each binary; the arches whose profiles run on the private QEMU.
PRIVATE_BINARIES: dict[str, tuple[str, str]] = {
    "riscv64": ("qemu-system-riscv", "qemu-system-riscv64"),
    "loongarch64": ("qemu-system-misc", "qemu-system-loongarch64"),
}
DATA_PACKAGES = ("qemu-system-data", "opensbi")
# OpenSBI as QEMU's riscv virt machine looks it up for `-bios default`.
OPENSBI = ("usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin",
           "opensbi-riscv64-generic-fw_dynamic.bin")


@dataclass(frozen=True)
class PrivateFirmware:
    suite: str
    package: str
    code: str  # path inside the package
    vars: str


# fw_arch -> where its UEFI firmware comes from.
FIRMWARE: dict[str, PrivateFirmware] = {
    "riscv64": PrivateFirmware("trixie", "qemu-efi-riscv64",
                               "usr/share/qemu-efi-riscv64/RISCV_VIRT_CODE.fd",
                               "usr/share/qemu-efi-riscv64/RISCV_VIRT_VARS.fd"),
    "loongarch64": PrivateFirmware("forky", "qemu-efi-loongarch64",
                                   "usr/share/qemu-efi-loongarch64/QEMU_EFI.fd",
                                   "usr/share/qemu-efi-loongarch64/QEMU_VARS.fd"),
}


class PrivateQemuError(RuntimeError):
    pass


@dataclass(frozen=True)
class Installed:
    arch: str
    binary: Path
    data_dir: Path
    version: str  # "10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)"
    packages: dict[str, str]  # Debian package -> version


def needs_private(arch: str) -> bool:
    return arch in PRIVATE_BINARIES


def base_dir() -> Path:
    return cache_root() / "qemu-private"


def _deb_version(deb_name: str) -> str:
    # name_version_arch.deb with ':' escaped as %3a
    return deb_name.split("_")[1].replace("%3a", ":")


def missing_libraries(binary: Path) -> list[str]:
    """Sonames `binary` needs that the host's dynamic loader cannot find (from ldd)."""
    proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False,
                          timeout=60)
    if proc.returncode != 0:
        raise PrivateQemuError(f"ldd {binary} failed: {proc.stderr.strip()[-300:]}")
    return re.findall(r"^\s*(\S+) => not found", proc.stdout, re.M)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _version_of(binary: Path) -> str:
    proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                          check=False, timeout=60)
    first = proc.stdout.splitlines()[0] if proc.stdout else ""
    m = re.search(r"version (\S+(?: \([^)]*\))?)", first)
    if proc.returncode != 0 or not m:
        raise PrivateQemuError(f"{binary} --version failed ({proc.returncode}): "
                               f"{(proc.stderr or proc.stdout).strip()[-300:]}")
    return m.group(1)


def ensure(arch: str) -> Installed:
    """Fetch, unpack and assemble the private QEMU for `arch`; cheap once it is in place."""
    if arch not in PRIVATE_BINARIES:
        raise PrivateQemuError(f"{arch} runs on the system QEMU; private QEMU arches: "
                               f"{', '.join(sorted(PRIVATE_BINARIES))}")
    package, name = PRIVATE_BINARIES[arch]
    suite = aptsuites.get_suite(QEMU_SUITE)
    try:
        bin_root = aptsuites.unpacked(suite, package, "amd64")
        data_roots = {p: aptsuites.unpacked(suite, p, "all") for p in DATA_PACKAGES}
    except aptsuites.SuiteError as e:
        raise PrivateQemuError(f"private QEMU for {arch}: {e}") from None
    version = _deb_version(bin_root.name)
    tree = base_dir() / version.replace(":", "_")
    binary = tree / "usr/bin" / name
    data_dir = tree / "usr/share/qemu"
    if not binary.is_file():
        _link_or_copy(bin_root / "usr/bin" / name, binary)
    if not (data_dir / ".complete").is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        src = data_roots["qemu-system-data"] / "usr/share/qemu"
        for item in src.iterdir():
            dst = data_dir / item.name
            if not dst.exists() and not dst.is_symlink():
                dst.symlink_to(item)
        sbi = data_dir / OPENSBI[1]
        if not sbi.exists():
            sbi.symlink_to(data_roots["opensbi"] / OPENSBI[0])
        (data_dir / ".complete").write_text(version + "\n")
    missing = missing_libraries(binary)
    if missing:
        raise PrivateQemuError(
            f"{binary} needs {', '.join(missing)}, which the host lacks: install them from "
            f"{QEMU_SUITE} (apt-get -t {QEMU_SUITE} install <package>)")
    packages = {p: _deb_version(r.name) for p, r in
                [(package, bin_root), *data_roots.items()]}
    return Installed(arch, binary, data_dir, _version_of(binary), packages)


def ensure_firmware(fw_arch: str) -> tuple[Path, Path, str]:
    """(CODE, VARS template, package version) of the private firmware for `fw_arch`."""
    try:
        fw = FIRMWARE[fw_arch]
    except KeyError:
        raise PrivateQemuError(f"no private firmware for {fw_arch} (known: "
                               f"{', '.join(sorted(FIRMWARE))})") from None
    try:
        root = aptsuites.unpacked(aptsuites.get_suite(fw.suite), fw.package, "all")
    except aptsuites.SuiteError as e:
        raise PrivateQemuError(f"{fw_arch} firmware: {e}") from None
    return root / fw.code, root / fw.vars, _deb_version(root.name)


def installed_firmware(fw_arch: str) -> tuple[Path, Path] | None:
    """CODE and VARS of the private firmware if it is already unpacked (no network)."""
    fw = FIRMWARE.get(fw_arch)
    if fw is None:
        return None
    parent = cache_root() / "unpacked" / fw.suite / "all"
    for root in sorted(parent.glob(f"{fw.package}_*_all"), reverse=True):
        if (root / ".complete").is_file():
            return root / fw.code, root / fw.vars
    return None


def runnable(profile):  # type: ignore[no-untyped-def]
    """`profile` (lab.profiles.Profile) as the lab runs it: the private QEMU where needed.

    Profiles stay plain data naming `qemu-system-<arch>` (their golden command lines do not
    depend on the cache's location); this swaps in the private binary and its `-L` data dir.
    """
    if not needs_private(profile.arch.name):
        return profile
    inst = ensure(profile.arch.name)
    return dataclasses.replace(profile, qemu_binary=str(inst.binary),
                               extra_args=(*profile.extra_args, "-L", str(inst.data_dir)))


def installed_versions() -> dict[str, str]:
    """Binary name -> version of each private QEMU already assembled (no network)."""
    out: dict[str, str] = {}
    base = base_dir()
    if not base.is_dir():
        return out
    for tree in sorted(base.iterdir()):
        for _, name in PRIVATE_BINARIES.values():
            binary = tree / "usr/bin" / name
            if binary.is_file():
                try:
                    out[f"{name} (private)"] = _version_of(binary)
                except (PrivateQemuError, OSError, subprocess.TimeoutExpired):
                    continue
    return out


def package_root_version(path: Path) -> str:
    """The Debian version of the unpacked package `path` lies in (<cache>/unpacked/…/<deb>/…)."""
    for parent in (path, *path.parents):
        if (parent / ".complete").is_file():
            return _deb_version(parent.name)
    return "unknown"
