"""A Nova-shaped metadata service on loopback, for the openstack lane.

Serves the same documents as the instance's config drive (`cloudboot.media.configdrive`):

  /openstack                         the versions, one per line ("2012-08-10", "latest")
  /openstack/<version>               the files of that version, one per line
  /openstack/<version>/<file>        meta_data.json, network_data.json, vendor_data.json, user_data
  /latest/meta-data/                 a minimal EC2-style tree: instance-id, hostname,
  /latest/meta-data/<key>            local-hostname, placement/availability-zone

on 127.0.0.1 (a free port), in a thread. Every request is logged (time, client, method, path,
status) so a test can assert the guest asked. The guest reaches it at http://169.254.169.254/
through QEMU user networking: `guestfwd()` gives the rule; the NIC needs
`net=169.254.0.0/16` and `restrict=on` (DESIGN §7).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudboot.media import configdrive
from cloudboot.media.configdrive import InstanceMetadata
from lab.hypervisors.vmspec import guestfwd

GUEST_ADDRESS = "169.254.169.254"
GUEST_NET = "169.254.0.0/16"  # slirp's network must hold the metadata address


@dataclass(frozen=True)
class Request:
    t: float  # time.monotonic() when it arrived
    client: str
    method: str
    path: str
    status: int


def _tree(md: InstanceMetadata) -> dict[str, bytes]:
    """URL path -> body for every document the service answers."""
    docs = {"/" + k: v for k, v in configdrive.files(md).items()}
    tree = dict(docs)
    versions = sorted({k.split("/")[2] for k in docs})
    tree["/openstack"] = "\n".join(versions).encode()
    for v in versions:
        prefix = f"/openstack/{v}/"
        tree[f"/openstack/{v}"] = "\n".join(
            sorted(k[len(prefix):] for k in docs if k.startswith(prefix))).encode()
    hostname = md.hostname if md.hostname is not None else md.name
    ec2 = {"instance-id": md.uuid, "hostname": hostname, "local-hostname": hostname,
           "placement/availability-zone": md.availability_zone}
    for k, val in ec2.items():
        tree[f"/latest/meta-data/{k}"] = val.encode()
    tree["/latest/meta-data"] = b"hostname\ninstance-id\nlocal-hostname\nplacement/"
    tree["/latest/meta-data/placement"] = b"availability-zone"
    return tree


class MetadataService:
    """The service for one instance; use as a context manager or start()/stop()."""

    def __init__(self, md: InstanceMetadata, host: str = "127.0.0.1") -> None:
        self.md = md
        self._host = host
        self._tree = _tree(md)
        self._log: list[Request] = []
        self._cond = threading.Condition()
        service = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "cloudboot-lab-metadata/1"
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                service._answer(self, head=False)

            def do_HEAD(self) -> None:  # noqa: N802
                service._answer(self, head=True)

            def log_message(self, *args: object) -> None:
                pass  # our own log is service.requests

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"{self._host}:{self._server.server_address[1]}"

    def guestfwd(self) -> str:
        """The QEMU guestfwd rule that puts this service at http://169.254.169.254/."""
        return guestfwd(f"{GUEST_ADDRESS}:80", self.address)

    def start(self) -> MetadataService:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            name="metadata-service", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> MetadataService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def requests(self) -> list[Request]:
        with self._cond:
            return list(self._log)

    def wait_for(self, path: str, timeout: float) -> Request | None:
        """The first request for `path` (waiting up to `timeout` seconds), or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hit = next((r for r in self._log if r.path == path), None)
                left = deadline - time.monotonic()
                if hit is not None or left <= 0:
                    return hit
                self._cond.wait(left)

    def _answer(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path = h.path.split("?", 1)[0]
        key = path.rstrip("/") or "/"
        body = self._tree.get(key)
        status = 200 if body is not None else 404
        with self._cond:
            self._log.append(Request(time.monotonic(), h.client_address[0], h.command, path,
                                     status))
            self._cond.notify_all()
        if body is None:
            body = f"404 Not Found: {path}\n".encode()
        ctype = "application/json" if key.endswith(".json") else "text/plain; charset=utf-8"
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)


@contextmanager
def serving(md: InstanceMetadata) -> Iterator[MetadataService]:
    with MetadataService(md) as svc:
        yield svc
