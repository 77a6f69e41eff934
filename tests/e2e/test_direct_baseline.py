"""The natural baseline of every arch: the target's own kernel, initrd and root= as a UKI on
the arch's systemd-stub, started straight by the firmware (lab/paths/direct.py), no cloudboot in
between. Recorded into results.json as a baseline; MATRIX.md divides the Path A and Path C
cells of the same target by it (issue 7's per-arch overhead), and the boot proves the image
itself is sound when a path fails on it.

One target per QEMU lane, the one its Path A cell boots. A lane whose Path A cell is
`[[not_run]]` (no image yet) is skipped with that reason by lab.pytest_plugin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cells import Cell
from lab.images import debian
from lab.paths.direct import direct_firmware_boot

pytestmark = [pytest.mark.e2e, pytest.mark.boot, pytest.mark.timeout(3600)]

CELLS = [
    Cell("qemu", "x86_64", "A", "debian-12", "ext4"),
    Cell("qemu", "aarch64", "A", "debian-12", "ext4"),
    Cell("qemu", "armv7", "A", "debian-12", "ext4"),
    Cell("qemu", "riscv64", "A", "debian-13", "ext4"),
    Cell("qemu", "loongarch64", "A", "debian-14", "ext4"),
]
# A lone direct boot takes 1-3 minutes under TCG on these arches; the host is shared.
TIMEOUT = 1500.0


@pytest.mark.parametrize("cell", [pytest.param(c, id=f"{c.hypervisor}-{c.arch}-direct-"
                                                  f"{c.distro}-{c.fs}") for c in CELLS])
def test_direct_firmware_boot(cell: Cell, tmp_path: Path, record_baseline) -> None:
    image = debian.build(cell.release, cell.fs, cell.arch)
    try:
        seconds = direct_firmware_boot(image, tmp_path, cell.arch, timeout=TIMEOUT)
    except RuntimeError as e:
        log = tmp_path / "vm-direct" / "console.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no console)"
        pytest.fail(f"{cell.id}: {e}\n{tail}")
    record_baseline(cell, seconds, image.kernel_version)
    print(f"{cell.arch}: direct firmware boot -> userspace marker {seconds:.1f} s "
          f"(kernel {image.kernel_version}, {image.os_id} {image.version_id})")
