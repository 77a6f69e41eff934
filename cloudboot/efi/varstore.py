"""OVMF/AAVMF variable store files on the host: inspect, reset, pre-seed.

virt-firmware finds and validates the edk2 NvData volume; the variable records in it are edited
the way the firmware itself does: a deleted variable only has its state byte cleared, a new or
changed one is appended in the free space (compacting live records only when it runs out). So
every record we do not touch stays byte-for-byte where it was. (virt-firmware's own rewrite keys
variables by name alone, and OVMF stores some names under two GUIDs: it would drop one.)
Our devpath/loadopt codec decodes the Boot####; bootvars decides what changes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virt.firmware.varstore import edk2  # type: ignore[import-untyped]

from cloudboot.efi import bootvars, loadopt
from cloudboot.efi import guid as _guid
from cloudboot.efi.efivarfs import NV_BS_RT
from cloudboot.fsutil import atomic_output

# edk2 AUTHENTICATED_VARIABLE_HEADER: StartId, State, Reserved, Attributes, MonotonicCount,
# TimeStamp (EFI_TIME), PubKeyIndex, NameSize, DataSize, VendorGuid; then name and data.
_HEADER = struct.Struct("<HBxIQ16sIII16s")
_START_ID = 0x55AA
_VAR_ADDED = 0x3F
_VAR_IN_DELETED_TRANSITION = 0xFE
_VAR_DELETED = 0xFD
_DELETED_STATE = _VAR_ADDED & _VAR_IN_DELETED_TRANSITION & _VAR_DELETED  # 0x3c, as OVMF writes


class VarStoreError(Exception):
    pass


@dataclass(frozen=True)
class _Record:
    offset: int
    size: int  # header + name + data, before alignment
    state: int
    attributes: int
    vendor: str
    name: str
    data: bytes


@dataclass(frozen=True)
class BootEntry:
    number: int
    attributes: int  # of the variable (NV/BS/RT), not of the load option
    data: bytes
    option: loadopt.LoadOption | None  # None when `data` does not decode
    error: str | None = None

    @property
    def name(self) -> str:
        return bootvars.boot_name(self.number)

    @property
    def ours(self) -> bool:
        return self.option is not None and loadopt.is_cloudboot(self.option)


@contextlib.contextmanager
def _quiet_exit(what: str) -> Iterator[None]:
    """virt-firmware calls sys.exit() on bad input; turn that into an error that says where."""
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setLevel(logging.ERROR)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    except SystemExit:
        detail = log.getvalue().strip() or "virt-firmware gave up"
        raise VarStoreError(f"{what}: {detail}") from None
    finally:
        root.removeHandler(handler)


def _align4(n: int) -> int:
    return (n + 3) & ~3


class VarStore:
    """One raw edk2 vars file (OVMF_VARS.fd, OVMF_VARS_4M.fd, AAVMF_VARS.fd copies)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise VarStoreError(f"{self.path}: no such variable store file")
        if not edk2.Edk2VarStore.probe(str(self.path)):
            raise VarStoreError(
                f"{self.path}: no edk2 NvData variable store found (an all-zero AAVMF "
                "template, or not a VARS file?)"
            )
        with _quiet_exit(f"{self.path}: cannot parse variable store"):
            store = edk2.Edk2VarStore(str(self.path))
        self.blob = bytearray(store.filedata)
        self.start, self.end = int(store.start), int(store.end)
        self._parse()

    def _parse(self) -> None:
        self.records: list[_Record] = []
        pos = self.start
        while pos + _HEADER.size <= self.end:
            (start_id, state, attr, _count, _time, _pk, nsize, dsize,
             vendor) = _HEADER.unpack_from(self.blob, pos)
            if start_id != _START_ID:
                break
            size = _HEADER.size + nsize + dsize
            if pos + size > self.end:
                raise VarStoreError(f"{self.path}: variable record at 0x{pos:x} runs past the "
                                    f"store end 0x{self.end:x}")
            name_b = bytes(self.blob[pos + _HEADER.size : pos + _HEADER.size + nsize])
            name = name_b.decode("utf-16-le", "surrogatepass").rstrip("\0")
            data = bytes(self.blob[pos + _HEADER.size + nsize : pos + size])
            self.records.append(_Record(pos, size, state, attr, _guid.from_bytes(vendor), name,
                                        data))
            pos = _align4(pos + size)
        self.free = pos
        if any(b != 0xFF for b in self.blob[self.free : self.end]):
            raise VarStoreError(f"{self.path}: bytes after the last variable (0x{self.free:x}) "
                                "are not free space; unknown layout, not touching it")

    def _live(self) -> dict[tuple[str, str], _Record]:
        live: dict[tuple[str, str], _Record] = {}
        for r in self.records:
            key = (r.name, r.vendor)
            if r.state == _VAR_ADDED:
                live[key] = r
            elif r.state == _VAR_ADDED & _VAR_IN_DELETED_TRANSITION:
                live.setdefault(key, r)  # the old copy of an interrupted update still counts
        return live

    def variables(self) -> dict[tuple[str, str], tuple[int, bytes]]:
        """(name, vendor GUID) -> (attributes, data) of every live variable."""
        return {k: (r.attributes, r.data) for k, r in self._live().items()}

    def get(self, name: str, vendor: str) -> tuple[int, bytes] | None:
        r = self._live().get((name, _guid.normalize(vendor)))
        return None if r is None else (r.attributes, r.data)

    def _mark_deleted(self, name: str, vendor: str) -> bool:
        found = False
        for r in self.records:
            if (r.name, r.vendor) == (name, vendor) and r.state in (_VAR_ADDED, 0x3E):
                self.blob[r.offset + 2] = _DELETED_STATE
                found = True
        self._parse()
        return found

    def delete(self, name: str, vendor: str) -> bool:
        return self._mark_deleted(name, _guid.normalize(vendor))

    def set(self, name: str, vendor: str, data: bytes, attributes: int = NV_BS_RT) -> None:
        vendor = _guid.normalize(vendor)
        name_b = name.encode("utf-16-le") + b"\0\0"
        record = _HEADER.pack(_START_ID, _VAR_ADDED, attributes, 0, bytes(16), 0, len(name_b),
                              len(data), _guid.to_bytes(vendor)) + name_b + data
        self._mark_deleted(name, vendor)
        if _align4(self.free + len(record)) > self.end:
            self._compact()
        if _align4(self.free + len(record)) > self.end:
            raise VarStoreError(f"{self.path}: variable store full: {name} needs "
                                f"{len(record)} bytes, {self.end - self.free} free")
        self.blob[self.free : self.free + len(record)] = record
        self._parse()

    def _compact(self) -> None:
        """Drop deleted records, as the firmware's reclaim does; live ones are copied as is."""
        region = bytearray()
        for r in self._live().values():
            region += self.blob[r.offset : r.offset + r.size]
            region += b"\xff" * (_align4(len(region)) - len(region))
        self.blob[self.start : self.end] = region + b"\xff" * (self.end - self.start - len(region))
        self._parse()

    def boot_entries(self) -> dict[int, BootEntry]:
        out: dict[int, BootEntry] = {}
        for (name, vendor), (attr, data) in self.variables().items():
            number = bootvars.boot_number(name)
            if number is None or vendor != _guid.EFI_GLOBAL_VARIABLE:
                continue
            try:
                out[number] = BootEntry(number, attr, data,
                                        loadopt.unpack(data, f"{self.path}: {name}"))
            except loadopt.LoadOptionError as e:
                out[number] = BootEntry(number, attr, data, None, str(e))
        return dict(sorted(out.items()))

    def options(self) -> dict[int, loadopt.LoadOption | None]:
        return {n: e.option for n, e in self.boot_entries().items()}

    def boot_order(self) -> list[int] | None:
        v = self.get("BootOrder", _guid.EFI_GLOBAL_VARIABLE)
        return None if v is None else bootvars.unpack_boot_order(v[1])

    def boot_next(self) -> int | None:
        v = self.get("BootNext", _guid.EFI_GLOBAL_VARIABLE)
        return None if v is None else bootvars.unpack_boot_next(v[1])

    def cloudboot_vars(self) -> dict[str, tuple[int, bytes]]:
        out = {}
        for name in _guid.CLOUDBOOT_VAR_NAMES:
            v = self.get(name, _guid.CLOUDBOOT_VENDOR)
            if v is not None:
                out[name] = v
        return out

    def save(self) -> None:
        """Write the file atomically; re-read the result to prove it holds what we meant."""
        want = self.variables()
        with atomic_output(self.path, mode=self.path.stat().st_mode & 0o777) as tmp:
            tmp.write_bytes(self.blob)
            got = VarStore(tmp).variables()
            if got != want:
                diff = sorted(set(got) ^ set(want)) or [k for k in want if got[k] != want[k]]
                raise VarStoreError(f"{self.path}: rewritten store differs in {diff[:3]}")


def _order_text(order: list[int] | None) -> str:
    return "(none)" if order is None else ",".join(f"{n:04X}" for n in order) or "(empty)"


def _entry_json(e: BootEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"number": f"{e.number:04X}", "name": e.name,
                           "variable_attributes": e.attributes, "cloudboot": e.ours}
    if e.option is None:
        out.update(error=e.error, raw=e.data.hex())
        return out
    opt = e.option
    text = opt.optional_text()
    out.update(
        description=opt.description,
        attributes=opt.attributes,
        active=opt.active,
        device_path=opt.path_text(),
        file_path=opt.file_path,
        optional_data=text if text is not None else opt.optional_data.hex(),
        optional_data_is_text=text is not None,
    )
    return out


def describe(path: str | Path) -> dict[str, Any]:
    """JSON-able summary for `cloudboot inspect`."""
    store = VarStore(path)
    cb_vars = {}
    for name, (attr, data) in store.cloudboot_vars().items():
        # Encoding is the writer's choice: accept UCS-2 (EFI's own) or UTF-8.
        text = loadopt.decode_ucs2_text(data)
        if text is None and _utf8(data):
            text = data.decode("utf-8").rstrip("\0")
        cb_vars[name] = {"attributes": attr, "text": text, "hex": data.hex()}
    nxt = store.boot_next()
    return {
        "path": str(store.path),
        "boot_order": None if (o := store.boot_order()) is None else [f"{n:04X}" for n in o],
        "boot_next": None if nxt is None else f"{nxt:04X}",
        "entries": [_entry_json(e) for e in store.boot_entries().values()],
        "cloudboot_vars": cb_vars,
    }


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def reset(path: str | Path, dry_run: bool = False) -> list[str]:
    """Remove cloudboot's Boot####, their BootOrder slots and a BootNext naming one of them.

    Returns one line per change (the same lines with dry_run, which writes nothing).
    """
    store = VarStore(path)
    entries = store.boot_entries()
    order, nxt = store.boot_order(), store.boot_next()
    plan = bootvars.reset_plan({n: e.option for n, e in entries.items()}, order, nxt)
    lines = []
    g = _guid.EFI_GLOBAL_VARIABLE
    for n in plan.delete:
        e = entries[n]
        assert e.option is not None
        lines.append(f"delete {e.name} {e.option.description!r}: {e.option.path_text()}")
        store.delete(e.name, g)
    if plan.boot_order is not None:
        lines.append(f"BootOrder {_order_text(order)} -> {_order_text(plan.boot_order)}")
        old = store.get("BootOrder", g)
        store.set("BootOrder", g, bootvars.pack_boot_order(plan.boot_order),
                  old[0] if old else NV_BS_RT)
    if plan.delete_boot_next:
        lines.append(f"delete BootNext (was {nxt:04X})")
        store.delete("BootNext", g)
    if lines and not dry_run:
        store.save()
    return lines


def add_cloudboot_entry(path: str | Path, option: loadopt.LoadOption, *,
                        boot_next: bool = False) -> int:
    """Place `option` the way cloudboot-init does; returns the Boot#### number used.

    Reuses our earlier entry (never a foreign one), then puts it first in BootOrder, or sets
    BootNext instead when `boot_next`.
    """
    if not loadopt.is_cloudboot(option):
        raise VarStoreError(f"{path}: option {option.description!r} is not a cloudboot entry "
                            f"(description must start {loadopt.DESCRIPTION_PREFIX!r})")
    store = VarStore(path)
    g = _guid.EFI_GLOBAL_VARIABLE
    number = bootvars.choose_boot_number(store.options(), option.description)
    store.set(bootvars.boot_name(number), g, option.pack(), NV_BS_RT)
    if boot_next:
        store.set("BootNext", g, bootvars.pack_boot_next(number), NV_BS_RT)
    else:
        order = bootvars.new_boot_order(store.boot_order() or [], number)
        store.set("BootOrder", g, bootvars.pack_boot_order(order), NV_BS_RT)
    store.save()
    return number


def set_cloudboot_var(path: str | Path, name: str, data: bytes,
                      attributes: int = NV_BS_RT) -> None:
    """Write one of our vendor variables (CloudBootTarget, CloudBootCmdline, CloudBootMark)."""
    if name not in _guid.CLOUDBOOT_VAR_NAMES:
        raise VarStoreError(f"{path}: {name!r} is not one of {_guid.CLOUDBOOT_VAR_NAMES}")
    store = VarStore(path)
    store.set(name, _guid.CLOUDBOOT_VENDOR, data, attributes)
    store.save()
