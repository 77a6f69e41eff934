"""Tool and firmware versions for the provenance of lab results."""

from __future__ import annotations

import re
import shutil
import subprocess

from lab import qemu_private
from lab.firmware import package_version
from lab.profiles import PROFILES

# Debian packages that ship the firmware the profiles use.
FIRMWARE_PACKAGES = (
    "ovmf", "qemu-efi-aarch64", "qemu-efi-arm", "qemu-efi-riscv64", "qemu-efi-loongarch64",
    "opensbi", "u-boot-qemu",
)


def _run(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def qemu_version(binary: str = "qemu-system-x86_64") -> str | None:
    """"7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)" from `binary --version`; None if absent."""
    out = _run([binary, "--version"])
    if not out:
        return None
    m = re.search(r"version (\S+(?: \([^)]*\))?)", out.splitlines()[0])
    return m.group(1) if m else out.splitlines()[0]


def qemu_versions() -> dict[str, str]:
    """Version of each QEMU system binary the profiles use that is installed."""
    out: dict[str, str] = {}
    for binary in sorted({p.qemu_binary for p in PROFILES.values()}):
        version = qemu_version(binary)
        if version:
            out[binary] = version
    # riscv64/loongarch64 run on a private QEMU 10 from bookworm-backports (lab/qemu_private.py)
    out.update(qemu_private.installed_versions())
    return out


def private_firmware_versions() -> dict[str, str]:
    """Firmware packages the private-QEMU lanes unpacked from newer suites -> version."""
    out: dict[str, str] = {}
    for fw_arch, fw in qemu_private.FIRMWARE.items():
        found = qemu_private.installed_firmware(fw_arch)
        if found is not None:
            out[f"{fw.package} ({fw.suite})"] = qemu_private.package_root_version(found[0])
    return out


def firmware_versions() -> dict[str, str]:
    """Installed firmware packages -> Debian version."""
    out: dict[str, str] = {}
    for pkg in FIRMWARE_PACKAGES:
        version = package_version(pkg)
        if version:
            out[pkg] = version
    return out


def libvirt_version() -> str | None:
    """libvirt's version (daemon, else virsh, else the Python binding); None if absent."""
    for cmd in (["libvirtd", "--version"], ["virsh", "--version"]):
        out = _run(cmd)
        if out:
            m = re.search(r"(\d+\.\d+\.\d+)", out)
            return m.group(1) if m else out
    try:
        import libvirt  # type: ignore[import-not-found]
    except ImportError:
        return None
    v = libvirt.getVersion()
    return f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"


def collect() -> dict[str, object]:
    """Everything results.json records about the tools."""
    return {"qemu": qemu_versions(), "firmware": firmware_versions(),
            "firmware_private": private_firmware_versions(), "libvirt": libvirt_version()}
