"""`python -m lab doctor` against this real host (no mocks): it must find OVMF, say TCG where KVM
cannot run firmware (in QEMU's words), find virt-firmware without a venv on PATH, give every
lane × path a verdict with a reason about the release that lane boots, and say the same in
text and in JSON. The doctor runs as a user would run it: the venv's bin is not on PATH."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.cells import PATHS, Cell
from lab.commands import doctor
from lab.hypervisors.accel import host_accel
from lab.matrix import LANES, expectation, load_expectations

ROOT = Path(__file__).resolve().parents[2]


def path_without_virt_fw_vars() -> str:
    """PATH minus this interpreter's bin and any directory holding a virt-fw-vars binary."""
    venv_bin = Path(sys.executable).parent.absolute()
    return os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and Path(d).absolute() != venv_bin and not Path(d, "virt-fw-vars").exists())


def run_doctor(*args: str) -> str:
    env = {**os.environ, "PATH": path_without_virt_fw_vars()}
    out = subprocess.run([sys.executable, "-m", "lab", "doctor", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    return out.stdout


@pytest.fixture(scope="module")
def report_json() -> dict:
    host_accel()  # probe now if need be: both runs below then read the one cached verdict
    return json.loads(run_doctor("--json"))


@pytest.fixture(scope="module")
def report_text(report_json: dict) -> str:
    return run_doctor()


def test_finds_ovmf_as_a_code_vars_pair(report_json: dict) -> None:
    x86 = next(p for p in report_json["profiles"] if p["name"] == "x86_64")
    assert x86["qemu"]["ok"] and "qemu-system-x86_64" in x86["qemu"]["detail"]
    assert x86["firmware"]["ok"], x86["firmware"]
    assert "OVMF_CODE" in x86["firmware"]["detail"] and "OVMF_VARS" in x86["firmware"]["detail"]


def test_accelerator_matches_the_kvm_probe(report_json: dict) -> None:
    x86 = next(p for p in report_json["profiles"] if p["name"] == "x86_64")
    expected = host_accel()
    assert x86["accel"]["detail"].startswith(expected.accel + " ")
    assert expected.reason in x86["accel"]["detail"]
    if os.environ.get("CLOUDBOOT_ACCEL") is None and expected.accel == "tcg":
        # This host: /dev/kvm exists but cannot run firmware (DESIGN §7) -> TCG with QEMU's
        # own reason (tests/unit/test_lab_accel.py checks it against QEMU run by hand).
        assert "KVM" in x86["accel"]["detail"]
        assert "cannot connect QMP" not in x86["accel"]["detail"]
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
        "hypervisor": "vfkit", "arch": "aarch64", "path": "A", "distro": "debian-12",
        "can_run": False, "reason": vfkit_rule.reason}
    # The vz Path A lane runs, and says it must fail in handoff.
    vz_a = lanes[("vz", "aarch64", "A")]
    if vz_a["can_run"]:
        assert "expected to fail as handoff" in vz_a["reason"]


def test_qemu_x86_64_paths_a_and_c_can_run_here(report_json: dict) -> None:
    assert shutil.which("qemu-system-x86_64"), "hostdeps ensure tests installs qemu-system-x86"
    lanes = {(r["hypervisor"], r["arch"], r["path"]): r for r in report_json["lanes"]}
    assert lanes[("qemu", "x86_64", "A")]["can_run"], lanes[("qemu", "x86_64", "A")]
    # Path C needs virt-firmware: its Python API is importable, no virt-fw-vars on PATH.
    assert lanes[("qemu", "x86_64", "C")]["can_run"], lanes[("qemu", "x86_64", "C")]


def test_virt_firmware_is_found_through_its_python_api(report_json: dict) -> None:
    tools = {t["name"]: t for t in report_json["tools"]}
    assert "virt-fw-vars" not in tools
    vf = tools["virt-firmware"]
    assert vf["ok"], vf
    assert "Python API" in vf["detail"] and "virt/firmware" in vf["detail"]


def test_host_line_leaves_the_kvm_verdict_to_the_accel_check(report_json: dict,
                                                             report_text: str) -> None:
    expected = ("missing" if not os.path.exists("/dev/kvm") else "present (rw)"
                if os.access("/dev/kvm", os.R_OK | os.W_OK)
                else "present, not read-writable by this user")
    assert report_json["host"]["kvm_device"] == expected
    host = report_text.splitlines()[0]
    assert host.endswith(f"/dev/kvm {expected}") and "usable" not in host


def test_each_lane_reports_the_release_it_boots(report_json: dict) -> None:
    lanes = {(r["hypervisor"], r["arch"], r["path"]): r for r in report_json["lanes"]}
    # What each arch really booted, per matrix/results.json (the oracle, not the doctor's code).
    results = json.loads((ROOT / "matrix" / "results.json").read_text())["cells"]
    booted: dict[str, set[str]] = {}
    for c in results:
        if c["status"] != "not-run" and c["cell"].startswith("qemu-"):
            cell = Cell.from_id(c["cell"])
            booted.setdefault(cell.arch.name, set()).add(cell.distro)
    assert booted["riscv64"] == {"debian-13"} and booted["loongarch64"] == {"debian-14"}
    for (hv, arch, path), r in lanes.items():
        if hv == "qemu":
            assert r["distro"] in booted[arch], r
        rule = expectation(Cell(hv, arch, path, r["distro"], "ext4"))
        if rule is not None and rule.kind == "not_run":
            assert r["reason"] == rule.reason and not r["can_run"], r
    for arch, release in (("riscv64", "Debian 12"), ("loongarch64", "Debian 12 and 13")):
        for path in PATHS:
            assert f"{release} has no" not in lanes[("qemu", arch, path)]["reason"]
    # riscv64 and loongarch64 Paths A and C pass in the matrix: the doctor must not deny them.
    for arch in ("riscv64", "loongarch64"):
        for path in ("A", "C"):
            assert "no lab runner" not in lanes[("qemu", arch, path)]["reason"]


def test_text_and_json_give_the_same_facts(report_json: dict, report_text: str) -> None:
    lines = report_text.splitlines()
    for prof in report_json["profiles"]:
        for key in ("qemu", "firmware", "accel"):
            c = prof[key]
            want = f"    {c['name']:9} {'ok ' if c['ok'] else 'no '} {c['detail']}"
            assert want in lines, (prof["name"], want)
    for c in report_json["tools"]:
        assert f"  {c['name']:16} {'ok ' if c['ok'] else 'no '} {c['detail']}" in lines, c
    for r in report_json["lanes"]:
        state = "can run" if r["can_run"] else "cannot"
        want = (f"  {r['hypervisor']:9} {r['arch']:11} {r['path']}  {r['distro']:9}  "
                f"{state}: {r['reason']}")
        assert want in lines, r
    h = report_json["host"]
    assert lines[0] == (f"host: {h['machine']} {h['system']} {h['kernel']}, {h['cores']} "
                        f"cores, {h['memory_mib']} MiB, Python {h['python']}, /dev/kvm "
                        f"{h['kvm_device']}")


def test_text_report_names_each_lane_and_the_vz_approximations() -> None:
    text = doctor.render(doctor.diagnose())
    assert "vz" in text and "approx." in text and "hvc0" in text
    assert text.count("can run") + text.count("cannot") >= len(LANES) * len(PATHS)
    assert text.rstrip().endswith("can run on this host.")


def test_missing_binary_is_reported_with_the_package_to_install() -> None:
    c = doctor.check_binary("cloudboot-no-such-tool", "no-such-package", "nothing")
    assert not c.ok and "apt-get install no-such-package" in c.detail
