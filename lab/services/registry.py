"""A real OCI registry for tests: Debian's `docker-registry` (distribution) on 127.0.0.1.

Each `LocalRegistry` gets its own temp config and storage on a free port and is stopped (and
its storage removed) on exit. `users` turns on htpasswd basic auth (bcrypt via libcrypt);
`auth` is a ready `auth:` config block instead (e.g. `TokenService.registry_auth()`: bearer).
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

BINARY = "docker-registry"
CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
{auth}"""


class RegistryError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bcrypt(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # libcrypt's bcrypt; removed in 3.13, fine on the 3.11 lab

        # cost 4 (16 rounds): these are test passwords, and the registry checks every request
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))


def available() -> str | None:
    """None when the registry can run here, else why not."""
    if shutil.which(BINARY) is None and not Path("/usr/bin", BINARY).exists():
        return f"{BINARY} is not installed (apt-get install docker-registry)"
    return None


class LocalRegistry:
    def __init__(self, users: dict[str, str] | None = None, auth: str | None = None) -> None:
        self.users = users or {}
        self.auth = auth
        self.port = 0
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> LocalRegistry:
        why = available()
        if why:
            raise RegistryError(why)
        self.dir = Path(tempfile.mkdtemp(prefix="cloudboot-registry-"))
        auth = self.auth or ""
        if self.users:
            htp = self.dir / "htpasswd"
            htp.write_text("".join(f"{u}:{_bcrypt(p)}\n" for u, p in self.users.items()))
            auth = f"auth:\n  htpasswd:\n    realm: cloudboot-lab\n    path: {htp}\n"
        self.port = free_port()
        cfg = self.dir / "config.yml"
        cfg.write_text(CONFIG.format(storage=self.dir / "storage", port=self.port, auth=auth))
        log = open(self.dir / "registry.log", "wb")  # noqa: SIM115 - lives as long as proc
        self.proc = subprocess.Popen([BINARY, "serve", str(cfg)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RegistryError(f"{BINARY} exited with {self.proc.returncode}: "
                                    f"{self.log_tail()}")
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection(self.host, timeout=2)
                conn.request("GET", "/v2/")
                status = conn.getresponse().status
                conn.close()
                if status in (200, 401):
                    return self
            time.sleep(0.05)
        self.stop()
        raise RegistryError(f"{BINARY} on {self.host} not ready after {timeout}s")

    def log_tail(self, n: int = 2000) -> str:
        if self.dir is None:
            return ""
        try:
            return (self.dir / "registry.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(users: dict[str, str] | None = None,
            auth: str | None = None) -> Iterator[LocalRegistry]:
    """`with running() as reg:` — the pytest fixtures wrap this."""
    reg = LocalRegistry(users, auth)
    with reg:
        yield reg
