"""Write the Path C boot entry through efivarfs, and remove ours on reset (DESIGN §5).

The Boot#### holds HD(part, GPT, partuuid, start, size)/File(\\EFI\\Linux\\<safe>-vmlinuz.efi)
taken from the cache disk's real partition table, and UCS-2 options `initrd=… <cmdline>`;
for a staged UKI (form "uki") File(\\EFI\\Linux\\<safe>-uki.efi) and no options at all, the
UKI's .cmdline being the command line (why: cloudboot/init/pathc/ukistage.py).
The number reuses an entry cloudboot wrote, else the lowest free one: an entry someone else
wrote is never overwritten (bootvars.choose_boot_number, checked again here before writing).
BootOrder gets ours first, every other entry kept; `cloudboot.bootnext=1` writes BootNext
instead. Every variable goes in one write() and is read back (efivarfs.write_var).

Standard library only (PID 1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from cloudboot.efi import bootvars, efivarfs, loadopt
from cloudboot.efi.guid import EFI_GLOBAL_VARIABLE as GLOBAL
from cloudboot.init.storage.gptread import GptPartition


class BootEntryError(OSError):
    """A boot variable could not be read or written; the message names it."""


@dataclass(frozen=True)
class Written:
    number: int
    name: str  # Boot####
    description: str
    boot_order: list[int] | None  # the new BootOrder (None with BootNext)
    boot_next: int | None
    replaced: bool  # an earlier cloudboot entry was rewritten


def prepare(root: str | Path = efivarfs.EFIVARFS) -> None:
    """Mount efivarfs when it is the real one and not mounted yet."""
    if str(root) == efivarfs.EFIVARFS:
        try:
            efivarfs.ensure_mounted(root)
        except OSError as e:
            raise BootEntryError(e.errno or 0, str(e)) from e


def read_entries(root: str | Path = efivarfs.EFIVARFS) -> dict[int, loadopt.LoadOption | None]:
    """Every Boot#### (None for one that does not decode: taken, and not ours)."""
    out: dict[int, loadopt.LoadOption | None] = {}
    try:
        names = efivarfs.list_vars(GLOBAL, root)
    except OSError as e:
        raise BootEntryError(e.errno or 0, f"cannot list EFI variables: {e}") from e
    for name in names:
        number = bootvars.boot_number(name)
        if number is None:
            continue
        try:
            got = efivarfs.read_var(name, GLOBAL, root)
            out[number] = None if got is None else loadopt.unpack(got[1], name)
        except (OSError, ValueError):
            out[number] = None
    return out


def referenced_paths(entries: dict[int, loadopt.LoadOption | None]) -> list[str]:
    """File paths any entry points at (to keep staged files an entry still needs)."""
    return [p for opt in entries.values() if opt is not None and (p := opt.file_path)]


def _read_order(name: str, root: str | Path) -> tuple[int, list[int] | None]:
    got = efivarfs.read_var(name, GLOBAL, root)
    if got is None:
        return efivarfs.NV_BS_RT, None
    try:
        return got[0], bootvars.unpack_boot_order(got[1])
    except ValueError as e:
        raise BootEntryError(0, f"{name}: {e}") from e


UKI_SUFFIX = "-uki.efi"  # a staged UKI: \\EFI\\Linux\\<safe>-uki.efi (staging uses this)


def uki_path(target: str) -> str:
    """The EFI path of `target`'s staged UKI on the cache ESP."""
    return f"\\EFI\\Linux\\{loadopt.safe_name(target)}{UKI_SUFFIX}"


def build_option(target: str, part: GptPartition, cmdline: str,
                 has_initrd: bool = True, form: str = "split") -> loadopt.LoadOption:
    """Our load option for the staged files of `target` on partition `part`: the kernel
    with `initrd=… <cmdline>` (form "split"), or the UKI with no options (form "uki")."""
    kernel, initrd = loadopt.staged_paths(target)
    size = part.last_lba - part.first_lba + 1
    if form == "uki":
        option = loadopt.cloudboot_option(target, part.number, part.first_lba, size,
                                          part.part_guid, uki_path(target), None, "")
        return dataclasses.replace(option, optional_data=b"")
    if form != "split":
        raise ValueError(f"unknown staging form {form!r} (expected split or uki)")
    return loadopt.cloudboot_option(target, part.number, part.first_lba, size,
                                    part.part_guid, kernel, initrd if has_initrd else None,
                                    cmdline)


def write(option: loadopt.LoadOption, *, boot_next: bool = False,
          root: str | Path = efivarfs.EFIVARFS,
          entries: dict[int, loadopt.LoadOption | None] | None = None) -> Written:
    """Write `option` as our Boot####, then BootOrder (or BootNext)."""
    if not loadopt.is_cloudboot(option):
        raise BootEntryError(0, f"refusing to write {option.description!r}: not a cloudboot "
                             "entry")
    if entries is None:
        entries = read_entries(root)
    try:
        number = bootvars.choose_boot_number(entries, option.description)
    except bootvars.BootVarError as e:
        raise BootEntryError(0, str(e)) from e
    old = entries.get(number)
    if number in entries and (old is None or not loadopt.is_cloudboot(old)):
        raise BootEntryError(0, f"internal error: {bootvars.boot_name(number)} belongs to "
                             "someone else; not overwriting it")
    name = bootvars.boot_name(number)
    try:
        efivarfs.write_var(name, GLOBAL, option.pack(), efivarfs.NV_BS_RT, root)
        if boot_next:
            efivarfs.write_var("BootNext", GLOBAL, bootvars.pack_boot_next(number),
                               efivarfs.NV_BS_RT, root)
            return Written(number, name, option.description, None, number, old is not None)
        attrs, order = _read_order("BootOrder", root)
        new = bootvars.new_boot_order(order or [], number)
        if new != order:
            efivarfs.write_var("BootOrder", GLOBAL, bootvars.pack_boot_order(new),
                               attrs | efivarfs.NV_BS_RT, root)
    except efivarfs.EfiVarError as e:
        raise BootEntryError(e.errno or 0, f"cannot write the boot entry: {e}") from e
    return Written(number, name, option.description, new, None, old is not None)


def reset(root: str | Path = efivarfs.EFIVARFS) -> list[str]:
    """Remove only cloudboot's Boot####, their BootOrder slots and a BootNext naming one.

    Returns one line per change."""
    entries = read_entries(root)
    attrs, order = _read_order("BootOrder", root)
    nxt_raw = efivarfs.read_var("BootNext", GLOBAL, root)
    nxt = None
    if nxt_raw is not None:
        try:
            nxt = bootvars.unpack_boot_next(nxt_raw[1])
        except ValueError:
            nxt = None
    plan = bootvars.reset_plan(entries, order, nxt)
    lines = []
    try:
        if plan.boot_order is not None:  # first, so no BootOrder slot ever dangles
            efivarfs.write_var("BootOrder", GLOBAL, bootvars.pack_boot_order(plan.boot_order),
                               attrs | efivarfs.NV_BS_RT, root)
            lines.append("BootOrder " + ",".join(f"{n:04X}" for n in plan.boot_order))
        if plan.delete_boot_next:
            efivarfs.delete_var("BootNext", GLOBAL, root)
            lines.append("delete BootNext")
        for n in plan.delete:
            opt = entries[n]
            efivarfs.delete_var(bootvars.boot_name(n), GLOBAL, root)
            lines.append(f"delete {bootvars.boot_name(n)} "
                         f"{opt.description if opt else ''!r}")
    except efivarfs.EfiVarError as e:
        raise BootEntryError(e.errno or 0, f"reset: {e}") from e
    return lines
