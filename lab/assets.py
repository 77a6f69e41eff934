"""The lab's asset cache: sha256-pinned downloads, stored by content, fetched once.

An `Asset(name, url, sha256, size)` lands in `~/.cache/cloudboot/assets/<sha256>/<name>`:
- an exclusive-create lock file (`<sha256>.lock`, O_CREAT|O_EXCL) makes parallel pytest-xdist
  workers download it once; the others wait for the file (a lock whose owner died is taken over);
- the download streams into a temporary file, is checked against size and sha256, made
  read-only and renamed into place, so a half-written or wrong file is never seen under the
  final name; a file failing its hash is discarded with an error naming the URL and both hashes.

Debian packages are not pinned here: apt verifies them against the archive's signed indexes.
`debian_package(package, release)` fetches one from another Debian release (e.g. trixie's
firmware on a bookworm host) through cloudboot/debian/aptsuites.py's private apt root and
gives the .deb's sha256 for the results' provenance.

Distro cloud images are declared in CLOUD_IMAGES; `cloud.debian.org` does not resolve on the
lab's build hosts, so they carry no pinned hash yet and `fetch` refuses them with that reason.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cloudboot.fsutil import cache_dir

CHUNK = 1 << 20


class AssetError(RuntimeError):
    pass


@dataclass(frozen=True)
class Asset:
    name: str  # file name inside the cache entry
    url: str
    sha256: str | None  # hex digest; None = not pinned (fetch refuses it)
    size: int | None = None  # bytes, checked when known
    note: str = ""  # why it is unpinned, where the hash came from

    def __post_init__(self) -> None:
        if "/" in self.name or self.name in ("", ".", ".."):
            raise ValueError(f"asset name {self.name!r} must be a plain file name")
        if self.sha256 is not None and (len(self.sha256) != 64 or
                                        any(c not in "0123456789abcdef" for c in self.sha256)):
            raise ValueError(f"asset {self.name}: sha256 {self.sha256!r} is not 64 lowercase "
                             "hex digits")


# Distro cloud images the lab would boot unmodified. Their hashes would be pinned from Debian's
# signed SHA512SUMS/SHA256 lists; cloud.debian.org does not resolve on these hosts (checked with
# curl), so no hash was ever observed here and none is invented.
CLOUD_IMAGES: dict[str, Asset] = {
    "debian-12-genericcloud-amd64": Asset(
        "debian-12-genericcloud-amd64.qcow2",
        "https://cloud.debian.org/images/cloud/bookworm/latest/"
        "debian-12-genericcloud-amd64.qcow2",
        None, None, note="download blocked on this host: cloud.debian.org does not resolve"),
    "debian-12-genericcloud-arm64": Asset(
        "debian-12-genericcloud-arm64.qcow2",
        "https://cloud.debian.org/images/cloud/bookworm/latest/"
        "debian-12-genericcloud-arm64.qcow2",
        None, None, note="download blocked on this host: cloud.debian.org does not resolve"),
}


def progress(message: str) -> None:
    print(f"[lab.assets] {message}", file=sys.stderr, flush=True)


def assets_dir() -> Path:
    return cache_dir("assets")


def cached_path(asset: Asset, directory: Path | None = None) -> Path:
    if asset.sha256 is None:
        raise AssetError(f"asset {asset.name} ({asset.url}) has no pinned sha256"
                         + (f": {asset.note}" if asset.note else ""))
    return (directory or assets_dir()) / asset.sha256 / asset.name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def exclusive(lock: Path, wait_for: Path, timeout: float, poll: float = 0.2) -> Iterator[bool]:
    """Hold `lock` (exclusive create) unless `wait_for` appears first.

    Yields True when this process holds the lock and must produce `wait_for`, False when
    someone else produced it meanwhile. A lock whose owner process is gone is taken over.
    """
    deadline = time.monotonic() + timeout
    while True:
        if wait_for.exists():
            yield False
            return
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = int(lock.read_text().strip() or "0")
            except (OSError, ValueError):
                owner = 0
            if owner and not _pid_alive(owner):
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            if time.monotonic() > deadline:
                raise AssetError(f"{lock}: held by process {owner or '?'} for over "
                                 f"{timeout:.0f} s; remove it if that process is gone") from None
            time.sleep(poll)
            continue
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)
        try:
            if wait_for.exists():  # produced between our check and the create
                yield False
            else:
                yield True
        finally:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
        return


def _download(asset: Asset, dest: Path, timeout: float,
              report: Callable[[str], None]) -> str:
    """Stream asset.url into dest; returns the sha256 hex of what arrived."""
    h = hashlib.sha256()
    got = 0
    last = time.monotonic()
    try:
        with urllib.request.urlopen(asset.url, timeout=timeout) as resp, open(dest, "wb") as out:
            total = asset.size or int(resp.headers.get("Content-Length") or 0) or None
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                h.update(chunk)
                got += len(chunk)
                if asset.size is not None and got > asset.size:
                    raise AssetError(f"{asset.url}: more than the pinned {asset.size} bytes "
                                     "arrived; discarded")
                if time.monotonic() - last > 2:
                    last = time.monotonic()
                    pct = f" ({100 * got // total} %)" if total else ""
                    report(f"{asset.name}: {got >> 20} MiB{pct}")
            out.flush()
            os.fsync(out.fileno())
    except (urllib.error.URLError, OSError) as e:
        raise AssetError(f"cannot download {asset.name} from {asset.url}: {e}") from e
    if asset.size is not None and got != asset.size:
        raise AssetError(f"{asset.url}: got {got} bytes, the pinned size is {asset.size}; "
                         "discarded")
    return h.hexdigest()


def fetch(asset: Asset, *, directory: Path | None = None, timeout: float = 600.0,
          report: Callable[[str], None] = progress) -> Path:
    """The verified, read-only cached file for `asset`, downloading it once."""
    final = cached_path(asset, directory)
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    lock = final.parent.parent / f"{asset.sha256}.lock"
    with exclusive(lock, final, timeout) as mine:
        if not mine:
            return final
        report(f"downloading {asset.name} from {asset.url}")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{asset.name}.", suffix=".part",
                                        dir=final.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            actual = _download(asset, tmp, timeout, report)
            if actual != asset.sha256:
                raise AssetError(f"{asset.url}: sha256 mismatch for {asset.name}: expected "
                                 f"{asset.sha256}, got {actual}; the file was discarded")
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        report(f"{asset.name}: verified sha256 {asset.sha256[:16]}…")  # type: ignore[index]
    return final


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


# --- Debian packages from another release (cloudboot/debian/aptsuites.py: a private apt root) -
class PackageError(AssetError):
    pass


def debian_package(package: str, release: str) -> tuple[Path, str]:
    """(unpacked tree, "sha256:…" of the .deb) for an architecture-independent package of
    another Debian release, fetched with apt (verified by the release's signed index)."""
    from cloudboot.debian import aptsuites

    try:
        suite = aptsuites.get_suite(release)
        native = suite.arches[0]  # apt files `all` packages under the root's native arch
        tree = aptsuites.unpacked(suite, package, native)
    except aptsuites.SuiteError as e:
        raise PackageError(f"{package} from Debian {release}: {e}") from e
    deb_name = (tree / ".complete").read_text().strip()
    deb = next(iter(Path(aptsuites.cache_dir("debs", suite.name, native)).glob(deb_name)),
               None)
    return tree, debian_deb_digest(deb) if deb is not None else "unknown"


def debian_deb_digest(deb: Path) -> str:
    """"sha256:…" of a cached .deb, remembered beside it (apt verified it; this is provenance)."""
    meta = deb.parent / f".{deb.name}.sha256"
    if meta.exists():
        return meta.read_text().strip()
    digest = "sha256:" + sha256_file(deb)
    with contextlib.suppress(OSError):
        meta.write_text(digest + "\n")
    return digest


def is_blank(path: Path, probe: int = 1 << 16) -> bool:
    """True when the file's first `probe` bytes are all zero (an unformatted VARS template)."""
    try:
        with open(path, "rb") as f:
            head = f.read(probe)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return False
        raise
    return bool(head) and head.count(0) == len(head)
