"""Path C's "uki" staging form: a UKI assembled in the guest (issue 7).

The EFI stubs of the armv7, riscv64 and loongarch64 Debian kernels ignore `initrd=` in their
load options (DESIGN §7), so the split form (kernel + initrd + `initrd=` in the Boot####)
boots those kernels without their initrd. There the firmware starts one file that carries
everything: the bootstrap's own systemd-stub with the target kernel, initrd, command line and
os-release appended as sections (`cloudboot.pe.uki.layout` + `stream`, the same code
`cloudboot build` uses), staged as `\\EFI\\Linux\\<safe>-uki.efi` (staging.stage_uki).

The stub: `cloudboot build` appends a small newc cpio holding STUB_PATH to the bootstrap
initramfs, the very stub the bootstrap UKI was built with, so the guest needs nothing from
the target (whose image rarely has systemd-boot-efi) and the stub is one the lab has booted
on this firmware.

Load options: none. systemd-stub (252 here, 257 in trixie, 262 in forky) uses the load
options instead of the UKI's `.cmdline` only when Secure Boot is off and the first UCS-2
character is printable; with Secure Boot on, a UKI's `.cmdline` always wins and the options
are ignored. Passing the command line in both places would therefore either be redundant or
silently ignored; an entry without optional data behaves the same with Secure Boot on or off,
keeps the Boot#### small (variable stores fill up) and leaves the command line in the
section that is measured with the image. The stub hands `.initrd` to the kernel itself
(boot_params on x86, the LINUX_INITRD_MEDIA LoadFile2 protocol on the other arches), so no
kernel-side `initrd=` support is needed.

Memory: the guest has about 1 GiB. Only the stub (~100 KB) and the target kernel (already
read for the split form) are held; the layout is computed from sizes, and the initrd is
streamed from the target disk in 1 MiB chunks straight through the SHA-256 and onto the ESP.
The PE checksum stays 0: computing it would need a second pass over the initrd before the
header could be written, and neither EDK2's PE loader nor systemd-stub checks it
(Authenticode hashes skip the field).

Standard library only (PID 1).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cloudboot import pe
from cloudboot.arch import Arch
from cloudboot.pe import uki

STUB_PATH = Path("/usr/lib/cloudboot/stub.efi")
FORMS = ("auto", "uki", "split")
# Arches whose kernel EFI stub ignores `initrd=` in its load options (DESIGN §7).
INITRD_OPTION_IGNORED = frozenset({"armv7", "riscv64", "loongarch64"})
CHUNK = 1 << 20
OSREL_MAX = 64 * 1024


class UkiStageError(ValueError):
    """The UKI cannot be assembled; the message says what is missing or wrong."""


def choose_form(setting: str, arch: Arch) -> str:
    """`cloudboot.stage=` (auto|uki|split) -> the form to stage on this arch."""
    if setting not in FORMS:
        raise UkiStageError(f"cloudboot.stage={setting!r}: expected one of {', '.join(FORMS)}")
    if setting == "auto":
        return "uki" if arch.name in INITRD_OPTION_IGNORED else "split"
    return setting


def read_stub(arch: Arch, path: Path = STUB_PATH) -> bytes:
    """The systemd-stub `cloudboot build` put into this initramfs, checked for `arch`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UkiStageError(
            f"no systemd-stub at {path} in the bootstrap initramfs: rebuild boot.iso with "
            "this cloudboot (`cloudboot build` adds it), or stage with cloudboot.stage=split"
        ) from None
    except OSError as e:
        raise UkiStageError(f"cannot read the systemd-stub {path}: {e}") from None
    try:
        img = pe.parse(data, str(path))
    except pe.PEError as e:
        raise UkiStageError(str(e)) from None
    if img.machine != arch.pe_machine:
        got = pe.MACHINE_NAMES.get(img.machine, hex(img.machine))
        raise UkiStageError(f"{path}: a systemd-stub for {got}, this machine is {arch.name}")
    if img.section(".linux") is not None:
        raise UkiStageError(f"{path}: already a UKI (has .linux), not a bare systemd-stub")
    return data


def osrel_for(target: str, version: str, root: Path | None) -> str:
    """The `.osrel` text: the target's own os-release when its root is mounted at `root`,
    else a short one naming the target (boot menus show PRETTY_NAME)."""
    if root is not None:
        for rel in ("etc/os-release", "usr/lib/os-release"):
            p = root / rel
            with contextlib.suppress(OSError):  # an absolute link points into the target
                if p.is_symlink() and os.path.isabs(link := os.readlink(p)):
                    p = root / link.lstrip("/")
            try:
                if p.is_file() and p.stat().st_size <= OSREL_MAX:
                    text = p.read_text("utf-8", "replace")
                    if text.strip():
                        return text
            except OSError:
                continue
    clean = target.replace('"', "'").replace("\n", " ")
    return (f'NAME="cloudboot staged"\nID=cloudboot-staged\n'
            f'PRETTY_NAME="cloud-boot {clean}"\nVERSION_ID="{version.replace(chr(34), "")}"\n')


def _kernel_release(version: str) -> str | None:
    """`version` when it looks like `uname -r` (6.1.0-56-cloud-amd64), else None."""
    v = version.strip()
    if v and v[0].isdigit() and "." in v and not any(c.isspace() for c in v):
        return v
    return None


@dataclass(frozen=True)
class Assembly:
    """A UKI ready to stream: the layout and where each section's bytes come from."""

    layout: uki.Layout
    kernel: bytes
    initrd: Path | None
    cmdline: bytes
    osrel: bytes
    uname: bytes | None

    @property
    def size(self) -> int:
        return self.layout.size

    def section_sizes(self) -> dict[str, int]:
        return {p.name: p.size for p in self.layout.placements}

    def chunks(self) -> Iterator[bytes | memoryview]:
        """The UKI's bytes in file order, at most CHUNK at a time past the header."""
        view = memoryview(self.kernel)
        sources: dict[str, Iterable[bytes | memoryview]] = {
            ".osrel": iter([self.osrel]),
            ".cmdline": iter([self.cmdline]),
            ".uname": iter([self.uname or b""]),
            ".initrd": _file_chunks(self.initrd) if self.initrd else iter([]),
            ".linux": (view[i:i + CHUNK] for i in range(0, len(view), CHUNK)),
        }
        return uki.stream(self.layout, sources)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def prepare(stub: bytes, kernel: bytes, initrd: Path | None, cmdline: str, *, arch: Arch,
            osrel: str, version: str = "") -> Assembly:
    """Lay out the UKI (no section data read yet). `kernel` is what the firmware can start
    (staging.kernel_for_firmware). Raises UkiStageError naming the part at fault."""
    raw_cmdline = cmdline.strip().encode()
    if len(raw_cmdline) >= uki.MAX_CMDLINE:
        raise UkiStageError(f"the target command line is {len(raw_cmdline)} bytes; a UKI's "
                            f".cmdline takes at most {uki.MAX_CMDLINE - 1}")
    try:
        uki.check_kernel(kernel, arch, "target kernel")
    except uki.UKIError as e:
        raise UkiStageError(str(e)) from None
    initrd_size = 0
    if initrd is not None:
        try:
            initrd_size = os.stat(initrd).st_size
        except OSError as e:
            raise UkiStageError(f"target initrd {initrd}: {e.strerror}") from None
    release = _kernel_release(version)
    raw_osrel = osrel.encode()
    uname = release.encode() if release else None
    sizes = [(".osrel", len(raw_osrel)), (".cmdline", len(raw_cmdline))]
    if uname:
        sizes.append((".uname", len(uname)))
    if initrd is not None:
        sizes.append((".initrd", initrd_size))
    sizes.append((".linux", len(kernel)))
    try:
        lay = uki.layout(stub, sizes, arch)
    except (uki.UKIError, pe.PEError) as e:
        raise UkiStageError(f"systemd-stub: {e}") from None
    problems = pe.check_uki(lay.head, arch.pe_machine, size=lay.size)
    if problems:
        raise UkiStageError("the UKI would fail the PE check: " + "; ".join(problems))
    return Assembly(lay, kernel, initrd, raw_cmdline, raw_osrel, uname)
