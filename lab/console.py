"""Guest events out of a console log: `CLOUDBOOT-EVENT {json}` and `CLOUDBOOT-USERSPACE {json}`.

The console interleaves kernel messages with ours, and the guest may print over a line with \\r,
so a marker can sit mid-line and its JSON can be followed by junk. We look for each marker
anywhere in a line and decode exactly one JSON object after it; a line whose JSON was torn
apart by other output is kept as malformed rather than guessed at.

Log lines written by the QEMU lane look like "<seconds>\\t<text>"; plain text works too (no
times then).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVENT = "CLOUDBOOT-EVENT"
USERSPACE = "CLOUDBOOT-USERSPACE"
_MARKER = re.compile(rf"({EVENT}|{USERSPACE})[ \t]*")
_STAMP = re.compile(r"^(\d+\.\d+)\t")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class GuestEvent:
    kind: str  # EVENT or USERSPACE
    data: dict[str, Any]
    t: float | None  # host seconds since guest reset when the line appeared; None if unknown
    line: str

    @property
    def phase(self) -> str | None:
        """The event's phase ("userspace" for a CLOUDBOOT-USERSPACE line)."""
        if self.kind == USERSPACE:
            return "userspace"
        phase = self.data.get("phase")
        return phase if isinstance(phase, str) else None


@dataclass
class ConsoleEvents:
    events: list[GuestEvent] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)  # marker lines whose JSON was unreadable

    @property
    def userspace(self) -> GuestEvent | None:
        return next((e for e in self.events if e.kind == USERSPACE), None)

    def phase_times(self) -> dict[str, float]:
        """First host time each phase was seen (per-phase times for results)."""
        out: dict[str, float] = {}
        for e in self.events:
            if e.phase and e.t is not None and e.phase not in out:
                out[e.phase] = e.t
        return out

    def fatal(self) -> GuestEvent | None:
        return next((e for e in self.events if e.phase == "fatal"), None)


def split_stamp(line: str) -> tuple[float | None, str]:
    """("3.141", "text") from a console.log line; (None, line) for an unstamped one."""
    m = _STAMP.match(line)
    if m:
        return float(m.group(1)), line[m.end():]
    return None, line


def parse_lines(lines: Iterable[str]) -> ConsoleEvents:
    out = ConsoleEvents()
    for raw in lines:
        t, text = split_stamp(raw.rstrip("\n"))
        # A \r rewinds to the line start on a terminal; each piece may carry a marker.
        for piece in text.split("\r"):
            for m in _MARKER.finditer(piece):
                rest = piece[m.end():]
                try:
                    data, _ = _DECODER.raw_decode(rest)
                except json.JSONDecodeError:
                    out.malformed.append(piece)
                    continue
                if not isinstance(data, dict):
                    out.malformed.append(piece)
                    continue
                out.events.append(GuestEvent(m.group(1), data, t, piece))
    return out


def parse_text(text: str) -> ConsoleEvents:
    # Only \n ends a line: splitlines() would also split at \r and lose the line's stamp.
    return parse_lines(text.split("\n"))


def parse_log(path: Path) -> ConsoleEvents:
    """Events from a console.log (or any captured console file)."""
    return parse_text(Path(path).read_text(encoding="utf-8", errors="replace"))


def log_text(path: Path) -> str:
    """The console text of a console.log without its timestamps (what the guest printed)."""
    lines = Path(path).read_text(encoding="utf-8", errors="replace").split("\n")
    return "\n".join(split_stamp(line)[1] for line in lines)


# What the lab's runners wait for on a console.
BANNER = re.compile(r"cloudboot-init \S+ starting")
# Stop watching as soon as the run has decided itself one way or the other.
DECIDED = re.compile(r"CLOUDBOOT-USERSPACE|\"phase\":\s*\"fatal\"|Kernel panic - not syncing|"
                     r"Shell> |grub> |\(initramfs\)")


@dataclass
class BootOutcome:
    """One boot as the host saw it: the console text, its events, whether the wait ran out."""

    text: str
    events: ConsoleEvents
    timed_out: bool
    console_log: Path

