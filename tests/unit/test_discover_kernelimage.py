"""version.compare() ordering and kernelimage format handling (real Debian kernel + zboot)."""

from __future__ import annotations

import gzip
import lzma
import struct
import subprocess

import pytest

from cloudboot.debian import debpkg
from cloudboot.init.storage import kernelimage, version
from cloudboot.init.storage.kernelimage import KernelImageError
from tests.helpers import debian_stub


@pytest.mark.parametrize(
    "newer,older",
    [
        ("6.10.0", "6.9.12"),
        ("6.1.0-10-cloud-amd64", "6.1.0-9-cloud-amd64"),
        ("6.11.10-300.fc41.x86_64", "6.11.4-301.fc41.x86_64"),
        ("5.14.0-503.11.1.el9_5.x86_64", "5.14.0-427.13.1.el9_4.x86_64"),
        ("6.1.0", "6.1.0~rc3"),
        ("6.1.0~rc3", "6.1.0~rc3~1"),
        ("6.1.0a", "6.1.0"),
        ("6.1.0+", "6.1.0a"),  # dpkg: letters sort before other symbols
        ("6.1.0-", "6.1.0+"),  # other symbols by ASCII
    ],
)
def test_version_order(newer: str, older: str) -> None:
    assert version.compare(newer, older) == 1
    assert version.compare(older, newer) == -1


def test_version_equal_and_sort() -> None:
    assert version.compare("6.1.0-10", "6.1.0-10") == 0
    assert version.compare("6.01", "6.1") == 0, "numbers compare as numbers"
    vs = ["6.9.12", "6.10.0", "6.1.0-9", "6.1.0-10", "6.10.0~rc1"]
    assert sorted(vs, key=version.sort_key) == [
        "6.1.0-9", "6.1.0-10", "6.9.12", "6.10.0~rc1", "6.10.0",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def debian_kernel() -> bytes:
    """The Debian cloud kernel (bzImage with EFI stub), via the project's .deb cache."""
    try:
        root = debpkg.unpacked("linux-image-cloud-amd64", "amd64")
    except debpkg.PackageError as e:
        pytest.fail(f"the Debian kernel package could not be fetched: {e}", pytrace=False)
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    assert kernels, f"{root}/boot holds no vmlinuz"
    return kernels[0].read_bytes()


def test_real_debian_kernel(debian_kernel: bytes) -> None:
    assert kernelimage.is_efi_stub(debian_kernel)
    assert kernelimage.pe_machine(debian_kernel) == 0x8664
    ver = kernelimage.version_string(debian_kernel)
    assert ver is not None and ver.endswith("-cloud-amd64")
    desc = kernelimage.describe(debian_kernel)
    assert desc.startswith("x86 bzImage") and "EFI stub (x86_64)" in desc and ver in desc
    assert kernelimage.unwrap(debian_kernel) is debian_kernel, "a bzImage is left alone"


def fake_arm64_image() -> bytes:
    """An arm64 Image header (with its EFI stub PE header) and a Linux banner inside."""
    img = bytearray(0x1000)
    img[0:2] = b"MZ"
    img[0x38:0x3C] = b"ARM\x64"
    struct.pack_into("<I", img, 0x3C, 0x40)
    img[0x40:0x44] = b"PE\0\0"
    struct.pack_into("<H", img, 0x44, 0xAA64)
    banner = b"Linux version 6.8.0-45-generic (buildd@bos03) (gcc 13.2.0) #45-Ubuntu SMP"
    img[0x800 : 0x800 + len(banner)] = banner
    return bytes(img)


def zboot(payload: bytes, comp: str, trailing: bytes = b"") -> bytes:
    """An EFI zboot image laid out as the kernel's zboot-header.S does."""
    hdr = bytearray(0x200)
    hdr[0:2] = b"MZ"
    hdr[4:8] = b"zimg"
    struct.pack_into("<II", hdr, 8, len(hdr), len(payload))
    name = comp.encode() + b"\0"
    hdr[0x18 : 0x18 + len(name)] = name
    struct.pack_into("<I", hdr, 0x3C, 0x40)
    hdr[0x40:0x44] = b"PE\0\0"
    struct.pack_into("<H", hdr, 0x44, 0xAA64)
    return bytes(hdr) + payload + trailing


def test_gzip_kernel_as_on_ubuntu_arm64() -> None:
    image = fake_arm64_image()
    wrapped = gzip.compress(image) + b"\0" * 7  # padding after the gzip member is tolerated
    assert kernelimage.describe(wrapped).startswith("gzip-compressed")
    assert not kernelimage.is_efi_stub(wrapped)
    assert kernelimage.unwrap(wrapped) == image
    desc = kernelimage.describe(image)
    assert "arm64 Image" in desc and "EFI stub (arm64)" in desc and "6.8.0-45-generic" in desc


@pytest.mark.parametrize(
    "comp,pack",
    [
        ("gzip", gzip.compress),
        ("xzkern", lambda b: lzma.compress(b, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)),
        ("lzma", lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE)),
    ],
)
def test_zboot(comp: str, pack: object) -> None:
    image = fake_arm64_image()
    wrapped = zboot(pack(image), comp, trailing=b"\xaa" * 16)  # type: ignore[operator]
    assert kernelimage.is_efi_stub(wrapped)
    assert kernelimage.pe_machine(wrapped) == 0xAA64
    assert kernelimage.describe(wrapped).startswith(f"EFI zboot ({comp})")
    assert kernelimage.unwrap(wrapped) == image


def test_zboot_zstd_is_a_clear_error() -> None:
    with pytest.raises(KernelImageError, match="zstd.*standard library.*Path C"):
        kernelimage.unwrap(zboot(b"\x28\xb5\x2f\xfd" + b"\0" * 64, "zstd22"))


def test_broken_inputs() -> None:
    with pytest.raises(KernelImageError, match="runs past the file"):
        hdr = bytearray(zboot(b"abc", "gzip"))
        struct.pack_into("<I", hdr, 12, 1 << 20)
        kernelimage.unwrap(bytes(hdr))
    with pytest.raises(KernelImageError, match="corrupt gzip"):
        kernelimage.unwrap(zboot(b"\x1f\x8bnot gzip at all", "gzip"))
    assert kernelimage.pe_machine(b"MZ" + b"\0" * 100) is None
    assert kernelimage.describe(b"hello").startswith("unknown format")


def test_efi_stub_binary_from_systemd() -> None:
    data = debian_stub().read_bytes()  # systemd-boot-efi's linuxx64.efi.stub, as the build uses
    assert kernelimage.is_efi_stub(data) and kernelimage.pe_machine(data) == 0x8664


def test_version_agrees_with_dpkg() -> None:
    """For strings without a revision part, dpkg itself is the reference."""
    vs = ["6.10.0", "6.9.12", "6.1.0~rc3", "6.1.0", "6.1.0+b1", "6.1.0a", "6.1.0.1", "6.1", "6.1~"]
    for a in vs:
        for b in vs:
            want = 0
            for op, res in (("lt", -1), ("gt", 1)):
                cmd = ["dpkg", "--compare-versions", a, op, b]
                if subprocess.run(cmd, check=False).returncode == 0:
                    want = res
            assert version.compare(a, b) == want, (a, b)
