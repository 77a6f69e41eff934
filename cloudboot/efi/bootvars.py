"""Boot#### numbering, BootOrder and BootNext: the rules of DESIGN §5 as pure functions.

`entries` maps a Boot#### number to its decoded LoadOption, or to None when the variable exists
but could not be decoded (it still counts as taken and as not ours).

Standard library only: the guest init imports this.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cloudboot.efi.loadopt import LoadOption, is_cloudboot

BOOT_NAME = re.compile(r"Boot([0-9A-F]{4})")


class BootVarError(ValueError):
    pass


def boot_name(number: int) -> str:
    if not 0 <= number <= 0xFFFF:
        raise BootVarError(f"boot option number {number} outside 0..0xFFFF")
    return f"Boot{number:04X}"


def boot_number(name: str) -> int | None:
    """4-hex-digit number of a 'Boot####' name (upper case, as the spec writes), else None."""
    m = BOOT_NAME.fullmatch(name)
    return int(m.group(1), 16) if m else None


def pack_boot_order(order: Iterable[int]) -> bytes:
    order = list(order)
    for n in order:
        boot_name(n)  # range check
    return struct.pack(f"<{len(order)}H", *order)


def unpack_boot_order(data: bytes) -> list[int]:
    if len(data) % 2:
        raise BootVarError(f"BootOrder has odd length {len(data)}: not a UINT16 array")
    return list(struct.unpack(f"<{len(data) // 2}H", data))


def pack_boot_next(number: int) -> bytes:
    boot_name(number)
    return struct.pack("<H", number)


def unpack_boot_next(data: bytes) -> int:
    if len(data) != 2:
        raise BootVarError(f"BootNext must be 2 bytes, got {len(data)}")
    return int(struct.unpack("<H", data)[0])


def ours(entries: Mapping[int, LoadOption | None]) -> list[int]:
    """Numbers of the entries cloudboot wrote, ascending."""
    return sorted(n for n, opt in entries.items() if opt is not None and is_cloudboot(opt))


def choose_boot_number(entries: Mapping[int, LoadOption | None],
                       description: str | None = None) -> int:
    """Where to write our entry: never over an entry cloudboot did not write.

    Prefer our entry with the same `description`, then any of ours (lowest first), then the
    lowest free number.
    """
    mine = ours(entries)
    if description is not None:
        for n in mine:
            opt = entries[n]
            if opt is not None and opt.description == description:
                return n
    if mine:
        return mine[0]
    for n in range(0x10000):
        if n not in entries:
            return n
    raise BootVarError("no free Boot#### number: all 65536 are taken")


def new_boot_order(order: Iterable[int], our_number: int) -> list[int]:
    """Ours first, every other entry kept in its order, no duplicates."""
    out = [our_number]
    for n in order:
        if n not in out:
            out.append(n)
    return out


@dataclass(frozen=True)
class ResetPlan:
    delete: list[int]  # Boot#### numbers to delete
    boot_order: list[int] | None  # new BootOrder, None when it does not change
    delete_boot_next: bool


def reset_plan(entries: Mapping[int, LoadOption | None], order: list[int] | None,
               boot_next: int | None) -> ResetPlan:
    """Remove only our entries, their BootOrder slots and a BootNext pointing at one of them."""
    mine = ours(entries)
    new_order = None
    if order is not None:
        kept = [n for n in order if n not in mine]
        if kept != order:
            new_order = kept
    return ResetPlan(mine, new_order, boot_next is not None and boot_next in mine)
