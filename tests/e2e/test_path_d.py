"""Path D: the one-boot network UEFI loader (loader/d) pulls the Debian target's kernel +
initrd from a real docker-registry on the host (10.0.2.2 over QEMU user networking), verifies
every blob's sha256, and starts the kernel with the target disk attached. Failure cases assert
the loader's one console line and that it returned to the firmware.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudboot.oci.manifest import Platform
from cloudboot.oci.push import push_artifact
from lab.cells import Cell, CellResult
from lab.images import debian
from lab.matrix import expectation, judge
from lab.paths.d import RETURNED, guest_config, push_target, read_mark, run_path_d, target_cmdline
from lab.services import registry as labreg

pytestmark = [pytest.mark.e2e, pytest.mark.boot]
if labreg.available():
    pytestmark.append(pytest.mark.skip(reason=str(labreg.available())))
if shutil.which("clang") is None or shutil.which("lld-link") is None:
    pytestmark.append(pytest.mark.skip(reason="clang/lld-link missing: python -m "
                                              "cloudboot.debian.hostdeps ensure tests"))

SMOKE = {"qemu-x86_64-D-debian-12-ext4"}
CELLS = [Cell("qemu", "x86_64", "D", "debian-12", fs) for fs in ("ext4", "xfs", "btrfs")]
ARM64 = Cell("qemu", "aarch64", "D", "debian-12", "ext4")
ARMV7 = Cell("qemu", "armv7", "D", "debian-12", "ext4")
VZ = Cell("vz", "aarch64", "D", "debian-12", "ext4")
FAIL_CELL = Cell("qemu", "x86_64", "D", "debian-12", "ext4-failure")
TIMEOUT = 420.0


@pytest.fixture(scope="module")
def reg() -> Iterator[labreg.LocalRegistry]:
    with labreg.running() as r:
        yield r


@pytest.fixture(scope="module")
def image() -> debian.TargetImage:
    return debian.build("bookworm", "ext4")


def _console(result: CellResult) -> str:
    return Path(result.console_log or "").read_text(errors="replace")


def _assert_pass(result: CellResult, image: debian.TargetImage) -> None:
    assert result.status == "pass", f"{result.category}: {result.evidence}"
    us = result.userspace or {}
    assert us["kernel"] == image.kernel_version
    assert f"root=UUID={image.fs_uuid}" in us["cmdline"]
    t = result.phase_times
    assert t["net-up"] <= t["materialised"] < t["userspace"], t
    text = _console(result)
    assert "sha256 verified" in text
    assert "EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path" in text


def _assert_failed_with(result: CellResult, category: str, line: str) -> str:
    """The loader printed `line` in one error line, a fatal event, and returned."""
    text = _console(result)
    assert result.status == "fail" and result.userspace is None, result.evidence
    assert result.category == category, f"{result.category}: {result.evidence}"
    errors = [ln for ln in text.splitlines() if "cloudboot-loader: error:" in ln]
    assert any(line in ln for ln in errors), f"no error line with {line!r}: {errors}"
    assert RETURNED in text, "the loader must return to the firmware"
    assert "Linux version" not in text, "no kernel may start"
    return text


def _run(cell: Cell, tmp: Path, reg: labreg.LocalRegistry, repository: str, reference: str,
         image: debian.TargetImage | None, cmdline: str = "console=ttyS0",
         port: int | None = None) -> CellResult:
    cfg = guest_config(reg, repository, reference, cmdline, port=port)
    return run_path_d(cell, tmp, cfg, image, timeout=TIMEOUT)


@pytest.mark.parametrize("cell", [
    pytest.param(c, id=c.id, marks=[pytest.mark.smoke] if c.id in SMOKE else []) for c in CELLS
])
def test_path_d_boots_debian_from_the_registry(cell: Cell, tmp_path: Path,
                                               reg: labreg.LocalRegistry, settle_cell) -> None:
    image = debian.build(cell.release, cell.fs, cell.arch)
    pushed = push_target(reg, image, tag=f"12-{cell.fs}")
    result = _run(cell, tmp_path, reg, pushed.repository, pushed.index_tag, image,
                  target_cmdline(image))
    settle_cell(result)
    _assert_pass(result, image)
    digest = "sha256:" + hashlib.sha256(image.kernel.read_bytes()).hexdigest()
    assert read_mark(tmp_path / "vars.fd") == f"d:boot {digest}"
    text = _console(result)
    # It went through the index to this platform's manifest.
    assert f"index: linux/amd64 -> {pushed.artifact.digest}" in text


@pytest.mark.timeout(3 * TIMEOUT)
@pytest.mark.cells(ARM64)
def test_path_d_aarch64(tmp_path: Path, reg: labreg.LocalRegistry, record_cell) -> None:
    from tests.e2e.test_path_c_arm64 import require_aarch64_lane

    require_aarch64_lane()
    image = debian.build("bookworm", "ext4", "aarch64")
    pushed = push_target(reg, image, tag="12-arm64")
    cfg = guest_config(reg, pushed.repository, pushed.index_tag, target_cmdline(image))
    result = run_path_d(ARM64, tmp_path, cfg, image, timeout=2 * TIMEOUT)
    assert judge(result) is None
    record_cell(result)
    _assert_pass(result, image)
    assert f"index: linux/arm64 -> {pushed.artifact.digest}" in _console(result)


@pytest.mark.timeout(3 * TIMEOUT)
@pytest.mark.parametrize("cell", [pytest.param(ARMV7, id=ARMV7.id)])
def test_path_d_armv7(cell: Cell, tmp_path: Path, reg: labreg.LocalRegistry,
                      settle_cell) -> None:
    """armv7: AAVMF32's own virtio-net + HTTP stack serve the thumbv7 loader, which pulls the
    armmp zImage + initrd through the index's linux/arm entry (a lone boot: ~20 s to the
    handoff, ~120 s to userspace on 2 busy cores)."""
    from tests.helpers import require_lane

    require_lane("armv7")
    image = debian.build("bookworm", "ext4", "armv7")
    pushed = push_target(reg, image, tag="12-arm")
    cfg = guest_config(reg, pushed.repository, pushed.index_tag, target_cmdline(image))
    result = run_path_d(cell, tmp_path, cfg, image, timeout=2 * TIMEOUT)
    settle_cell(result)
    _assert_pass(result, image)
    text = _console(result)
    assert f"index: linux/arm -> {pushed.artifact.digest}" in text
    assert "reserved for the zImage decompressor" in text


@pytest.mark.timeout(3 * TIMEOUT)
@pytest.mark.cells(VZ)
def test_vz_path_d_fails_without_firmware_network(tmp_path: Path, reg: labreg.LocalRegistry,
                                                  record_cell) -> None:
    """Apple VZ's firmware has no network protocols: the vz profile hides the NIC from the
    firmware, so the loader finds no HTTP service, says so and returns."""
    from tests.e2e.test_path_c_arm64 import require_aarch64_lane

    require_aarch64_lane("vz")
    rule = expectation(VZ)
    assert rule is not None and rule.kind == "fail" and rule.category == "init-network", rule
    image = debian.build("bookworm", "ext4", "aarch64")
    cfg = guest_config(reg, "debian/bookworm", "12-arm64", target_cmdline(image))
    result = run_path_d(VZ, tmp_path, cfg, image, timeout=2 * TIMEOUT)
    # The firmware's console is not on hvc0 (as on VZ: framebuffer only): the loader's
    # CloudBootMark in the vars file is the evidence, turned into the run's fatal event.
    mark = read_mark(tmp_path / "vars.fd")
    assert mark is not None and mark.startswith(
        "d:fatal init-network: network: the firmware offers no HTTP service"), mark
    assert result.category == "init-network" and result.userspace is None, result.evidence
    assert "the firmware offers no HTTP service" in result.evidence
    assert "Linux version" not in _console(result)
    reason = judge(result)
    record_cell(result)
    assert (result.status, result.category) == ("xfail", "init-network"), result.evidence
    assert reason == rule.reason


def test_registry_unreachable(tmp_path: Path, reg: labreg.LocalRegistry) -> None:
    dead = labreg.free_port()  # nothing listens there
    result = _run(FAIL_CELL, tmp_path, reg, "debian/bookworm", "12", None, port=dead)
    text = _assert_failed_with(result, "init-network", "registry unreachable?")
    assert f"GET http://10.0.2.2:{dead}/v2/debian/bookworm/manifests/12" in text
    assert "net-up" in result.phase_times  # DHCP worked; the registry did not answer
    mark = read_mark(tmp_path / "vars.fd")
    assert mark is not None and mark.startswith("d:fatal init-network: manifest: GET "), mark


def test_manifest_for_another_platform_only(tmp_path: Path, reg: labreg.LocalRegistry,
                                            image: debian.TargetImage) -> None:
    pushed = push_target(reg, image, repository="other/platform", tag="1",
                         platform_arch="arm64")
    result = _run(FAIL_CELL, tmp_path, reg, pushed.repository, pushed.index_tag, None)
    _assert_failed_with(result, "init-plan", "other/platform:1: no manifest for linux/amd64 in "
                                             "the image index (it has: linux/arm64)")


def test_digest_pinned_reference_is_fetched_and_verified(tmp_path: Path,
                                                         reg: labreg.LocalRegistry,
                                                         image: debian.TargetImage) -> None:
    """--digest: the index is fetched by digest and its bytes hashed before use (here it
    then holds only arm64, so the run ends at platform selection, after the check)."""
    pushed = push_target(reg, image, repository="other/pinned", tag="1", platform_arch="arm64")
    result = _run(FAIL_CELL, tmp_path, reg, pushed.repository, pushed.index.digest, None)
    text = _assert_failed_with(result, "init-plan", f"other/pinned:{pushed.index.digest}: no "
                                                    "manifest for linux/amd64")
    assert f"/v2/other/pinned/manifests/{pushed.index.digest}" not in text  # no error on GET
    assert "digest mismatch" not in text
    assert f"other/pinned@{pushed.index.digest}" in text  # the loader's first line


def test_single_manifest_for_another_platform(tmp_path: Path, reg: labreg.LocalRegistry,
                                              image: debian.TargetImage) -> None:
    """No index: the artifact's config blob names its platform and the loader checks it."""
    pushed = push_target(reg, image, repository="other/single", tag="1", platform_arch="arm64")
    result = _run(FAIL_CELL, tmp_path, reg, pushed.repository, pushed.artifact_tag, None)
    _assert_failed_with(result, "init-plan", "other/single:1-arm64 is for linux/arm64, this "
                                             "loader is linux/amd64")


def test_blob_digest_mismatch_is_refused(tmp_path: Path, image: debian.TargetImage) -> None:
    """The registry serves a corrupted kernel blob (same size, bytes flipped on its disk)."""
    with labreg.running() as own:
        pushed = push_target(own, image, repository="corrupt/kernel", tag="1")
        digest = "sha256:" + hashlib.sha256(image.kernel.read_bytes()).hexdigest()
        hexd = digest.split(":")[1]
        assert own.dir is not None
        data = (own.dir / "storage/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data")
        blob = bytearray(data.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        data.write_bytes(bytes(blob))
        bad = "sha256:" + hashlib.sha256(blob).hexdigest()
        result = _run(FAIL_CELL, tmp_path, own, pushed.repository, pushed.index_tag, None)
    _assert_failed_with(result, "init-network",
                        f"kernel: digest mismatch: expected {digest}, got {bad} (refused)")


def test_kernel_that_is_not_an_efi_image(tmp_path: Path, reg: labreg.LocalRegistry,
                                         image: debian.TargetImage) -> None:
    """The initrd pushed as the kernel: verified, but not a PE image; refused before
    LoadImage."""
    push_artifact(f"http://{reg.host}/broken/kernel:1", platform=Platform("linux", "amd64"),
                  kernel=image.initrd)
    digest = "sha256:" + hashlib.sha256(image.initrd.read_bytes()).hexdigest()
    result = _run(FAIL_CELL, tmp_path, reg, "broken/kernel", "1", None)
    text = _assert_failed_with(result, "target-kernel",
                               f"kernel {digest} is not an EFI image (no MZ/PE header")
    assert f"kernel: {image.initrd.stat().st_size} bytes, sha256 verified" in text
    assert "LoadImage" not in text


LIBVIRT = Cell("libvirt", "x86_64", "D", "debian-12", "ext4")


@pytest.mark.cells(LIBVIRT)
def test_path_d_through_libvirt(tmp_path: Path, reg: labreg.LocalRegistry,
                                image: debian.TargetImage, record_cell, settle_cell) -> None:
    """The same loader machine as a libvirt domain (NIC and virtio-rng passed through)."""
    from lab.hypervisors.libvirt import unavailable_reason

    why = unavailable_reason()
    if why is not None:
        record_cell(CellResult(cell=LIBVIRT, status="not-run", reason=why))
        pytest.skip(f"not run: {why}")
    pushed = push_target(reg, image, tag="12-libvirt")
    result = _run(LIBVIRT, tmp_path, reg, pushed.repository, pushed.index_tag, image,
                  target_cmdline(image))
    settle_cell(result)
    _assert_pass(result, image)
    assert (tmp_path / "vm" / "domain.xml").is_file()
