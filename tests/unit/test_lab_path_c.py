"""Path C's foreign boot entries come from virt-firmware's Python API, with no CLI on PATH."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cloudboot.efi import varstore
from lab.paths.c import FOREIGN_FILES_BY_ARCH, plant_foreign_entries

OVMF_VARS_4M = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# The oracle: virt-firmware's own CLI, installed next to this interpreter with the package.
VIRT_FW_VARS = Path(sys.executable).parent / "virt-fw-vars"


@pytest.mark.parametrize("arch", sorted(FOREIGN_FILES_BY_ARCH))
def test_planted_entries_are_what_virt_fw_vars_writes(arch: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert OVMF_VARS_4M.is_file(), "ovmf is not installed (hostdeps ensure tests installs it)"
    assert VIRT_FW_VARS.is_file(), f"{VIRT_FW_VARS} is missing (virt-firmware installs it)"
    ours, theirs = tmp_path / "api.fd", tmp_path / "cli.fd"
    shutil.copy(OVMF_VARS_4M, ours)
    shutil.copy(OVMF_VARS_4M, theirs)
    for f in FOREIGN_FILES_BY_ARCH[arch]:
        subprocess.run([str(VIRT_FW_VARS), "--inplace", str(theirs), "--append-boot-filepath",
                        f], check=True, capture_output=True, timeout=60)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))  # no binary can be found
    plant_foreign_entries(ours, arch)
    assert ours.read_bytes() == theirs.read_bytes()
    described = varstore.describe(ours)
    texts = " ".join(str(e) for e in described["entries"])
    assert all(f.rsplit("\\", 1)[1] in texts for f in FOREIGN_FILES_BY_ARCH[arch])
    assert len(described["boot_order"]) == len(FOREIGN_FILES_BY_ARCH[arch])


def test_a_file_that_is_no_variable_store_is_refused_untouched(tmp_path: Path) -> None:
    blank = tmp_path / "vars.fd"
    blank.write_bytes(bytes(64 * 1024))
    with pytest.raises(RuntimeError, match="no edk2 variable store"):
        plant_foreign_entries(blank)
    assert blank.read_bytes() == bytes(64 * 1024)
