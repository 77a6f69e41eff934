"""cloudboot/bootstrap/archsources.py: which suite gives each arch's bootstrap UKI its kernel,
stub and Python; the errors when a part cannot be had; `cloudboot build` taking exactly those parts.

Real Debian packages (cached under ~/.cache/cloudboot; fetched from Debian's mirror with apt
when the cache is cold), real apt for the failures, the real CLI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudboot import pe
from cloudboot.arch import get_arch
from cloudboot.bootstrap import archsources, build
from cloudboot.cli.main import main
from cloudboot.debian import aptsuites
from cloudboot.fsutil import cache_root
from cloudboot.initramfs import pyruntime
from lab.arch_lanes import LANES, LaneGap, get_lane
from tests.helpers import marker_initramfs

SUITE_ARCHES = ("armv7", "riscv64", "loongarch64")
HOST_ARCHES = ("x86_64", "aarch64")


def _origin(path: Path) -> tuple[str, str, str]:
    """(suite or "host", Debian arch, package) of a file unpacked into the cache."""
    rel = path.relative_to(cache_root() / "unpacked")
    if rel.parts[0] in aptsuites.SUITES:  # <suite>/<debian arch>/<deb stem>/…
        suite, debian_arch, stem = rel.parts[:3]
    else:  # <debian arch>/<deb stem>/… (the host's apt)
        suite, (debian_arch, stem) = "host", rel.parts[:2]
    return suite, debian_arch, stem.split("_")[0]


def _parts(arch: str) -> tuple[Path, Path]:
    a = get_arch(arch)
    try:
        return build.default_kernel(a), build.default_stub(a)
    except build.BuildError as e:  # a cold cache and no mirror: say so, do not pass
        pytest.fail(f"{arch}: the Debian packages could not be fetched: {e}", pytrace=False)


def test_the_table_per_arch() -> None:
    table = {a: (s.kernel_suite, s.stub_suite, s.python) for a, s in archsources.TABLE.items()}
    assert table == {
        "armv7": (None, "trixie", "3.11"),  # bookworm armmp kernel, trixie stub 257
        "riscv64": ("trixie", "trixie", "3.13"),
        "loongarch64": ("forky", "forky", "3.14"),
    }
    for s in archsources.TABLE.values():
        for suite in (s.kernel_suite, s.stub_suite):
            assert suite is None or suite in aptsuites.SUITES
    for name in (*HOST_ARCHES, "amd64", "arm64"):
        s = archsources.for_arch(name)
        assert (s.kernel_suite, s.stub_suite, s.python) == (None, None, pyruntime.PY_VERSION)
        assert s.describe().endswith("kernel from host apt, systemd-stub from host apt, "
                                     "python3.11 from host apt")
    assert archsources.for_arch("armhf") is archsources.TABLE["armv7"]
    assert archsources.for_arch(get_arch("loong64")) is archsources.TABLE["loongarch64"]
    assert archsources.for_arch("riscv64").describe() == (
        "riscv64: kernel from trixie, systemd-stub from trixie, python3.13 from trixie")
    # The lab's lanes are the same entries (plus lab-only extras), not a second table.
    assert set(LANES) == set(archsources.TABLE)
    for name, lane in LANES.items():
        s = archsources.TABLE[name]
        assert isinstance(lane, archsources.ArchSources)
        assert (lane.arch, lane.kernel_suite, lane.stub_suite, lane.python) == (
            s.arch, s.kernel_suite, s.stub_suite, s.python)
    with pytest.raises(LaneGap, match="no lane table entry for x86_64"):
        get_lane("x86_64")


@pytest.mark.parametrize("arch,kernel_from,stub_from", [
    ("riscv64", "trixie", "trixie"),
    ("loongarch64", "forky", "forky"),
    ("armv7", "host", "trixie"),
    ("x86_64", "host", "host"),
    ("aarch64", "host", "host"),
])
def test_build_takes_each_arch_parts_from_its_suite(arch: str, kernel_from: str,
                                                    stub_from: str) -> None:
    a = get_arch(arch)
    kernel, stub = _parts(arch)
    k_suite, k_arch, k_pkg = _origin(kernel)
    assert (k_suite, k_arch) == (kernel_from, a.debian), kernel
    assert k_pkg.startswith(("linux-image-", "linux-binary-")), kernel
    assert _origin(stub) == (stub_from, a.debian, "systemd-boot-efi"), stub
    assert stub.name == a.stub_file
    assert pe.parse(stub.read_bytes(), str(stub)).machine == a.pe_machine
    if arch in LANES:  # exactly what the lab's lane boots
        assert (kernel, stub) == (get_lane(arch).kernel(), get_lane(arch).stub())
    release = build.kernel_release(kernel, b"")
    assert release is not None and release.endswith(
        {"x86_64": "cloud-amd64", "aarch64": "cloud-arm64", "armv7": "armmp",
         "riscv64": "riscv64", "loongarch64": "loong64"}[arch]), (kernel, release)


@pytest.mark.parametrize("arch", [*SUITE_ARCHES, *HOST_ARCHES])
def test_the_initramfs_python_and_kernel_modules_follow_the_table(arch: str) -> None:
    s = archsources.for_arch(arch)
    a = get_arch(arch)
    try:
        runtime = s.python_runtime()
        roots = s.kernel_roots()
        kernel = s.kernel()
    except archsources.ArchSourceError as e:
        pytest.fail(f"{arch}: the Debian packages could not be fetched: {e}", pytrace=False)
    # The modules the initramfs packs come from the same kernel the UKI carries.
    assert any(kernel.is_relative_to(r) for r in roots), (kernel, roots)
    if s.kernel_suite is None:
        assert runtime == pyruntime.DEFAULT_RUNTIME and len(roots) == 1
        assert _origin(roots[0])[0] == "host"
        return
    assert runtime.version == s.python != pyruntime.PY_VERSION
    assert runtime.source == s.kernel_suite
    assert runtime.emulator is not None and runtime.emulator.name == (
        "qemu-" + archsources.QEMU_USER_NAMES[arch])
    assert _origin(runtime.emulator)[:2] == (archsources.QEMU_USER_SUITE, "amd64")
    minimal = runtime.fetch(f"python{s.python}-minimal", a.debian)
    assert _origin(minimal) == (s.kernel_suite, a.debian, f"python{s.python}-minimal")
    assert (minimal / f"usr/bin/python{s.python}").is_file()
    assert {_origin(r)[0] for r in roots} == {s.kernel_suite}
    # The lane hands the builder the same runtime and kernel roots.
    lane = get_lane(arch)
    assert lane.kernel_roots() == roots
    assert (lane.python_runtime().version, lane.python_runtime().source,
            lane.python_runtime().emulator) == (runtime.version, runtime.source,
                                                runtime.emulator)


# --- errors: which arch, which suite, which package, what to do ---------------------------

def test_host_apt_has_no_riscv64_kernel_and_says_so() -> None:
    """Why the table exists: bookworm has no riscv64 (nor loong64)."""
    with pytest.raises(archsources.ArchSourceError) as info:
        archsources.host_sources("riscv64").kernel()
    msg = str(info.value)
    assert msg.startswith("riscv64: cannot fetch linux-image-riscv64:riscv64 from the host's "
                          "apt: "), msg
    assert "To fix: " in msg and "dpkg --add-architecture riscv64" in msg, msg
    assert msg.endswith("or pass --kernel PATH (and --initramfs PATH built for that kernel)")


def test_a_package_missing_from_a_suite_names_suite_package_and_fix() -> None:
    # trixie's private root indexes riscv64, armhf and amd64 only: no arm64 stub there.
    sources = archsources.ArchSources("aarch64", None, "trixie", "3.11")
    with pytest.raises(archsources.ArchSourceError) as info:
        sources.stub()
    msg = str(info.value)
    root = aptsuites.get_suite("trixie").root()
    assert msg.startswith(f"aarch64: cannot fetch systemd-boot-efi:arm64 from Debian trixie "
                          f"(private apt root {root}): "), msg
    assert "is not in trixie" in msg, msg
    assert f"check that {aptsuites.MIRROR} is reachable" in msg, msg
    assert f"rm {root / 'updated'}" in msg and msg.endswith("pass --stub PATH (a systemd-stub "
                                                             "for this arch)"), msg


def test_table_mistakes_are_named() -> None:
    with pytest.raises(archsources.ArchSourceError,
                       match=r"^riscv64: unknown private apt suite 'sid' .*fix the table"):
        archsources.ArchSources("riscv64", "sid", "sid", "3.13").kernel_roots()
    with pytest.raises(archsources.ArchSourceError,
                       match="x86_64: the host apt has python3.11, the archsources table "
                             "says 3.13"):
        archsources.ArchSources("x86_64", None, None, "3.13").python_runtime()
    with pytest.raises(archsources.ArchSourceError, match="x86_64: no qemu-user binary name"):
        archsources.qemu_user("x86_64")


def test_cli_build_reports_a_failed_fetch_in_one_line(tmp_path: Path, monkeypatch,
                                                      capsys) -> None:
    # A table entry whose stub suite lacks the arch: the real apt says no.
    monkeypatch.setitem(archsources.TABLE, "aarch64",
                        archsources.ArchSources("aarch64", None, "trixie", "3.11"))
    with pytest.raises(build.BuildError, match="aarch64: cannot fetch systemd-boot-efi:arm64 "
                                               "from Debian trixie"):
        build.default_stub(get_arch("aarch64"))
    initrd = marker_initramfs(tmp_path / "initrd.gz")
    out = tmp_path / "out"
    out.mkdir()
    rc = main(["build", "--arch", "arm64", "--initramfs", str(initrd), "-o",
               str(out / "boot.iso")])
    err = capsys.readouterr().err
    assert rc == 1
    assert len(err.strip().splitlines()) == 1, err
    assert "aarch64: cannot fetch systemd-boot-efi:arm64 from Debian trixie" in err, err
    assert "--stub PATH" in err
    assert list(out.iterdir()) == []


# --- the real CLI ---------------------------------------------------------------------------

@pytest.mark.parametrize("arch", SUITE_ARCHES)
def test_cli_build_packs_the_suite_kernel_and_stub(arch: str, tmp_path: Path) -> None:
    """`cloudboot build --arch X` with the default kernel and stub: the UKI's .linux is the
    table's kernel, its .uname names it, the stub it was built on (handed to the guest in the
    initrd for Path C) is the table's systemd-stub."""
    a = get_arch(arch)
    kernel, stub = _parts(arch)
    initrd = marker_initramfs(tmp_path / "initrd.gz")
    uki_path = tmp_path / "boot.efi"
    assert main(["build", "--arch", arch, "--initramfs", str(initrd), "--uki", str(uki_path),
                 "-o", str(tmp_path / "boot.iso")]) == 0
    data = uki_path.read_bytes()
    img = pe.parse(data, str(uki_path))
    assert img.machine == a.pe_machine
    assert pe.check_uki(data, img.machine) == []
    linux = img.section_data(".linux") or b""
    assert linux[:len(kernel.read_bytes())] == kernel.read_bytes()
    uname = (img.section_data(".uname") or b"").rstrip(b"\0").decode()
    assert uname and uname == build.kernel_release(kernel, b""), uname
    initrd_section = img.section_data(".initrd") or b""
    assert initrd_section.startswith(initrd.read_bytes())
    assert stub.read_bytes() in initrd_section  # STUB_PATH overlay: the table's stub


# Builds the bootstrap initramfs with the CLI's defaults: minutes of qemu-user for riscv64 and
# loongarch64 when the cache is cold, so it runs with the lane cells (nox -s e2e / matrix),
# whose test_arches_bootstrap.py needs the very same cached file.
@pytest.mark.e2e
@pytest.mark.parametrize("arch", SUITE_ARCHES)
def test_cli_build_packs_the_lanes_initramfs(arch: str, tmp_path: Path) -> None:
    uki_path = tmp_path / "boot.efi"
    assert main(["build", "--arch", arch, "--uki", str(uki_path),
                 "-o", str(tmp_path / "boot.iso")]) == 0
    lane = get_lane(arch)
    initramfs = lane.bootstrap_initramfs()
    assert build.default_initramfs(get_arch(arch), None) == initramfs
    img = pe.parse(uki_path.read_bytes(), str(uki_path))
    initrd_section = img.section_data(".initrd") or b""
    # the same bytes even when another edit of cloudboot/ moved the cache key in between
    assert initrd_section.startswith(initramfs.read_bytes())
    assert lane.stub().read_bytes() in initrd_section
    assert (img.section_data(".uname") or b"").rstrip(b"\0").decode() == lane.kernel_release()
