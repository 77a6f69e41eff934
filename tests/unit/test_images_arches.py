"""Target images for the armv7/riscv64/loongarch64 lanes: forky for loong64, debootstrap's
script for releases it predates, qemu-user 10 for loong64 binaries, forky's kernel layout, and
the testing release's place in the matrix."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from cloudboot.arch import get_arch
from lab import matrix
from lab.cells import ALL_DISTROS, DISTROS, Cell, CellResult
from lab.images import debian, foreign

LOONG = get_arch("loongarch64")


def test_suite_script_is_the_releases_own_or_sids_with_dracut_excluded(tmp_path: Path) -> None:
    scripts, out = tmp_path / "scripts", tmp_path / "out"
    scripts.mkdir(), out.mkdir()
    (scripts / "sid").write_text("mirror_style release\n")
    (scripts / "trixie").symlink_to("sid")
    (scripts / "bookworm").write_text("# bookworm's own\n")
    for release, body in (("bookworm", "# bookworm's own\n"), ("trixie", "mirror_style release\n"),
                          ("forky", "mirror_style release\n")):
        script = foreign.debootstrap_script(release, out, scripts)
        assert script.parent == out and script.read_text().endswith(body)
    (scripts / "sid").unlink()
    with pytest.raises(foreign.ForeignError, match="no script for forky and no sid script"):
        foreign.debootstrap_script("forky", out, scripts)


def test_suite_script_keeps_dracut_out_of_debootstraps_resolver(tmp_path: Path) -> None:
    # Source the written script in a shell the way debootstrap does (its own stubs for the
    # directives), with debootstrap's start-up value and debian-common's later append.
    script = foreign.debootstrap_script("forky", tmp_path)
    shell = ("mirror_style() { :; }; download_style() { :; }; finddebs_style() { :; }; "
             "variants() { :; }; keyring() { :; }; error() { :; }; DEBOOTSTRAP_DIR=/nonexistent; "
             f'EXCLUDE_DEPENDENCY=""; . "{script}"; '
             'EXCLUDE_DEPENDENCY="$EXCLUDE_DEPENDENCY usrmerge"; echo "$EXCLUDE_DEPENDENCY"')
    out = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["dracut", "usrmerge"]


def test_forky_first_stage_names_the_script_after_the_mirror(tmp_path: Path) -> None:
    tree, script = tmp_path / "t", tmp_path / "suite-forky"
    first, second = foreign.debootstrap_commands("forky", LOONG, tree, "http://m", ("udev",),
                                                 tmp_path / "c", script)
    tail = first[first.index("forky"):]
    assert tail == ["forky", str(tree), "http://m", str(script)]
    assert "--arch=loong64" in first and "--foreign" in first
    assert second[-1] == "--second-stage"


def test_register_line_is_the_binfmt_misc_record() -> None:
    magic, mask = foreign.ELF_MATCH["loongarch64"]
    line = foreign.register_line("cloudboot-loongarch64", magic, mask, Path("/opt/q/qemu-la"))
    fields = line.split(":")
    assert fields[0] == "" and fields[1] == "cloudboot-loongarch64" and fields[2] == "M"
    assert fields[3] == "0" and fields[6] == "/opt/q/qemu-la" and fields[7] == "F"
    # e_machine 258 (EM_LOONGARCH), little-endian, at bytes 18-19 of the ELF header.
    raw_magic, raw_mask = (m.encode().decode("unicode_escape") for m in (magic, mask))
    assert raw_magic.endswith("\x02\x01") and len(raw_magic) == len(raw_mask) == 20
    with pytest.raises(foreign.ForeignError, match="contains ':'"):
        foreign.register_line("x", magic, mask, Path("/a:b/qemu"))


def test_forky_release_builds_a_loong64_recipe() -> None:
    r = debian.recipe("forky", "ext4", "loongarch64")
    assert (r.release, r.arch) == ("forky", "loongarch64")
    assert "linux-image-loong64" in r.packages
    with pytest.raises(debian.ImageError, match="unknown Debian release 'sid'"):
        debian.recipe("sid", "ext4", "loongarch64")


def _tree(root: Path, version: str, boot_link: str | None = None) -> Path:
    (root / "boot").mkdir(parents=True)
    (root / "usr/lib/modules" / version).mkdir(parents=True)
    (root / "usr/lib/modules" / version / "vmlinuz").write_bytes(b"MZ kernel")
    (root / "boot" / f"initrd.img-{version}").write_bytes(b"initrd")
    if boot_link is not None:
        (root / "boot" / f"vmlinuz-{version}").symlink_to(boot_link)
    return root


def test_kernel_only_under_usr_lib_modules_is_found(tmp_path: Path) -> None:
    v = "7.2.12+deb14-loong64"
    root = _tree(tmp_path / "r", v)
    assert debian.kernel_version_of(root) == v
    assert debian.kernel_file_of(root, v) == root / "usr/lib/modules" / v / "vmlinuz"


def test_absolute_boot_symlink_is_not_followed_onto_the_host(tmp_path: Path) -> None:
    v = "7.2.12+deb14-loong64"
    root = _tree(tmp_path / "r", v, boot_link=f"/usr/lib/modules/{v}/vmlinuz")
    assert debian.kernel_version_of(root) == v
    assert debian.kernel_file_of(root, v) == root / "usr/lib/modules" / v / "vmlinuz"
    rel = _tree(tmp_path / "s", v, boot_link=f"../usr/lib/modules/{v}/vmlinuz")
    assert debian.kernel_file_of(rel, v) == rel / "boot" / f"vmlinuz-{v}"


def test_no_kernel_anywhere_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    with pytest.raises(debian.ImageError, match="expected one /boot/vmlinuz-"):
        debian.kernel_version_of(tmp_path)


def test_debian_14_is_a_testing_distro_of_the_matrix_only() -> None:
    assert Cell("qemu", "loongarch64", "A", "debian-14", "ext4").release == "forky"
    # The grids the per-lane tests parametrise over stay the stable releases.
    assert "debian-14" not in DISTROS and ALL_DISTROS["debian-14"] == "forky"
    assert any(c.distro == "debian-14" for c in matrix.all_cells())
    with pytest.raises(ValueError, match="unknown distro 'debian-99'"):
        _ = Cell("qemu", "x86_64", "A", "debian-99", "ext4").release


def test_every_debian_14_cell_outside_loongarch64_says_why_it_is_not_run(
        tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    matrix.write_results(path, [], {"commit": "abc", "accel": "tcg"})
    cells = json.loads(path.read_text())["cells"]
    testing = [c for c in cells if "-debian-14-" in c["cell"] and "-loongarch64-" not in c["cell"]]
    assert testing and all(c["status"] == "not-run" for c in testing)
    assert all(c["reason"] != "not selected in this run" for c in testing), [
        c["cell"] for c in testing if c["reason"] == "not selected in this run"]


@pytest.mark.parametrize("path", ["A", "C"])
def test_the_loongarch64_lane_runs_debian_14_on_ext4(path: str) -> None:
    # The testing-release rule must not swallow the one lane that needs it: the ext4 cells
    # run (Path C with a known emulator failure: the guest's reset often never happens).
    ext4 = matrix.expectation(Cell("qemu", "loongarch64", path, "debian-14", "ext4"))
    assert ext4 is None or ext4.kind == "known", ext4
    xfs = matrix.expectation(Cell("qemu", "loongarch64", path, "debian-14", "xfs"))
    assert xfs is not None and xfs.kind == "not_run" and "ext4" in xfs.reason


def test_testing_rows_render_only_in_lanes_that_ran_them(tmp_path: Path) -> None:
    ran = CellResult(Cell("qemu", "loongarch64", "A", "debian-14", "ext4"), "pass",
                     phase_times={"userspace": 99.0}, accel="tcg")
    x86 = CellResult(Cell("qemu", "x86_64", "A", "debian-12", "ext4"), "pass",
                     phase_times={"userspace": 41.0}, accel="tcg")
    path = tmp_path / "results.json"
    matrix.write_results(path, [ran, x86], {"commit": "abc", "accel": "tcg"})
    text = matrix.render(json.loads(path.read_text()))
    loong = text.split("## qemu · loongarch64", 1)[1].split("## ", 1)[0]
    assert "| debian-14 | ext4 | ✓ 99 s |" in loong
    x86_lane = text.split("## qemu · x86_64", 1)[1].split("## ", 1)[0]
    assert "debian-14" not in x86_lane and "| debian-12 | ext4 | ✓ 41 s |" in x86_lane


def test_loong64_binary_runs_through_the_private_qemu_user() -> None:
    """forky's static busybox (built for LSX) under qemu-user 10 via binfmt_misc: the host's
    qemu-user-static 7.2 dies on it with SIGILL."""
    if os.geteuid() != 0:
        pytest.skip("host: registering a binfmt_misc handler needs root")
    from cloudboot.debian import aptsuites

    try:
        root = aptsuites.unpacked(aptsuites.get_suite("forky"), "busybox-static", "loong64")
        interp = foreign.ensure_binfmt(LOONG)
    except (aptsuites.SuiteError, foreign.ForeignError) as e:
        pytest.fail(f"loong64 set-up: {e}")
    assert Path(interp).name == "qemu-loongarch64" and "bookworm-backports" in interp
    state = foreign.handler_state(foreign.PRIVATE_HANDLER_PREFIX + "loongarch64")
    assert state["status"] == "enabled" and "F" in state["flags"]
    assert foreign.handler_state("qemu-loongarch64").get("status") != "enabled"
    # Executed directly: only binfmt_misc can make an x86_64 kernel run it.
    proc = subprocess.run([str(root / "usr/bin/busybox"), "uname", "-m"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "loongarch64"


def _run_purge(tmp_path: Path, trigger_rebuilds: bool) -> list[str]:
    """The purge script under a real sh, with dpkg and update-initramfs as logging stubs."""
    boot, bin_dir, log = tmp_path / "boot", tmp_path / "bin", tmp_path / "calls"
    boot.mkdir()
    bin_dir.mkdir()
    initrd = boot / "initrd.img-6.1.0-test"
    initrd.write_bytes(b"old")
    os.utime(initrd, (1_600_000_000, 1_600_000_000))
    touch = f"touch {initrd}; " if trigger_rebuilds else ""
    for name, body in (("dpkg", f'echo "dpkg $*" >> {log}; {touch}'),
                       ("update-initramfs", f'echo "update-initramfs $*" >> {log}')):
        stub = bin_dir / name
        stub.write_text(f"#!/bin/sh\n{body}\n")
        stub.chmod(0o755)
    script = debian.purge_script(("btrfs-progs", "xfsprogs")).replace("/boot/", f"{boot}/")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(["sh", "-c", script], check=True, env=env, timeout=30)
    return log.read_text().splitlines()


def test_purge_rebuilds_the_initrd_once_when_the_trigger_did(tmp_path: Path) -> None:
    assert _run_purge(tmp_path, trigger_rebuilds=True) == ["dpkg --purge btrfs-progs xfsprogs"]


def test_purge_rebuilds_the_initrd_itself_when_no_trigger_fired(tmp_path: Path) -> None:
    assert _run_purge(tmp_path, trigger_rebuilds=False) == [
        "dpkg --purge btrfs-progs xfsprogs", "update-initramfs -u -k all"]


def test_initrd_built_after_our_conf_is_not_rebuilt(tmp_path: Path) -> None:
    # A foreign tree gets the conf between debootstrap's stages, so the kernel postinst's
    # initrd already has MODULES=most and the explicit (5-20 min) rebuild is skipped.
    from lab.images import rootfs

    conf = tmp_path / "etc/initramfs-tools/conf.d/cloudboot.conf"
    assert rootfs._initrds_older_than(tmp_path, conf) == ["no initrd yet"]
    rootfs._write_initramfs_conf(conf)
    (tmp_path / "boot").mkdir()
    initrd = tmp_path / "boot/initrd.img-6.1.0-arm"
    initrd.write_bytes(b"")
    os.utime(conf, (1000, 1000))
    os.utime(initrd, (2000, 2000))
    assert rootfs._initrds_older_than(tmp_path, conf) == []
    os.utime(initrd, (500, 500))
    assert rootfs._initrds_older_than(tmp_path, conf) == ["initrd.img-6.1.0-arm"]


def test_a_failed_debootstrap_names_its_first_error_and_its_last_lines(tmp_path: Path) -> None:
    from lab.images import rootfs

    assert "no " in rootfs._debootstrap_log_tail(tmp_path)
    log = tmp_path / "debootstrap" / "debootstrap.log"
    log.parent.mkdir()
    log.write_text("".join(f"line {i}\n" for i in range(50))
                   + "mkinitramfs: failed to determine device for /\n"
                   + "dpkg: error processing package initramfs-tools (--configure):\n"
                   + "".join(f"dpkg: package p{i} already installed, skipping\n"
                             for i in range(100))
                   + "Errors were encountered while processing:\n")
    tail = rootfs._debootstrap_log_tail(tmp_path)
    assert "mkinitramfs: failed to determine device" in tail  # the cause, not only the retries
    assert "line 49" in tail and "line 30" not in tail
    assert tail.endswith("Errors were encountered while processing:")
