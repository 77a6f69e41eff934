"""The libvirt lane: Path A cells (and Path C on Debian 12 ext4) booted through a real
libvirtd, judged like the QEMU lane.

Without libvirt (binding, daemon) every cell is recorded and skipped as "not run: <why>".
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.cells import DISTROS, FILESYSTEMS, Cell, CellResult
from lab.hypervisors.libvirt import libvirt_connection, unavailable_reason
from lab.paths.a import run_bootstrap, run_path_a_disk
from lab.paths.b import run_path_b
from lab.paths.c import path_c_problems, run_path_c_disk
from lab.profiles import get_profile

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

GOLDEN = Path(__file__).parent.parent / "unit" / "golden"
SMOKE = {"libvirt-x86_64-A-debian-12-ext4"}
# aarch64: one cell (Debian 12 ext4): what libvirt adds (AAVMF loader + nvram template, virt
# machine XML) does not depend on the release or filesystem, and each aarch64 TCG boot costs
# minutes; the grid runs on the QEMU aarch64 lane.
CELLS = [Cell("libvirt", "x86_64", "A", d, fs) for d in DISTROS for fs in FILESYSTEMS] + [
    Cell("libvirt", "aarch64", "A", "debian-12", "ext4")]


def _require_libvirt(cell: Cell | None = None, record_cell=None) -> None:  # noqa: ANN001
    why = unavailable_reason()
    if why is None:
        return
    if cell is not None and record_cell is not None:
        record_cell(CellResult(cell=cell, status="not-run", reason=why))
    pytest.skip(f"not run: {why}")


@pytest.mark.parametrize("cell", [
    pytest.param(c, id=c.id, marks=[pytest.mark.smoke] if c.id in SMOKE else []) for c in CELLS
])
def test_path_a_through_libvirt(cell: Cell, tmp_path, record_cell, settle_cell) -> None:
    _require_libvirt(cell, record_cell)
    # aarch64 under TCG: ~3.5 min on a loaded 2-core host, 3x that as the limit
    result = run_path_a_disk(cell, tmp_path, timeout=420 if cell.arch.name == "x86_64" else 900)
    settle_cell(result)
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    assert result.banners == 1, "cloudboot-init must run exactly once"
    times = result.phase_times
    assert times["disk-found"] < times["kexec-load"] < times["userspace"]
    # It really went through libvirt: the domain XML and libvirt's QEMU log are in the cell.
    vm = tmp_path / "vm"
    assert ET.parse(vm / "domain.xml").getroot().findtext("name", "").startswith(cell.id)
    assert get_profile(cell.arch).qemu_binary in (vm / "qemu.log").read_text()


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_path_c_through_libvirt(arch: str, tmp_path, record_cell, settle_cell) -> None:
    """Stage, Boot####, reboot inside one libvirt domain (on_reboot=restart); OVMF/AAVMF then
    starts the staged kernel from the BootOrder the guest wrote. The nvram file is read back."""
    cell = Cell("libvirt", arch, "C", "debian-12", "ext4")
    _require_libvirt(cell, record_cell)
    # aarch64: two TCG boots, ~5 min on a loaded 2-core host
    run = run_path_c_disk(cell, tmp_path, timeout=600 if arch == "x86_64" else 1500)
    result = run.result
    settle_cell(result)
    assert not (bad := path_c_problems(run)), bad
    # No libvirt boot order reached QEMU: OVMF's BootOrder stayed the guest's.
    assert "bootindex" not in (tmp_path / "vm" / "qemu.log").read_text()


def test_fatal_through_libvirt_is_an_init_disk_failure(tmp_path) -> None:
    """A guest that powers itself off after a fatal event ends the domain; the verdict holds."""
    _require_libvirt()
    cell = Cell("libvirt", "x86_64", "A", "debian-12", "nodisk")
    result, _ = run_bootstrap(cell, tmp_path,
                              "cloudboot.disk=LABEL=nosuchdisk cloudboot.disk.timeout=3", [],
                              timeout=300)
    assert (result.status, result.category) == ("fail", "init-disk"), result.evidence
    assert "nosuchdisk" in result.evidence


@pytest.mark.smoke
@pytest.mark.parametrize("case", ["x86_64", "x86_64-net-cdrom-scsi",
                                  "x86_64-plain-nic-file-console"])
def test_libvirt_accepts_golden_domains(case: str) -> None:
    """libvirtd's own parser and QEMU capability checks take every golden x86_64 domain."""
    _require_libvirt()
    conn = libvirt_connection().conn
    root = ET.fromstring((GOLDEN / f"libvirt-{case}.xml").read_text())
    name = f"golden-check-{secrets.token_hex(3)}"
    root.find("name").text = name  # type: ignore[union-attr]
    dom = conn.defineXML(ET.tostring(root, encoding="unicode"))
    try:
        live = ET.fromstring(dom.XMLDesc(0))
        assert live.findtext("os/loader") == root.findtext("os/loader")
        assert live.find("devices/interface") is None or case.endswith("file-console")
    finally:
        dom.undefineFlags(4)  # VIR_DOMAIN_UNDEFINE_NVRAM: keep the session's state clean


def test_path_b_through_libvirt(tmp_path, record_cell, settle_cell) -> None:
    """The native loader as a libvirt domain: CloudBootTarget=ext4: set in the nvram file with
    `cloudboot vars set`, the loader finds the Debian root and starts its kernel."""
    cell = Cell("libvirt", "x86_64", "B", "debian-12", "ext4")
    _require_libvirt(cell, record_cell)
    run = run_path_b(cell, tmp_path)
    result = run.result
    settle_cell(result)
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    assert run.mark is not None and run.mark.startswith("b:boot"), run.mark
    vm = tmp_path / "vm"
    assert ET.parse(vm / "domain.xml").getroot().findtext("name", "").startswith(cell.id)
    assert "qemu-system-x86_64" in (vm / "qemu.log").read_text()
