"""UEFI firmware for lab guests, chosen from QEMU's firmware descriptor files.

QEMU's firmware interop spec (docs/interop/firmware.json) puts descriptors in
/usr/share/qemu/firmware, /etc/qemu/firmware and $XDG_CONFIG_HOME/qemu/firmware; a file name in a
later directory overrides the same name in an earlier one, and candidates are tried in file-name
order. We want plain UEFI: flash mapping, raw images, a VARS template, no Secure Boot, no SMM.
Known Debian paths are the fallback where no descriptor exists (e.g. trixie's riscv64/loong64
packages unpacked by hand).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab import qemu_private
from lab.profiles import Profile

SYSTEM_DESCRIPTOR_DIRS = (Path("/usr/share/qemu/firmware"), Path("/etc/qemu/firmware"))

# Features that change what boots or what the machine must provide: avoided.
UNWANTED_FEATURES = frozenset({"secure-boot", "requires-smm", "enrolled-keys", "amd-sev-es",
                               "amd-sev-snp", "intel-tdx"})

# fw_arch -> (code, vars) pairs tried in order when no descriptor matches.
FALLBACK_PATHS: dict[str, tuple[tuple[str, str], ...]] = {
    "x86_64": (
        ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
        ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
    ),
    "aarch64": (("/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"),),
    "arm": (("/usr/share/AAVMF/AAVMF32_CODE.fd", "/usr/share/AAVMF/AAVMF32_VARS.fd"),),
    "riscv64": (
        ("/usr/share/qemu-efi-riscv64/RISCV_VIRT_CODE.fd",
         "/usr/share/qemu-efi-riscv64/RISCV_VIRT_VARS.fd"),
    ),
    "loongarch64": (
        ("/usr/share/qemu-efi-loongarch64/QEMU_EFI.fd",
         "/usr/share/qemu-efi-loongarch64/QEMU_VARS.fd"),
    ),
}

# x86 OVMF maps CODE and VARS into one flash region just below 4 GiB: their sizes add up to it.
_X86_FLASH_TOTALS = (1 << 20, 2 << 20, 4 << 20)


class FirmwareError(RuntimeError):
    pass


@dataclass(frozen=True)
class Firmware:
    fw_arch: str
    code: Path
    vars_template: Path
    description: str
    descriptor: Path | None  # None when taken from FALLBACK_PATHS
    features: tuple[str, ...] = ()

    def check_pair(self) -> None:
        """Raise FirmwareError unless CODE and VARS exist and fit QEMU's pflash layout together."""
        for role, path in (("CODE", self.code), ("VARS template", self.vars_template)):
            if not path.is_file():
                raise FirmwareError(f"{self.fw_arch} firmware {role} {path} is missing "
                                    f"(from {self.descriptor or 'fallback paths'})")
        code, nvram = self.code.stat().st_size, self.vars_template.stat().st_size
        if self.fw_arch == "x86_64":
            if code + nvram not in _X86_FLASH_TOTALS:
                raise FirmwareError(
                    f"x86_64 firmware {self.code} ({code} B) and {self.vars_template} ({nvram} B) "
                    "are not a pair: their sizes must add up to 1, 2 or 4 MiB")
        elif code != nvram:
            # virt machines give each pflash bank the same size; a mismatched VARS fails to map.
            raise FirmwareError(
                f"{self.fw_arch} firmware {self.code} ({code} B) and {self.vars_template} "
                f"({nvram} B) are not a pair: pflash banks must be the same size")

    def fresh_vars(self, directory: Path, name: str = "vars.fd") -> Path:
        """Copy the VARS template into `directory` (one fresh copy per run: DESIGN §7)."""
        dest = Path(directory) / name
        shutil.copyfile(self.vars_template, dest)
        os.chmod(dest, 0o644)
        return dest

    def package_versions(self) -> dict[str, str]:
        """Debian package -> version for the CODE and VARS files (empty when not packaged)."""
        out: dict[str, str] = {}
        for path in (self.code, self.vars_template):
            pkg = owning_package(path)
            if pkg and pkg not in out:
                version = package_version(pkg)
                if version:
                    out[pkg] = version
        return out


def descriptor_dirs() -> list[Path]:
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [*SYSTEM_DESCRIPTOR_DIRS, Path(xdg) / "qemu" / "firmware"]


def load_descriptors(dirs: list[Path] | None = None) -> list[tuple[Path, dict]]:
    """Every descriptor, later directories overriding same-named files, in file-name order."""
    by_name: dict[str, Path] = {}
    for d in dirs if dirs is not None else descriptor_dirs():
        if d.is_dir():
            for f in d.glob("*.json"):
                by_name[f.name] = f
    out = []
    for name in sorted(by_name):
        path = by_name[name]
        if path.stat().st_size == 0:  # an empty file masks a lower-priority one (spec)
            continue
        try:
            out.append((path, json.loads(path.read_text())))
        except (OSError, json.JSONDecodeError) as e:
            raise FirmwareError(f"firmware descriptor {path}: {e}") from e
    return out


def _matches(desc: dict, fw_arch: str, fw_machine: str) -> bool:
    if "uefi" not in desc.get("interface-types", []):
        return False
    mapping = desc.get("mapping", {})
    if mapping.get("device") != "flash" or "nvram-template" not in mapping:
        return False
    if mapping.get("executable", {}).get("format", "raw") != "raw":
        return False
    if mapping["nvram-template"].get("format", "raw") != "raw":
        return False
    if UNWANTED_FEATURES & set(desc.get("features", [])):
        return False
    for target in desc.get("targets", []):
        if target.get("architecture") != fw_arch:
            continue
        # Globs are for versioned names (pc-q35-7.2, virt-8.0); test a versioned sample.
        if any(fnmatch.fnmatch(f"{fw_machine}-0.0", g) or fnmatch.fnmatch(fw_machine, g)
               for g in target.get("machines", [])):
            return True
    return False


def select_firmware(profile: Profile, dirs: list[Path] | None = None,
                    fallback: bool = True) -> Firmware:
    """The first usable UEFI firmware for `profile`, checked as a CODE/VARS pair."""
    problems: list[str] = []
    for path, desc in load_descriptors(dirs):
        if not _matches(desc, profile.fw_arch, profile.fw_machine):
            continue
        mapping = desc["mapping"]
        fw = Firmware(profile.fw_arch, Path(mapping["executable"]["filename"]),
                      Path(mapping["nvram-template"]["filename"]),
                      desc.get("description", path.name), path, tuple(desc.get("features", [])))
        try:
            fw.check_pair()
        except FirmwareError as e:
            problems.append(str(e))
            continue
        return fw
    if dirs is None:
        # riscv64/loongarch64 EDK2 from trixie/forky, unpacked by lab/qemu_private.py.
        private = installed_private_firmware(profile.fw_arch)
        if private is not None:
            fw = Firmware(profile.fw_arch, private[0], private[1],
                          f"{profile.fw_arch} UEFI (private, {private[0].parent})", None)
            try:
                fw.check_pair()
            except FirmwareError as e:
                problems.append(str(e))
            else:
                return fw
    if fallback:
        for code, nvram in FALLBACK_PATHS.get(profile.fw_arch, ()):
            fw = Firmware(profile.fw_arch, Path(code), Path(nvram),
                          f"{profile.fw_arch} UEFI (known Debian path)", None)
            try:
                fw.check_pair()
            except FirmwareError as e:
                problems.append(str(e))
                continue
            return fw
    detail = "; ".join(problems) if problems else "no descriptor or known path matched"
    raise FirmwareError(f"no UEFI firmware for {profile.name} ({profile.fw_arch}, "
                        f"{profile.fw_machine}): {detail}")


def installed_private_firmware(fw_arch: str) -> tuple[Path, Path] | None:
    """CODE/VARS of firmware the private-QEMU lanes unpacked into the cache, if any."""
    return qemu_private.installed_firmware(fw_arch)


def owning_package(path: Path) -> str | None:
    """The Debian package that ships `path` (symlinks tried as given, then resolved)."""
    for candidate in dict.fromkeys((str(path), str(Path(path).resolve()))):
        try:
            out = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True,
                                 text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if out.returncode == 0 and ":" in out.stdout:
            return out.stdout.split(":", 1)[0].split(",")[0].strip()
    return None


def package_version(package: str) -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# Debian releases whose firmware packages ship a formatted VARS template where bookworm's is
# all zeros (AAVMF, AAVMF32: DESIGN §7); the template works with bookworm's CODE.
_VARS_DONORS: dict[str, tuple[str, str, str]] = {
    "aarch64": ("qemu-efi-aarch64", "trixie", "usr/share/AAVMF/AAVMF_VARS.fd"),
    "arm": ("qemu-efi-arm", "trixie", "usr/share/AAVMF/AAVMF32_VARS.fd"),
}


def with_editable_vars(fw: Firmware) -> Firmware:
    """`fw`, or a copy whose VARS template is a formatted variable store the host can edit
    (virt-firmware, cloudboot.efi.varstore) when `fw`'s template is all zeros."""
    import dataclasses

    from lab.assets import debian_package, is_blank

    if not is_blank(fw.vars_template):
        return fw
    donor = _VARS_DONORS.get(fw.fw_arch)
    if donor is None:
        raise FirmwareError(f"{fw.vars_template} is all zeros and no other release's "
                            f"{fw.fw_arch} template is known")
    package, release, rel = donor
    tree, _ = debian_package(package, release)
    template = tree / rel
    if not template.is_file() or is_blank(template):
        raise FirmwareError(f"{package} from Debian {release} has no usable {rel}")
    out = dataclasses.replace(fw, vars_template=template,
                              description=f"{fw.description}; VARS template from {release}'s "
                                          f"{package}")
    out.check_pair()
    return out
