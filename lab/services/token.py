"""A Docker-style token service for the lab's registry: the bearer flow real registries use.

`docker-registry` is configured with `auth: token:` (realm = this service, a root cert bundle
holding our self-signed certificate); the registry answers 401 with a `Bearer realm=…,service=…,
scope=…` challenge, the client asks this service for a token (HTTP Basic with a lab user), and
presents the RS256 JWT it gets. Keys and signatures come from the `openssl` command, so the lab
needs no crypto package. Every token request is logged for the tests to assert on.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SERVICE = "cloudboot-lab-registry"
ISSUER = "cloudboot-lab-token"
TOKEN_SECONDS = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenRequest:
    user: str | None
    service: str
    scopes: list[str]
    status: int


@dataclass
class TokenService:
    """Signs registry tokens for `users` (name → password); grants what the scope asks."""

    workdir: Path
    users: dict[str, str]
    requests: list[TokenRequest] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def key(self) -> Path:
        return self.workdir / "token.key"

    @property
    def cert(self) -> Path:
        return self.workdir / "token.crt"

    @property
    def realm(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def registry_auth(self) -> str:
        """The `auth:` block of the registry's config.yml."""
        return (f"auth:\n  token:\n    realm: {self.realm}\n    service: {SERVICE}\n"
                f"    issuer: {ISSUER}\n    rootcertbundle: {self.cert}\n")

    def start(self) -> TokenService:
        self.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=cloudboot-lab-token", "-keyout", str(self.key),
                        "-out", str(self.cert)], check=True, capture_output=True, timeout=60)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True, timeout=30).stdout
        self._x5c = base64.b64encode(der).decode()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                service._answer(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TokenService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the protocol ------------------------------------------------------------------------
    def _user(self, header: str | None) -> str | None:
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if self.users.get(user) is not None and secrets.compare_digest(self.users[user],
                                                                       password):
            return user
        return None

    def _answer(self, h: BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(h.path)
        query = urllib.parse.parse_qs(url.query)
        scopes = [s for v in query.get("scope", []) for s in v.split(" ") if s]
        user = self._user(h.headers.get("Authorization"))
        status = 200 if url.path == "/token" and user is not None else 401
        self.requests.append(TokenRequest(user, query.get("service", [""])[0], scopes, status))
        if status != 200:
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}'
            h.send_response(status)
            h.send_header("WWW-Authenticate", 'Basic realm="cloudboot-lab-token"')
        else:
            token = self.sign(user or "", scopes)
            body = json.dumps({"token": token, "access_token": token,
                               "expires_in": TOKEN_SECONDS}).encode()
            h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def sign(self, subject: str, scopes: list[str]) -> str:
        """An RS256 JWT granting `scopes` (`repository:NAME:ACTIONS`) to `subject`."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name,
                           "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + TOKEN_SECONDS,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = ".".join(_b64url(json.dumps(p, separators=(",", ":")).encode())
                                 for p in (header, claims))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing_input.encode(), check=True, capture_output=True,
                             timeout=30).stdout
        return f"{signing_input}.{_b64url(sig)}"
