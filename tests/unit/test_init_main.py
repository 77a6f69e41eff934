"""The cloudboot-init flow up to the hand-off, on the host (not PID 1): --root trees,
a real ext4 image on a loop device, the fatal paths."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from cloudboot.bootstrap.build import BuildError
from cloudboot.init import boot as boot_state
from cloudboot.init import handoff
from cloudboot.init import main as init_main
from cloudboot.init.errors import Fatal
from cloudboot.init.events import Events, parse_line
from tests.helpers import debian_kernel


@pytest.fixture(scope="module")
def kernel() -> Path:
    """The bootstrap's own Debian kernel, fetched into the suite's cache: real bytes whose
    version (from the package's file name) is whatever the archive serves today."""
    try:
        return debian_kernel()
    except BuildError as e:
        pytest.fail(f"the Debian kernel could not be fetched: {e}", pytrace=False)


def _version(kernel: Path) -> str:
    return kernel.name.removeprefix("vmlinuz-")


def _debian_tree(root: Path, kernel: Path, cmdline_file: str | None = None) -> Path:
    """A tree shaped like a Debian cloud image: /boot/vmlinuz-V + /boot/initrd.img-V."""
    boot = root / "boot"
    boot.mkdir(parents=True)
    V = _version(kernel)
    shutil.copyfile(kernel, boot / f"vmlinuz-{V}")
    (boot / f"initrd.img-{V}").write_bytes(b"070701" + b"0" * 200)
    if cmdline_file is not None:
        (root / "etc/kernel").mkdir(parents=True)
        (root / "etc/kernel/cmdline").write_text(cmdline_file + "\n")
    return root


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict], dict | None]:
    rc = init_main.main(list(argv))
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"cloudboot-init {boot_state.VERSION} starting"
    evs = [e for e in map(parse_line, lines) if e is not None]
    assert evs[0]["phase"] == "init-start" and evs[0]["pid1"] is False
    assert sum(e["phase"] == "fatal" for e in evs) == (0 if rc == 0 else 1)
    dry = None
    for line in lines:
        if line.startswith("cloudboot: " + boot_state.DRY_RUN):
            dry = json.loads(line[len("cloudboot: " + boot_state.DRY_RUN):])
    return rc, evs, dry


def test_dry_run_debian_tree(kernel: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    V = _version(kernel)
    root = _debian_tree(tmp_path / "t", kernel)
    rc, evs, dry = _run(capsys, "--cmdline",
                        "BOOT_IMAGE=x console=tty0 console=ttyS0,115200 cloudboot.disk=UUID=abcd "
                        "cloudboot.bogus=1", "--root", str(root), "--dry-run")
    assert rc == 0
    phases = [e["phase"] for e in evs]
    assert phases == ["init-start", "cmdline", "target-selected", "disk-found", "mounted",
                      "materialised"]
    assert evs[1]["warnings"] == ["unknown key 'cloudboot.bogus' ignored"]
    assert dry == {"exit": "kexec", "kernel": str(root / f"boot/vmlinuz-{V}"),
                   "initrd": str(root / f"boot/initrd.img-{V}"),
                   "cmdline": "root=UUID=abcd ro console=tty0 console=ttyS0,115200",
                   "version": V}
    assert evs[-1]["cmdline_from"] == "root-fs"
    assert [e["t"] for e in evs] == sorted(e["t"] for e in evs)


def test_etc_kernel_cmdline_then_console(kernel: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = _debian_tree(tmp_path / "t", kernel, "root=LABEL=rootfs rw quiet")
    rc, evs, dry = _run(capsys, "--cmdline", "console=hvc0 cloudboot.disk=LABEL=rootfs",
                        "--root", str(root), "--dry-run")
    assert rc == 0 and dry is not None
    assert dry["cmdline"] == "root=LABEL=rootfs rw quiet console=hvc0"
    assert evs[-1]["cmdline_from"] == "etc-kernel-cmdline"


def test_cloudboot_cmdline_replaces_everything(kernel: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = _debian_tree(tmp_path / "t", kernel, "root=LABEL=rootfs")
    rc, _, dry = _run(capsys, "--cmdline",
                      'console=ttyS0 cloudboot.disk=/dev/vda1 cloudboot.cmdline="root=/dev/vda1 '
                      'init=/bin/sh"', "--root", str(root), "--dry-run")
    assert rc == 0 and dry is not None
    assert dry["cmdline"] == "root=/dev/vda1 init=/bin/sh"


def test_explicit_kernel_and_initrd(kernel: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    V = _version(kernel)
    root = _debian_tree(tmp_path / "t", kernel)
    (root / "vmlinuz").symlink_to(f"/boot/vmlinuz-{V}")  # absolute link, inside the tree
    rc, evs, dry = _run(capsys, "--cmdline",
                        "cloudboot.disk=UUID=1 cloudboot.disk.kernel=/vmlinuz "
                        "cloudboot.disk.initrd=boot/initrd.img-" + V,
                        "--root", str(root), "--dry-run")
    assert rc == 0 and dry is not None
    assert dry["kernel"] == str(root / f"boot/vmlinuz-{V}")
    assert dry["initrd"] == str(root / f"boot/initrd.img-{V}")
    assert evs[-1]["found_by"] == "override"
    assert dry["version"] == V  # read from the kernel image itself


def test_missing_explicit_kernel_is_init_disk(kernel: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = _debian_tree(tmp_path / "t", kernel)
    rc, evs, _ = _run(capsys, "--cmdline", "cloudboot.disk=UUID=1 cloudboot.disk.kernel=/nope",
                      "--root", str(root), "--dry-run")
    assert rc == 1
    assert evs[-1]["category"] == "init-disk"
    assert "kernel=/nope: no such file on " + str(root) in evs[-1]["message"]


def test_no_kernel_is_init_disk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty/boot").mkdir(parents=True)
    rc, evs, _ = _run(capsys, "--cmdline", "cloudboot.disk=UUID=1",
                      "--root", str(tmp_path / "empty"), "--dry-run")
    assert rc == 1
    assert evs[-1]["phase"] == "fatal" and evs[-1]["category"] == "init-disk"
    assert "no kernel found" in evs[-1]["message"]


def test_no_disk_is_init_disk_with_device_list(capsys: pytest.CaptureFixture[str]) -> None:
    rc, evs, _ = _run(capsys, "--cmdline",
                      f"cloudboot.disk=LABEL=cb-{uuid.uuid4().hex[:8]} cloudboot.disk.timeout=0.2",
                      "--dry-run")
    assert rc == 1
    fatal = evs[-1]
    assert fatal["category"] == "init-disk"
    assert "no block device matches cloudboot.disk=LABEL=cb-" in fatal["message"]
    assert "devices seen" in fatal["message"]
    devices = [d for d in os.listdir("/sys/class/block")
               if Path(f"/sys/class/block/{d}/size").read_text().strip() != "0"]
    assert any(f"/dev/{d} " in fatal["message"] for d in devices)


def test_bad_cmdline_is_init_plan(capsys: pytest.CaptureFixture[str]) -> None:
    rc, evs, _ = _run(capsys, "--cmdline", "cloudboot.disk=LABEL=x cloudboot.exit=foo")
    assert rc == 1
    assert evs[-1]["category"] == "init-plan"
    assert "cloudboot.exit='foo'" in evs[-1]["message"]


def test_nothing_to_boot_is_init_plan(capsys: pytest.CaptureFixture[str]) -> None:
    rc, evs, _ = _run(capsys, "--cmdline", "quiet")
    assert rc == 1 and evs[-1]["category"] == "init-plan"
    assert "nothing to boot" in evs[-1]["message"]


def test_host_run_never_hands_off(kernel: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = _debian_tree(tmp_path / "t", kernel)
    rc, evs, dry = _run(capsys, "--cmdline", "cloudboot.disk=UUID=1", "--root", str(root))
    assert rc == 1 and dry is None
    assert evs[-1]["category"] == "handoff" and "not PID 1" in evs[-1]["message"]
    assert "kexec-load" not in [e["phase"] for e in evs]


def test_reboot_sink_without_cache_esp_is_a_handoff_fatal(tmp_path: Path) -> None:
    (tmp_path / "sys" / "class" / "block").mkdir(parents=True)  # a machine with no disks
    boot = boot_state.Boot(boot_state.Options(sys_root=tmp_path / "sys"), Events([]))
    h = boot_state.Handoff(tmp_path / "k", None, "x", "1", "override")
    with pytest.raises(Fatal) as err:
        handoff.sinks["reboot"](boot, h)
    assert err.value.category == "handoff"
    assert "no cache ESP" in err.value.message and "cloudboot cache-disk" in err.value.message
    assert set(handoff.sinks) == {"kexec", "reboot"}


def test_plan_disk_target(kernel: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    root = _debian_tree(tmp_path / "t", kernel)
    plan = tmp_path / "plan.hcl"
    plan.write_text(
        'default_target = "debian"\n'
        'target "debian" {\n'
        '  cmdline = ["root=LABEL=deb", "ro"]\n'
        '  disk {\n    device = "LABEL=deb"\n  }\n'
        "}\n"
        'target "other" {\n  disk {\n    device = "LABEL=other"\n  }\n}\n'
    )
    rc, evs, dry = _run(capsys, "--cmdline", "console=ttyS0", "--plan", str(plan),
                        "--root", str(root), "--dry-run")
    assert rc == 0 and dry is not None
    sel = next(e for e in evs if e["phase"] == "target-selected")
    assert (sel["origin"], sel["target"], sel["device"]) == ("plan", "debian", "LABEL=deb")
    assert dry["cmdline"] == "root=LABEL=deb ro console=ttyS0"
    # cloudboot.target= picks another target; an unknown one is an init-plan error naming it
    rc, evs, _ = _run(capsys, "--cmdline", "cloudboot.target=nosuch", "--plan", str(plan),
                      "--root", str(root), "--dry-run")
    assert rc == 1 and evs[-1]["category"] == "init-plan"
    assert str(plan) in evs[-1]["message"] and "nosuch" in evs[-1]["message"]


@pytest.mark.skipif(os.geteuid() != 0, reason="host: loop devices and mount(2) need root")
def test_real_ext4_on_loop_device(kernel: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    V = _version(kernel)
    tree = _debian_tree(tmp_path / "tree", kernel)
    img, mnt, fs_uuid = tmp_path / "root.img", tmp_path / "mnt", str(uuid.uuid4())
    subprocess.run(["mkfs.ext4", "-q", "-F", "-U", fs_uuid, "-L", "cbtest", "-d", str(tree),
                    str(img), "64M"], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", str(img)], check=True,
                          capture_output=True, text=True).stdout.strip()
    try:
        rc, evs, dry = _run(capsys, "--cmdline",
                            f"console=ttyS0 cloudboot.disk=UUID={fs_uuid} "
                            "cloudboot.disk.timeout=5", "--mnt", str(mnt), "--dry-run")
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
    assert rc == 0, evs[-1]
    found = next(e for e in evs if e["phase"] == "disk-found")
    assert (found["device"], found["fstype"], found["label"]) == (loop, "ext4", "cbtest")
    mounted = next(e for e in evs if e["phase"] == "mounted")
    assert mounted["target"] == str(mnt) and mounted["fstype"] == "ext4"
    assert dry is not None
    assert dry["kernel"] == str(mnt / f"boot/vmlinuz-{V}")
    assert dry["cmdline"] == f"root=UUID={fs_uuid} ro console=ttyS0"
    assert not os.path.ismount(mnt)  # a dry run leaves nothing mounted


def test_a_failed_menu_choice_goes_back_to_the_menu(kernel: Path, tmp_path: Path, monkeypatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The user picks a target that fails (no such kernel): one fatal event, the menu comes
    back (waiting, no countdown), the next choice boots."""
    from cloudboot.init import menu

    root = _debian_tree(tmp_path / "t", kernel)
    plan = tmp_path / "plan.hcl"
    plan.write_text(
        'default_target = "broken"\nmenu {\n  timeout = 5\n}\n'
        'target "broken" {\n  disk {\n    device = "LABEL=deb"\n'
        '    kernel = "/boot/nosuch"\n  }\n}\n'
        'target "debian" {\n  disk {\n    device = "LABEL=deb"\n  }\n}\n')
    r, w = os.pipe()
    saved = os.dup(0)
    typed = iter([b"broken\n", b"debian\n"])
    real_run = menu.run
    timeouts = []

    def run(items, default, timeout, *rest):  # type: ignore[no-untyped-def]
        timeouts.append(timeout)
        os.write(w, next(typed))  # the user types once the menu is up
        return real_run(items, default, timeout, *rest)

    monkeypatch.setattr(menu, "run", run)
    os.dup2(r, 0)
    try:
        rc = init_main.main(["--cmdline", "console=ttyS0", "--plan", str(plan),
                             "--root", str(root), "--dry-run"])
    finally:
        os.dup2(saved, 0)
        for fd in (r, w, saved):
            os.close(fd)
    out = capsys.readouterr().out
    evs = [e for e in map(parse_line, out.splitlines()) if e is not None]
    assert rc == 0
    choices = [e["target"] for e in evs if e["phase"] == "menu-choice"]
    assert choices == ["broken", "debian"]
    fatals = [e for e in evs if e["phase"] == "fatal"]
    assert len(fatals) == 1 and fatals[0]["category"] == "init-disk"
    assert "back to the menu" in out
    assert timeouts == [5, 0]  # the second menu waits for a choice
    assert "cloudboot: " + boot_state.DRY_RUN in out
