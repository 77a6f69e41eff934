"""The boot menu: the pure choice rule, and the menu driven over real pty pairs."""

from __future__ import annotations

import os
import pty
import threading
import time
from collections.abc import Iterator

import pytest

from cloudboot.init import menu

NAMES = ["debian-12", "debian-13", "ubuntu-24.04"]
ITEMS = [menu.Item("debian-12", "Debian 12"), menu.Item("debian-13"), menu.Item("ubuntu-24.04")]


@pytest.mark.parametrize(("text", "want"), [
    ("", 1), ("  \t", 1),  # Enter = default
    ("1", 0), ("3", 2), ("0", None), ("4", None),  # numbers, 1-based
    ("debian-13", 1), ("DEBIAN-13", 1),  # exact name, case folded when unambiguous
    ("u", 2), ("ubu", 2), ("debian-1", None), ("deb", None),  # unique prefix only
    ("fedora", None),
])
def test_choose(text: str, want: int | None) -> None:
    assert menu.choose(NAMES, text, default=1) == want


def test_exact_name_beats_a_longer_name_it_prefixes() -> None:
    assert menu.choose(["a", "ab"], "a", 1) == 0


def test_render_marks_the_default() -> None:
    text = menu.render(ITEMS, 1)
    lines = text.split("\r\n")
    assert "   1) debian-12     Debian 12" in lines
    assert " * 2) debian-13" in [line.rstrip() for line in lines]
    assert "Enter = debian-13" in lines[-1]


class Term:
    """A pty pair: the menu reads the slave side, the test types on the master."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        os.set_blocking(self.slave, False)

    def type(self, text: str, delay: float = 0.0) -> None:
        def go() -> None:
            time.sleep(delay)
            os.write(self.master, text.encode())

        threading.Thread(target=go, daemon=True).start()

    def close(self) -> None:
        for fd in (self.master, self.slave):
            os.close(fd)


@pytest.fixture
def term() -> Iterator[Term]:
    t = Term()
    yield t
    t.close()


def run(fds: list[int], timeout: int = 0, default: int = 0) -> tuple[menu.Choice, str]:
    out: list[str] = []
    choice = menu.run(ITEMS, default, timeout, fds, out.append)
    return choice, "".join(out)


def test_number(term: Term) -> None:
    term.type("2\n", 0.2)
    choice, out = run([term.slave])
    assert (choice.index, choice.how) == (1, "typed")
    assert "booting debian-13" in out


def test_prefix(term: Term) -> None:
    term.type("ub\r", 0.2)
    assert run([term.slave])[0].index == 2


def test_bad_choice_asks_again(term: Term) -> None:
    term.type("fedora\n", 0.2)
    term.type("debian-13\n", 0.6)
    choice, out = run([term.slave])
    assert choice.index == 1
    assert "no single target matches 'fedora'" in out
    assert out.index("no single target") < out.index("booting debian-13")


def test_enter_takes_the_default(term: Term) -> None:
    term.type("\n", 0.2)
    choice, _ = run([term.slave], default=2)
    assert (choice.index, choice.how) == (2, "enter")


def test_timeout_boots_the_default(term: Term) -> None:
    start = time.monotonic()
    choice, out = run([term.slave], timeout=1, default=1)
    assert (choice.index, choice.how) == (1, "timeout")
    assert "(debian-13 in 1s)" in out and "timeout: booting debian-13" in out
    assert time.monotonic() - start >= 0.9


def test_typing_stops_the_countdown(term: Term) -> None:
    term.type("ub", 0.2)  # the rest comes after the countdown would have run out
    term.type("untu-24.04\n", 1.8)
    choice, _ = run([term.slave], timeout=1)
    assert (choice.index, choice.how) == (2, "typed")


def test_input_from_any_console() -> None:
    serial, hvc = Term(), Term()
    try:
        hvc.type("3\n", 0.2)
        choice, _ = run([serial.slave, hvc.slave])
        assert choice.index == 2
    finally:
        serial.close()
        hvc.close()


def test_hung_up_console_is_dropped(term: Term) -> None:
    gone = Term()
    os.close(gone.master)  # its slave now reports POLLHUP
    term.type("1\n", 0.3)
    try:
        choice, _ = run([gone.slave, term.slave])
        assert choice.index == 0
    finally:
        os.close(gone.slave)


def test_no_console_at_all_boots_the_default() -> None:
    choice, out = run([], timeout=0, default=1)
    assert (choice.index, choice.how) == (1, "no-input")
    assert "no console" in out


def test_open_inputs_skips_missing_consoles(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert menu.open_inputs(["ttyS0", "hvc0"], dev=str(tmp_path)) == []
