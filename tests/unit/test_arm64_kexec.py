"""arm64 kexec_load layout: the DTB codec on QEMU's own virt DTB, /proc/iomem free ranges,
and the segment plan for Debian's real arm64 Image (its kernels lack KEXEC_FILE)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from cloudboot.arch import get_arch
from cloudboot.debian import debpkg
from cloudboot.init.kexec import arm64 as kexec_arm64
from cloudboot.init.kexec import fdt
from tests.helpers import dump_virt_dtb

ARM64 = get_arch("arm64")

# /proc/iomem of the aarch64 lab guest (virt, 1 GiB, AAVMF), trimmed to the RAM part.
GUEST_IOMEM = """\
09000000-09000fff : ARMH0011:00
40000000-4000ffff : System RAM
40010000-4001ffff : reserved
40020000-7c42ffff : System RAM
  40210000-4168ffff : Kernel code
  41690000-41a3ffff : reserved
  41a40000-41f8ffff : Kernel data
  48000000-480fffff : reserved
  7bc00000-7c02ffff : reserved
7c430000-7c72ffff : reserved
7c730000-7fffffff : System RAM
  7fa19000-7fffffff : reserved
"""


@pytest.fixture(scope="module")
def virt_dtb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    qemu = shutil.which("qemu-system-aarch64")
    if qemu is None:
        pytest.fail("qemu-system-aarch64 missing (apt-get install qemu-system-arm)")
    return dump_virt_dtb(qemu, "virt", "cortex-a57", tmp_path_factory.mktemp("dtb") / "virt.dtb")


def _dts(blob: bytes, tmp: Path) -> str:
    if shutil.which("dtc") is None:
        pytest.fail("dtc missing (apt-get install device-tree-compiler)")
    path = tmp / "x.dtb"
    path.write_bytes(blob)
    return subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", str(path)], capture_output=True,
                          text=True, check=True).stdout


def test_dtb_round_trip_is_identical_to_dtc(virt_dtb: bytes, tmp_path: Path) -> None:
    tree = fdt.parse(virt_dtb)
    assert tree.root.child("chosen") is not None and tree.root.child("memory@40000000")
    again = fdt.serialize(tree)
    assert fdt.serialize(fdt.parse(again)) == again
    assert _dts(again, tmp_path) == _dts(virt_dtb, tmp_path)


def test_chosen_rewritten_for_the_target(virt_dtb: bytes, tmp_path: Path) -> None:
    if shutil.which("fdtget") is None:
        pytest.fail("fdtget missing (apt-get install device-tree-compiler)")
    blob = kexec_arm64.chosen_dtb(virt_dtb, "root=UUID=x ro console=ttyAMA0", (0x48000000, 4096))
    path = tmp_path / "t.dtb"
    path.write_bytes(blob)

    def get(prop: str, *fmt: str) -> str:
        return subprocess.run(["fdtget", *fmt, str(path), "/chosen", prop], capture_output=True,
                              text=True, check=True).stdout.strip()

    assert get("bootargs") == "root=UUID=x ro console=ttyAMA0"
    assert get("linux,initrd-start", "-tx") == "0 48000000"  # u64 as two cells
    assert get("linux,initrd-end", "-tx") == "0 48001000"
    # other /chosen properties survive
    assert get("stdout-path") == fdt.parse(virt_dtb).root.child("chosen").props[  # type: ignore
        "stdout-path"].rstrip(b"\0").decode()
    no_initrd = fdt.parse(kexec_arm64.chosen_dtb(blob, "quiet", None)).root.child("chosen")
    assert no_initrd is not None and "linux,initrd-start" not in no_initrd.props


def test_free_ranges_skip_every_child_resource() -> None:
    ranges = kexec_arm64.free_ranges(GUEST_IOMEM)
    assert ranges == [(0x40000000, 0x40010000), (0x40020000, 0x40210000),
                      (0x41f90000, 0x48000000), (0x48100000, 0x7bc00000),
                      (0x7c030000, 0x7c430000), (0x7c730000, 0x7fa19000)]


def test_host_iomem_parses() -> None:
    text = Path("/proc/iomem").read_text()
    try:
        ranges = kexec_arm64.free_ranges(text)
    except OSError:
        pytest.skip("host: /proc/iomem addresses are hidden from this user")
    assert ranges and all(s < e for s, e in ranges)


@pytest.fixture(scope="module")
def debian_image() -> bytes:
    try:
        root = debpkg.unpacked(ARM64.kernel_package, ARM64.debian)
    except debpkg.PackageError as e:
        pytest.fail(f"{ARM64.kernel_package}:arm64 could not be fetched: {e}", pytrace=False)
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    assert kernels, f"no vmlinuz in {root}/boot"
    # Debian also ships the kernel's config: the reason for this module.
    config = (root / "boot" / f"config-{kernels[-1].name[len('vmlinuz-'):]}").read_text()
    assert "CONFIG_KEXEC=y" in config and "# CONFIG_KEXEC_FILE is not set" in config
    return kernels[-1].read_bytes()


def test_plan_for_the_debian_image(debian_image: bytes, virt_dtb: bytes) -> None:
    hdr = kexec_arm64.image_header(debian_image)
    assert hdr.image_size >= len(debian_image)
    initrd = bytes(5 << 20)
    entry, segs = kexec_arm64.plan(debian_image, initrd, "root=UUID=y ro", virt_dtb,
                                   GUEST_IOMEM)
    by = {s.what: s for s in segs}
    assert list(by) == ["kernel", "initrd", "dtb", "purgatory"]
    assert (by["kernel"].mem - hdr.text_offset) % (2 << 20) == 0
    assert by["kernel"].memsz >= hdr.image_size
    free = kexec_arm64.free_ranges(GUEST_IOMEM)
    spans = sorted((s.mem, s.mem + s.memsz) for s in segs)
    for (_, a1), (b0, _) in zip(spans, spans[1:], strict=False):
        assert a1 <= b0, "segments overlap"
    for s in segs:
        assert s.mem % 4096 == 0 and s.memsz % 4096 == 0 and len(s.data) <= s.memsz
        assert any(lo <= s.mem and s.mem + s.memsz <= hi for lo, hi in free), s.what
    # The purgatory is the entry; its literals point at the DTB and the Image.
    assert entry == by["purgatory"].mem
    assert struct.unpack_from("<QQ", by["purgatory"].data, 24) == (by["dtb"].mem,
                                                                   by["kernel"].mem)
    chosen = fdt.parse(by["dtb"].data).root.child("chosen")
    assert chosen is not None
    assert chosen.props["linux,initrd-start"] == fdt.u64(by["initrd"].mem)
    assert chosen.props["linux,initrd-end"] == fdt.u64(by["initrd"].mem + len(initrd))


def test_no_room_is_enomem(debian_image: bytes, virt_dtb: bytes) -> None:
    tiny = "40000000-40ffffff : System RAM\n"
    with pytest.raises(kexec_arm64.KexecLoadError) as e:
        kexec_arm64.plan(debian_image, None, "x", virt_dtb, tiny)
    assert e.value.errno == 12


def test_gzip_or_bare_image_only() -> None:
    with pytest.raises(kexec_arm64.KexecLoadError, match="ARM"):
        kexec_arm64.image_header(b"MZ" + bytes(100))
