"""Boot#### numbering, BootOrder/BootNext and the reset plan (pure logic)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudboot.efi import bootvars as bv
from cloudboot.efi.loadopt import LoadOption

_prop = settings(database=None, max_examples=80, deadline=None)


def ours(target: str) -> LoadOption:
    return LoadOption(1, f"cloud-boot {target}")


def foreign(desc: str = "UEFI Misc Device") -> LoadOption:
    return LoadOption(1, desc)


def test_order_and_next_encoding() -> None:
    assert bv.pack_boot_order([0, 1, 0x1234]) == bytes.fromhex("000001003412")
    assert bv.unpack_boot_order(bytes.fromhex("000001003412")) == [0, 1, 0x1234]
    assert bv.unpack_boot_order(b"") == []
    assert bv.pack_boot_next(0x99) == b"\x99\x00"
    assert bv.unpack_boot_next(b"\x99\x00") == 0x99
    with pytest.raises(bv.BootVarError, match="odd length 3"):
        bv.unpack_boot_order(b"\0\0\0")
    with pytest.raises(bv.BootVarError, match="BootNext must be 2 bytes, got 4"):
        bv.unpack_boot_next(b"\0\0\0\0")
    with pytest.raises(bv.BootVarError, match="65536 outside"):
        bv.pack_boot_order([65536])


def test_names() -> None:
    assert bv.boot_name(0xA) == "Boot000A"
    assert bv.boot_number("Boot000A") == 10
    assert bv.boot_number("Boot000a") is None  # the spec spells the digits in upper case
    assert bv.boot_number("BootOrder") is None
    assert bv.boot_number("Boot00001") is None


def test_choose_prefers_same_target_then_any_of_ours_then_lowest_free() -> None:
    entries = {0: foreign(), 1: None, 3: ours("a"), 5: ours("b")}
    assert bv.choose_boot_number(entries, "cloud-boot b") == 5
    assert bv.choose_boot_number(entries, "cloud-boot c") == 3
    assert bv.choose_boot_number({0: foreign(), 1: None, 3: foreign()}, "cloud-boot c") == 2
    assert bv.choose_boot_number({}, "cloud-boot c") == 0


def test_choose_never_takes_a_foreign_or_unreadable_entry_even_when_full() -> None:
    full: dict[int, LoadOption | None] = {n: foreign() for n in range(0x10000)}
    full[7] = None
    with pytest.raises(bv.BootVarError, match="no free Boot####"):
        bv.choose_boot_number(full, "cloud-boot x")
    full[0xFFFE] = ours("x")
    assert bv.choose_boot_number(full, "cloud-boot y") == 0xFFFE


entry_values = st.one_of(st.none(), st.sampled_from([foreign(), foreign("cloud-bootx"),
                                                     ours("a"), ours("b")]))


@_prop
@given(st.dictionaries(st.integers(0, 40), entry_values, max_size=30),
       st.sampled_from(["cloud-boot a", "cloud-boot b", "cloud-boot z"]))
def test_choose_property(entries: dict[int, LoadOption | None], desc: str) -> None:
    n = bv.choose_boot_number(entries, desc)
    opt = entries.get(n)
    assert n not in entries or (opt is not None and opt.description.startswith("cloud-boot "))
    if any(o is not None and o.description == desc for o in entries.values()):
        assert opt is not None and opt.description == desc


@_prop
@given(st.lists(st.integers(0, 20), max_size=15), st.integers(0, 20))
def test_new_boot_order_property(order: list[int], mine: int) -> None:
    new = bv.new_boot_order(order, mine)
    assert new[0] == mine
    assert len(new) == len(set(new))
    others = [n for n in dict.fromkeys(order) if n != mine]
    assert new[1:] == others  # every other entry kept, in its order


def test_reset_plan_removes_only_ours() -> None:
    entries = {0: foreign(), 1: ours("a"), 2: None, 4: ours("b"), 6: foreign("cloud-bootx")}
    plan = bv.reset_plan(entries, [1, 0, 4, 2, 9, 6, 1], 4)
    assert plan.delete == [1, 4]
    assert plan.boot_order == [0, 2, 9, 6]  # foreign and dangling slots untouched
    assert plan.delete_boot_next
    keep = bv.reset_plan(entries, [0, 2], 0)
    assert keep.boot_order is None and not keep.delete_boot_next and keep.delete == [1, 4]
    nothing = bv.reset_plan({0: foreign()}, None, None)
    assert nothing == bv.ResetPlan([], None, False)
