"""Matrix cells: one boot of one distro via one path on one hypervisor and arch, and its result."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from cloudboot.arch import Arch, as_arch

Status = Literal["pass", "fail", "xfail", "xpass", "flaky", "not-run"]

# Distro names in the matrix, and the Debian release that builds each image. DISTROS are the
# stable releases every lane's grid runs (tests parametrise over them); TESTING_DISTROS are
# releases only some lanes need: Debian 14 (forky, testing) is the first with loong64, so the
# loongarch64 lane runs it and the other lanes do not (matrix/expected.toml says so per cell).
DISTROS = {"debian-12": "bookworm", "debian-13": "trixie"}
TESTING_DISTROS = {"debian-14": "forky"}
ALL_DISTROS = {**DISTROS, **TESTING_DISTROS}
FILESYSTEMS = ("ext4", "xfs", "btrfs")
PATHS = ("A", "B", "C", "D")


@dataclass(frozen=True, init=False)
class Cell:
    hypervisor: str  # qemu | libvirt | openstack | vfkit | vz
    arch: Arch  # x86_64 | aarch64 | riscv64 | loongarch64 | armv7
    path: str  # A | B | C | D
    distro: str  # debian-12 | debian-13 | debian-14
    fs: str  # ext4 | xfs | btrfs

    def __init__(self, hypervisor: str, arch: Arch | str, path: str, distro: str,
                 fs: str) -> None:
        """Cells are named at the edges (ids, the command line, test parameters); the arch is
        looked up once here and travels typed from then on."""
        for name, value in (("hypervisor", hypervisor), ("arch", as_arch(arch)), ("path", path),
                            ("distro", distro), ("fs", fs)):
            object.__setattr__(self, name, value)

    @property
    def id(self) -> str:
        return f"{self.hypervisor}-{self.arch}-{self.path}-{self.distro}-{self.fs}"

    @property
    def release(self) -> str:
        try:
            return ALL_DISTROS[self.distro]
        except KeyError:
            raise ValueError(f"cell {self.id}: unknown distro {self.distro!r} (known: "
                             f"{', '.join(ALL_DISTROS)})") from None

    @property
    def profile_name(self) -> str:
        """The lab profile (lab/profiles.py) the cell boots with: `vz` cells use the QEMU
        profile that approximates Apple's Virtualization.framework, others their arch's."""
        return "vz" if self.hypervisor == "vz" else self.arch.name

    @staticmethod
    def from_id(text: str) -> Cell:
        # The last field may itself hold dashes (extra cells such as "ext4-oci-plan").
        hv, arch, path, d1, d2, fs = text.split("-", 5)
        return Cell(hv, arch, path, f"{d1}-{d2}", fs)


@dataclass
class CellResult:
    cell: Cell
    status: Status
    category: str | None = None  # failure category (DESIGN §5) when status is fail/xfail
    evidence: str = ""
    reason: str = ""  # why not run, or why a failure is expected
    accel: str | None = None
    seconds: float | None = None  # wall time of the whole cell
    phase_times: dict[str, float] = field(default_factory=dict)  # seconds since guest reset
    userspace: dict[str, Any] | None = None
    banners: int = 0  # how many times cloudboot-init started
    assets: dict[str, str] = field(default_factory=dict)
    console_log: str | None = None
    finished: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(
        timespec="seconds"))
    # Where its evidence is kept (docs/run-directory.md): the run that booted it, its files
    # relative to that run's directory, and every earlier attempt when it was booted again.
    run: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    boot_status: Status | None = None  # with attempts: the last boot's own verdict

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["cell"] = self.cell.id
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> CellResult:
        d = dict(d)
        d["cell"] = Cell.from_id(d["cell"])
        return CellResult(**d)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def seconds(self) -> float:
        return round(time.monotonic() - self.t0, 2)
