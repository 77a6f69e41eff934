"""The boot menu (issue 5): pick a plan target on the consoles, for Paths A and C.

A numbered list of the targets eligible for this arch with the default marked, a countdown
(`cloudboot.menu.timeout`, 0 = wait for a choice), a choice by number, name or unique prefix,
Enter for the default, a bad choice asks again. Input comes from every console at once
(serial, hvc0, tty1) through poll(); the first complete line wins. The countdown stops at
the first key so a slow typist is not overtaken by it.

`choose()` is the pure choice rule; `run()` drives it over file descriptors (a pty in tests);
`ask()` puts a plan's targets (and `reset`) to the user for cloudboot-init.
Standard library only (PID 1).
"""

from __future__ import annotations

import contextlib
import os
import select
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudboot.init import cmdline
from cloudboot.init.errors import Fatal

if TYPE_CHECKING:
    from cloudboot.init.boot import Boot

DEFAULT_PROMPT = "Boot which target?"
INPUT_CONSOLES = ("ttyS0", "ttyAMA0", "hvc0", "tty1")


@dataclass(frozen=True)
class Item:
    name: str
    label: str | None = None


@dataclass(frozen=True)
class Choice:
    index: int
    how: str  # "typed" | "enter" | "timeout" | "no-input"
    text: str = ""


def choose(names: Sequence[str], text: str, default: int) -> int | None:
    """Index chosen by `text`: "" = default; 1-based number; exact name (case folded if
    unambiguous); unique prefix. None when nothing or several match."""
    t = text.strip()
    if not t:
        return default
    if t.isdigit():
        n = int(t)
        return n - 1 if 1 <= n <= len(names) else None
    exact = [i for i, n in enumerate(names) if n == t]
    if len(exact) == 1:
        return exact[0]
    folded = [i for i, n in enumerate(names) if n.lower() == t.lower()]
    if len(folded) == 1:
        return folded[0]
    prefix = [i for i, n in enumerate(names) if n.lower().startswith(t.lower())]
    return prefix[0] if len(prefix) == 1 else None


def render(items: Sequence[Item], default: int, prompt: str | None = None) -> str:
    width = max((len(i.name) for i in items), default=0)
    lines = ["", "cloud-boot menu"]
    for n, item in enumerate(items):
        mark = "*" if n == default else " "
        label = f"  {item.label}" if item.label else ""
        lines.append(f" {mark}{n + 1:>2}) {item.name:<{width}}{label}")
    lines.append(f"{prompt or DEFAULT_PROMPT} [number, name or prefix; Enter = "
                 f"{items[default].name}] ")
    return "\r\n".join(lines)


class _Inputs:
    """Line buffers over several read fds; a fd that errors or hangs up is dropped."""

    def __init__(self, fds: Sequence[int]) -> None:
        self.buf = {fd: bytearray() for fd in fds}
        self.poll = select.poll()
        for fd in fds:
            self.poll.register(fd, select.POLLIN)
        self.typed = False

    @property
    def live(self) -> bool:
        return bool(self.buf)

    def _drop(self, fd: int) -> None:
        self.buf.pop(fd, None)
        with contextlib.suppress(KeyError, ValueError):
            self.poll.unregister(fd)

    def line(self, wait: float | None) -> str | None:
        """The next complete line from any fd, or None after `wait` seconds (None: forever)."""
        for b in self.buf.values():  # a line left over from an earlier read
            if (text := self._take(b)) is not None:
                return text
        ms = None if wait is None else max(0, int(wait * 1000))
        for fd, events in self.poll.poll(ms):
            if not events & select.POLLIN:
                self._drop(fd)
                continue
            try:
                data = os.read(fd, 256)
            except BlockingIOError:
                continue
            except OSError:
                self._drop(fd)
                continue
            if not data:
                self._drop(fd)
                continue
            self.typed = True
            b = self.buf[fd]
            for byte in data:
                if byte in (0x7F, 0x08):  # backspace in raw mode
                    if b:
                        b.pop()
                else:
                    b.append(byte)
            if (text := self._take(b)) is not None:
                return text
        return None

    @staticmethod
    def _take(b: bytearray) -> str | None:
        for i, byte in enumerate(b):
            if byte in (0x0A, 0x0D):
                text = bytes(b[:i]).decode("utf-8", "replace")
                # "\r\n" from a raw terminal is one line end
                skip = 2 if byte == 0x0D and i + 1 < len(b) and b[i + 1] == 0x0A else 1
                del b[: i + skip]
                return text
        return None


def run(items: Sequence[Item], default: int, timeout: int, in_fds: Sequence[int],
        write: Callable[[str], None], prompt: str | None = None,
        clock: Callable[[], float] = time.monotonic) -> Choice:
    """Show the menu on `write`, read the choice from `in_fds`."""
    if not items:
        raise ValueError("menu: no targets to choose from")
    saved = [(fd, a) for fd in in_fds if (a := _char_mode(fd)) is not None]
    try:
        return _run(items, default, timeout, in_fds, write, prompt, clock)
    finally:
        for fd, attrs in saved:
            with contextlib.suppress(OSError, termios.error):
                termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _char_mode(fd: int) -> list | None:  # type: ignore[type-arg]
    """Switch a tty to byte-at-a-time input (so the first key stops the countdown), kernel
    echo kept; returns the attributes to restore, None for a non-tty."""
    try:
        attrs = termios.tcgetattr(fd)
    except (OSError, termios.error):
        return None
    new = [*attrs[:6], list(attrs[6])]
    new[3] = attrs[3] & ~(termios.ICANON | termios.ECHOCTL)
    new[6][termios.VMIN], new[6][termios.VTIME] = 1, 0
    with contextlib.suppress(OSError, termios.error):
        termios.tcsetattr(fd, termios.TCSANOW, new)
    return attrs


def _run(items: Sequence[Item], default: int, timeout: int, in_fds: Sequence[int],
         write: Callable[[str], None], prompt: str | None,
         clock: Callable[[], float]) -> Choice:
    names = [i.name for i in items]
    write(render(items, default, prompt))
    inputs = _Inputs(in_fds)
    deadline = clock() + timeout if timeout > 0 else None
    shown = -1
    while True:
        if not inputs.live:
            write(f"\r\nno console to read a choice from: booting {names[default]}\r\n")
            return Choice(default, "no-input")
        wait: float | None = None
        if deadline is not None and not inputs.typed:
            left = deadline - clock()
            if left <= 0:
                write(f"\r\ntimeout: booting {names[default]}\r\n")
                return Choice(default, "timeout")
            if int(left + 0.999) != shown:
                shown = int(left + 0.999)
                write(f"\r\n({names[default]} in {shown}s) ")
            wait = min(1.0, left)
        text = inputs.line(wait)
        if text is None:
            continue
        index = choose(names, text, default)
        if index is None:
            write(f"\r\nno single target matches {text.strip()!r}; type 1-{len(names)} or a "
                  f"name\r\n{prompt or DEFAULT_PROMPT} ")
            continue
        write(f"\r\nbooting {names[index]}\r\n")
        return Choice(index, "enter" if not text.strip() else "typed", text.strip())


def open_inputs(names: Sequence[str] = INPUT_CONSOLES, dev: str = "/dev") -> list[int]:
    """Read fds on the consoles that exist, pending input flushed (keys typed before the
    menu was shown must not choose for the user)."""
    fds = []
    for name in dict.fromkeys(names):
        try:
            fd = os.open(os.path.join(dev, name), os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK
                         | os.O_CLOEXEC)
        except OSError:
            continue
        with contextlib.suppress(OSError, termios.error):
            termios.tcflush(fd, termios.TCIFLUSH)
        fds.append(fd)
    return fds


def close_inputs(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


RESET_ITEM = "reset"  # the entry that runs cloudboot.reset=1, then asks again


def ask(boot: Boot, plan: Any, arch: str) -> str:
    """Ask on the consoles which of the plan's eligible targets to boot; returns its name.
    As PID 1 the menu also offers `reset` (unless a target has that name): cloudboot's
    Boot#### entries and staged files are removed and the menu is shown again."""
    from cloudboot.plan import eligible_targets

    cfg, ev = boot.cfg, boot.ev
    targets = eligible_targets(plan, arch)
    if not targets:
        raise Fatal("init-plan", f"{plan.filename}: the menu has no target for {arch}")
    names = [t.name for t in targets]
    items = [Item(t.name, t.label) for t in targets]
    if boot.opts.pid1 and RESET_ITEM not in names:
        items.append(Item(RESET_ITEM, "remove cloud-boot's boot entries and staged "
                          "kernels, then show this menu again"))
    default = names.index(plan.default_target) if plan.default_target in names else 0
    timeout = cfg.menu_timeout if cfg.menu_timeout is not None else (
        plan.menu.timeout if plan.menu is not None else 10)
    prompt = cfg.menu_prompt or (plan.menu.prompt if plan.menu is not None else None)
    if boot.menu_wait:  # back after a failure: the default may be what failed
        timeout = 0
    boot.menu_shown = True

    def say(text: str) -> None:
        for sink in ev.sinks:
            sink.write(text)

    while True:
        ev.emit("menu", targets=names, default=names[default], timeout=timeout)
        if boot.opts.pid1:
            fds = open_inputs([*cmdline.console_devices(cfg.consoles), *INPUT_CONSOLES])
        else:
            fds = [os.dup(0)]
        try:
            choice = run(items, default, timeout, fds, say, prompt)
        finally:
            close_inputs(fds)
        chosen = items[choice.index].name
        ev.emit("menu-choice", target=chosen, how=choice.how)
        if choice.index < len(names):
            return chosen
        from cloudboot.init.pathc import reboot_sink  # only a reset needs it

        reboot_sink.reset_guest(boot)
        timeout = 0  # a reset was asked for by hand: wait for the next choice
