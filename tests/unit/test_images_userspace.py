"""The reporter script, run under the host's /bin/sh with fake /proc/cmdline and os-release."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lab.images.fixtures import parse_marker
from lab.images.userspace import MARKER, SCRIPT, UNIT

TRICKY = (
    'BOOT_IMAGE=/vmlinuz root=LABEL=cbroot ro quote="a b" back=\\x\\\\ tab=\there '
    "ctl=\x01\x02\x1b\x1f cr=\r del=\x7f utf8=é€ brace={} slash=/ dollar=$HOME `x` 'q'\n"
)
# /proc/cmdline is one line; a multi-line file must not change the escaping.
TRICKY_LINES = TRICKY + 'second "line"\n\nlast\\\n'



def run_script(tmp_path: Path, cmdline: str, os_release: str, shell: str = "/bin/sh") -> str:
    script = tmp_path / "cloudboot-userspace"
    script.write_text(SCRIPT)
    (tmp_path / "cmdline").write_bytes(cmdline.encode())
    (tmp_path / "os-release").write_text(os_release)
    env = dict(os.environ, CB_PRINT_ONLY="1", CB_CMDLINE_FILE=str(tmp_path / "cmdline"),
               CB_OS_RELEASE=str(tmp_path / "os-release"))
    proc = subprocess.run([shell, str(script)], env=env, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode()


@pytest.mark.parametrize("cmdline", [TRICKY, TRICKY_LINES], ids=["one-line", "lines"])
@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_tricky_cmdline_round_trips_through_json(tmp_path: Path, shell: str,
                                                 cmdline: str) -> None:
    out = run_script(tmp_path, cmdline, 'ID=debian\nVERSION_ID="12"\n', shell=shell)
    assert out.startswith(MARKER + " ") and out.endswith("}\n") and out.count("\n") == 1
    data = json.loads(out[len(MARKER) + 1:])
    assert data == {"id": "debian", "version_id": "12", "kernel": os.uname().release,
                    "cmdline": cmdline[:-1]}
    # Same shape as json.dumps' default separators, so the line is also easy to grep.
    assert out.strip() == f"{MARKER} {json.dumps(data, ensure_ascii=False)}"
    assert parse_marker("noise\r\n[  1.0] x\n" + out) == data


def test_missing_version_id_is_null_and_os_release_quotes_are_removed(tmp_path: Path) -> None:
    out = run_script(tmp_path, "root=/dev/vda1\n", "NAME='Debian GNU/Linux'\nID='debian'\n")
    data = json.loads(out[len(MARKER) + 1:])
    assert data["id"] == "debian"
    assert data["version_id"] is None
    assert data["cmdline"] == "root=/dev/vda1"


def test_empty_cmdline(tmp_path: Path) -> None:
    out = run_script(tmp_path, "", "ID=debian\nVERSION_ID=13\n")
    assert json.loads(out[len(MARKER) + 1:])["cmdline"] == ""


def test_unit_runs_early_and_the_script_powers_off() -> None:
    assert "DefaultDependencies=no" in UNIT
    assert "WantedBy=sysinit.target" in UNIT
    assert "systemctl --force poweroff" in SCRIPT


def test_unusual_os_release_values_are_escaped_too(tmp_path: Path) -> None:
    out = run_script(tmp_path, "x\n", 'ID="odd\\"id x"\nVERSION_ID="1 \\\\ 2"\n')
    data = json.loads(out[len(MARKER) + 1:])
    assert data["id"] == 'odd"id x'
    assert data["version_id"] == "1 \\ 2"
