"""The QEMU lane's VMSpec expressed as libvirt domain XML (golden-tested, no libvirt needed).

The same cell on both lanes: UEFI from the profile's firmware (CODE as a read-only pflash
loader, the per-cell VARS copy as nvram, the template recorded beside it), the profile's machine
and CPU, virtio disks, one console, and no NIC unless the spec plans one (EDK2 would try PXE).

Where QEMU has an option libvirt does not model, the domain says so plainly through the
`qemu:commandline` passthrough rather than pretending: the profile's and the spec's extra
arguments, and a user-network NIC with restrict/forwards. `snapshot=on` has no libvirt
equivalent that keeps the source untouched, so snapshot disks need an overlay file (a qcow2
whose backing file is the original); LibvirtVM makes one per cell.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from lab.hypervisors.vmspec import Disk, UserNet, VMSpec

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
ConsoleKind = Literal["pty", "file"]

# Profile arguments libvirt models itself: `-boot menu=on,splash-time=0` is <bootmenu>.
_BOOT_MENU = ("-boot", "menu=on,splash-time=0")
# Architectures whose firmware boot wants ACPI tables (libvirt turns ACPI off unless asked).
_ACPI_ARCHES = frozenset({"x86_64", "aarch64"})


class DomainXMLError(ValueError):
    """The spec asks for something this lane cannot express."""


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _cpu(parent: ET.Element, model: str) -> None:
    """QEMU's `-cpu NAME,feat=on|off` as <cpu>: max → maximum, host → host-passthrough."""
    name, *features = model.split(",")
    if name == "max":
        cpu = _sub(parent, "cpu", mode="maximum", check="none")
    elif name == "host":
        cpu = _sub(parent, "cpu", mode="host-passthrough", check="none")
    else:
        cpu = _sub(parent, "cpu", mode="custom", match="exact", check="none")
        _sub(cpu, "model", name, fallback="forbid")
    for feat in features:
        key, _, value = feat.partition("=")
        if value not in ("on", "off"):
            raise DomainXMLError(f"CPU option {feat!r} of {model!r} is not a feature switch")
        _sub(cpu, "feature", policy="require" if value == "on" else "disable", name=key)


def _disk_target(disk: Disk, index: int, fw_machine: str) -> tuple[str, str, str]:
    """(device, bus, target dev) for a disk; mirrors the QEMU lane's choices."""
    if disk.interface == "virtio-blk":
        return "disk", "virtio", f"vd{chr(ord('a') + index)}"
    if disk.interface == "cdrom" and fw_machine == "pc-q35":
        # q35's AHCI: the firmware boots it; Debian's cloud kernel cannot see it (DESIGN §7).
        return "cdrom", "sata", f"sd{chr(ord('a') + index)}"
    device = "cdrom" if disk.interface == "cdrom" else "disk"
    return device, "scsi", f"sd{chr(ord('a') + index)}"


def _disk(devices: ET.Element, disk: Disk, index: int, fw_machine: str,
          overlay: Path | None) -> bool:
    """Append one <disk>; True when it sits on the virtio-scsi controller."""
    device, bus, dev = _disk_target(disk, index, fw_machine)
    el = _sub(devices, "disk", type="file", device=device)
    if disk.snapshot:
        if overlay is None:
            raise DomainXMLError(
                f"disk {disk.path} is snapshot=True: libvirt needs an overlay file for it "
                "(pass overlays={index: path}; LibvirtVM creates them)")
        _sub(el, "driver", name="qemu", type="qcow2")
        _sub(el, "source", file=str(overlay))
        backing = _sub(el, "backingStore", type="file")
        _sub(backing, "format", type=disk.format)
        _sub(backing, "source", file=str(disk.path))
    else:
        _sub(el, "driver", name="qemu", type=disk.format)
        _sub(el, "source", file=str(disk.path))
    _sub(el, "target", dev=dev, bus=bus)
    if disk.readonly or device == "cdrom":
        _sub(el, "readonly")
    return bus == "scsi"


def _nic(devices: ET.Element, nic: UserNet, passthrough: list[str]) -> None:
    """A user-network NIC: libvirt's <interface type='user'> when it can say everything, else
    the QEMU lane's exact -netdev/-device through passthrough (restrict=on, forwards)."""
    if nic.restrict or nic.hostfwd or nic.guestfwd:
        passthrough += ["-netdev", nic.netdev("net0"), "-device", nic.device("net0")]
        return
    iface = _sub(devices, "interface", type="user")
    if nic.mac:
        _sub(iface, "mac", address=nic.mac)
    if nic.net:
        address, _, prefix = nic.net.partition("/")
        _sub(iface, "ip", family="ipv4", address=address, prefix=prefix or "24")
    model, _, options = nic.model.partition(",")
    _sub(iface, "model", type=model.removesuffix("-pci").replace("-net", ""))
    if options == "romfile=":  # no iPXE option ROM: the firmware's own driver serves it
        _sub(iface, "rom", enabled="no")
    elif options:
        raise DomainXMLError(f"NIC model options {options!r} have no libvirt form here")


def _console(devices: ET.Element, transport: str, kind: ConsoleKind,
             console_file: Path | None, log_file: Path | None) -> None:
    if kind == "file" and console_file is None:
        raise DomainXMLError("a file console needs console_file")
    if transport == "virtconsole":
        el = _sub(devices, "console", type=kind)
    else:
        el = _sub(devices, "serial", type=kind)
    if kind == "file":
        _sub(el, "source", path=str(console_file), append="off")
    if log_file is not None:  # QEMU's own copy of the console, beside the lab's timed one
        _sub(el, "log", file=str(log_file), append="off")
    if transport == "virtconsole":
        _sub(el, "target", type="virtio", port="0")
    else:
        _sub(el, "target", port="0")


def domain_xml(spec: VMSpec, *, overlays: Mapping[int, Path] | None = None,
               console: ConsoleKind = "pty", console_file: Path | None = None,
               console_log: Path | None = None, run_as_root: bool = False) -> str:
    """Domain XML for `spec`. `overlays` maps a snapshot disk's index to its qcow2 overlay;
    `run_as_root` pins QEMU to uid/gid 0 without relabelling (a system libvirtd reading the
    lab's root-owned files)."""
    spec.validate()
    p = spec.profile
    if spec.nic is not None and not p.firmware_nic:
        raise DomainXMLError(f"profile {p.name} hides the NIC from firmware and hot-plugs it "
                             "later; the libvirt lane does not model that (use the QEMU lane)")
    dom = ET.Element("domain", type="kvm" if spec.accel == "kvm" else "qemu")
    _sub(dom, "name", spec.name)
    _sub(dom, "memory", str(spec.memory_mib or p.memory_mib), unit="MiB")
    _sub(dom, "vcpu", str(spec.cpus))

    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch=p.arch.name if p.fw_arch != "arm" else "armv7l",
         machine=p.machine.split(",")[0])
    if spec.firmware is not None:
        _sub(os_el, "loader", str(spec.firmware.code), readonly="yes", type="pflash")
        _sub(os_el, "nvram", str(spec.vars_path), template=str(spec.firmware.vars_template))
    if spec.kernel:
        _sub(os_el, "kernel", str(spec.kernel))
    if spec.initrd:
        _sub(os_el, "initrd", str(spec.initrd))
    if spec.append is not None:
        _sub(os_el, "cmdline", spec.append)
    if spec.firmware is not None and not spec.no_reboot:
        # A guest that reboots on purpose (Path C) must find its own BootOrder in charge, as on
        # the QEMU lane. Without any <boot>, libvirt adds <boot dev='hd'/> and turns it into
        # bootindex=1 on the first disk; OVMF then rewrites BootOrder from QEMU's "bootorder"
        # at every reset, puts that disk first and deletes the Boot#### that starts with HD()
        # (ours). dev='fd' names a floppy that q35/virt do not have: no bootindex anywhere,
        # an empty "bootorder", BootOrder left alone (measured with libvirt 9.0, QEMU 7.2).
        _sub(os_el, "boot", dev="fd")
    passthrough: list[str] = []
    extra = list(p.extra_args)
    if tuple(extra[:2]) == _BOOT_MENU:
        _sub(os_el, "bootmenu", enable="yes", timeout="0")
        extra = extra[2:]
    # Machine options after the type (virt,highmem=off) have no generic element: pass them on.
    machine_opts = p.machine.split(",")[1:]
    if machine_opts:
        passthrough += ["-machine", ",".join(machine_opts)]
    passthrough += extra

    if p.arch.name in _ACPI_ARCHES:
        features = _sub(dom, "features")
        _sub(features, "acpi")
        if p.arch.name == "x86_64":
            _sub(features, "apic")
    _cpu(dom, p.cpu(spec.accel))
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "destroy" if spec.no_reboot else "restart")
    _sub(dom, "on_crash", "destroy")

    devices = _sub(dom, "devices")
    scsi = False
    for i, disk in enumerate(spec.disks):
        overlay = (overlays or {}).get(i)
        scsi = _disk(devices, disk, i, p.fw_machine, overlay) or scsi
    if scsi:
        _sub(devices, "controller", type="scsi", index="0", model="virtio-scsi")
    if spec.nic is not None:
        _nic(devices, spec.nic, passthrough)
    _console(devices, p.console_transport, console, console_file, console_log)
    if spec.rng:
        rng = _sub(devices, "rng", model="virtio")
        _sub(rng, "backend", "/dev/urandom", model="random")
    # What -nodefaults leaves out on the QEMU lane: no USB, balloon, video or graphics.
    _sub(devices, "controller", type="usb", model="none")
    _sub(devices, "memballoon", model="none")
    if run_as_root:
        seclabel = _sub(dom, "seclabel", type="static", model="dac", relabel="no")
        _sub(seclabel, "label", "+0:+0")

    passthrough += spec.extra_args
    if passthrough:
        ET.register_namespace("qemu", QEMU_NS)
        cmdline = _sub(dom, f"{{{QEMU_NS}}}commandline")
        for arg in passthrough:
            _sub(cmdline, f"{{{QEMU_NS}}}arg", value=arg)
    ET.indent(dom, "  ")
    return ET.tostring(dom, encoding="unicode") + "\n"
