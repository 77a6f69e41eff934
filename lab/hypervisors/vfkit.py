"""The vfkit lane: the QEMU lane's VMSpec as a vfkit command line (Apple Virtualization.framework).

The command line follows the seed quickstart exactly:

    vfkit --cpus N --memory MiB \\
      --bootloader efi,variable-store=nvram.fd,create \\
      --device virtio-blk,path=boot.iso,readonly \\
      --device virtio-blk,path=target.raw \\
      --device virtio-net,nat,mac=auto \\
      --device virtio-serial,logFilePath=vm.log

VZ differs from QEMU in ways the spec cannot hide, and the builder refuses rather than guess:
only virtio-blk disks, no snapshot=on (a snapshot disk needs a copy — `cp -c`, an APFS clone —
which VfkitVM makes), a NAT NIC that cannot be restricted and has no forwards, and its own
variable-store format (created by vfkit, never an OVMF VARS template). It runs only on macOS;
elsewhere the lab golden-tests the command lines and reports the cells as not run.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from lab.hypervisors.recorder import ConsoleRecorder
from lab.hypervisors.vmspec import VMError, VMSpec

NOT_RUN_REASON = "needs macOS Virtualization.framework (vfkit)"


class VfkitError(ValueError):
    """The spec asks for something vfkit cannot express."""


class VfkitUnavailable(RuntimeError):
    pass


def unavailable_reason() -> str | None:
    """Why vfkit cannot run on this host, or None when it can."""
    if platform.system() != "Darwin":
        return f"{NOT_RUN_REASON}; this host is {platform.system()}"
    if shutil.which("vfkit") is None:
        return f"{NOT_RUN_REASON}; vfkit is not installed (brew install vfkit)"
    return None


def build_command(spec: VMSpec, variable_store: Path, serial_log: Path, *,
                  copies: Mapping[int, Path] | None = None, gui: bool = False,
                  binary: str = "vfkit") -> list[str]:
    """vfkit's argv for `spec`. `copies` maps a snapshot disk's index to the writable copy
    that stands in for it; `variable_store` is created by vfkit when missing."""
    spec.validate()
    cmd = [binary]
    if gui:
        cmd.append("--gui")
    cmd += ["--cpus", str(spec.cpus), "--memory", str(spec.memory_mib or spec.profile.memory_mib)]
    if spec.kernel is not None:
        loader = f"linux,kernel={spec.kernel}"
        if spec.initrd is not None:
            loader += f",initrd={spec.initrd}"
        if spec.append is not None:
            loader += f',cmdline="{spec.append}"'
        cmd += ["--bootloader", loader]
    else:
        cmd += ["--bootloader", f"efi,variable-store={variable_store},create"]
    for i, disk in enumerate(spec.disks):
        if disk.interface != "virtio-blk":
            raise VfkitError(f"disk {disk.path}: vfkit offers virtio-blk only, not "
                             f"{disk.interface}")
        if disk.format != "raw":
            raise VfkitError(f"disk {disk.path}: vfkit reads raw images only, not {disk.format}")
        path = disk.path
        if disk.snapshot:
            copy = (copies or {}).get(i)
            if copy is None:
                raise VfkitError(f"disk {disk.path} is snapshot=True: vfkit has no overlays; "
                                 "pass copies={index: path} (VfkitVM clones the image)")
            path = copy
        cmd += ["--device", f"virtio-blk,path={path}" + (",readonly" if disk.readonly else "")]
    if spec.nic is not None:
        nic = spec.nic
        if nic.restrict or nic.hostfwd or nic.guestfwd or nic.net:
            raise VfkitError("vfkit's NAT NIC has no restrict, forwards or custom subnet "
                             "(plan UserNet(restrict=False) and nothing else)")
        cmd += ["--device", f"virtio-net,nat,mac={nic.mac or 'auto'}"]
    cmd += ["--device", f"virtio-serial,logFilePath={serial_log}"]
    if spec.extra_args:
        cmd += list(spec.extra_args)
    return cmd


class VfkitVM:
    """One vfkit process for `spec` (macOS only); the console is vfkit's serial log file."""

    def __init__(self, spec: VMSpec, workdir: Path, gui: bool = False) -> None:
        self.spec = spec
        self.workdir = Path(workdir)
        self.gui = gui
        self.variable_store = self.workdir / "efi-variable-store"
        self.serial_log = self.workdir / "serial.log"
        self.console_log = self.workdir / "console.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.timed_out = False
        self._recorder = ConsoleRecorder(self.console_log, self.workdir / "console.raw",
                                         spec.name)

    def copies(self) -> dict[int, Path]:
        return {i: self.workdir / f"disk{i}{Path(d.path).suffix}"
                for i, d in enumerate(self.spec.disks) if d.snapshot}

    def command(self) -> list[str]:
        return build_command(self.spec, self.variable_store, self.serial_log,
                             copies=self.copies(), gui=self.gui)

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise VfkitUnavailable(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for i, copy in self.copies().items():
            # An APFS clone: instant, and writes never reach the cached image.
            subprocess.run(["cp", "-c", str(self.spec.disks[i].path), str(copy)], check=True)
        cmd = self.command()
        (self.workdir / "command.txt").write_text(" ".join(cmd) + "\n")
        self.serial_log.touch()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=open(self.workdir / "vfkit.log", "wb"),  # noqa: SIM115
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log = open(self.serial_log, "rb")  # noqa: SIM115 (closed by the reader at EOF)
        proc = self.proc

        def read() -> bytes:
            while True:
                chunk = log.read(65536)
                if chunk:
                    return chunk
                if proc.poll() is not None:
                    rest = log.read()
                    if not rest:
                        log.close()
                    return rest
                time.sleep(0.05)

        self._recorder.start(read)

    def wait_for(self, pattern: str, timeout: float) -> object:
        m = self._recorder.wait_for(pattern, timeout)
        if m is None:
            raise VMError(f"vfkit {self.spec.name}: no {pattern!r} in {timeout:.0f} s",
                          self.command(), self._recorder.tail())
        return m

    def text(self) -> str:
        return self._recorder.text()

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def shutdown(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._recorder.join(10)
        for copy in self.copies().values():
            with contextlib.suppress(OSError):
                os.unlink(copy)
