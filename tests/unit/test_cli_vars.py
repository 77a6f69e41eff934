"""`cloudboot reset` and `cloudboot inspect` on a real OVMF variable store."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cloudboot.cli.main import main
from cloudboot.efi import loadopt, varstore

OVMF_VARS_4M = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
PART = "8a8bff41-ee19-56ac-809c-0d0b88697d7a"
# virt-firmware's CLI as an independent writer and reader: a declared dependency, installed
# next to the running interpreter (missing is a failure; PATH does not matter).
VIRT_FW_VARS = Path(sys.executable).parent / "virt-fw-vars"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    assert VIRT_FW_VARS.is_file(), f"{VIRT_FW_VARS} is missing (virt-firmware installs it)"
    out = tmp_path / "vars.fd"
    subprocess.run([str(VIRT_FW_VARS), "-i", str(OVMF_VARS_4M), "-o", str(out),
                    "--append-boot-filepath", "\\EFI\\debian\\grubx64.efi"],
                   check=True, capture_output=True, timeout=60)
    kernel, initrd = loadopt.staged_paths("debian")
    varstore.add_cloudboot_entry(out, loadopt.cloudboot_option(
        "debian", 1, 2048, 520192, PART, kernel, initrd, "console=ttyS0"))
    return out


def _entries(path: Path) -> dict[str, str]:
    report = varstore.describe(path)
    return {e["name"]: e["description"] for e in report["entries"]}


def test_inspect_shows_both_entries(store: Path, capsys) -> None:
    assert main(["inspect", str(store), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "vars"
    texts = json.dumps(report["entries"])
    assert "cloud-boot debian" in texts and "grubx64.efi" in texts
    assert f"HD(1,GPT,{PART}" in texts


def test_reset_removes_only_ours(store: Path, capsys) -> None:
    before = _entries(store)
    assert any(d.startswith("cloud-boot ") for d in before.values())
    assert main(["reset", "--vars", str(store), "--dry-run"]) == 0
    assert "would " in capsys.readouterr().out
    assert _entries(store) == before  # a dry run writes nothing
    assert main(["reset", "--vars", str(store)]) == 0
    after = _entries(store)
    assert after == {k: v for k, v in before.items() if not v.startswith("cloud-boot ")}
    assert after, "the foreign entry must survive"
    # virt-firmware still reads the store we wrote.
    r = subprocess.run([str(VIRT_FW_VARS), "-i", str(store), "--print"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "grubx64.efi" in r.stdout
    assert main(["reset", "--vars", str(store)]) == 0
    assert "nothing to change" in capsys.readouterr().out


def test_reset_on_a_file_that_is_not_a_store(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "vars.fd"
    bogus.write_bytes(b"\0" * 4096)
    assert main(["reset", "--vars", str(bogus)]) == 1
    err = capsys.readouterr().err
    assert str(bogus) in err and len(err.strip().splitlines()) == 1
    assert bogus.read_bytes() == b"\0" * 4096


def test_inspect_text_shows_our_vendor_variables(store: Path, capsys) -> None:
    """Nested reports (cloudboot_vars → CloudBootTarget → text) render without the JSON flag."""
    assert main(["vars", "set", "--vars", str(store), "--target", "ext4:LABEL=cbroot"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(store)]) == 0
    out = capsys.readouterr().out
    assert "cloudboot_vars:" in out and "CloudBootTarget:" in out
    assert "text: ext4:LABEL=cbroot" in out
