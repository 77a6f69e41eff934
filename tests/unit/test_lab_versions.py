"""Provenance: the versions results.json records come from the installed tools."""

from __future__ import annotations

import re
import shutil

import pytest

from lab.versions import collect, firmware_versions, qemu_version


def test_qemu_version_is_parsed() -> None:
    version = qemu_version()
    assert version is not None and re.match(r"\d+\.\d+(\.\d+)?", version), version
    assert qemu_version("qemu-system-does-not-exist") is None


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="host: not a Debian host")
def test_firmware_and_collect() -> None:
    fw = firmware_versions()
    assert "ovmf" in fw and re.match(r"\d{4}\.\d+", fw["ovmf"]), fw
    everything = collect()
    assert everything["firmware"] == fw
    assert isinstance(everything["qemu"], dict) and "qemu-system-x86_64" in everything["qemu"]
