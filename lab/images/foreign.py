"""Running foreign-architecture binaries on the host: qemu-user-static through binfmt_misc.

A debootstrap second stage, maintainer scripts and update-initramfs of an arm64 tree run inside
a chroot, so the kernel must hand every foreign ELF to qemu-user by itself. Debian's
qemu-user-static registers its handlers with the F (fix binary) flag: the interpreter is opened
at registration time, so nothing has to be copied into the tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from cloudboot.arch import Arch, get_arch, host_arch

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")

# Our arch name -> the binfmt handler name Debian's qemu-user-static registers.
HANDLERS = {
    "aarch64": "qemu-aarch64",
    "armv7": "qemu-arm",
    "riscv64": "qemu-riscv64",
    "loongarch64": "qemu-loongarch64",
    "x86_64": "qemu-x86_64",
}


class ForeignError(RuntimeError):
    pass


def is_foreign(arch: str | Arch) -> bool:
    a = arch if isinstance(arch, Arch) else get_arch(arch)
    return a != host_arch()


def handler_state(name: str, binfmt_dir: Path = BINFMT_DIR) -> dict[str, str]:
    """The fields of a registered binfmt handler (`enabled`, `interpreter`, `flags`…), or {}."""
    path = binfmt_dir / name
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    state: dict[str, str] = {}
    for line in lines:
        if line in ("enabled", "disabled"):
            state["status"] = line
        elif " " in line:
            key, value = line.split(" ", 1)
            state[key.rstrip(":")] = value
    return state


def ensure_binfmt(arch: str | Arch) -> str:
    """Make sure foreign `arch` binaries run on this host; return the interpreter in use.

    Mounts binfmt_misc when it is not mounted and asks update-binfmts (binfmt-support) to
    enable the handler qemu-user-static ships. Raises ForeignError saying what is missing.
    """
    a = arch if isinstance(arch, Arch) else get_arch(arch)
    name = HANDLERS.get(a.name)
    if name is None:
        raise ForeignError(f"no qemu-user binfmt handler known for {a.name}")
    if not (BINFMT_DIR / "register").exists():
        proc = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ForeignError(f"binfmt_misc is not mounted at {BINFMT_DIR} and mounting it "
                               f"failed: {proc.stderr.strip()} (needs root)")
    state = handler_state(name)
    if state.get("status") != "enabled":
        if shutil.which("update-binfmts") is None:
            raise ForeignError(f"binfmt handler {name} is not enabled and update-binfmts is "
                               "missing: install binfmt-support and qemu-user-static")
        proc = subprocess.run(["update-binfmts", "--enable", name], capture_output=True,
                              text=True, check=False)
        state = handler_state(name)
        if state.get("status") != "enabled":
            raise ForeignError(
                f"binfmt handler {name} for {a.debian} binaries could not be enabled "
                f"(update-binfmts: {(proc.stderr or proc.stdout).strip() or proc.returncode}); "
                "is qemu-user-static installed?")
    interp = state.get("interpreter", "")
    if "F" not in state.get("flags", ""):
        # Without F the interpreter is looked up inside the chroot, where it does not exist.
        raise ForeignError(f"binfmt handler {name} lacks the F flag: {interp} would have to "
                           "exist inside every chroot; use Debian's qemu-user-static")
    if interp and not os.path.exists(interp):
        raise ForeignError(f"binfmt handler {name} points at {interp}, which does not exist")
    return interp


def debootstrap_commands(release: str, arch: Arch, tree: Path, mirror: str,
                         packages: tuple[str, ...], cache: Path) -> list[list[str]]:
    """The debootstrap runs that make a root tree of `arch`: one for the host's architecture,
    a --foreign first stage plus a chrooted --second-stage for any other."""
    base = ["debootstrap", "--variant=minbase", f"--arch={arch.debian}", "--components=main",
            f"--include={','.join(packages)}", f"--cache-dir={cache}"]
    if not is_foreign(arch):
        return [[*base, release, str(tree), mirror]]
    return [[*base, "--foreign", release, str(tree), mirror],
            # A private mount namespace: the second stage mounts /proc and /sys in the tree,
            # and a failure must not leave them mounted on the host.
            ["unshare", "--mount", "--propagation", "private", "chroot", str(tree),
             "/debootstrap/debootstrap", "--second-stage"]]
