"""`python -m lab doctor` against this real host (no mocks): it must find OVMF, say TCG where KVM
cannot run firmware, and give every lane × path a verdict with a reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import doctor
from lab.accel import host_accel
from lab.cells import PATHS
from lab.matrix import LANES, load_expectations

ROOT = Path(__file__).resolve().parents[2]

needs_ovmf = pytest.mark.skipif(not Path("/usr/share/OVMF").is_dir(),
                                reason="ovmf is not installed (apt-get install ovmf)")


@pytest.fixture(scope="module")
def report_json() -> dict:
    out = subprocess.run([sys.executable, "-m", "lab", "doctor", "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout)


@needs_ovmf
def test_finds_ovmf_as_a_code_vars_pair(report_json: dict) -> None:
    x86 = next(p for p in report_json["profiles"] if p["name"] == "x86_64")
    assert x86["qemu"]["ok"] and "qemu-system-x86_64" in x86["qemu"]["detail"]
    assert x86["firmware"]["ok"], x86["firmware"]
    assert "OVMF_CODE" in x86["firmware"]["detail"] and "OVMF_VARS" in x86["firmware"]["detail"]


def test_accelerator_matches_the_kvm_probe(report_json: dict) -> None:
    x86 = next(p for p in report_json["profiles"] if p["name"] == "x86_64")
    expected = host_accel().accel
    assert x86["accel"]["detail"].startswith(expected + " ")
    if os.environ.get("CLOUDBOOT_ACCEL") is None and expected == "tcg":
        # This host: /dev/kvm exists but cannot run firmware (DESIGN §7) -> TCG with the reason.
        assert "KVM" in x86["accel"]["detail"] or "kvm" in x86["accel"]["detail"]
    # Foreign architectures are always TCG here.
    arm = next(p for p in report_json["profiles"] if p["name"] == "aarch64")
    assert arm["accel"]["detail"].startswith("tcg ")


def test_every_lane_and_path_has_a_verdict_with_a_reason(report_json: dict) -> None:
    lanes = {(r["hypervisor"], r["arch"], r["path"]): r for r in report_json["lanes"]}
    assert set(lanes) == {(h, a, p) for h, a in LANES for p in PATHS}
    assert all(r["reason"] for r in lanes.values())
    # vfkit needs macOS: the expected.toml reason is reused word for word.
    vfkit_rule = next(e for e in load_expectations() if e.pattern == "vfkit-*")
    assert lanes[("vfkit", "aarch64", "A")] == {
        "hypervisor": "vfkit", "arch": "aarch64", "path": "A", "can_run": False,
        "reason": vfkit_rule.reason}
    # The vz Path A lane runs, and says it must fail in handoff.
    vz_a = lanes[("vz", "aarch64", "A")]
    if vz_a["can_run"]:
        assert "expected to fail as handoff" in vz_a["reason"]


@needs_ovmf
def test_qemu_x86_64_paths_a_and_c_can_run_here(report_json: dict) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    lanes = {(r["hypervisor"], r["arch"], r["path"]): r for r in report_json["lanes"]}
    assert lanes[("qemu", "x86_64", "A")]["can_run"], lanes[("qemu", "x86_64", "A")]
    assert lanes[("qemu", "x86_64", "C")]["can_run"] == bool(shutil.which("virt-fw-vars"))


def test_text_report_names_each_lane_and_the_vz_approximations() -> None:
    text = doctor.render(doctor.diagnose())
    assert "vz" in text and "approx." in text and "hvc0" in text
    assert text.count("can run") + text.count("cannot") >= len(LANES) * len(PATHS)
    assert text.rstrip().endswith("can run on this host.")


def test_missing_binary_is_reported_with_the_package_to_install() -> None:
    c = doctor.check_binary("cloudboot-no-such-tool", "no-such-package", "nothing")
    assert not c.ok and "apt-get install no-such-package" in c.detail
