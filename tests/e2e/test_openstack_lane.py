"""The openstack lane: a Nova-shaped guest (lab.lanes.openstack) whose boot.iso says only
`cloudboot.metadata.url=openstack`; what to boot comes from the instance's `meta` served by the
lab's metadata service at 169.254.169.254 (and written to its config drive).

- Path A: meta `cloudboot.plan=oci://…` → the plan and the Debian kernel + initrd from a real
  docker-registry on loopback → kexec into the Debian root disk (a volume).
- Path C: meta `cloudboot.disk=LABEL=…`, `cloudboot.exit=reboot` and a cache disk → stage,
  Boot####, reboot → OVMF starts the staged kernel; nvram and ESP are read back afterwards.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudboot.arch import get_arch
from cloudboot.efi import varstore
from cloudboot.loader.media import build_b_media
from cloudboot.loader.netconfig import NetConfig
from cloudboot.media import configdrive
from cloudboot.oci.manifest import Platform
from cloudboot.oci.push import push_artifact, push_plan
from lab.cells import Cell
from lab.hypervisors.vmspec import guestfwd
from lab.images import debian
from lab.lanes.openstack import (
    INSTANCE_REGISTRY,
    META_PATH,
    metadata_seconds,
    run_openstack_cell,
    run_openstack_loader,
)
from lab.paths.b import set_vars
from lab.paths.c import path_c_problems
from lab.paths.d import build_d_iso, push_target, target_cmdline
from lab.services import registry as labreg

pytestmark = [pytest.mark.e2e, pytest.mark.boot]

GUEST_REGISTRY = INSTANCE_REGISTRY


@pytest.fixture(scope="module")
def image() -> debian.TargetImage:
    return debian.build("bookworm", "ext4")


@pytest.fixture(scope="module")
def reg() -> Iterator[labreg.LocalRegistry]:
    why = labreg.available()
    if why:
        pytest.skip(f"not run: {why}")
    with labreg.running() as r:
        yield r


def _assert_metadata_fetched(run, keys: list[str]) -> None:  # noqa: ANN001
    hits = [r for r in run.requests if r.path == META_PATH]
    assert hits and hits[0].status == 200, f"the guest did not fetch {META_PATH}: {run.requests}"
    md = run.event("metadata")
    assert md is not None and md["error"] is None, md
    assert md["url"] == "http://169.254.169.254/openstack/latest/meta_data.json"
    assert md["keys"] == keys
    net = run.event("net-up")
    assert net is not None and net["address"].startswith("169.254."), net
    # The config drive beside it carries the same meta, under the label Nova gives it.
    assert configdrive.volume_id(run.config_drive) == "config-2"
    files = configdrive.read(run.config_drive)
    assert files["openstack/latest/meta_data.json"].startswith(b"{")
    # ... and a guest kernel saw it: the CD on virtio-scsi, not on q35's AHCI (DESIGN §7).
    text = Path(str(run.result.console_log)).read_text(errors="replace")
    assert re.search(r"scsi \S+: CD-ROM\s+QEMU", text), "no guest kernel saw the config drive"
    print(f"\n{run.result.cell.id}: net-up/metadata seconds {metadata_seconds(run)}, "
          f"phase times {run.result.phase_times}, cell {run.result.seconds} s")


def _disk_cell_passed(run, settle_cell) -> dict[str, float]:  # noqa: ANN001
    """A `cloudboot.disk=` cell from the metadata service passed: recorded and judged, init ran
    once, the meta was fetched, Path C's nvram and ESP read back clean. Its phase times."""
    result = run.result
    settle_cell(result)
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    assert result.banners == 1, "cloudboot-init must run exactly once"
    _assert_metadata_fetched(run, ["cloudboot.disk"])
    if result.cell.path == "C":
        assert run.path_c is not None
        assert not (bad := path_c_problems(run.path_c)), bad
    return result.phase_times


@pytest.mark.smoke
def test_openstack_path_a_plan_from_metadata(tmp_path: Path, reg: labreg.LocalRegistry,
                                             image: debian.TargetImage, settle_cell) -> None:
    ref = f"{GUEST_REGISTRY}/debian/bookworm:amd64"
    push_artifact(f"http://{reg.host}/debian/bookworm:amd64", platform=Platform("linux", "amd64"),
                  kernel=image.kernel, initrds=[image.initrd])
    plan = tmp_path / "plan.hcl"
    plan.write_text(f'''
default_target = "debian"
target "debian" {{
  kernel  = "{ref}"
  initrd  = ["{ref}"]
  cmdline = ["root=UUID={image.fs_uuid}", "ro", "console=ttyS0", "cb.from=openstack"]
}}
''')
    push_plan(f"http://{reg.host}/plans/openstack:1", plan)
    cell = Cell("openstack", "x86_64", "A", "debian-12", "ext4")
    run = run_openstack_cell(
        cell, tmp_path / "cell",
        {"cloudboot.plan": f"oci://{GUEST_REGISTRY}/plans/openstack:1",
         "cloudboot.insecure": "1"},
        extra_guestfwd=(guestfwd(GUEST_REGISTRY, reg.host),))
    result = run.result
    settle_cell(result)
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    assert result.banners == 1
    assert "cb.from=openstack" in (result.userspace or {})["cmdline"]
    _assert_metadata_fetched(run, ["cloudboot.insecure", "cloudboot.plan"])
    fetched = run.event("plan-fetched")
    assert fetched is not None and fetched["ref"].endswith(f"{GUEST_REGISTRY}/plans/openstack:1")
    t = result.phase_times
    assert t["net-up"] <= t["metadata"] <= t["plan-fetched"] <= t["kexec-load"] < t["userspace"]


def test_openstack_path_c_disk_from_metadata(tmp_path: Path, image: debian.TargetImage,
                                             record_cell) -> None:
    cell = Cell("openstack", "x86_64", "C", "debian-12", "ext4")
    run = run_openstack_cell(cell, tmp_path / "cell",
                             {"cloudboot.disk": f"LABEL={image.fs_label}"})
    t = _disk_cell_passed(run, record_cell)
    assert t["metadata"] <= t["staged"] <= t["bootvar-written"] <= t["rebooting"] < t["userspace"]


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("path", ["A", "C"])
def test_openstack_aarch64_disk_from_metadata(path: str, tmp_path: Path, record_cell) -> None:
    """The Nova shape on aarch64 (virt + AAVMF): meta `cloudboot.disk=LABEL=…` from the
    metadata service, the config drive on virtio-scsi; Path A kexecs into the arm64 Debian
    volume, Path C stages it on the cache disk and AAVMF boots it after the reboot."""
    from tests.e2e.test_path_c_arm64 import require_aarch64_lane

    require_aarch64_lane()
    arm = debian.build("bookworm", "ext4", "aarch64")
    cell = Cell("openstack", "aarch64", path, "debian-12", "ext4")
    # Path A ~3.5 min, C ~5 min alone under TCG on a loaded 2-core host
    run = run_openstack_cell(cell, tmp_path / "cell", {"cloudboot.disk": f"LABEL={arm.fs_label}"},
                             timeout=1500)
    t = _disk_cell_passed(run, record_cell)
    last = "kexec-load" if path == "A" else "rebooting"
    assert t["net-up"] <= t["metadata"] <= t[last] < t["userspace"]


def _loader_toolchain() -> None:
    if shutil.which("clang") is None or shutil.which("lld-link") is None:
        pytest.fail("clang/lld-link missing (python -m cloudboot.debian.hostdeps ensure tests)")


def test_openstack_path_b_loader_as_the_glance_image(tmp_path: Path, image: debian.TargetImage,
                                                     settle_cell) -> None:
    """Path B as a Nova instance: the loader walks every block device, the config drive's
    2048-byte-sector CD among them, and boots the ext4 volume's kernel."""
    _loader_toolchain()
    cell = Cell("openstack", "x86_64", "B", "debian-12", "ext4")
    media = build_b_media(get_arch("x86_64"), tmp_path / "b.iso")
    result, vars_path = run_openstack_loader(
        cell, tmp_path / "cell", media.path,
        vars_set=lambda v: set_vars(v, "ext4:", f"root=UUID={image.fs_uuid} ro console=ttyS0"))
    settle_cell(result)
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    mark = varstore.VarStore(vars_path).cloudboot_vars().get("CloudBootMark")
    assert mark is not None and mark[1].startswith(b"b:boot ext4"), mark


def test_openstack_path_d_pulls_through_the_instance_network(
        tmp_path: Path, reg: labreg.LocalRegistry, image: debian.TargetImage,
        settle_cell) -> None:
    """Path D as a Nova instance: DHCP on the instance network (169.254.0.0/16, restrict=on),
    the registry reached only through its forward."""
    _loader_toolchain()
    cell = Cell("openstack", "x86_64", "D", "debian-12", "ext4")
    pushed = push_target(reg, image, repository="openstack/debian", tag="12")
    cfg = NetConfig(GUEST_REGISTRY, pushed.repository, pushed.index_tag, target_cmdline(image),
                    insecure=True)
    iso = build_d_iso("x86_64", cfg, tmp_path / "d.iso")
    result, _ = run_openstack_loader(cell, tmp_path / "cell", iso, rng=True,
                                     extra_guestfwd=(guestfwd(GUEST_REGISTRY, reg.host),))
    settle_cell(result)
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    net = result.phase_times
    assert net["net-up"] <= net["materialised"] < net["userspace"], net
