"""The failure catalog on real captured consoles and on samples of each failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.console import log_text, parse_text
from lab.failures import CATEGORIES, classify

CONSOLES = Path(__file__).parent / "golden" / "consoles"


def ev(phase: str, **kw: str) -> str:
    extra = "".join(f',"{k}":"{v}"' for k, v in kw.items())
    return f'CLOUDBOOT-EVENT {{"phase":"{phase}","t":1.0{extra}}}\n'


HANDOFF = ev("init-start") + ev("kexec-load")

SAMPLES = [
    # (console, timed_out, category, evidence fragment)
    ("Synchronous Exception at 0x00000000BF5E1234\n", False, "firmware", "firmware exception"),
    ("!!!! X64 Exception Type - 0D(#GP - General Protection)  CPU Apic ID - 00000000 !!!!\n",
     False, "firmware", "firmware exception"),
    ("UEFI Interactive Shell v2.2\nShell> ", True, "firmware", "EFI shell (before handoff)"),
    (ev("init-start") + ev("bootvar-written") + ev("rebooting") + "BdsDxe: loading Boot0003\n"
     "Shell> ", True, "handoff", "EFI shell (after handoff)"),
    ("GNU GRUB  version 2.06\ngrub> ", True, "firmware", "grub prompt"),
    ("[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n", False,
     "bootstrap-kernel", "kernel panic (before handoff)"),
    (HANDOFF + "[    0.9] Kernel panic - not syncing: Attempted to kill init!\n", False,
     "target-kernel", "kernel panic (after handoff)"),
    (HANDOFF + "Gave up waiting for root file system device.\nALERT!  LABEL=root does not exist."
     "  Dropping to a shell!\n(initramfs) ", True, "target-kernel", "initramfs shell"),
    (HANDOFF + "You are in emergency mode. After logging in, type \"journalctl -xb\"\n", True,
     "target-userspace", "emergency mode"),
    (ev("init-start") + ev("fatal", category="init-network", message="no DHCP lease on eth0")
     + "[    9.0] Kernel panic - not syncing: Attempted to kill init!\n", False, "init-network",
     "no DHCP lease on eth0"),
    (ev("fatal", category="bogus", message="x"), False, "lab", "unknown category 'bogus'"),
    ("", True, "firmware", "console stayed silent"),
    ("BdsDxe: loading Boot0001\n" + ev("init-start") + ev("net-up"), True, "timeout",
     "last phase net-up"),
    ("BdsDxe: loading Boot0001\n" + ev("init-start"), False, "lab", "last phase init-start"),
    # Path C's reboot that the platform never performed (lab.paths.c.wait_decided ends it) ...
    (ev("init-start") + ev("staged") + ev("rebooting") + "[   33.5] reboot: Restarting system\n",
     False, "handoff", "guest reset never happened (after handoff)"),
    # ... is not a reset after which the firmware went on and the boot then ran out of time.
    (ev("init-start") + ev("rebooting") + "[   33.5] reboot: Restarting system\n"
     "BdsDxe: loading Boot0007\n", True, "timeout", "last phase rebooting"),
]


@pytest.mark.parametrize(("console", "timed_out", "category", "evidence"), SAMPLES)
def test_catalog(console: str, timed_out: bool, category: str, evidence: str) -> None:
    verdict = classify(console, parse_text(console).events, False, timed_out)
    assert not verdict.passed
    assert verdict.category == category and category in CATEGORIES
    assert evidence in verdict.evidence


def test_userspace_passes_even_after_noise() -> None:
    console = HANDOFF + "[ 3.0] Kernel panic - not syncing: oops\n" + \
        'CLOUDBOOT-USERSPACE {"id":"debian"}\n'
    events = parse_text(console)
    verdict = classify(console, events.events, events.userspace is not None, False)
    assert verdict.passed and verdict.category is None


def test_first_failure_wins() -> None:
    console = "Synchronous Exception at 0x1\nKernel panic - not syncing: later\n"
    assert classify(console, [], False, False).category == "firmware"


def test_real_consoles() -> None:
    panic = log_text(CONSOLES / "x86_64-direct-no-root-panic.log")
    v = classify(panic, [], False, False)
    assert (v.category, v.passed) == ("bootstrap-kernel", False)
    assert "Unable to mount root fs" in v.evidence
    shell = log_text(CONSOLES / "ovmf-no-media-shell.log")
    v = classify(shell, [], False, True)
    assert v.category == "firmware" and "UEFI Interactive Shell" in v.evidence


def test_firmware_skipping_a_dead_entry_is_not_the_failure() -> None:
    from lab.failures import classify

    text = ('BdsDxe: failed to load Boot0000 "file shimx64.efi" from HD(1,GPT,x): Not Found\n'
            "BdsDxe: starting Boot0002\n[    0.000000] Linux version 6.12.1\n"
            "[    2.0] Kernel panic - not syncing: Fatal exception in interrupt\n")
    v = classify(text, [], reached_userspace=False, timed_out=False)
    assert (v.passed, v.category) == (False, "bootstrap-kernel")
    alone = 'BdsDxe: failed to load Boot0000 "file shimx64.efi"\nShell> '
    assert classify(alone, [], False, False).category == "firmware"


def test_oops_after_the_loader_handoff_is_the_target_kernel() -> None:
    """A real Path B boot: Debian 13's kernel oopsed in kthreadd under QEMU 7.2 TCG (the known
    crash) and never printed "Kernel panic"; the run timed out. That is the target kernel's
    failure, not a timeout: the loader had handed off."""
    text = log_text(CONSOLES / "x86_64-path-b-debian13-oops.log")
    v = classify(text, parse_text(text).events, False, True)
    assert (v.passed, v.category) == (False, "target-kernel"), v
    assert "kernel oops" in v.evidence and "NULL pointer dereference" in v.evidence
