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

from cloudboot.arch import Arch, as_arch, host_arch

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")

# Arches whose Debian binaries the host's qemu-user-static (7.2) cannot run: Debian's loong64
# is built for LSX (128-bit SIMD), which qemu-loongarch64 emulates from QEMU 8.1 on; 7.2 dies
# with SIGILL on forky's busybox. For these bookworm-backports' qemu-user (QEMU 10, the one
# cloudboot.bootstrap.archsources.qemu_user fetches) is registered as a handler of our own,
# PRIVATE_HANDLER_PREFIX + arch, and the system handler of the same arch is disabled
# (the kernel tries the newest registration first; a stale 7.2 one must not win).
PRIVATE_USER_ARCHES = ("loongarch64",)
PRIVATE_HANDLER_PREFIX = "cloudboot-"
# ELF magic and mask of 64-bit little-endian EM_LOONGARCH (258) executables and shared
# objects (e_ident class/data/version, e_type 2 or 3, e_machine), as binfmt_misc escapes.
ELF_MATCH: dict[str, tuple[str, str]] = {
    "loongarch64": (r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00"
                    r"\x02\x01",
                    r"\xff\xff\xff\xff\xff\xff\xff\xfc\x00\xff\xff\xff\xff\xff\xff\xff"
                    r"\xfe\xff\xff\xff"),
}

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
    a = as_arch(arch)
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
    a = as_arch(arch)
    name = HANDLERS.get(a.name)
    if name is None:
        raise ForeignError(f"no qemu-user binfmt handler known for {a.name}")
    if not (BINFMT_DIR / "register").exists():
        proc = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ForeignError(f"binfmt_misc is not mounted at {BINFMT_DIR} and mounting it "
                               f"failed: {proc.stderr.strip()} (needs root)")
    if a.name in PRIVATE_USER_ARCHES:
        return _ensure_private_handler(a)
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


def private_user_binary(arch: Arch) -> Path:
    """bookworm-backports' qemu-<arch> (qemu-user, static): the one the initramfs builder runs
    a suite's Python with (cloudboot.bootstrap.archsources.qemu_user)."""
    from cloudboot.bootstrap import archsources

    try:
        return archsources.qemu_user(arch.name)
    except archsources.ArchSourceError as e:
        raise ForeignError(f"qemu-user for {arch.debian} binaries: {e}") from None


def register_line(name: str, magic: str, mask: str, interpreter: Path) -> str:
    """The binfmt_misc `register` record: match by magic, fix the interpreter (F) so chroots
    need no copy of it."""
    if ":" in str(interpreter):
        raise ForeignError(f"binfmt interpreter path {interpreter} contains ':'")
    return f":{name}:M:0:{magic}:{mask}:{interpreter}:F"


def _ensure_private_handler(a: Arch) -> str:
    name = PRIVATE_HANDLER_PREFIX + a.name
    binary = private_user_binary(a)
    system = handler_state(HANDLERS[a.name])
    if system.get("status") == "enabled":
        try:
            (BINFMT_DIR / HANDLERS[a.name]).write_text("0")
        except OSError as e:
            raise ForeignError(f"the system binfmt handler {HANDLERS[a.name]} "
                               f"({system.get('interpreter')}) cannot run Debian {a.debian} "
                               f"binaries and disabling it failed: {e}") from None
    state = handler_state(name)
    if state and (state.get("interpreter") != str(binary) or state.get("status") != "enabled"):
        try:
            (BINFMT_DIR / name).write_text("-1")  # stale: remove, then register afresh
        except OSError as e:
            raise ForeignError(f"removing the stale binfmt handler {name}: {e}") from None
        state = {}
    if not state:
        magic, mask = ELF_MATCH[a.name]
        try:
            (BINFMT_DIR / "register").write_text(register_line(name, magic, mask, binary))
        except OSError as e:
            raise ForeignError(f"registering binfmt handler {name} for {binary}: {e} "
                               "(needs root)") from None
        state = handler_state(name)
    if state.get("status") != "enabled" or "F" not in state.get("flags", ""):
        raise ForeignError(f"binfmt handler {name} for {binary} did not register as enabled "
                           f"with the F flag: {state}")
    return str(binary)


DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")


# Packages debootstrap must not pull in as dependencies. forky's kernel Depends on
# "dracut | initramfs-tools | linux-initramfs-tool" and debootstrap's resolver takes the first
# alternative, whose dracut Conflicts with the initramfs-tools our trees include. --exclude
# does not help (applied before resolving); EXCLUDE_DEPENDENCY is read only from a suite script.
EXCLUDED_DEPENDENCIES = ("dracut",)


def debootstrap_script(release: str, into: Path,
                       scripts: Path = DEBOOTSTRAP_SCRIPTS) -> Path:
    """Write the suite script for `release` into `into` and return its path: debootstrap's own
    script for the release (its sid script when bookworm's debootstrap 1.0.128 predates it, as
    for forky: every release after buster is a symlink to sid), with EXCLUDED_DEPENDENCIES set
    first. Self-contained, as debootstrap copies it into the tree for the second stage."""
    own = scripts / release
    if not own.exists():
        own = scripts / "sid"
    if not own.exists():
        raise ForeignError(f"debootstrap has no script for {release} and no sid script in "
                           f"{scripts}: is debootstrap installed?")
    excluded = " ".join(EXCLUDED_DEPENDENCIES)
    script = into / f"suite-{release}"
    script.write_text(f"# {own.resolve()} for cloudboot's lab: never pull in {excluded}\n"
                      f'EXCLUDE_DEPENDENCY="${{EXCLUDE_DEPENDENCY:-}} {excluded}"\n'
                      + own.read_text())
    return script


def debootstrap_commands(release: str, arch: Arch, tree: Path, mirror: str,
                         packages: tuple[str, ...], cache: Path,
                         suite_script: Path) -> list[list[str]]:
    """The debootstrap runs that make a root tree of `arch` with `suite_script` (see
    debootstrap_script): one for the host's architecture, a --foreign first stage plus a
    chrooted --second-stage for any other."""
    base = ["debootstrap", "--variant=minbase", f"--arch={arch.debian}", "--components=main",
            f"--include={','.join(packages)}", f"--cache-dir={cache}"]
    where = [release, str(tree), mirror, str(suite_script)]
    if not is_foreign(arch):
        return [[*base, *where]]
    return [[*base, "--foreign", *where],
            # A private mount namespace: the second stage mounts /proc and /sys in the tree,
            # and a failure must not leave them mounted on the host.
            ["unshare", "--mount", "--propagation", "private", "chroot", str(tree),
             "/debootstrap/debootstrap", "--second-stage"]]
