"""The boot menu driven on the guest's SERIAL console, as a user types at it (pexpect).

The lab's QemuVM reads the serial console from QEMU's stdio *pipe*, so the e2e menu test
(tests/e2e/test_path_c.py::test_menu_choice_typed_on_hvc0) types into hvc0 through a socket.
Here QEMU runs under `pexpect.spawn`: its stdio chardev (`signal=off`) sits on a pty, QEMU puts
that pty in raw mode, and the keys we send reach the guest's ttyS0, where cloudboot-init's menu
polls every console in byte-at-a-time mode (cloudboot/init/menu.py).

The argv is the lab's own (lab/hypervisors/vmspec.py build_command) minus `-S` (nobody sends
QMP `cont` here). The whole console transcript is kept under the test's tmp_path and its tail
goes into every failure message; one deadline bounds the whole boot and QEMU is always killed.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pexpect
import pytest

from cloudboot.init.menu import DEFAULT_PROMPT
from lab.cells import Cell
from lab.console import BootOutcome, parse_text
from lab.hypervisors.vmspec import build_command
from lab.images import debian
from lab.paths.a import bootstrap_machine
from lab.paths.c import MENU_PROMPT
from lab.verdict import check_userspace, verdict
from tests.helpers import need_tools

pytestmark = [pytest.mark.boot]

DEADLINE = 600.0  # seconds from QEMU's start to the target's userspace, whatever happens
MENU_WITHIN = 300.0  # QEMU start to the menu (20-40 s idle under TCG, more on a loaded host)
KEY_WITHIN = 60.0  # a typed line to the menu's answer
TAIL_LINES = 40
# A line end as it reaches us: the menu's "\r\n", the guest tty's ONLCR and then the host pty's
# (QEMU's raw mode keeps OPOST) each add a "\r": "\r\r\r\n".
EOL = r"\r*\n"
_ANSI = re.compile(r"\x1b(\[[0-9;?=]*[ -/]*[@-~]|[@-Z\\-_])")
# What ends a boot early: the guest's own fatal event, a panic, a firmware shell, QEMU gone.
_DEAD = re.compile(r"\"phase\":\s*\"fatal\"[^\n]*\n|Kernel panic - not syncing[^\n]*|Shell> ")


def plan_text(image: debian.TargetImage) -> str:
    """A menu that waits for a choice, two disk targets on the same Debian image that differ
    only in a marker on their command line (so the userspace line says which one booted)."""
    def target(name: str, label: str) -> str:
        return f'''
target "{name}" {{
  label = "{label}"
  disk {{
    device = "UUID={image.fs_uuid}"
  }}
  cmdline = ["root=UUID={image.fs_uuid}", "ro", "console=ttyS0", "cb.pick={name}"]
}}
'''
    return ('default_target = "first"\nmenu {\n  timeout = 0\n}\n'
            + target("first", "the default one") + target("second", "the other one"))


class SerialConsole:
    """A QEMU child on a pty: expect() with one overall deadline, evidence on every failure."""

    def __init__(self, argv: list[str], transcript: Path, deadline: float) -> None:
        self.transcript = transcript
        self.t0 = time.monotonic()
        self.deadline = self.t0 + deadline
        self.typed: list[str] = []
        self.marks: list[tuple[str, float]] = []  # what was seen, seconds after QEMU started
        self._log: IO[str] = open(transcript, "w", encoding="utf-8")  # noqa: SIM115
        self.argv = argv
        # echo=False: the host side of the pty must not echo our keys back as guest output
        # (QEMU switches the pty to raw mode anyway); the guest's own echo is what we see.
        self.child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", codec_errors="replace",
                                   echo=False, dimensions=(50, 200), timeout=None)
        self.child.logfile_read = self._log

    def tail(self) -> str:
        if not self._log.closed:
            self._log.flush()
        text = _ANSI.sub("", self.transcript.read_text(encoding="utf-8", errors="replace"))
        lines = [ln.rstrip("\r") for ln in text.split("\n")]
        return "\n".join(lines[-TAIL_LINES:])

    def evidence(self, what: str) -> str:
        return (f"{what} ({self.elapsed():.1f} s after QEMU started; typed so far "
                f"{self.typed!r}; seen {self.marks})\ntranscript: {self.transcript}\n"
                f"command: {' '.join(self.argv)}\nconsole tail:\n{self.tail()}")

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def expect(self, pattern: re.Pattern[str] | str, what: str,
               within: float = DEADLINE) -> re.Match[str]:
        """Wait up to `within` seconds (and never past the deadline) for `pattern`; fail with
        the console tail on a fatal/panic, EOF or timeout. `what` names the step in the
        failure message and in `marks`."""
        pat = re.compile(pattern) if isinstance(pattern, str) else pattern
        left = min(within, self.deadline - time.monotonic())
        if left <= 0:
            pytest.fail(self.evidence(f"deadline passed before waiting for {what}"),
                        pytrace=False)
        i = self.child.expect([pat, _DEAD, pexpect.EOF, pexpect.TIMEOUT], timeout=left)
        if i == 0:
            self.marks.append((what, round(self.elapsed(), 1)))
            match = self.child.match
            assert isinstance(match, re.Match)
            return match
        why = {1: f"the boot died ({self.child.after!r})", 2: "QEMU exited",
               3: f"timed out after {left:.0f} s"}[i]
        pytest.fail(self.evidence(f"{why} while waiting for {what}"), pytrace=False)

    def type(self, keys: str) -> None:
        self.typed.append(keys)
        self.child.send(keys)

    def close(self) -> str:
        """Kill QEMU (always), close the transcript; returns the whole transcript."""
        try:
            if self.child.isalive():
                # Drain what is already there so the transcript ends where the guest was.
                with contextlib.suppress(pexpect.TIMEOUT, pexpect.EOF):
                    while True:
                        self.child.read_nonblocking(1 << 16, timeout=0.2)
            self.child.terminate(force=True)
        finally:
            self.child.close(force=True)
            self._log.close()
        return self.transcript.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def image() -> debian.TargetImage:
    return debian.build("bookworm", "ext4")


@pytest.fixture
def qmp_dir() -> Iterator[Path]:
    """The argv names a QMP socket (unused here, wait=off): a short path, AF_UNIX-safe."""
    d = Path(tempfile.mkdtemp(prefix="cb-menu-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def qemu_argv(tmp_path: Path, plan: Path, image: debian.TargetImage,
              qmp_dir: Path) -> list[str]:
    """The lab's own Path A machine (boot.iso with the plan, the target disk) as QEMU's argv."""
    spec, _ = bootstrap_machine(Cell("qemu", "x86_64", "A", "debian-12", "ext4"), tmp_path, "",
                                [image.path], timeout=DEADLINE, plan_file=plan)
    assert spec.profile.console_transport == "serial"  # the point: the machine's UART, ttyS0
    argv = build_command(spec, qmp_dir / "qmp.sock")
    argv.remove("-S")  # -S waits for QMP `cont`; this run has no QMP client
    assert "stdio,id=console,signal=off" in argv and "chardev:console" in argv, argv
    (tmp_path / "command.txt").write_text(" ".join(argv) + "\n")
    return argv


def test_menu_choice_typed_on_serial_console(tmp_path: Path, image: debian.TargetImage,
                                             qmp_dir: Path) -> None:
    """Prompt with both targets on ttyS0; "9" is refused and the menu asks again; "2" + Enter
    boots `second`: its menu-choice event, then its userspace with the target's kernel and
    command line."""
    need_tools("qemu-system-x86_64")
    plan = tmp_path / "plan.hcl"
    plan.write_text(plan_text(image))
    argv = qemu_argv(tmp_path, plan, image, qmp_dir)
    con = SerialConsole(argv, tmp_path / "console.txt", DEADLINE)
    try:
        prompt = con.expect(MENU_PROMPT, "the menu prompt", MENU_WITHIN)
        menu = con.child.before or ""
        for item in (r"\*\s*1\) first\s+the default one", r"\s2\) second\s+the other one"):
            assert re.search(item, menu), con.evidence(f"the menu lacks /{item}/")
        assert "Enter = first" in prompt.group(0), con.evidence("default is not `first`")

        con.type("9\r")  # no such entry: the menu must say so and ask again
        con.expect(re.compile(r"no single target matches '9'; type 1-\d+ or a name" + EOL
                              + re.escape(DEFAULT_PROMPT)), "the refusal and the prompt again",
                   KEY_WITHIN)
        con.type("2\r")
        con.expect("booting second" + EOL, "the menu's `booting second`", KEY_WITHIN)
        con.expect(re.compile(r'CLOUDBOOT-EVENT \{"phase":"menu-choice"[^\n]*\n'),
                   "the menu-choice event", KEY_WITHIN)
        con.expect(re.compile(r"CLOUDBOOT-USERSPACE [^\n]*\n"), "the target's userspace")
        seconds = con.elapsed()
    finally:
        text = con.close()

    events = parse_text(text)
    outcome = BootOutcome(text, events, False, con.transcript)
    result = verdict(Cell("qemu", "x86_64", "A", "debian-12", "menu-serial"), outcome,
                     accel=argv[argv.index("-accel") + 1], seconds=seconds)
    if result.status == "pass":
        check_userspace(result, image)
    assert result.status == "pass", con.evidence(f"{result.category}: {result.evidence}")

    phases = [e.phase for e in events.events]
    choices = [e.data for e in events.events if e.phase == "menu-choice"]
    assert [(c.get("target"), c.get("how")) for c in choices] == [("second", "typed")], \
        con.evidence(f"menu-choice events {choices}")
    assert phases.index("menu") < phases.index("menu-choice") < phases.index("userspace"), \
        con.evidence(f"phases out of order: {phases}")
    menu_event = next(e.data for e in events.events if e.phase == "menu")
    assert menu_event["targets"] == ["first", "second"] and menu_event["timeout"] == 0, \
        con.evidence(f"menu event {menu_event}")
    assert result.userspace is not None
    assert "cb.pick=second" in result.userspace["cmdline"], \
        con.evidence(f"the userspace came up with {result.userspace['cmdline']!r}")
    assert "cb.pick=first" not in result.userspace["cmdline"]
    print(f"menu-serial: {con.marks}, userspace after {seconds:.1f} s")
