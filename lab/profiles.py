"""Architecture profiles: how QEMU runs a guest of each architecture the lab covers.

A profile is data: binary, machine, CPU model, memory, the console device the guest sees, the
firmware descriptor names to look for and extra arguments. The `vz` profile approximates Apple's
Virtualization.framework on QEMU aarch64 (see VZ_APPROXIMATIONS).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass, field

from cloudboot.arch import Arch, get_arch

# EDK2 on ARM/RISC-V/LoongArch waits 5 s in a hidden boot menu unless told not to (DESIGN §7).
_NO_MENU_WAIT = ("-boot", "menu=on,splash-time=0")


@dataclass(frozen=True)
class TcgCpuQuirk:
    """CPU features switched off under TCG on QEMU releases older than `fixed_in`."""

    features: str  # appended to the -cpu model, e.g. "cx16=off"
    fixed_in: tuple[int, int]  # first QEMU (major, minor) measured good
    reason: str


# QEMU 7.2's TCG (Debian 12's) breaks CMPXCHG16B: Debian 13's 6.12 kernel oopses within seconds
# in SLUB's `cmpxchg16b %gs:(%rsi)` fast path (double faults, EFLAGS garbage), with -cpu max and
# qemu64 alike. On 7.2.22 (2026-11-22) with cx16 on, 13 of 14 boots failed (matrix cells,
# plain `qemu -kernel` boots); with cx16=off, 15 of 15 reached userspace (3 plain boots, every
# Debian 13 cell of the qemu and libvirt lanes). QEMU 10.0.2 runs it with cx16 on. 8.x/9.x not
# measured, so the quirk stays on below 10.0. Debian 12's 6.1 kernel boots either way.
TCG_CPU_QUIRKS: dict[str, TcgCpuQuirk] = {
    "x86_64": TcgCpuQuirk("cx16=off", (10, 0),
                          "QEMU 7.2 TCG corrupts CMPXCHG16B (Debian 13 kernel oopses in SLUB)"),
}


@functools.cache
def installed_qemu_version(binary: str) -> tuple[int, int] | None:
    """(major, minor) of `binary --version`, or None when it does not run."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


@dataclass(frozen=True)
class Profile:
    name: str  # profile key: the arch name, or e.g. "vz"
    arch: Arch
    qemu_binary: str
    machine: str  # -machine value
    cpu_tcg: str  # -cpu under TCG
    cpu_kvm: str  # -cpu under KVM
    memory_mib: int
    console: str  # console device name inside the guest (console=…)
    fw_arch: str  # "architecture" in QEMU firmware descriptors
    fw_machine: str  # machine type stem matched against descriptor globs ("pc-q35", "virt")
    extra_args: tuple[str, ...] = ()
    # The guest console: "serial" (the machine's UART) or "virtconsole" (hvc0 on virtio-serial).
    console_transport: str = "serial"
    # Whether a NIC may be on the command line while the firmware runs.
    firmware_nic: bool = True
    # Kernel arguments the profile needs the lab to add to every guest command line.
    guest_cmdline: tuple[str, ...] = ()
    # Disk interfaces this hypervisor offers.
    disk_interfaces: tuple[str, ...] = ("virtio-blk", "virtio-scsi", "cdrom")
    notes: tuple[str, ...] = field(default=())

    @property
    def efi_boot_file(self) -> str:
        return self.arch.efi_boot_file

    def cpu(self, accel: str) -> str:
        # CLOUDBOOT_QEMU_CPU overrides the model, e.g. to reproduce a guest bug on another CPU.
        forced = os.environ.get("CLOUDBOOT_QEMU_CPU")
        if forced:
            return forced
        if accel == "kvm":
            return self.cpu_kvm
        quirk = TCG_CPU_QUIRKS.get(self.name)
        if quirk is not None:
            version = installed_qemu_version(self.qemu_binary)
            if version is not None and version < quirk.fixed_in:
                return f"{self.cpu_tcg},{quirk.features}"
        return self.cpu_tcg


VZ_APPROXIMATIONS = (
    "console only on hvc0 (virtio console); QEMU's virt UART still exists but is left unconnected",
    "virtio devices only: disks are virtio-blk; no SCSI, IDE or CD-ROM",
    "no network device while the firmware runs: a virtio-net NIC is hot-plugged into a spare "
    "PCIe root port once the kernel starts (VZ's firmware has no network protocols)",
    "kexec refused through sysctl.kernel.kexec_load_disabled=1 on the guest command line "
    "(VZ traps kexec_file_load; the errno differs)",
    "the firmware is AAVMF, not Apple's: its boot manager and variable store behave like EDK2",
)

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "x86_64", get_arch("x86_64"), "qemu-system-x86_64", "q35", "max", "host", 1024,
            "ttyS0", "x86_64", "pc-q35",
        ),
        # cortex-a57: `max` is about 5x slower under TCG (DESIGN §7).
        Profile(
            "aarch64", get_arch("aarch64"), "qemu-system-aarch64", "virt", "cortex-a57", "host",
            1024, "ttyAMA0", "aarch64", "virt", _NO_MENU_WAIT,
        ),
        Profile(
            "riscv64", get_arch("riscv64"), "qemu-system-riscv64", "virt", "rv64", "host", 1024,
            "ttyS0", "riscv64", "virt", _NO_MENU_WAIT,
            notes=("EDK2 needs QEMU >= 8.1 (separate pflash for code and vars)",),
        ),
        Profile(
            "loongarch64", get_arch("loongarch64"), "qemu-system-loongarch64", "virt", "la464",
            "la464", 1024, "ttyS0", "loongarch64", "virt", _NO_MENU_WAIT,
            notes=("EDK2 needs QEMU >= 8.1",),
        ),
        # highmem=off keeps every device below 4 GiB, which a 32-bit kernel without LPAE needs.
        Profile(
            "armv7", get_arch("armv7"), "qemu-system-arm", "virt,highmem=off", "cortex-a15",
            "host,aarch64=off", 1024, "ttyAMA0", "arm", "virt", _NO_MENU_WAIT,
        ),
        Profile(
            "vz", get_arch("aarch64"), "qemu-system-aarch64", "virt", "cortex-a57", "host", 1024,
            "hvc0", "aarch64", "virt", _NO_MENU_WAIT, console_transport="virtconsole",
            firmware_nic=False, guest_cmdline=("sysctl.kernel.kexec_load_disabled=1",),
            disk_interfaces=("virtio-blk",), notes=VZ_APPROXIMATIONS,
        ),
    )
}


class UnknownProfile(ValueError):
    pass


def get_profile(name: str | Arch) -> Profile:
    """A profile by name, or an arch's own; architecture aliases (amd64, arm64, armhf,
    loong64…) work too."""
    if isinstance(name, Arch):
        name = name.name
    if name in PROFILES:
        return PROFILES[name]
    try:
        arch = get_arch(name)
    except ValueError:
        known = ", ".join(sorted(PROFILES))
        raise UnknownProfile(f"unknown lab profile {name!r} (known: {known})") from None
    return PROFILES[arch.name]
