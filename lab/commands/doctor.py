"""`python -m lab doctor [--json]`: what this host can run, and why not.

Checks are read-only and quick: binaries and their versions, firmware CODE/VARS pairs, the
accelerator (lab/hypervisors/accel.py's KVM probe, cached per host boot: /dev/kvm being there is not
the verdict), libvirt, virt-firmware's Python API, docker-registry, dnsmasq, vfkit, clang/lld. Then
every lane × path gets "can run" or "cannot: reason" for the release that lane boots (riscv64 Debian
13, loongarch64 Debian 14, the others Debian 12), taking the reasons from matrix/expected.toml where
a rule applies. `--json` carries the same facts as the text.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cloudboot.bootstrap import archsources
from lab.cells import ALL_DISTROS, DISTROS, PATHS, Cell
from lab.profiles import PROFILES, Profile


@dataclass
class Check:
    name: str
    ok: bool
    detail: str  # version / path when ok, the reason when not


@dataclass
class ProfileReport:
    name: str
    qemu: Check
    firmware: Check
    accel: Check
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.qemu.ok and self.firmware.ok


@dataclass
class LaneReport:
    hypervisor: str
    arch: str
    path: str
    distro: str  # the release this lane boots (lane_distro), which the reason is about
    can_run: bool
    reason: str  # why not, or what runs it (and any expected failure)


@dataclass
class Report:
    host: dict[str, Any]
    profiles: list[ProfileReport]
    tools: list[Check]
    lanes: list[LaneReport]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin", "/usr/bin") if (p := Path(d, name)).exists()),
        None)


def check_qemu(profile: Profile) -> Check:
    from lab import qemu_private
    from lab.versions import qemu_version

    if qemu_private.needs_private(profile.arch.name):
        versions = qemu_private.installed_versions()
        binary = profile.qemu_binary
        if binary in versions:
            return Check("qemu", True, f"{binary} {versions[binary]} (private, "
                                       f"{qemu_private.QEMU_SUITE})")
        return Check("qemu", True, f"{binary} from {qemu_private.QEMU_SUITE} is fetched into "
                                   "the cache on first use (lab/qemu_private.py)")
    path = _which(profile.qemu_binary)
    if path is None:
        return Check("qemu", False, f"{profile.qemu_binary} is not installed")
    return Check("qemu", True, f"{path} {qemu_version(path) or '(version unknown)'}")


def check_firmware(profile: Profile) -> Check:
    from lab import qemu_private
    from lab.assets import is_blank
    from lab.firmware import _VARS_DONORS, FirmwareError, select_firmware

    try:
        fw = select_firmware(profile)
    except FirmwareError as e:
        if profile.fw_arch in qemu_private.FIRMWARE:
            pf = qemu_private.FIRMWARE[profile.fw_arch]
            return Check("firmware", True, f"{pf.package} from {pf.suite} is fetched into the "
                                           "cache on first use")
        return Check("firmware", False, str(e))
    versions = ", ".join(f"{k} {v}" for k, v in fw.package_versions().items()) or "unpackaged"
    detail = f"CODE {fw.code}, VARS {fw.vars_template} ({versions})"
    if is_blank(fw.vars_template):
        donor = _VARS_DONORS.get(fw.fw_arch)
        detail += ("; the VARS template is all zeros: Path C uses "
                   f"{donor[1]}'s {donor[0]} template (fetched with apt on first use)"
                   if donor else "; the VARS template is all zeros")
    return Check("firmware", True, detail)


def check_accel(profile: Profile) -> Check:
    from lab.hypervisors.accel import select_accel

    try:
        choice = select_accel(profile)
    except ValueError as e:
        return Check("accel", False, str(e))
    return Check("accel", True, f"{choice.accel} ({choice.source}: {choice.reason})")


def check_profile(profile: Profile) -> ProfileReport:
    return ProfileReport(profile.name, check_qemu(profile), check_firmware(profile),
                         check_accel(profile), list(profile.notes))


def check_libvirt() -> Check:
    try:
        import libvirt  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as e:
        return Check("libvirt", False, f"the libvirt Python binding is not importable ({e}); "
                                       "pip install '.[libvirt]'")
    daemon = _which("libvirtd")
    if daemon is None:
        return Check("libvirt", False, "libvirtd is not installed "
                                       "(apt-get install libvirt-daemon-system)")
    from lab.versions import libvirt_version

    return Check("libvirt", True, f"binding importable; {daemon} {libvirt_version() or ''} "
                                  "(the lab starts a private session daemon when none runs)")


def check_binary(name: str, package: str, purpose: str) -> Check:
    path = _which(name)
    if path is None:
        return Check(name, False, f"{name} is not installed (apt-get install {package}); "
                                  f"needed for {purpose}")
    return Check(name, True, path)


def check_virt_firmware() -> Check:
    """virt-firmware as the lab uses it: its Python API (Path C plants foreign boot entries
    with it, cloudboot.efi.varstore finds the variable store with it), imported from this
    interpreter; no virt-fw-vars on PATH is needed."""
    try:
        from virt.firmware.efi import devpath, efivar  # type: ignore[import-untyped]
        from virt.firmware.varstore import edk2  # type: ignore[import-untyped]
    except ImportError as e:
        return Check("virt-firmware", False, f"the virt-firmware Python package is not "
                                             f"importable ({e}); pip install virt-firmware "
                                             "(a cloudboot dependency); needed for Path C")
    wanted = [(edk2.Edk2VarStore, ("probe", "get_varlist", "write_varstore")),
              (efivar.EfiVarList, ("add_boot_entry", "append_boot_order")),
              (devpath.DevicePath, ("filepath",))]
    missing = [f"{cls.__name__}.{name}" for cls, names in wanted for name in names
               if not hasattr(cls, name)]
    version = "(version unknown)"
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        version = importlib.metadata.version("virt-firmware")
    where = Path(edk2.__file__).resolve().parent.parent
    if missing:
        return Check("virt-firmware", False, f"virt-firmware {version} at {where} lacks "
                                             f"{', '.join(missing)}; needed for Path C")
    return Check("virt-firmware", True, f"virt-firmware {version} Python API ({where})")


def check_vfkit() -> Check:
    if platform.system() != "Darwin":
        return Check("vfkit", False, "needs macOS and Apple's Virtualization.framework "
                                     f"(this host is {platform.system()})")
    path = _which("vfkit")
    return Check("vfkit", path is not None, path or "vfkit is not installed (brew install vfkit)")


def check_loader_toolchain() -> Check:
    clang, lld = _which("clang"), _which("lld-link") or _which("ld.lld")
    if clang and lld:
        return Check("clang/lld", True, f"{clang}, {lld}")
    missing = [n for n, p in (("clang", clang), ("lld-link", lld)) if p is None]
    return Check("clang/lld", False, f"{', '.join(missing)} not installed (apt-get install "
                                     "clang lld); needed to build the Path B/D loader")


def check_cloud_images() -> Check:
    from lab.assets import CLOUD_IMAGES

    unpinned = [f"{a.name}: {a.note}" for a in CLOUD_IMAGES.values() if a.sha256 is None]
    if unpinned:
        return Check("cloud-images", False, "; ".join(unpinned))
    return Check("cloud-images", True, f"{len(CLOUD_IMAGES)} pinned")


def tool_checks() -> list[Check]:
    return [
        check_libvirt(),
        check_binary("docker-registry", "docker-registry", "OCI plan/artifact cells"),
        check_binary("dnsmasq", "dnsmasq", "the DHCP client unit tests"),
        check_virt_firmware(),
        check_binary("fsck.vfat", "dosfstools", "Path C (checking the cache ESP)"),
        check_binary("socat", "socat", "guestfwd to the lab's metadata service and registry"),
        check_vfkit(),
        check_loader_toolchain(),
        check_cloud_images(),
    ]


def lane_distro(arch: str) -> str:
    """The release a lane boots: the suite its bootstrap kernel comes from
    (cloudboot/bootstrap/archsources.py: riscv64 trixie, loongarch64 forky), else (the host's
    apt) the lab's first stable release."""
    suite = archsources.for_arch(arch).kernel_suite
    return next((d for d, r in ALL_DISTROS.items() if r == suite), next(iter(DISTROS)))


def _matrix_results() -> dict[str, dict[str, Any]]:
    """The cells matrix/results.json says were booted (whatever the verdict)."""
    from lab.matrix import ROOT

    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
        doc = json.loads((ROOT / "matrix" / "results.json").read_text())
        return {c["cell"]: c for c in doc.get("cells", []) if c.get("status") != "not-run"}
    return {}


def _host_problems(cell: Cell, profiles: dict[str, ProfileReport], tools: dict[str, Check]
                   ) -> list[str]:
    """What this host lacks to boot `cell` (empty: nothing)."""
    problems: list[str] = []
    prof = profiles.get(cell.profile_name)
    if prof is None:
        problems.append(f"no lab profile {cell.profile_name}")
    else:
        problems += [c.detail for c in (prof.qemu, prof.firmware) if not c.ok]
    needs = {"libvirt": ["libvirt"], "vfkit": ["vfkit"], "openstack": ["socat"]}
    names = needs.get(cell.hypervisor, [])
    if cell.path == "C":
        names = [*names, "virt-firmware", "fsck.vfat"]
    return problems + [tools[n].detail for n in names if not tools[n].ok]


def lane_verdict(cell: Cell, profiles: dict[str, ProfileReport], tools: dict[str, Check],
                 booted: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    """(can run, why not or what runs it) for `cell` on this host."""
    from lab.commands.boot import runner_for
    from lab.matrix import expectation

    rule = expectation(cell)
    if rule is not None and rule.kind == "not_run":
        return False, rule.reason
    problems = _host_problems(cell, profiles, tools)
    if problems:
        return False, "; ".join(problems)
    entry = runner_for(cell)
    if entry is not None:
        note = f"runs through {entry.what}"
    elif cell.id in booted:  # e.g. the riscv64/loongarch64/armv7 cells of tests/e2e
        note = (f"runs in the matrix's e2e tests (python -m lab matrix; last result "
                f"{booted[cell.id].get('status')}); `lab boot` has no runner for it")
    else:
        return False, "no lab runner for this lane and path yet"
    if rule is not None and rule.kind == "fail":
        note += f"; expected to fail as {rule.category}: {rule.reason}"
    elif rule is not None and rule.kind == "known":
        note += f"; known {rule.category} failure outside cloudboot: {rule.reason}"
    return True, note


def lane_reports(profiles: dict[str, ProfileReport], tools: dict[str, Check]
                 ) -> list[LaneReport]:
    from lab.matrix import LANES

    booted = _matrix_results()
    out = []
    for hv, arch in LANES:
        distro = lane_distro(arch)
        for path in PATHS:
            cell = Cell(hv, arch, path, distro, "ext4")
            can_run, reason = lane_verdict(cell, profiles, tools, booted)
            out.append(LaneReport(hv, arch, path, distro, can_run, reason))
    return out


def kvm_device() -> str:
    """What /dev/kvm is here; whether KVM can run guests is the accel check's verdict."""
    if not os.path.exists("/dev/kvm"):
        return "missing"
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "present (rw)"
    return "present, not read-writable by this user"


def diagnose() -> Report:
    profiles = {name: check_profile(p) for name, p in PROFILES.items()}
    tools = tool_checks()
    by_name = {c.name: c for c in tools}
    mem = None
    with contextlib.suppress(OSError, ValueError):
        mem = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) >> 20
    host = {"machine": platform.machine(), "system": platform.system(),
            "kernel": platform.release(), "python": platform.python_version(),
            "cores": os.cpu_count(), "memory_mib": mem,
            "kvm_device": kvm_device()}
    return Report(host, list(profiles.values()), tools, lane_reports(profiles, by_name))


def render(report: Report) -> str:
    h = report.host
    lines = [f"host: {h['machine']} {h['system']} {h['kernel']}, {h['cores']} cores, "
             f"{h['memory_mib']} MiB, Python {h['python']}, /dev/kvm {h['kvm_device']}",
             "", "profiles:"]
    for p in report.profiles:
        lines.append(f"  {p.name}: {'ok' if p.ok else 'NOT USABLE'}")
        for c in (p.qemu, p.firmware, p.accel):
            lines.append(f"    {c.name:9} {'ok ' if c.ok else 'no '} {c.detail}")
        for n in p.notes:
            lines.append(f"    approx.   {n}")
    lines += ["", "tools:"]
    for c in report.tools:
        lines.append(f"  {c.name:16} {'ok ' if c.ok else 'no '} {c.detail}")
    lines += ["", "lanes (hypervisor · arch · path · the release it boots):"]
    for lane in report.lanes:
        state = "can run" if lane.can_run else "cannot"
        lines.append(f"  {lane.hypervisor:9} {lane.arch:11} {lane.path}  {lane.distro:9}  "
                     f"{state}: {lane.reason}")
    runnable = sum(1 for lane in report.lanes if lane.can_run)
    lines += ["", f"{runnable} of {len(report.lanes)} lane paths can run on this host."]
    return "\n".join(lines) + "\n"


def main(as_json: bool = False) -> int:
    report = diagnose()
    if as_json:
        json.dump(report.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(report))
    return 0
