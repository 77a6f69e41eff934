"""The failure catalog: from a console, its events and how the run ended to one verdict.

Every failed cell gets exactly one category of DESIGN §5. Precedence, first hit wins:
1. the guest reached its userspace (a CLOUDBOOT-USERSPACE line): pass;
2. our own `fatal` event: its category (cloudboot-init knows best what went wrong);
3. the earliest catalog message on the console (the first failure causes the rest). Some
   messages mean different things before and after our handoff (a kexec-load/staged/
   bootvar-written/rebooting event): a panic is the bootstrap kernel's before it and the
   target kernel's after it; `Shell>` or `grub>` after a Path C reboot means the staged entry
   did not boot (handoff);
4. a console that printed nothing: firmware;
5. a timeout: timeout; any other unexplained stop: lab.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lab.console import EVENT, GuestEvent

CATEGORIES = (
    "firmware", "bootstrap-kernel", "init-plan", "init-network", "init-disk", "handoff",
    "target-kernel", "target-userspace", "timeout", "lab",
)
# After these our code is done: what fails next is the target's kernel or userspace. The native
# loaders (Paths B and D) print loader-handoff just before StartImage of the distro kernel.
HANDOFF_PHASES = frozenset({"kexec-load", "staged", "bootvar-written", "rebooting",
                            "loader-handoff"})


@dataclass(frozen=True)
class Verdict:
    passed: bool
    category: str | None  # None when passed
    evidence: str


@dataclass(frozen=True)
class Signature:
    name: str
    pattern: re.Pattern[str]
    before_handoff: str  # category when seen before our handoff (or with no handoff)
    after_handoff: str  # category when seen after it


def _sig(name: str, pattern: str, before: str, after: str | None = None) -> Signature:
    return Signature(name, re.compile(pattern, re.MULTILINE), before, after or before)


CATALOG: tuple[Signature, ...] = (
    _sig("firmware exception", r"Synchronous Exception at|!!!! X64 Exception Type|"
         r"ASSERT_EFI_ERROR|ASSERT \[\w+\]", "firmware"),
    _sig("EFI shell", r"^\s*Shell> |UEFI Interactive Shell v", "firmware", "handoff"),
    _sig("grub prompt", r"^\s*grub> ", "firmware", "handoff"),
    _sig("firmware boot failure", r"BdsDxe: failed to (load|start) Boot\d{4}|"
         r"Boot Failed\. EFI", "firmware", "handoff"),
    _sig("EFI stub error", r"EFI stub: ERROR:", "bootstrap-kernel", "target-kernel"),
    _sig("kernel panic", r"Kernel panic - not syncing|Kernel panic -",
         "bootstrap-kernel", "target-kernel"),
    # x86 prints "BUG: kernel NULL pointer dereference" + "Oops: 0000 [#1]", arm64 "Internal
    # error: Oops"; a kernel thread dying this way often never reaches "Kernel panic".
    _sig("kernel oops", r"\bBUG: (unable to handle|kernel NULL pointer dereference)|"
         r"Internal error: Oops|\] Oops: |\] general protection fault|\] traps: double fault",
         "bootstrap-kernel", "target-kernel"),
    # The distro's initramfs could not find or mount its root: the target never left its kernel
    # stage.
    _sig("initramfs shell", r"\(initramfs\) ?$|\(initramfs\) |Dropping to a shell!",
         "target-kernel"),
    # The kernel asked the platform to reset and nothing came after (lab.paths.c ends such a
    # boot after RESET_SILENCE): the reboot that hands over to the firmware never happened.
    _sig("guest reset never happened", r"reboot: Restarting system\s*\Z", "handoff"),
    _sig("emergency mode", r"You are in emergency mode|Give root password for maintenance|"
         r"Entering emergency mode", "target-userspace"),
)


def _handoff_offset(console_text: str) -> int | None:
    """Offset just after the first handoff event line in the console, if any."""
    for m in re.finditer(rf"{EVENT}[^\n]*", console_text):
        line = m.group(0)
        if any(f'"phase":"{p}"' in line.replace(" ", "") for p in HANDOFF_PHASES):
            return m.end()
    return None


def _fatal(events: Sequence[GuestEvent]) -> GuestEvent | None:
    return next((e for e in events if e.phase == "fatal"), None)


_KERNEL_START = re.compile(r"Linux version \d|EFI stub: ")


def classify(console_text: str, events: Sequence[GuestEvent], reached_userspace: bool,
             timed_out: bool) -> Verdict:
    """One verdict for a finished run (see module docstring for the rules)."""
    if reached_userspace:
        return Verdict(True, None, "guest reached its userspace")
    fatal = _fatal(events)
    if fatal is not None:
        category = fatal.data.get("category")
        message = fatal.data.get("message", "")
        if category not in CATEGORIES:
            return Verdict(False, "lab", f"fatal event with unknown category {category!r}: "
                                         f"{fatal.line.strip()}")
        return Verdict(False, str(category), f"fatal event: {message}".strip())
    handoff = _handoff_offset(console_text)
    hits = []
    for sig in CATALOG:
        m = sig.pattern.search(console_text)
        if m:
            hits.append((m.start(), sig, m))
    # The firmware moving on from one Boot#### to the next is not the failure when a kernel
    # started after it (a stale or foreign entry first in BootOrder does that on every boot).
    hits = [h for h in hits if h[1].name != "firmware boot failure"
            or not _KERNEL_START.search(console_text, h[0])]
    if hits:
        start, sig, m = min(hits, key=lambda h: h[0])
        after = handoff is not None and start >= handoff
        category = sig.after_handoff if after else sig.before_handoff
        line_start = console_text.rfind("\n", 0, start) + 1
        line_end = console_text.find("\n", start)
        line = console_text[line_start: line_end if line_end >= 0 else None].strip()
        where = "after handoff" if after else "before handoff"
        return Verdict(False, category, f"{sig.name} ({where}): {line}")
    if not console_text.strip():
        return Verdict(False, "firmware", "console stayed silent: the firmware printed nothing")
    last = _last_phase(events)
    tail = console_text.strip().splitlines()[-1].strip()
    if timed_out:
        return Verdict(False, "timeout", f"timed out; last phase {last}; last line: {tail}")
    return Verdict(False, "lab", f"guest stopped without a recognised failure; last phase "
                                 f"{last}; last line: {tail}")


def _last_phase(events: Sequence[GuestEvent]) -> str:
    phases = [e.phase for e in events if e.phase]
    return phases[-1] if phases else "none (no CLOUDBOOT-EVENT seen)"
