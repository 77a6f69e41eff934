"""CPU architectures cloudboot knows, with the names each ecosystem gives them.

Standard library only: the guest init imports this too.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    name: str  # our canonical name (uname -m style)
    debian: str  # Debian architecture
    go: str  # OCI platform.architecture (Go's GOARCH)
    efi_suffix: str  # BOOT<suffix>.EFI, linux<stub>.efi.stub
    stub_suffix: str
    pe_machine: int  # IMAGE_FILE_MACHINE_* of an EFI binary for this arch
    kernel_package: str  # Debian metapackage of the kernel we boot with
    kexec_file_load_nr: int | None  # syscall number; None where the kernel has none
    variant: str | None = None  # OCI platform.variant
    # kexec_load(2): asm-generic/unistd.h 104 (arm64, riscv64, loongarch64), x86_64 246,
    # ARM EABI 347 (arch/arm/tools/syscall.tbl).
    kexec_load_nr: int | None = None

    def __str__(self) -> str:  # in messages, ids and paths an arch is its name
        return self.name

    @property
    def efi_boot_file(self) -> str:
        return f"BOOT{self.efi_suffix}.EFI"

    @property
    def stub_file(self) -> str:
        return f"linux{self.stub_suffix}.efi.stub"


ARCHES: dict[str, Arch] = {
    a.name: a
    for a in (
        Arch("x86_64", "amd64", "amd64", "X64", "x64", 0x8664, "linux-image-cloud-amd64", 320,
             kexec_load_nr=246),
        Arch("aarch64", "arm64", "arm64", "AA64", "aa64", 0xAA64, "linux-image-cloud-arm64", 294,
             kexec_load_nr=104),
        Arch("riscv64", "riscv64", "riscv64", "RISCV64", "riscv64", 0x5064,
             "linux-image-riscv64", 294, kexec_load_nr=104),
        Arch("loongarch64", "loong64", "loong64", "LOONGARCH64", "loongarch64", 0x6264,
             "linux-image-loong64", 294, kexec_load_nr=104),
        # 32-bit ARM has no kexec_file_load (the syscall number exists, returns ENOSYS).
        Arch("armv7", "armhf", "arm", "ARM", "arm", 0x01C2, "linux-image-armmp", None, "v7",
             kexec_load_nr=347),
    )
}

ALIASES = {
    "amd64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "aa64": "aarch64",
    "arm": "armv7",
    "armhf": "armv7",
    "armv7l": "armv7",
    "loong64": "loongarch64",
}


class UnknownArch(ValueError):
    pass


def get_arch(name: str) -> Arch:
    """Look an architecture up by our name, a Debian name or a Go name."""
    key = ALIASES.get(name.lower(), name.lower())
    try:
        return ARCHES[key]
    except KeyError:
        known = ", ".join(sorted(ARCHES) + sorted(ALIASES))
        raise UnknownArch(f"unknown architecture {name!r} (known: {known})") from None


def as_arch(arch: Arch | str) -> Arch:
    """`arch` itself, or the Arch a name (ours, Debian's or Go's) stands for: for functions
    that take either at a boundary (command lines, tests) and pass the Arch on."""
    return arch if isinstance(arch, Arch) else get_arch(arch)


def host_arch() -> Arch:
    return get_arch(platform.machine())
