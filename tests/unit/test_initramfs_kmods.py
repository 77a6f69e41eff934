"""Kernel module selection from the real Debian kernel package."""

from __future__ import annotations

import lzma
import shutil
from pathlib import Path

import pytest

from cloudboot import debpkg
from cloudboot.arch import host_arch
from cloudboot.initramfs import kmods

ARCH = host_arch()


@pytest.fixture(scope="module")
def kroot() -> Path:
    try:
        return debpkg.unpacked(ARCH.kernel_package, ARCH.debian)
    except debpkg.PackageError as e:
        pytest.skip(f"kernel package unavailable: {e}")


def test_default_selection(kroot: Path) -> None:
    s = kmods.select(kroot)
    names = [kmods.modname(rel) for rel, _ in s.modules]
    assert len(names) == len(set(names))
    pos = {n: i for i, n in enumerate(names)}
    assert pos["virtio_ring"] < pos["virtio"] < pos["virtio_pci"]
    for rel, deps in s.deps.items():
        for d in deps:
            assert pos[kmods.modname(d)] < pos[kmods.modname(rel)], (rel, d)
    for rel, data in s.modules:
        assert rel.endswith(".ko") and data[:4] == b"\x7fELF", rel
    for name in s.builtin:  # listed as built in, so not shipped
        assert name not in pos
    assert "nls_iso8859_1" in pos  # file is nls_iso8859-1.ko: '-' and '_' are one


def test_unknown_module_is_an_error(kroot: Path) -> None:
    with pytest.raises(kmods.KernelModuleError, match="no_such_module"):
        kmods.select(kroot, ["no_such_module"])


def test_compressed_modules_are_decompressed(kroot: Path, tmp_path: Path) -> None:
    # a copy of the tree with xz-compressed modules, as newer Debian kernels ship them
    src = kmods.KernelTree(kroot)
    dst = tmp_path / "lib/modules" / src.version
    for meta in ("modules.builtin", "modules.builtin.modinfo"):
        if (src.dir / meta).exists():
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy(src.dir / meta, dst / meta)
    for name in ("virtio_ring", "virtio", "virtio_blk"):
        rel = Path(src.paths[name])
        (dst / rel.parent).mkdir(parents=True, exist_ok=True)
        (dst / f"{rel}.xz").write_bytes(lzma.compress((src.dir / rel).read_bytes(),
                                                      format=lzma.FORMAT_XZ))
    s = kmods.select(tmp_path, ["virtio_blk"])
    assert [kmods.modname(r) for r, _ in s.modules] == ["virtio_ring", "virtio", "virtio_blk"]
    assert s.modules[0][1] == (src.dir / src.paths["virtio_ring"]).read_bytes()
    assert all(r.endswith(".ko") for r, _ in s.modules)
