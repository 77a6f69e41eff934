"""Debian packages from suites the host is not configured for, through a private apt root.

The host runs bookworm; the riscv64/loongarch64/armv7 bootstrap UKIs
(cloudboot/bootstrap/archsources.py) and the lab need packages from bookworm-backports (QEMU 10),
trixie (riscv64 kernel, firmware, systemd-stub) and forky (loong64). Each suite gets its own apt
state under the cloudboot cache (lists, cache, an empty dpkg status, deb822 sources), so the host's
apt configuration is never touched and the ordinary `apt-get update` / `apt-get download` clients do
the work. One suite per root keeps candidate versions unambiguous (bookworm-backports' amd64 QEMU
never competes with trixie's).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cloudboot.debian import debpkg
from cloudboot.fsutil import cache_dir, file_lock, stamped_memo

MIRROR = os.environ.get("CLOUDBOOT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Package lists older than this are refreshed on the next use.
MAX_LIST_AGE = 7 * 24 * 3600


class SuiteError(RuntimeError):
    pass


@dataclass(frozen=True)
class Suite:
    name: str  # our key
    codename: str  # Debian suite
    arches: tuple[str, ...]  # Debian architectures indexed (the first is apt's native one)

    def root(self) -> Path:
        return cache_dir("apt", self.name)


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        # QEMU 10.0 for the host (riscv64 EDK2 and loongarch64 need QEMU >= 8.1).
        Suite("bookworm-backports", "bookworm-backports", ("amd64",)),
        # trixie is the first release with riscv64; its armhf systemd-stub works with
        # current tooling where bookworm's does not (DESIGN §7); firmware is arch all.
        Suite("trixie", "trixie", ("riscv64", "armhf", "amd64")),
        # loong64 is in the main archive from forky on.
        Suite("forky", "forky", ("loong64", "amd64")),
    )
}


def get_suite(name: str) -> Suite:
    try:
        return SUITES[name]
    except KeyError:
        raise SuiteError(f"unknown private apt suite {name!r} (known: "
                         f"{', '.join(sorted(SUITES))})") from None


def sources_text(suite: Suite, mirror: str = MIRROR) -> str:
    """The deb822 sources file of a suite's private root."""
    return (f"Types: deb\nURIs: {mirror}\nSuites: {suite.codename}\nComponents: main\n"
            f"Architectures: {' '.join(suite.arches)}\nSigned-By: {KEYRING}\n")


def apt_options(suite: Suite) -> list[str]:
    """`-o` options that point apt at the suite's private state and nothing of the host's."""
    root = suite.root()
    return [
        "-o", f"Dir::State={root / 'state'}",
        "-o", f"Dir::State::status={root / 'status'}",
        "-o", f"Dir::Cache={root / 'cache'}",
        "-o", f"Dir::Etc::SourceList={root / 'sources.sources'}",
        "-o", f"Dir::Etc::SourceParts={root / 'sources.d'}",
        "-o", f"Dir::Etc::Preferences={root / 'preferences'}",
        "-o", f"Dir::Etc::PreferencesParts={root / 'preferences.d'}",
        "-o", f"APT::Architecture={suite.arches[0]}",
        "-o", f"APT::Architectures={','.join(suite.arches)}",
        "-o", "APT::Get::List-Cleanup=0",
        "-o", "Acquire::Languages=none",
        "-o", "Debug::NoLocking=1",
    ]


def _prepare(suite: Suite) -> None:
    root = suite.root()
    for d in ("state/lists/partial", "cache/archives/partial", "sources.d", "preferences.d"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "status").touch()
    (root / "preferences").touch()
    text = sources_text(suite)
    src = root / "sources.sources"
    if not src.is_file() or src.read_text() != text:
        src.write_text(text)
        stamp = root / "updated"
        if stamp.exists():
            stamp.unlink()  # sources changed: the lists are stale


def _run(cmd: list[str], what: str, timeout: float = 900) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise SuiteError(f"{cmd[0]} not found: {what} needs apt") from None
    except subprocess.TimeoutExpired:
        raise SuiteError(f"{what}: {cmd[0]} took over {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise SuiteError(f"{what}: {' '.join(cmd[:2])} … failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def update(suite: Suite, force: bool = False) -> None:
    """`apt-get update` for the suite's private root when its lists are missing or old."""
    root = suite.root()
    with file_lock(root / ".lock"):
        _prepare(suite)
        stamp = root / "updated"
        if not force and stamp.is_file() and time.time() - stamp.stat().st_mtime < MAX_LIST_AGE:
            return
        _run(["apt-get", *apt_options(suite), "update"], f"apt-get update of {suite.codename}")
        stamp.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))


def _memo(suite: Suite, key: str, compute: Callable[[], object]) -> object:
    """apt-cache answers take seconds; keep them until the suite's lists are refreshed."""
    update(suite)
    stamp = (suite.root() / "updated").read_text().strip()
    return stamped_memo(suite.root() / "answers.json", stamp, key, compute)


def candidate(suite: Suite, package: str, arch: str) -> str:
    """The version apt would take of `package`:`arch` from the suite."""
    return str(_memo(suite, f"candidate:{package}:{arch}",
                     lambda: _candidate(suite, package, arch)))


def _candidate(suite: Suite, package: str, arch: str) -> str:
    out = _run(["apt-cache", *apt_options(suite), "policy", f"{package}:{arch}"],
               f"apt-cache policy {package}:{arch} in {suite.codename}")
    m = re.search(r"Candidate: (\S+)", out)
    if not m or m.group(1) == "(none)":
        raise SuiteError(f"Debian package {package}:{arch} is not in {suite.codename} "
                         f"(private apt root {suite.root()})")
    return m.group(1)


def depends(suite: Suite, package: str, arch: str) -> list[str]:
    """Names of the packages `package` Depends on."""
    found = _memo(suite, f"depends:{package}:{arch}", lambda: _depends(suite, package, arch))
    if not isinstance(found, list):
        raise SuiteError(f"{suite.root() / 'answers.json'}: depends:{package} is not a list")
    return [str(d) for d in found]


def _depends(suite: Suite, package: str, arch: str) -> list[str]:
    out = _run(["apt-cache", *apt_options(suite), "depends", f"{package}:{arch}"],
               f"apt-cache depends {package}:{arch} in {suite.codename}")
    return [d.split(":")[0] for d in re.findall(r"^\s+\|?Depends: <?([^\s>]+)", out, re.M)]


def resolve_metapackage(suite: Suite, package: str, arch: str) -> str:
    """Follow a linux-image-* metapackage to the one linux-image-* package with the files."""
    if not package.startswith("linux-image-"):
        return package
    images = [d for d in depends(suite, package, arch) if d.startswith("linux-image-")]
    if len(images) == 1 and images[0] != package:
        return resolve_metapackage(suite, images[0], arch)
    return package


def download(suite: Suite, package: str, arch: str) -> Path:
    """The .deb of `package`:`arch` (the suite's candidate), downloaded once into the cache."""
    version = candidate(suite, package, arch)
    directory = cache_dir("debs", suite.name, arch)
    with file_lock(directory / ".lock"):
        for existing in directory.glob(f"{package}_{version.replace(':', '%3a')}_*.deb"):
            return existing
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            # apt-get download writes into its working directory.
            try:
                proc = subprocess.run(
                    ["apt-get", *apt_options(suite), "download", f"{package}:{arch}={version}"],
                    cwd=tmp, capture_output=True, text=True, check=False, timeout=900)
            except subprocess.TimeoutExpired:
                raise SuiteError(f"apt-get download {package}:{arch} from {suite.codename} "
                                 "took over 900 s") from None
            debs = list(Path(tmp).glob("*.deb"))
            if proc.returncode != 0 or len(debs) != 1:
                raise SuiteError(f"apt-get download {package}:{arch} from {suite.codename} "
                                 f"failed: {proc.stderr.strip()[-400:]}")
            final = directory / debs[0].name
            shutil.move(str(debs[0]), final)
            final.chmod(0o444)
            return final


def unpacked(suite: Suite, package: str, arch: str) -> Path:
    """The package's files, unpacked once into the cache (keyed by suite and .deb name)."""
    deb = download(suite, resolve_metapackage(suite, package, arch), arch)
    try:
        return debpkg.unpack_once(deb, cache_dir("unpacked", suite.name, arch) / deb.stem)
    except debpkg.PackageError as e:
        raise SuiteError(f"unpacking {deb.name}: {e}") from None
