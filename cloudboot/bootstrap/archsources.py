"""Where the parts of an arch's bootstrap UKI come from: kernel, systemd-stub, initramfs Python.

The host runs bookworm, whose apt gives x86_64 and aarch64 everything (the cloud kernel,
systemd-stub 252, Python 3.11). Three arches need other suites (private apt roots,
cloudboot/debian/aptsuites.py):

| arch        | kernel                                | systemd-stub | initramfs Python      |
|-------------|---------------------------------------|--------------|-----------------------|
| armv7       | host apt: bookworm linux-image-armmp  | trixie (257) | host apt: 3.11        |
| riscv64     | trixie linux-image-riscv64            | trixie       | trixie 3.13           |
| loongarch64 | forky linux-image-loong64             | forky        | forky 3.14            |

Why: riscv64 first appears in trixie and loong64 in forky, neither with Python 3.11; bookworm's
armhf systemd-stub is rejected by newer tooling where trixie's works (DESIGN §7). A suite
Python's .pyc are compiled by that interpreter itself under bookworm-backports' qemu-user 10
(`qemu_user`): the host's qemu-user-static 7.2 runs trixie's riscv64 python3.13 but dies with
SIGILL on forky's loong64 python3.14. The bootstrap initramfs of a suite kernel carries that
kernel's modules (`kernel_roots` goes to the initramfs builder), so both come from one kernel.

`cloudboot build` (build.py) and the lab (lab/arch_lanes.py) take their parts from here, so the
CLI and the lab build the same UKI from the same cached packages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cloudboot.arch import Arch, get_arch
from cloudboot.debian import aptsuites, debpkg
from cloudboot.initramfs import pyruntime

# qemu-user for running a suite's interpreter on the host (compiling its .pyc).
QEMU_USER_SUITE = "bookworm-backports"
QEMU_USER_NAMES = {"riscv64": "riscv64", "loongarch64": "loongarch64", "armv7": "arm"}
HOST_APT = "host apt"
STUB_DIR = "usr/lib/systemd/boot/efi"


class ArchSourceError(RuntimeError):
    """A part of an arch's bootstrap UKI cannot be had; the message says which arch, which
    suite, which package, and what to do."""


def _fetch_error(arch: str, suite: str, package: str, debian_arch: str, cause: Exception,
                 hint: str) -> ArchSourceError:
    if suite == HOST_APT:
        where = "the host's apt"
        what = (f"check that the host's apt sources have {package} for {debian_arch} and run "
                "apt-get update")
        if debian_arch not in ("all", _host_debian_arch()):
            what += f" (after dpkg --add-architecture {debian_arch})"
    else:
        known = aptsuites.SUITES.get(suite)
        where = (f"Debian {suite} (private apt root {known.root()})" if known else
                 f"Debian {suite} (no private apt root of that name in "
                 "cloudboot/debian/aptsuites.py)")
        what = (f"check that {aptsuites.MIRROR} is reachable (CLOUDBOOT_DEBIAN_MIRROR names "
                f"another mirror) and that Debian {suite} has {package} for {debian_arch}")
        if known:
            what += f" (rm {known.root() / 'updated'} refreshes its package lists)"
    return ArchSourceError(f"{arch}: cannot fetch {package}:{debian_arch} from {where}: "
                           f"{cause}. To fix: {what}; or {hint}")


def _host_debian_arch() -> str:
    try:
        return debpkg.host_debian_arch()
    except debpkg.PackageError:
        return "amd64"


@dataclass(frozen=True)
class ArchSources:
    """Where one arch's bootstrap parts come from (None: the host's own apt)."""

    arch: str
    kernel_suite: str | None
    stub_suite: str | None
    python: str  # the Python version the initramfs carries

    @property
    def profile(self) -> Arch:
        return get_arch(self.arch)

    @property
    def python_suite(self) -> str | None:
        """Where the Python runtime comes from: the kernel's suite (None: the host's apt)."""
        return self.kernel_suite

    def describe(self) -> str:
        return (f"{self.arch}: kernel from {self.kernel_suite or HOST_APT}, systemd-stub from "
                f"{self.stub_suite or HOST_APT}, python{self.python} from "
                f"{self.python_suite or HOST_APT}")

    def _suite(self, name: str) -> aptsuites.Suite:
        try:
            return aptsuites.get_suite(name)
        except aptsuites.SuiteError as e:
            raise ArchSourceError(f"{self.arch}: {e}; fix the table in {__name__}") from None

    def unpacked(self, suite: str | None, package: str, debian_arch: str, hint: str) -> Path:
        """`package`:`debian_arch` unpacked from `suite` (None: the host's apt); a failure
        names this arch, the suite and the package, and ends with `hint` (what to do)."""
        try:
            if suite is None:
                return debpkg.unpacked(package, debian_arch)
            return aptsuites.unpacked(aptsuites.get_suite(suite), package, debian_arch)
        except (aptsuites.SuiteError, debpkg.PackageError) as e:
            raise _fetch_error(self.arch, suite or HOST_APT, package, debian_arch, e,
                               hint) from None

    def kernel_roots(self) -> list[Path]:
        """Unpacked roots of the kernel: the image package, plus the linux-binary-*,
        linux-modules-* and linux-base-* packages forky splits it into."""
        a = self.profile
        hint = "pass --kernel PATH (and --initramfs PATH built for that kernel)"
        if self.kernel_suite is None:
            return [self.unpacked(None, a.kernel_package, a.debian, hint)]
        suite = self._suite(self.kernel_suite)
        try:
            image = aptsuites.resolve_metapackage(suite, a.kernel_package, a.debian)
            deps = aptsuites.depends(suite, image, a.debian)
        except aptsuites.SuiteError as e:
            raise _fetch_error(self.arch, self.kernel_suite, a.kernel_package, a.debian, e,
                               hint) from None
        roots = [self.unpacked(self.kernel_suite, image, a.debian, hint)]
        for dep in deps:
            # linux-base-* holds modules.builtin (+ .modinfo): the initramfs builder needs it
            if dep.startswith(("linux-binary-", "linux-modules-", "linux-base-")):
                roots.append(self.unpacked(self.kernel_suite, dep, a.debian, hint))
        return roots

    def kernel(self) -> Path:
        a = self.profile
        roots = self.kernel_roots()
        kernels = sorted(k for r in roots for k in (*r.glob("boot/vmlinu[xz]-*"),
                                                    *r.glob("usr/lib/modules/*/vmlinu[xz]")))
        if not kernels:
            raise ArchSourceError(
                f"{self.arch}: no vmlinuz in {a.kernel_package} from "
                f"{self.kernel_suite or HOST_APT} ({', '.join(map(str, roots))}); "
                "pass --kernel PATH")
        return kernels[-1]

    def kernel_release(self) -> str:
        k = self.kernel()
        return k.name.split("-", 1)[1] if "-" in k.name else k.parent.name

    def stub(self) -> Path:
        a = self.profile
        root = self.unpacked(self.stub_suite, "systemd-boot-efi", a.debian,
                              "pass --stub PATH (a systemd-stub for this arch)")
        stub = root / STUB_DIR / a.stub_file
        if not stub.is_file():
            raise ArchSourceError(
                f"{self.arch}: systemd-boot-efi:{a.debian} from {self.stub_suite or HOST_APT} "
                f"has no {STUB_DIR}/{a.stub_file} ({root}); pass --stub PATH")
        return stub

    def python_runtime(self) -> pyruntime.Runtime:
        """The Python the initramfs carries: the host apt's 3.11, or the kernel suite's
        version, fetched from that suite and compiled under qemu-user."""
        if self.python_suite is None:
            if self.python != pyruntime.PY_VERSION:
                raise ArchSourceError(
                    f"{self.arch}: the host apt has python{pyruntime.PY_VERSION}, the "
                    f"archsources table says {self.python}")
            return pyruntime.DEFAULT_RUNTIME
        suite_name = self.python_suite
        suite = self._suite(suite_name)
        hint = "pass --initramfs PATH"

        def fetch(package: str, debian_arch: str) -> Path:
            return self.unpacked(suite_name, package, debian_arch, hint)

        return pyruntime.Runtime(version=self.python, fetch=fetch, source=suite.codename,
                                 soname_packages=pyruntime.T64_SONAME_PACKAGES,
                                 emulator=qemu_user(self.arch))

    def bootstrap_initramfs(self) -> Path:
        """cloudboot-init's initramfs for this arch (built once per set of inputs, cached):
        the kernel modules come from this arch's kernel (`kernel_roots`)."""
        from cloudboot.initramfs import builder

        runtime = self.python_runtime()
        if runtime == pyruntime.DEFAULT_RUNTIME and self.kernel_suite is None:
            return builder.default_initramfs(self.profile)
        return builder.default_initramfs(self.profile, runtime=runtime,
                                         kernel_roots=self.kernel_roots())


# Arches whose parts do not all come from the host's apt. Any other arch: `host_sources`.
TABLE: dict[str, ArchSources] = {
    s.arch: s
    for s in (
        ArchSources("armv7", None, "trixie", "3.11"),
        ArchSources("riscv64", "trixie", "trixie", "3.13"),
        ArchSources("loongarch64", "forky", "forky", "3.14"),
    )
}


def host_sources(arch: str) -> ArchSources:
    """Everything from the host's apt (x86_64, aarch64)."""
    return ArchSources(get_arch(arch).name, None, None, pyruntime.PY_VERSION)


def for_arch(arch: str | Arch) -> ArchSources:
    """The table entry of `arch` (any of its names), else the host's apt for everything."""
    name = arch.name if isinstance(arch, Arch) else get_arch(arch).name
    return TABLE.get(name) or host_sources(name)


def qemu_user(arch: str) -> Path:
    """bookworm-backports' qemu-user (QEMU 10, static-pie) binary for `arch`, fetched once.

    Not the host's qemu-user-static 7.2: that one dies with SIGILL on forky's loong64
    python3.14 (measured); QEMU 10 runs both trixie's riscv64 and forky's loong64 userspace."""
    name = QEMU_USER_NAMES.get(get_arch(arch).name)
    if name is None:
        raise ArchSourceError(f"{arch}: no qemu-user binary name known (known: "
                              f"{', '.join(QEMU_USER_NAMES)})")
    suite = aptsuites.get_suite(QEMU_USER_SUITE)
    try:
        root = aptsuites.unpacked(suite, "qemu-user", suite.arches[0])
    except aptsuites.SuiteError as e:
        raise _fetch_error(arch, QEMU_USER_SUITE, "qemu-user", suite.arches[0], e,
                           "pass --initramfs PATH") from None
    binary = root / "usr/bin" / f"qemu-{name}"
    if not binary.is_file():
        raise ArchSourceError(f"{arch}: qemu-user from {QEMU_USER_SUITE} has no "
                              f"usr/bin/qemu-{name} ({root}); pass --initramfs PATH")
    return binary
