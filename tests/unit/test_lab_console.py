"""Guest events out of messy console logs."""

from __future__ import annotations

from pathlib import Path

from lab.console import EVENT, USERSPACE, log_text, parse_log, parse_text, split_stamp

CONSOLES = Path(__file__).parent / "golden" / "consoles"

MESSY = (
    "1.000\t[    0.912345] virtio_blk virtio1: [vda] 131072 512-byte logical blocks\n"
    '1.500\tCLOUDBOOT-EVENT {"phase":"init-start","t":0.01}\r\n'
    # kernel output written over the start of our line, marker mid-line, junk after the JSON
    '2.250\t[    1.2] random: crng initCLOUDBOOT-EVENT {"phase":"net-up","t":0.8,'
    '"iface":"eth0"}\x00garbage\n'
    # torn apart by another writer: reported, not guessed
    '2.500\tCLOUDBOOT-EVENT {"phase":"plan-fe[    1.3] audit: x\n'
    "3.000\tprogress 10%\rprogress 100%\r"
    'CLOUDBOOT-EVENT {"phase":"kexec-load","t":2.9}\n'
    '9.125\tCLOUDBOOT-USERSPACE {"id":"debian","version_id":"12","kernel":"6.1.0-56-cloud-amd64",'
    '"cmdline":"root=LABEL=root console=ttyS0"}\n'
)


def test_events_survive_interleaving_and_carriage_returns() -> None:
    ev = parse_text(MESSY)
    assert [e.phase for e in ev.events] == ["init-start", "net-up", "kexec-load", "userspace"]
    assert ev.events[1].data == {"phase": "net-up", "t": 0.8, "iface": "eth0"}
    assert ev.events[1].t == 2.25 and ev.events[0].kind == EVENT
    assert len(ev.malformed) == 1 and "plan-fe" in ev.malformed[0]
    us = ev.userspace
    assert us is not None and us.kind == USERSPACE
    assert us.data["id"] == "debian" and us.data["kernel"] == "6.1.0-56-cloud-amd64"
    assert ev.phase_times() == {"init-start": 1.5, "net-up": 2.25, "kexec-load": 3.0,
                                "userspace": 9.125}
    assert ev.fatal() is None


def test_unstamped_text_has_no_times() -> None:
    ev = parse_text('CLOUDBOOT-EVENT {"phase":"fatal","category":"init-disk","message":"no fs"}')
    assert ev.fatal() is not None and ev.events[0].t is None
    assert ev.phase_times() == {}
    assert split_stamp("12.5\tx") == (12.5, "x") and split_stamp("[ 1.0] x") == (None, "[ 1.0] x")


def test_real_console_log_from_the_qemu_lane(tmp_path: Path) -> None:
    log = CONSOLES / "x86_64-direct-no-root-panic.log"
    assert parse_log(log).events == []
    text = log_text(log)
    assert "Kernel panic - not syncing: VFS: Unable to mount root fs" in text
    assert "\t" not in text.splitlines()[0][:12]  # stamps removed
