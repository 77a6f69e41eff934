"""The VM runners: a VM as data (vmspec.py), run by QEMU (qemu.py), as a libvirt domain
(libvirt.py, domainxml.py) or as vfkit's argv (vfkit.py); the accelerator probe (accel.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.console import BootOutcome
    from lab.hypervisors.vmspec import VMSpec


def boot(hypervisor: str, spec: VMSpec, workdir: Path, timeout: float) -> BootOutcome:
    """Boot `spec` until the run decides itself: as a libvirt domain on the libvirt lane, by
    QEMU directly on every other (the openstack and vz lanes are QEMU with their own spec)."""
    if hypervisor == "libvirt":
        from lab.hypervisors import libvirt

        return libvirt.boot(spec, workdir, timeout)
    from lab.hypervisors import qemu

    return qemu.boot(spec, workdir, timeout)
