"""cloudboot-init events and console output (cloudboot/init/events.py)."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest

from cloudboot.init import events
from cloudboot.init.events import PREFIX, Events, parse_line


def _events(out: io.StringIO) -> list[dict]:
    return [e for e in map(parse_line, out.getvalue().splitlines()) if e is not None]


def test_event_lines_are_compact_json_with_phase_and_time() -> None:
    out = io.StringIO()
    ev = Events([out])
    ev.banner("9.9")
    ev.emit("init-start", version="9.9", consoles=["ttyS0"])
    ev.fatal("init-disk", "no disk\nat all")
    ev.log("two\nlines")
    lines = out.getvalue().splitlines()
    assert lines[0] == "cloudboot-init 9.9 starting"
    assert lines[1].startswith(PREFIX + '{"phase":"init-start","t":')
    assert " " not in lines[1][len(PREFIX):]  # compact separators
    assert lines[-2:] == ["cloudboot: two", "cloudboot: lines"]
    start, fatal = _events(out)
    assert list(start)[:2] == ["phase", "t"]
    assert isinstance(start["t"], float) and start["t"] == round(start["t"], 3)
    assert start["consoles"] == ["ttyS0"]
    assert fatal == {"phase": "fatal", "t": fatal["t"], "category": "init-disk",
                     "message": "no disk\nat all"}
    assert len(lines) == 5  # the multi-line message stays on one event line


def test_time_is_measured_from_t0() -> None:
    out = io.StringIO()
    ev = Events([out], t0=time.monotonic() - 2.0)
    t = ev.emit("cmdline")["t"]
    assert 2.0 <= t < 10.0


def test_unknown_phase_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown event phase 'booting'"):
        Events([io.StringIO()]).emit("booting")


def test_a_broken_console_does_not_stop_the_others() -> None:
    bad, good = io.StringIO(), io.StringIO()
    bad.close()  # writes raise ValueError
    ev = Events([bad, good])
    ev.emit("mounted", target="/x")
    assert parse_line(good.getvalue())["target"] == "/x"
    assert ev.history[-1]["phase"] == "mounted"


def test_parse_line_tolerates_noise() -> None:
    assert parse_line('\x1b[0m[  1.2] CLOUDBOOT-EVENT {"phase":"x","t":1}\r') == {
        "phase": "x", "t": 1}
    assert parse_line("CLOUDBOOT-EVENT {broken") is None
    assert parse_line("hello") is None


def _read_until(fd: int, text: str, timeout: float = 5.0) -> str:
    """A pty hands over what was written in pieces: read until `text` has arrived."""
    import select
    import time

    data, deadline = "", time.monotonic() + timeout
    while text not in data and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            data += os.read(fd, 4096).decode()
    return data


def test_consoles_real_ttys_once_each(tmp_path: Path) -> None:
    """Real pseudo-terminals stand in for ttyS0/hvc0/console; the one behind /dev/console
    (the last name in /sys/class/tty/console/active) is not written twice."""
    dev, sysfs = tmp_path / "dev", tmp_path / "sys"
    dev.mkdir()
    (sysfs / "class/tty/console").mkdir(parents=True)
    (sysfs / "class/tty/console/active").write_text("tty0 ttyS0\n")
    masters, slaves = {}, []
    for name in ("console", "ttyS0", "hvc0"):
        master, slave = os.openpty()
        os.symlink(os.ttyname(slave), dev / name)
        slaves.append(slave)  # kept open so an unwritten master reads EAGAIN, not EIO
        masters[name] = master
    try:
        ev = Events([io.StringIO()])
        ev.use_consoles(dev=dev, sys_dir=sysfs)
        assert ev.console_names == ["console", "hvc0"]  # ttyS0 is behind /dev/console
        ev.banner("1.0")
        ev.emit("init-start")
        for name in ("console", "hvc0"):
            data = _read_until(masters[name], '"phase":"init-start"')
            assert data.count("cloudboot-init 1.0 starting") == 1
            assert '"phase":"init-start"' in data
        os.set_blocking(masters["ttyS0"], False)
        with pytest.raises(BlockingIOError):
            os.read(masters["ttyS0"], 4096)
        ev.close()
    finally:
        for fd in [*masters.values(), *slaves]:
            os.close(fd)


def test_no_consoles_keeps_current_sinks(tmp_path: Path) -> None:
    out = io.StringIO()
    ev = Events([out])
    ev.use_consoles(dev=tmp_path, sys_dir=tmp_path)
    ev.log("still here")
    assert out.getvalue() == "cloudboot: still here\n"
    assert events.console_sinks(dev=tmp_path, sys_dir=tmp_path) == []


def test_event_json_round_trips_non_ascii_and_paths() -> None:
    out = io.StringIO()
    Events([out]).emit("materialised", kernel=Path("/boot/vmlinuz-é"))
    raw = out.getvalue().strip()[len(PREFIX):]
    assert raw.isascii()
    assert json.loads(raw)["kernel"] == "/boot/vmlinuz-é"


def test_every_emitted_phase_is_declared() -> None:
    """A phase missing from PHASES only fails inside a guest; catch it here."""
    import ast
    from pathlib import Path

    from cloudboot.init import events as events_module

    used = set()
    for path in Path(events_module.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "emit" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                used.add(node.args[0].value)
    assert used, "found no emit() calls"
    assert used <= events_module.PHASES, used - events_module.PHASES


def test_a_console_that_appears_late_gets_the_earlier_lines(tmp_path: Path) -> None:
    """hvc0's driver is a module: the console shows up after init started (Apple VZ has no
    other). It is opened then, and every line so far is replayed to it, once."""
    import pty

    master, slave = pty.openpty()
    dev = tmp_path / "dev"
    dev.mkdir()
    try:
        ev = Events([io.StringIO()])
        ev.emit("init-start", version="x")
        ev.log("before the driver")
        assert ev.add_late_consoles(("hvc0",), dev, tmp_path / "sys") == []  # not there yet
        (dev / "hvc0").symlink_to(os.ttyname(slave))
        assert ev.add_late_consoles(("hvc0",), dev, tmp_path / "sys") == ["hvc0"]
        assert ev.add_late_consoles(("hvc0",), dev, tmp_path / "sys") == []  # only once
        ev.log("after the driver")
        time.sleep(0.1)
        got = os.read(master, 65536).decode().replace("\r", "")
    finally:
        os.close(master)
        os.close(slave)
    lines = [line for line in got.splitlines() if line]
    assert lines[0].startswith(PREFIX) and '"init-start"' in lines[0]
    assert lines[1:] == ["cloudboot: before the driver", "cloudboot: after the driver"], lines
