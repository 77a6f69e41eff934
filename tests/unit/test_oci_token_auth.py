"""Bearer auth against a real token flow: docker-registry configured with `auth: token`
trusting the lab's token service, which signs RS256 JWTs (lab/services/token.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudboot.oci.client import OCIError, Registry
from cloudboot.oci.manifest import Platform
from cloudboot.oci.pull import resolve
from cloudboot.oci.push import push_artifact
from cloudboot.oci.ref import parse_ref
from lab.services import registry as labreg
from lab.services.token import SERVICE, TokenService

AMD64 = Platform("linux", "amd64")
USERS = {"fleet": "t0ken-pass"}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenService]:
    with TokenService(tmp_path_factory.mktemp("token"), USERS) as ts:
        yield ts


@pytest.fixture(scope="module")
def reg(tokens: TokenService) -> Iterator[labreg.LocalRegistry]:
    with labreg.running(auth=tokens.registry_auth()) as r:
        yield r


@pytest.fixture(scope="module")
def pushed(reg: labreg.LocalRegistry,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    kernel = tmp_path_factory.mktemp("k") / "vmlinuz"
    data = os.urandom(300_000)
    kernel.write_bytes(data)
    ref = f"{reg.host}/fleet/kernel:1"
    # oras-py's token backend follows the same challenge → realm → Bearer flow
    push_artifact("http://" + ref, platform=AMD64, kernel=kernel, cmdline="root=LABEL=x",
                  username="fleet", password=USERS["fleet"])
    return ref, data


def test_pull_through_the_token_service(pushed: tuple[str, bytes], tokens: TokenService,
                                        tmp_path: Path) -> None:
    ref, data = pushed
    before = len(tokens.requests)
    client = Registry(insecure=True, username="fleet", password=USERS["fleet"])
    pinned, manifest = resolve(client, parse_ref(ref), AMD64)
    kernel = next(layer for layer in manifest.layers if layer.title == "vmlinuz")
    assert client.blob_bytes(pinned, kernel, 1 << 20) == data
    asked = tokens.requests[before:]
    assert asked, "the client never asked the token service"
    assert all(r.status == 200 and r.user == "fleet" and r.service == SERVICE for r in asked)
    assert any(s == "repository:fleet/kernel:pull" for r in asked for s in r.scopes), asked
    # one token per repository scope: the blob fetch reused the manifest's token
    assert len(asked) == 1, asked


def test_wrong_password_is_an_auth_error_naming_the_token_endpoint(
        pushed: tuple[str, bytes], tokens: TokenService) -> None:
    ref, _ = pushed
    client = Registry(insecure=True, username="fleet", password="wrong", retries=0)
    with pytest.raises(OCIError, match=r"token endpoint http://127\.0\.0\.1:\d+/token: HTTP 401"
                       ) as e:
        client.get_manifest(parse_ref(ref))
    assert e.value.kind == "auth"
    assert tokens.requests[-1].status == 401


def test_a_token_is_required(pushed: tuple[str, bytes], tokens: TokenService) -> None:
    """No credentials: the token service refuses, so the registry's 401 stands."""
    ref, _ = pushed
    with pytest.raises(OCIError) as e:
        Registry(insecure=True, retries=0).get_manifest(parse_ref(ref))
    assert e.value.kind == "auth"


def test_a_token_for_another_repository_does_not_open_this_one(
        pushed: tuple[str, bytes], tokens: TokenService) -> None:
    """The registry really checks the JWT's access claims (not just that one is present)."""
    ref, _ = pushed
    token = tokens.sign("fleet", ["repository:other/repo:pull"])
    with pytest.raises(OCIError) as e:
        Registry(insecure=True, token=token, retries=0).get_manifest(parse_ref(ref))
    assert e.value.kind == "auth"
    good = tokens.sign("fleet", ["repository:fleet/kernel:pull"])
    manifest, _, _ = Registry(insecure=True, token=good, retries=0).get_manifest(parse_ref(ref))
    assert manifest.layers
