"""pytest helpers for tests that need a lab target image, and a direct-kernel baseline boot.

    debian_bookworm_ext4 = target_image_fixture("bookworm", "ext4")   # in a conftest/test

Building an image the first time takes minutes (debootstrap); later runs reuse the cache.
Boots use QEMU's own -kernel/-initrd (no cloudboot, no firmware) and assert on the
CLOUDBOOT-USERSPACE line the image's oneshot unit prints before it powers off.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.images import debian
from lab.images.userspace import MARKER

slow = pytest.mark.boot  # builds take minutes on a cold cache, boots ~10 s under TCG


@dataclass(frozen=True)
class DirectBoot:
    command: list[str]
    console: str
    seconds: float
    returncode: int | None  # None: killed at the timeout
    marker: dict[str, Any] | None  # the parsed CLOUDBOOT-USERSPACE JSON, if printed

    @property
    def powered_off(self) -> bool:
        return self.returncode == 0


def parse_marker(console: str) -> dict[str, Any] | None:
    """The JSON of the first CLOUDBOOT-USERSPACE line on a console, or None.

    Kernel messages can follow the JSON on the same console line (printk does not wait for
    the tty's newline), so only the JSON object itself is decoded.
    """
    decoder = json.JSONDecoder()
    for line in console.splitlines():
        at = line.find(MARKER + " ")
        if at >= 0:
            try:
                value, _ = decoder.raw_decode(line[at + len(MARKER) + 1:].lstrip())
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def direct_boot_command(image: debian.TargetImage, append: str = "") -> list[str]:
    if image.arch != "x86_64":
        raise NotImplementedError(f"direct boot of {image.arch} images is not written yet")
    from lab.hypervisors.accel import select_accel
    from lab.profiles import get_profile

    # The lab's accelerator and CPU model: QEMU's default qemu64 under TCG keeps CMPXCHG16B,
    # which QEMU 7.2 breaks for Debian 13's kernel (lab.profiles.TCG_CPU_QUIRKS).
    profile = get_profile(image.arch)
    accel = select_accel(profile).accel
    cmdline = f"root=LABEL={image.fs_label} ro console=ttyS0 panic=-1 {append}".strip()
    return ["qemu-system-x86_64", "-machine", "q35", "-accel", accel, "-cpu", profile.cpu(accel),
            "-m", "1024", "-nographic",
            "-no-reboot", "-nic", "none", "-kernel", str(image.kernel),
            "-initrd", str(image.initrd), "-append", cmdline,
            "-drive", f"file={image.path},if=virtio,format=raw,snapshot=on"]


def boot_direct(image: debian.TargetImage, *, timeout: float = 240, append: str = "",
                log: Path | None = None) -> DirectBoot:
    """Boot the image's own kernel+initrd straight from QEMU; wait for it to power off."""
    if shutil.which("qemu-system-x86_64") is None:
        raise FileNotFoundError("qemu-system-x86_64 is not installed (qemu-system-x86)")
    cmd = direct_boot_command(image, append)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=timeout)
        returncode: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        returncode = None
    seconds = time.monotonic() - started
    console = out.decode("utf-8", errors="replace")
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"# {' '.join(cmd)}\n# {seconds:.1f} s, exit {returncode}\n{console}")
    return DirectBoot(cmd, console, seconds, returncode, parse_marker(console))


def target_image_fixture(release: str, fs: str, arch: str = "x86_64",
                         scope: str = "session") -> Callable[..., debian.TargetImage]:
    """A pytest fixture yielding the cached TargetImage, skipped where it cannot be built."""

    @pytest.fixture(scope=scope)  # type: ignore[call-overload, misc]
    def _image() -> debian.TargetImage:
        missing = [t for t in ("debootstrap", "sgdisk", f"mkfs.{fs}") if not shutil.which(t)]
        if missing:
            pytest.skip(f"building a {release}/{fs} image needs {', '.join(missing)}")
        if os.geteuid() != 0:
            pytest.skip("building target images needs root (debootstrap, chroot)")
        return debian.build(release, fs, arch)

    return _image  # type: ignore[no-any-return]
