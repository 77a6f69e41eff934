"""`cloudboot build`: kernel + initramfs + stub → UKI → hybrid boot.iso."""

from __future__ import annotations

import io
import shlex
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from cloudboot.arch import Arch
from cloudboot.bootstrap import archsources
from cloudboot.fsutil import atomic_output
from cloudboot.media import cpio, gpt, iso
from cloudboot.media.fat import FatBuilder, geometry
from cloudboot.media.timestamps import build_time
from cloudboot.pe import uki

EMBEDDED_PLAN_PATH = "etc/cloud-boot/plan.hcl"
# The systemd-stub the bootstrap UKI is built with, also handed to the guest (ukistage.py).
STUB_PATH = "usr/lib/cloudboot/stub.efi"
# Consoles the bootstrap kernel logs to when the caller names none; init writes its events
# to every console it finds regardless.
# No nr_cpus=1 on arm64 (the earlier system forced it after machine_kexec's BUG_ON under
# Apple's hypervisor, where secondary CPUs could not be taken offline). Measured on QEMU virt
# + AAVMF with -smp 2 (TCG, cortex-a57, Debian 6.1 bootstrap → 6.1 target via kexec_load):
# "psci: CPU1 killed (polled 0 ms)", then the target kernel "Brought up 1 node, 2 CPUs";
# tests/e2e/test_path_a_arm64.py::test_kexec_with_two_cpus_online keeps proving it. Where
# PSCI CPU_OFF is missing, add nr_cpus=1 with --cmdline; VZ takes Path C anyway.
DEFAULT_CONSOLES = {
    "x86_64": "console=tty0 console=ttyS0,115200",
    "aarch64": "console=tty0 console=ttyAMA0,115200",
    "riscv64": "console=tty0 console=ttyS0,115200",
    "loongarch64": "console=tty0 console=ttyS0,115200",
    "armv7": "console=tty0 console=ttyAMA0,115200",
}


class BuildError(RuntimeError):
    pass


@dataclass
class BuildRequest:
    arch: Arch
    output: Path | None = Path("boot.iso")
    kernel: Path | None = None
    initramfs: Path | None = None
    stub: Path | None = None
    cmdline: str | None = None
    plan: str | None = None
    plan_file: Path | None = None
    target: str | None = None
    exit: str | None = None
    uki_path: Path | None = None


@dataclass
class BuildResult:
    iso: Path | None
    uki: Path | None
    uki_size: int
    iso_size: int
    cmdline: str
    notes: list[str] = field(default_factory=list)


def compose_cmdline(req: BuildRequest) -> str:
    """The UKI's .cmdline: the caller's text plus the cloudboot.* keys the flags stand for."""
    parts: list[str] = []
    base = req.cmdline if req.cmdline is not None else ""
    if "console=" not in base:
        parts.append(DEFAULT_CONSOLES[req.arch.name])
    if base:
        parts.append(base)
    if req.plan:
        parts.append(f"cloudboot.plan={_quote(req.plan)}")
    if req.target:
        parts.append(f"cloudboot.target={_quote(req.target)}")
    if req.exit:
        if req.exit not in ("kexec", "reboot"):
            raise BuildError(f"--exit {req.exit!r}: expected kexec or reboot")
        parts.append(f"cloudboot.exit={req.exit}")
    return " ".join(parts)


def _quote(value: str) -> str:
    if any(c.isspace() for c in value):
        if '"' in value:
            raise BuildError(f"value {value!r} holds both spaces and a double quote")
        return f'"{value}"'
    return value


def default_kernel(arch: Arch) -> Path:
    """The bootstrap kernel of `arch`: the host apt's, or its suite's
    (cloudboot/bootstrap/archsources.py for riscv64, loongarch64)."""
    try:
        return archsources.for_arch(arch).kernel()
    except archsources.ArchSourceError as e:
        raise BuildError(str(e)) from None


def default_stub(arch: Arch) -> Path:
    """The systemd-stub of `arch`: the host apt's, or its suite's (armv7, riscv64,
    loongarch64)."""
    try:
        return archsources.for_arch(arch).stub()
    except archsources.ArchSourceError as e:
        raise BuildError(str(e)) from None


def default_initramfs(arch: Arch, plan_file: Path | None) -> Path:
    """cloudboot's bootstrap initramfs for `arch`, the same cached file the lab's lane uses:
    the suite's Python and the suite kernel's modules where archsources says so."""
    sources = archsources.for_arch(arch)
    try:
        return sources.bootstrap_initramfs()
    except archsources.ArchSourceError as e:
        raise BuildError(str(e)) from None
    except RuntimeError as e:
        # the builder's own errors, all RuntimeErrors: a package apt cannot give, a missing
        # kernel module, a closure over budget, a foreign .pyc compile under qemu-user, ...
        raise BuildError(f"{arch.name}: building the bootstrap initramfs ({sources.describe()}) "
                         f"failed: {e}; pass --initramfs PATH to use another one") from None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BuildError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise BuildError(f"{what} {path}: is a directory") from None
    except PermissionError:
        raise BuildError(f"{what} {path}: permission denied") from None


def plan_overlay(plan_file: Path, arch: Arch) -> bytes:
    """A small uncompressed cpio appended to the initramfs carrying the embedded plan.

    The plan is checked first (a broken plan would only fail in the guest). The kernel unpacks
    concatenated archives in order, so no rebuild of the base is needed.
    """
    from cloudboot.plan import PlanError, load_plan

    data = _read(plan_file, "--plan-file")
    try:
        load_plan(plan_file, text=data.decode("utf-8"), arch=arch.name)
    except UnicodeDecodeError:
        raise BuildError(f"--plan-file {plan_file}: not UTF-8 text") from None
    except PlanError as e:
        raise BuildError(f"--plan-file: {e}") from None
    buf = io.BytesIO()
    cpio.write(buf, cpio.with_parents([cpio.Entry.file(EMBEDDED_PLAN_PATH, data)]))
    return buf.getvalue()


def stub_overlay(stub: bytes) -> bytes:
    """A small uncompressed cpio appended to the initramfs carrying the systemd-stub.

    Path C's "uki" form (cloudboot/init/pathc/ukistage.py) assembles a UKI in the guest on this
    stub. Why here and not elsewhere: the target image rarely ships systemd-boot-efi; the
    guest cannot always read back its own boot medium (netboot, VZ); and this is exactly the
    stub the bootstrap UKI was built with, one the firmware is known to start. Always added
    (~80-140 KB), since Path C is also reached at run time (a plan's or metadata's
    cloudboot.exit=reboot, the kexec fallback on VZ). Uncompressed: the stub barely shrinks,
    and the kernel unpacks concatenated archives in order. Entries carry mtime 0 and fixed
    inode numbers, so `cloudboot build` stays reproducible.
    """
    buf = io.BytesIO()
    cpio.write(buf, cpio.with_parents([cpio.Entry.file(STUB_PATH, stub)]))
    return buf.getvalue()


def _append_cpio(initrd: bytes, overlay: bytes) -> bytes:
    return initrd + b"\0" * (-len(initrd) % 4) + overlay


def kernel_release(kernel_path: Path, kernel: bytes) -> str | None:
    """uname -r from a Debian-style path (vmlinuz-<release>, modules/<release>/vmlinuz)."""
    name = kernel_path.name
    for prefix in ("vmlinuz-", "Image-", "vmlinux-"):
        if name.startswith(prefix):
            return name[len(prefix):]
    # forky's split kernel packages: usr/lib/modules/<release>/vmlinuz
    if name in ("vmlinuz", "vmlinux", "Image") and kernel_path.parent.parent.name == "modules":
        return kernel_path.parent.name
    return None


def esp_image(arch: Arch, uki_bytes: bytes, timestamp) -> bytes:  # type: ignore[no-untyped-def]
    """A FAT image just large enough for the UKI (FAT16; FAT32 only when too big for 16)."""
    fat = FatBuilder()
    fat.add_file(f"EFI/BOOT/{arch.efi_boot_file}", uki_bytes)
    mib = 1024 * 1024
    size = max(4 * mib, -(-(len(uki_bytes) * 103 // 100 + mib) // mib) * mib)
    bits = 16
    try:
        geometry(size, 16)
    except ValueError:
        bits = 32
        size = max(size, 40 * mib)
    out = io.BytesIO()
    out.truncate(size)
    fat.write(out, 0, size, fat_bits=bits, label="CLOUDBOOT",
              volume_id=zlib.crc32(uki_bytes[:65536]), timestamp=timestamp)
    data = out.getvalue()
    return data.ljust(size, b"\0")


def build(req: BuildRequest) -> BuildResult:
    arch = req.arch
    kernel_path = req.kernel or default_kernel(arch)
    kernel = _read(kernel_path, "--kernel")
    stub_path = req.stub or default_stub(arch)
    stub = _read(stub_path, "--stub")
    initrd_path = req.initramfs or default_initramfs(arch, req.plan_file)
    initrd = _read(initrd_path, "--initramfs")
    if req.plan_file:
        initrd = _append_cpio(initrd, plan_overlay(req.plan_file, arch))
    initrd = _append_cpio(initrd, stub_overlay(stub))
    cmdline = compose_cmdline(req)
    from cloudboot import __version__

    try:
        image = uki.assemble(
            uki.UKIParts(stub=stub, linux=kernel, initrd=initrd, cmdline=cmdline,
                         osrel=uki.osrel_text(version=__version__),
                         uname=kernel_release(kernel_path, kernel)),
            arch,
        )
    except uki.UKIError as e:
        raise BuildError(f"{kernel_path if 'kernel' in str(e) else stub_path}: {e}") from None
    ts = build_time()
    iso_size = 0
    if req.uki_path:
        with atomic_output(req.uki_path) as tmp:
            tmp.write_bytes(image)
    if req.output:
        esp = esp_image(arch, image, ts)
        digest = f"{zlib.crc32(image):08x}"
        with atomic_output(req.output) as tmp, open(tmp, "r+b") as out:
            iso_size = iso.write_hybrid(
                out, io.BytesIO(esp), len(esp), volume_id="CLOUDBOOT", timestamp=ts,
                disk_guid=gpt.stable_guid(f"iso-disk:{digest}"),
                esp_guid=gpt.stable_guid(f"iso-esp:{digest}"),
            )
    return BuildResult(req.output, req.uki_path, len(image), iso_size, cmdline)


def describe_cmdline(cmdline: str) -> list[str]:
    return shlex.split(cmdline)
