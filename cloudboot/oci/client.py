"""A registry client over cloudboot.httpmini: manifests, digest-checked blobs, auth, retries.

Standard library only (it runs in the guest, where `ssl` is only there if someone packed it:
https refs then fail with a clear message). Every fetch is capped in size and checked against
its digest before the caller sees a byte; transport errors, 5xx and 429 are retried with
exponential backoff (Retry-After honoured, capped).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cloudboot import httpmini
from cloudboot.oci import mediatypes as mt
from cloudboot.oci.manifest import Descriptor, Manifest, ManifestError, parse_manifest
from cloudboot.oci.ref import Reference

MANIFEST_CAP = 4 << 20
# A name, not a literal: the initramfs closure follows import_module("…") literals, and
# ssl would bring libssl/libcrypto (~2.5 MB gzip). The guest is http-only unless ssl is packed.
TLS_MODULE = "ssl"
CHUNK = 1 << 20
MAX_REDIRECTS = 5


class OCIError(Exception):
    """A pull or push failed. kind: network (transport, timeouts, 5xx after retries),
    http (other status), auth, not-found, digest, too-large, manifest, platform, media-type."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes = b""


@dataclass
class Registry:
    """One client for any number of registries; auth tokens are kept per host and scope."""

    insecure: bool = False  # plain http for refs without a scheme
    timeout: float = 30.0  # per socket operation
    retries: int = 4
    backoff: float = 0.5
    username: str | None = None
    password: str | None = None
    token: str | None = None  # a bearer token given up front
    log: Callable[[str], None] | None = None
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=lambda: {"bytes": 0, "seconds": 0.0})

    # --- transport ------------------------------------------------------------------------
    def _scheme(self, ref: Reference) -> str:
        return ref.scheme or ("http" if self.insecure else "https")

    def _connect(self, scheme: str, host: str) -> httpmini.HTTPConnection:
        if scheme == "http":
            return httpmini.HTTPConnection(host, timeout=self.timeout)
        try:
            # Not a plain `import`: the initramfs closure would then pack ssl + libcrypto
            # (~2.5 MB gzip). HTTPS works where ssl exists (the host); the guest says so.
            ssl = importlib.import_module(TLS_MODULE)
        except ImportError:
            raise OCIError("network", f"https://{host}: no TLS support in this environment "
                           "(use cloudboot.insecure=1 for an http registry)") from None
        return httpmini.HTTPSConnection(host, timeout=self.timeout,
                                           context=ssl.create_default_context())

    def _say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    def _auth_header(self, ref: Reference, scope: str) -> dict[str, str]:
        tok = self._tokens.get((ref.host, scope)) or self.token
        if tok:
            return {"Authorization": f"Bearer {tok}"}
        if self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        return {}

    def _open(self, method: str, ref: Reference, path: str, *, headers: dict[str, str],
              body: bytes | IO[bytes] | None, scope: str
              ) -> tuple[httpmini.HTTPConnection, httpmini.HTTPResponse]:
        """One request with retries, auth challenges and redirects; returns the open
        connection and response (the caller reads and closes). Non-2xx/3xx answers other
        than retried ones are returned as they are."""
        scheme, host, url = self._scheme(ref), ref.host, path
        attempt, auth_tried, redirects = 0, False, 0
        while True:
            hdrs = {"User-Agent": "cloudboot", **headers}
            if host == ref.host:
                hdrs.update(self._auth_header(ref, scope))
            conn = self._connect(scheme, host)
            try:
                if hasattr(body, "seek"):
                    body.seek(0)  # type: ignore[union-attr]
                conn.request(method, url, body=body, headers=hdrs)
                resp = conn.getresponse()
            except (OSError, httpmini.HTTPException) as e:
                conn.close()
                attempt = self._retry(attempt, f"{method} {scheme}://{host}{url}: {e}")
                continue
            status = resp.status
            if status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD"):
                loc = resp.getheader("Location") or ""
                conn.close()
                redirects += 1
                if not loc or redirects > MAX_REDIRECTS:
                    raise OCIError("http", f"{scheme}://{host}{url}: bad redirect {loc!r}")
                u = urllib.parse.urljoin(f"{scheme}://{host}{url}", loc)
                p = urllib.parse.urlsplit(u)
                scheme, host = p.scheme, p.netloc
                url = p.path + (f"?{p.query}" if p.query else "")
                continue
            if status == 401 and not auth_tried:
                challenge = resp.getheader("WWW-Authenticate") or ""
                resp.read()
                conn.close()
                auth_tried = True
                if self._login(ref, challenge, scope):
                    continue
                raise OCIError("auth", f"{ref}: 401 Unauthorized ({challenge or 'no challenge'})")
            if status == 429 or status >= 500:
                wait = resp.getheader("Retry-After")
                resp.read()
                conn.close()
                attempt = self._retry(attempt, f"{method} {scheme}://{host}{url}: HTTP {status}",
                                      retry_after=wait)
                continue
            return conn, resp

    def _retry(self, attempt: int, what: str, retry_after: str | None = None) -> int:
        if attempt >= self.retries:
            raise OCIError("network", f"{what} (gave up after {attempt + 1} attempts)")
        delay = self.backoff * (2 ** attempt)
        if retry_after and retry_after.isdigit():
            delay = min(max(delay, float(retry_after)), 30.0)
        self._say(f"{what}; retrying in {delay:.1f}s")
        time.sleep(delay)
        return attempt + 1

    def bearer_token(self, ref: Reference, challenge: str, actions: str) -> str | None:
        """A token for `ref`'s repository with `actions` (e.g. "pull,push") from the realm in a
        Bearer `challenge`; None when the challenge is not Bearer. Raises OCIError("auth")."""
        scope = f"repository:{ref.repository}:{actions}"
        if not self._login(ref, challenge, scope):
            return None
        return self._tokens.get((ref.host, scope))

    def _login(self, ref: Reference, challenge: str, scope: str) -> bool:
        """Answer a Basic or Bearer challenge; True when a retry is worth it."""
        kind, _, params = challenge.partition(" ")
        if kind.lower() == "basic":
            return self.username is not None
        if kind.lower() != "bearer":
            return False
        fields = dict(_challenge_params(params))
        realm = fields.get("realm")
        if not realm:
            return False
        query = {"service": fields.get("service", ""), "scope": fields.get("scope", scope)}
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(
            {k: v for k, v in query.items() if v})
        p = urllib.parse.urlsplit(url)
        conn = self._connect(p.scheme, p.netloc)
        hdrs = {"User-Agent": "cloudboot"}
        if self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            hdrs["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        try:
            conn.request("GET", p.path + (f"?{p.query}" if p.query else ""), headers=hdrs)
            resp = conn.getresponse()
            body = resp.read(1 << 16)
        except (OSError, httpmini.HTTPException) as e:
            raise OCIError("auth", f"token endpoint {realm}: {e}") from None
        finally:
            conn.close()
        if resp.status != 200:
            raise OCIError("auth", f"token endpoint {realm}: HTTP {resp.status}")
        try:
            data = json.loads(body)
            tok = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            tok = None
        if not tok:
            raise OCIError("auth", f"token endpoint {realm}: no token in the answer")
        self._tokens[(ref.host, scope)] = str(tok)
        return True

    def request(self, method: str, ref: Reference, path: str, *, body: bytes | None = None,
                headers: dict[str, str] | None = None, cap: int = MANIFEST_CAP,
                push: bool = False) -> Response:
        """A whole request/response (bodies up to `cap`)."""
        scope = f"repository:{ref.repository}:{'pull,push' if push else 'pull'}"
        conn, resp = self._open(method, ref, path, headers=headers or {}, body=body,
                                scope=scope)
        try:
            data = resp.read(cap + 1)
            if len(data) > cap:
                raise OCIError("too-large", f"{ref}: {path}: answer larger than {cap} bytes")
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        except (OSError, httpmini.HTTPException) as e:
            raise OCIError("network", f"{ref}: {path}: {e}") from None
        finally:
            conn.close()

    # --- pull -----------------------------------------------------------------------------
    def get_manifest(self, ref: Reference) -> tuple[Manifest, str, bytes]:
        """(manifest or index, its digest, raw bytes); a pinned digest is verified."""
        path = f"/v2/{ref.repository}/manifests/{ref.reference}"
        r = self.request("GET", ref, path, headers={"Accept": mt.ACCEPT})
        if r.status == 404:
            raise OCIError("not-found", f"{ref}: no such manifest (HTTP 404)")
        if r.status != 200:
            raise OCIError("http", f"{ref}: manifest: HTTP {r.status} {_brief(r.body)}")
        digest = "sha256:" + hashlib.sha256(r.body).hexdigest()
        if ref.digest and ref.digest.startswith("sha256:") and digest != ref.digest:
            raise OCIError("digest", f"{ref}: manifest digest is {digest}")
        try:
            return parse_manifest(r.body, r.headers.get("content-type"), str(ref)), digest, r.body
        except ManifestError as e:
            raise OCIError("manifest", str(e)) from None

    def iter_blob(self, ref: Reference, desc: Descriptor, cap: int) -> Iterator[bytes]:
        """The blob in chunks; the last chunk is yielded only after the digest checked out
        (so a consumer writing to disk must still discard on an exception)."""
        if desc.size > cap:
            raise OCIError("too-large", f"{ref}: blob {desc.digest} is {desc.size} bytes, "
                           f"over the {cap} byte cap")
        algo, _, want = desc.digest.partition(":")
        if algo not in ("sha256", "sha512"):
            raise OCIError("digest", f"{ref}: unsupported digest {desc.digest}")
        h = hashlib.new(algo)
        path = f"/v2/{ref.repository}/blobs/{desc.digest}"
        t0 = time.monotonic()
        conn, resp = self._open("GET", ref, path, headers={}, body=None,
                                scope=f"repository:{ref.repository}:pull")
        try:
            if resp.status == 404:
                raise OCIError("not-found", f"{ref}: blob {desc.digest} not found")
            if resp.status != 200:
                raise OCIError("http", f"{ref}: blob {desc.digest}: HTTP {resp.status}")
            got, held = 0, b""
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (OSError, httpmini.HTTPException) as e:
                    raise OCIError("network", f"{ref}: blob {desc.digest}: {e}") from None
                if not chunk:
                    break
                got += len(chunk)
                if got > desc.size:
                    raise OCIError("digest", f"{ref}: blob {desc.digest} is longer than "
                                   f"its descriptor's {desc.size} bytes")
                h.update(chunk)
                if held:
                    yield held
                held = chunk
            if got != desc.size:
                raise OCIError("network" if got < desc.size else "digest",
                               f"{ref}: blob {desc.digest}: got {got} of {desc.size} bytes")
            if h.hexdigest() != want:
                raise OCIError("digest", f"{ref}: blob {desc.digest}: content hashes to "
                               f"{algo}:{h.hexdigest()} (digest mismatch)")
            self.stats["bytes"] += got
            self.stats["seconds"] += time.monotonic() - t0
            if held:
                yield held
        finally:
            conn.close()

    def fetch_blob(self, ref: Reference, desc: Descriptor, dest: Path, cap: int) -> int:
        """Stream a blob into dest (via dest.part, renamed only once verified)."""
        part = dest.with_name(dest.name + ".part")
        n = 0
        try:
            with open(part, "wb") as f:
                for chunk in self.iter_blob(ref, desc, cap):
                    f.write(chunk)
                    n += len(chunk)
            os.replace(part, dest)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return n

    def blob_bytes(self, ref: Reference, desc: Descriptor, cap: int) -> bytes:
        return b"".join(self.iter_blob(ref, desc, cap))


def _challenge_params(text: str) -> Iterator[tuple[str, str]]:
    """`realm="https://x/token",service="reg",scope="repository:a:pull"` -> pairs."""
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " ,":
            i += 1
        eq = text.find("=", i)
        if eq < 0:
            return
        key = text[i:eq].strip().lower()
        i = eq + 1
        if i < n and text[i] == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end
            yield key, text[i + 1:end]
            i = end + 1
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            yield key, text[i:end].strip()
            i = end


def _brief(body: bytes) -> str:
    text = body[:200].decode("utf-8", "replace").strip()
    return f"({text})" if text else ""


def errors_of(body: bytes) -> list[dict[str, Any]]:
    """The registry's error list from an error body, if it sent one."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    errs = data.get("errors") if isinstance(data, dict) else None
    return errs if isinstance(errs, list) else []
