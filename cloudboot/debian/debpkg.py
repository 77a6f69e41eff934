"""Fetch Debian packages into the cloudboot cache and unpack them (host side).

Packages are fetched with the host's own apt client (`apt-get download`), so whatever
archive the host is configured for is used; foreign architectures need
`dpkg --add-architecture` first (the set-up step does that).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from cloudboot.fsutil import cache_dir, file_lock, stamped_memo


class PackageError(RuntimeError):
    pass


def _run(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise PackageError(f"{cmd[0]} not found: fetching Debian packages needs apt") from None
    if proc.returncode != 0:
        raise PackageError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-400:]}")
    return proc.stdout


def _apt_stamp() -> str:
    """Changes whenever `apt-get update` refreshes the package lists."""
    lists = Path("/var/lib/apt/lists")
    try:
        return str(max(f.stat().st_mtime_ns for f in lists.iterdir()))
    except (OSError, ValueError):
        return "none"


def _memo(kind: str, package: str, debian_arch: str, compute):  # type: ignore[no-untyped-def]
    """apt-cache answers take seconds; remember them until the package lists change."""
    return stamped_memo(cache_dir("debs") / "apt-answers.json", _apt_stamp(),
                        f"{kind}:{package}:{debian_arch}", compute)


def resolve(package: str, debian_arch: str) -> str:
    return str(_memo("resolve", package, debian_arch, lambda: _resolve(package, debian_arch)))


def _resolve(package: str, debian_arch: str) -> str:
    """Follow a metapackage (e.g. linux-image-cloud-amd64) to the package holding files.

    Only a package whose one dependency is another linux-image-* is followed.
    """
    out = _run(["apt-cache", "depends", f"{package}:{debian_arch}"])
    deps = re.findall(r"^\s+Depends: (\S+)", out, re.M)
    images = [d.split(":")[0] for d in deps if d.startswith("linux-image-")]
    if package.startswith("linux-image-") and len(images) == 1:
        return _resolve(images[0], debian_arch)
    return package


def download(package: str, debian_arch: str) -> Path:
    """Return the cached .deb for `package` (current candidate version), downloading it once."""
    version = str(_memo("version", package, debian_arch,
                        lambda: _candidate_version(package, debian_arch)))
    directory = cache_dir("debs", debian_arch)
    fname_version = version.replace(":", "%3a")
    with file_lock(directory / ".lock"):
        for existing in directory.glob(f"{package}_{fname_version}_*.deb"):
            return existing
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            proc = subprocess.run(
                ["apt-get", "download", f"{package}:{debian_arch}={version}"],
                cwd=tmp, capture_output=True, text=True, check=False,
            )
            debs = list(Path(tmp).glob("*.deb"))
            if proc.returncode != 0 or len(debs) != 1:
                raise PackageError(
                    f"apt-get download {package}:{debian_arch} failed: "
                    f"{proc.stderr.strip()[-400:]}"
                )
            final = directory / debs[0].name
            shutil.move(str(debs[0]), final)
            final.chmod(0o444)
            return final


def _candidate_version(package: str, debian_arch: str) -> str:
    out = _run(["apt-cache", "policy", f"{package}:{debian_arch}"])
    m = re.search(r"Candidate: (\S+)", out)
    if not m or m.group(1) == "(none)":
        hint = ""
        if debian_arch != host_debian_arch():
            hint = f" (is the {debian_arch} architecture added with dpkg --add-architecture?)"
        raise PackageError(f"Debian package {package}:{debian_arch} is not available{hint}")
    return m.group(1)


def host_debian_arch() -> str:
    return _run(["dpkg", "--print-architecture"]).strip()


def extract(deb: Path, dest: Path) -> Path:
    """Unpack a .deb's data into `dest` (created); returns dest."""
    dest.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb), str(dest)])
    return dest


def unpacked(package: str, debian_arch: str) -> Path:
    """The package's files, unpacked once into the cache (keyed by the .deb's name)."""
    deb = download(resolve(package, debian_arch), debian_arch)
    return unpack_once(deb, cache_dir("unpacked", debian_arch) / deb.stem)


def unpack_once(deb: Path, root: Path) -> Path:
    """`deb`'s files in `root`, unpacked by one process once: a `.complete` marker says it is
    whole, and a root left half-unpacked (a crash) is unpacked again."""
    if (root / ".complete").exists():
        return root
    with file_lock(root.parent / ".lock"):
        if not (root / ".complete").exists():
            if root.exists():
                shutil.rmtree(root)
            extract(deb, root)
            (root / ".complete").write_text(deb.name + "\n")
    return root
