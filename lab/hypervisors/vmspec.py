"""What a lab VM is, as data, and the QEMU command line it becomes: disks, user networking,
firmware and the profile's machine (`VMSpec`, `build_command`, golden-tested without booting),
and the error every VM runner raises (`VMError`, carrying the argv and the console tail).
libvirt's domain XML (domainxml.py) and vfkit's argv (vfkit.py) are made from the same spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lab.firmware import Firmware
from lab.profiles import Profile

DiskInterface = Literal["virtio-blk", "virtio-scsi", "cdrom"]


class VMError(RuntimeError):
    """A VM failed to launch, died, or did not do what was awaited; carries argv and console."""

    def __init__(self, message: str, command: Sequence[str] = (), console_tail: str = "",
                 stderr: str = "") -> None:
        self.command = list(command)
        self.console_tail = console_tail
        self.stderr = stderr
        parts = [message]
        if self.command:
            parts.append("command: " + " ".join(self.command))
        if stderr.strip():
            parts.append("qemu stderr:\n" + stderr.strip())
        parts.append("console tail:\n" + (console_tail or "(empty)"))
        super().__init__("\n".join(parts))


@dataclass(frozen=True)
class Disk:
    path: Path
    interface: DiskInterface = "virtio-blk"
    readonly: bool = False
    snapshot: bool = False  # writes go to a throw-away overlay
    format: str = "raw"


def guestfwd(guest: str, host: str) -> str:
    """A guestfwd rule that opens a NEW host connection for every guest connection.

    The plain `…-tcp:host:port` form connects one chardev once and pours every guest
    connection into it: the second request after a `Connection: close` reaches nobody.
    """
    return f"tcp:{guest}-cmd:socat - TCP:{host}"


@dataclass(frozen=True)
class UserNet:
    """QEMU user networking; restrict=True keeps the guest off everything but the forwards."""

    restrict: bool = True
    net: str | None = None  # e.g. "169.254.0.0/16" for a guestfwd to 169.254.169.254
    hostfwd: tuple[str, ...] = ()  # "tcp::2222-:22"
    guestfwd: tuple[str, ...] = ()  # "tcp:169.254.169.254:80-cmd:…" or "…-tcp:127.0.0.1:8080"
    model: str = "virtio-net-pci"
    mac: str | None = None

    def netdev(self, ident: str) -> str:
        opts = [f"user,id={ident}"]
        if self.restrict:
            opts.append("restrict=on")
        if self.net:
            opts.append(f"net={self.net}")
        opts += [f"hostfwd={f}" for f in self.hostfwd]
        opts += [f"guestfwd={f}" for f in self.guestfwd]
        return ",".join(opts)

    def device(self, ident: str, bus: str | None = None) -> str:
        dev = f"{self.model},netdev={ident},id={ident}-dev"
        if self.mac:
            dev += f",mac={self.mac}"
        if bus:
            dev += f",bus={bus}"
        return dev


@dataclass
class VMSpec:
    profile: Profile
    firmware: Firmware | None = None  # None: direct kernel boot with the machine's default BIOS
    vars_path: Path | None = None  # a fresh copy (Firmware.fresh_vars), written by the guest
    disks: list[Disk] = field(default_factory=list)
    kernel: Path | None = None
    initrd: Path | None = None
    # For direct boots put "panic=-1" here with no_reboot=True: a panic then ends QEMU at once.
    append: str | None = None
    nic: UserNet | None = None  # None: -nic none (EDK2 would try PXE for minutes otherwise)
    memory_mib: int | None = None  # None: the profile's default
    cpus: int = 1
    accel: Literal["tcg", "kvm"] = "tcg"
    no_reboot: bool = False  # Path C reboots on purpose: leave False there
    hard_timeout: float | None = 900.0  # QEMU is killed after this many seconds, whatever happens
    extra_args: list[str] = field(default_factory=list)
    rng: bool = False  # a virtio-rng device (trixie's firmware loads its network stack only then)
    name: str = "cloudboot-lab"

    def validate(self) -> None:
        p = self.profile
        for d in self.disks:
            if d.interface not in p.disk_interfaces:
                raise ValueError(f"disk {d.path}: interface {d.interface} is not offered by "
                                 f"profile {p.name} (only {', '.join(p.disk_interfaces)})")
        if self.firmware is not None and self.vars_path is None:
            raise ValueError(f"VM {self.name}: firmware {self.firmware.code} needs vars_path "
                             "(a fresh copy from Firmware.fresh_vars)")
        if (self.initrd or self.append) and not self.kernel:
            raise ValueError(f"VM {self.name}: initrd/append given without a kernel")
        if self.cpus < 1:
            raise ValueError(f"VM {self.name}: cpus must be >= 1, not {self.cpus}")


def _drive(ident: str, disk: Disk) -> str:
    opts = [f"if=none,id={ident},file={disk.path},format={disk.format}"]
    if disk.readonly or disk.interface == "cdrom":
        opts.append("readonly=on")
    if disk.snapshot:
        opts.append("snapshot=on")
    if disk.interface == "cdrom":
        opts.append("media=cdrom")
    return ",".join(opts)


def build_command(spec: VMSpec, qmp_socket: Path) -> list[str]:
    """QEMU's argv for `spec`; the console is the process's stdio (see module docstring)."""
    spec.validate()
    p = spec.profile
    cmd = [p.qemu_binary, "-name", spec.name, "-nodefaults", "-S", "-machine", p.machine,
           "-accel", spec.accel, "-cpu", p.cpu(spec.accel),
           "-m", str(spec.memory_mib or p.memory_mib), "-smp", str(spec.cpus),
           "-display", "none", "-monitor", "none",
           "-qmp", f"unix:{qmp_socket},server=on,wait=off",
           "-chardev", "stdio,id=console,signal=off"]
    if p.console_transport == "virtconsole":
        cmd += ["-serial", "none", "-device", "virtio-serial-pci,id=vser0",
                "-device", "virtconsole,chardev=console,name=console.0"]
    else:
        cmd += ["-serial", "chardev:console"]
    cmd += list(p.extra_args)
    if spec.no_reboot:
        cmd.append("-no-reboot")
    if spec.firmware is not None:
        cmd += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={spec.firmware.code}",
                "-drive", f"if=pflash,format=raw,unit=1,file={spec.vars_path}"]
    if spec.kernel:
        cmd += ["-kernel", str(spec.kernel)]
    if spec.initrd:
        cmd += ["-initrd", str(spec.initrd)]
    if spec.append is not None:
        cmd += ["-append", spec.append]
    scsi = False
    ide_unit = 0
    for i, disk in enumerate(spec.disks):
        ident = f"disk{i}"
        cmd += ["-drive", _drive(ident, disk)]
        if disk.interface == "virtio-blk":
            cmd += ["-device", f"virtio-blk-pci,drive={ident},id={ident}-dev"]
            continue
        on_ide = disk.interface == "cdrom" and p.fw_machine == "pc-q35"
        if on_ide:  # q35's AHCI: firmware boots it; Debian's cloud kernel cannot see it
            cmd += ["-device", f"ide-cd,drive={ident},id={ident}-dev,bus=ide.{ide_unit}"]
            ide_unit += 1
            continue
        if not scsi:
            cmd += ["-device", "virtio-scsi-pci,id=scsi0"]
            scsi = True
        kind = "scsi-cd" if disk.interface == "cdrom" else "scsi-hd"
        cmd += ["-device", f"{kind},drive={ident},id={ident}-dev,bus=scsi0.0"]
    if spec.nic is None:
        cmd += ["-nic", "none"]
    elif p.firmware_nic:
        cmd += ["-netdev", spec.nic.netdev("net0"), "-device", spec.nic.device("net0")]
    else:
        # Hidden from the firmware: the netdev exists, the device is hot-plugged later into
        # this spare root port (QemuVM.hotplug_nic).
        cmd += ["-netdev", spec.nic.netdev("net0"),
                "-device", "pcie-root-port,id=hotplug0,chassis=1,slot=0"]
    if spec.rng:
        cmd += ["-device", "virtio-rng-pci"]
    cmd += list(spec.extra_args)
    return cmd
