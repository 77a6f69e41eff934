"""The OCI client and push commands against a real docker-registry on loopback.

Failure cases go through a small forwarding proxy in front of the real registry that can
answer 503 for a while, stall, or flip a byte of a blob on the way — the registry itself
never serves wrong content, so that is how a corrupted transfer is produced.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cloudboot.cli.main import main as cli_main
from cloudboot.init import boot as boot_state
from cloudboot.init import main as init_main
from cloudboot.init.net import materialise
from cloudboot.oci import mediatypes as mt
from cloudboot.oci.client import OCIError, Registry
from cloudboot.oci.manifest import Descriptor, Platform
from cloudboot.oci.pull import fetch_plan, resolve
from cloudboot.oci.push import push_artifact, push_index, push_plan
from cloudboot.oci.ref import parse_ref
from lab.services import registry as labreg

AMD64 = Platform("linux", "amd64")


@pytest.fixture(scope="module")
def reg() -> Iterator[labreg.LocalRegistry]:
    with labreg.running() as r:
        yield r


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("blobs")
    out = {}
    for name, size in (("vmlinuz", 2_000_000), ("initrd-a", 3000), ("initrd-b", 5000),
                       ("mods.cpio.gz", 700)):
        (d / name).write_bytes(os.urandom(size))
        out[name] = d / name
    return out


class Faults:
    """Proxy behaviour: how many 503s are left, seconds to stall, corrupt blobs or not."""

    def __init__(self) -> None:
        self.fail_503 = 0
        self.stall = 0.0
        self.corrupt = False
        self.requests: list[str] = []


@pytest.fixture
def proxy(reg: labreg.LocalRegistry) -> Iterator[tuple[str, Faults]]:
    faults = Faults()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            faults.requests.append(self.path)
            if faults.fail_503 > 0:
                faults.fail_503 -= 1
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if faults.stall:
                time.sleep(faults.stall)
            conn = http.client.HTTPConnection(reg.host, timeout=10)
            conn.request("GET", self.path, headers={k: v for k, v in self.headers.items()
                                                    if k.lower() in ("accept", "authorization")})
            r = conn.getresponse()
            body = r.read()
            conn.close()
            if faults.corrupt and "/blobs/" in self.path and body:
                body = bytes([body[0] ^ 1]) + body[1:]
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", faults
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def artifact(reg: labreg.LocalRegistry, files: dict[str, Path]) -> str:
    ref = f"{reg.host}/debian/kernel:amd64"
    push_artifact("http://" + ref, platform=AMD64, kernel=files["vmlinuz"],
                  initrds=[files["initrd-a"]], cmdline="root=LABEL=x ro")
    return ref


def test_push_artifact_layers_titles_and_platform(reg: labreg.LocalRegistry, artifact: str,
                                                  files: dict[str, Path]) -> None:
    client = Registry(insecure=True)
    pinned, m = resolve(client, parse_ref(artifact), AMD64)
    assert [(d.media_type, d.title) for d in m.layers] == [
        (mt.media_type("kernel"), "vmlinuz"), (mt.media_type("initrd"), "initrd-a"),
        (mt.media_type("cmdline"), "cmdline")]
    assert m.config is not None and m.config.media_type == mt.CONFIG
    config = json.loads(client.blob_bytes(pinned, m.config, 1 << 16))
    assert config == {"os": "linux", "architecture": "amd64"}
    want = "sha256:" + hashlib.sha256(files["vmlinuz"].read_bytes()).hexdigest()
    assert m.layers[0].digest == want and m.layers[0].size == 2_000_000


def test_index_selects_the_platform_and_pins_the_digest(reg: labreg.LocalRegistry,
                                                        files: dict[str, Path],
                                                        artifact: str) -> None:
    arm = f"{reg.host}/debian/kernel:armv7"
    push_artifact("http://" + arm, platform=Platform("linux", "arm", "v7"),
                  kernel=files["initrd-b"])
    push_index(f"http://{reg.host}/debian/kernel:multi",
               [(AMD64, artifact), (Platform("linux", "arm", "v7"), arm)])
    client = Registry(insecure=True)
    idx, _, _ = client.get_manifest(parse_ref(f"{reg.host}/debian/kernel:multi"))
    assert idx.is_index and [str(d.platform) for d in idx.manifests] == [
        "linux/amd64", "linux/arm/v7"]
    pinned, m = resolve(client, parse_ref(f"{reg.host}/debian/kernel:multi"),
                        Platform("linux", "arm", "v7"))
    assert pinned.digest == idx.manifests[1].digest and m.layers[0].title == "initrd-b"
    with pytest.raises(OCIError, match="no manifest for linux/riscv64") as e:
        resolve(client, parse_ref(f"{reg.host}/debian/kernel:multi"),
                Platform("linux", "riscv64"))
    assert e.value.kind == "platform"


def test_materialise_overrides_by_role_and_concatenates(reg: labreg.LocalRegistry,
                                                        files: dict[str, Path], artifact: str,
                                                        tmp_path: Path) -> None:
    extra = f"{reg.host}/debian/initrd:b"
    mods = f"{reg.host}/debian/mods:1"
    push_artifact("http://" + extra, platform=AMD64, initrds=[files["initrd-b"]])
    push_artifact("http://" + mods, platform=AMD64, modules=[files["mods.cpio.gz"]])
    client = Registry(insecure=True)
    got = materialise.pull(client, [("index", artifact), ("initrd", extra),
                                    ("initrd", artifact), ("modules", mods)],
                           AMD64, tmp_path / "oci")
    assert got.kernel.read_bytes() == files["vmlinuz"].read_bytes()
    # initrd refs replace the index's initrd; two initrd refs and the modules add up in order
    assert got.initrd is not None and got.initrd.read_bytes() == (
        files["initrd-b"].read_bytes() + files["initrd-a"].read_bytes()
        + files["mods.cpio.gz"].read_bytes())
    assert got.cmdline == "root=LABEL=x ro" and len(got.refs) == 4
    assert sorted(p.name for p in (tmp_path / "oci").iterdir()) == ["initrd", "vmlinuz"]


def test_wrong_media_type_is_named(reg: labreg.LocalRegistry, artifact: str) -> None:
    with pytest.raises(OCIError, match="no layer of type application/vnd.cloud-boot.plan") as e:
        fetch_plan(Registry(insecure=True), parse_ref(artifact), AMD64)
    assert e.value.kind == "media-type"


def test_503_then_success_is_retried(proxy: tuple[str, Faults], artifact: str) -> None:
    host, faults = proxy
    faults.fail_503 = 2
    ref = parse_ref(artifact.replace(artifact.split("/")[0], host))
    logs: list[str] = []
    m, _, _ = Registry(insecure=True, backoff=0.05, log=logs.append).get_manifest(ref)
    assert len(m.layers) == 3
    assert len(logs) == 2 and all("HTTP 503; retrying" in line for line in logs)


def test_503_forever_gives_up_with_a_network_error(proxy: tuple[str, Faults],
                                                   artifact: str) -> None:
    host, faults = proxy
    faults.fail_503 = 100
    ref = parse_ref(artifact.replace(artifact.split("/")[0], host))
    with pytest.raises(OCIError, match="HTTP 503 \\(gave up after 3 attempts\\)") as e:
        Registry(insecure=True, retries=2, backoff=0.01).get_manifest(ref)
    assert e.value.kind == "network"


def test_too_slow_registry_times_out(proxy: tuple[str, Faults], artifact: str) -> None:
    host, faults = proxy
    faults.stall = 3.0
    ref = parse_ref(artifact.replace(artifact.split("/")[0], host))
    t0 = time.monotonic()
    with pytest.raises(OCIError, match="timed out") as e:
        Registry(insecure=True, timeout=0.5, retries=1, backoff=0.01).get_manifest(ref)
    assert e.value.kind == "network" and time.monotonic() - t0 < 2.9


def test_digest_mismatch_is_refused_and_nothing_is_kept(proxy: tuple[str, Faults],
                                                        artifact: str, tmp_path: Path) -> None:
    host, faults = proxy
    client = Registry(insecure=True)
    ref = parse_ref(artifact.replace(artifact.split("/")[0], host))
    pinned, m = resolve(client, ref, AMD64)
    faults.corrupt = True
    dest = tmp_path / "vmlinuz"
    with pytest.raises(OCIError, match="digest mismatch") as e:
        client.fetch_blob(pinned, m.layers[0], dest, 1 << 30)
    assert e.value.kind == "digest"
    assert list(tmp_path.iterdir()) == []


def test_size_cap_and_registry_down(artifact: str, tmp_path: Path) -> None:
    client = Registry(insecure=True, retries=1, backoff=0.01)
    pinned, m = resolve(client, parse_ref(artifact), AMD64)
    with pytest.raises(OCIError, match="over the 1000 byte cap"):
        client.fetch_blob(pinned, m.layers[0], tmp_path / "k", 1000)
    port = labreg.free_port()  # nothing listens there
    with pytest.raises(OCIError, match="Connection refused.*gave up after 2 attempts") as e:
        client.get_manifest(parse_ref(f"127.0.0.1:{port}/x/y:1"))
    assert e.value.kind == "network"
    fake = Descriptor(mt.media_type("kernel"), "sha256:" + "0" * 64, 10)
    with pytest.raises(OCIError, match="not found"):
        client.blob_bytes(pinned, fake, 100)


def test_basic_auth(files: dict[str, Path]) -> None:
    with labreg.running({"cb": "s3cret"}) as r:
        ref = f"{r.host}/auth/k:1"
        push_artifact("http://" + ref, platform=AMD64, kernel=files["initrd-a"],
                      username="cb", password="s3cret")
        with pytest.raises(OCIError, match="401 Unauthorized") as e:
            Registry(insecure=True).get_manifest(parse_ref(ref))
        assert e.value.kind == "auth"
        m, _, _ = Registry(insecure=True, username="cb", password="s3cret").get_manifest(
            parse_ref(ref))
        assert m.layers[0].title == "initrd-a"


def test_cli_push_and_the_init_pulls_plan_and_target(reg: labreg.LocalRegistry,
                                                     files: dict[str, Path], artifact: str,
                                                     tmp_path: Path, capsys) -> None:
    """`cloudboot push plan` + cloudboot-init off PID 1 (--dry-run): plan → OCI target."""
    plan = tmp_path / "plan.hcl"
    plan.write_text(f'''
default_target = "a"
target "a" {{
  kernel = "{artifact}"
}}
target "b" {{
  kernel  = "{artifact}"
  cmdline = ["root=LABEL=b", "reg={{{{.Registry}}}}"]
}}
''')
    assert cli_main(["push", "plan", "--insecure", "--file", str(plan),
                     f"{reg.host}/plans/cli:1"]) == 0
    assert "sha256:" in capsys.readouterr().out
    argv = ["--cmdline", f"cloudboot.plan={reg.host}/plans/cli:1 cloudboot.insecure=1",
            "--mnt", str(tmp_path / "target"), "--dry-run"]
    assert init_main.main(argv) == 0
    out = capsys.readouterr().out
    dry = json.loads(out.split(boot_state.DRY_RUN, 1)[1].splitlines()[0])
    assert dry["cmdline"] == "root=LABEL=x ro"  # no plan cmdline: the cmdline layer's
    assert Path(dry["kernel"]).read_bytes() == files["vmlinuz"].read_bytes()
    assert '"phase":"plan-fetched"' in out and '"found_by":"oci"' in out
    argv[1] += " cloudboot.target=b"
    assert init_main.main(argv) == 0
    dry = json.loads(capsys.readouterr().out.split(boot_state.DRY_RUN, 1)[1].splitlines()[0])
    assert dry["cmdline"] == f"root=LABEL=b reg={reg.host}"


def test_init_plan_failures_are_fatal_in_the_right_category(reg: labreg.LocalRegistry,
                                                            tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.hcl"
    bad.write_text('target "x" {\n  kernel = "a/b:c"\n  disk {\n device = "/dev/vda"\n }\n}\n')
    push_plan(f"http://{reg.host}/plans/bad:1", bad)
    cases = [(f"{reg.host}/plans/bad:1", "init-plan", "bad:1:"),  # file:line of the plan
             (f"{reg.host}/plans/nosuch:1", "init-plan", "no such manifest"),
             (f"127.0.0.1:{labreg.free_port()}/plans/x:1", "init-network", "refused")]
    for ref, category, text in cases:
        argv = ["--cmdline", f"cloudboot.plan={ref} cloudboot.insecure=1", "--mnt",
                str(tmp_path / "t"), "--dry-run"]
        assert init_main.main(argv) == 1
        out = capsys.readouterr().out
        fatal = json.loads(next(line for line in out.splitlines() if '"fatal"' in line)
                           .split(" ", 1)[1])
        assert fatal["category"] == category and text in fatal["message"], fatal
