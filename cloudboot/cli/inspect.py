"""`cloudboot inspect`: say what a UKI, boot.iso, cache disk or variable store holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cloudboot import pe
from cloudboot.init.storage.gptread import read_gpt
from cloudboot.init.storage.superblock import probe
from cloudboot.media.fatread import FatReader, FatReadError

FV_SIGNATURE_OFFSET = 40  # "_FVH" in an EFI firmware volume header (OVMF/AAVMF vars files)


class InspectError(ValueError):
    pass


def inspect_path(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            head = f.read(0x8010)
    except FileNotFoundError:
        raise InspectError(f"{path}: no such file") from None
    if head[:2] == b"MZ":
        return inspect_uki(path.read_bytes(), str(path))
    if head[FV_SIGNATURE_OFFSET : FV_SIGNATURE_OFFSET + 4] == b"_FVH":
        from cloudboot.efi import varstore

        try:
            return {"kind": "vars", **varstore.describe(path)}
        except varstore.VarStoreError as e:
            raise InspectError(str(e)) from None
    table = read_gpt(path)
    if table is None:
        raise InspectError(f"{path}: not a UKI, a GPT disk image or an EFI variable store")
    report: dict[str, Any] = {
        "kind": "boot.iso" if head[0x8001:0x8006] == b"CD001" else "disk",
        "path": str(path),
        "disk_guid": table.disk_guid,
        "partitions": [],
        "esp_files": [],
    }
    with open(path, "rb") as f:
        for p in table.partitions:
            fs = probe(path, p.first_lba * 512)
            report["partitions"].append({
                "number": p.number, "name": p.name, "type_guid": p.type_guid,
                "part_guid": p.part_guid, "first_lba": p.first_lba, "last_lba": p.last_lba,
                "fs": None if fs is None else {"fstype": fs.fstype, "label": fs.label,
                                               "uuid": fs.uuid},
            })
            if fs is not None and fs.fstype == "vfat" and not report["esp_files"]:
                try:
                    reader = FatReader(f, p.first_lba * 512)
                    entries = reader.walk()
                except FatReadError as err:
                    report["esp_error"] = str(err)
                    continue
                report["esp_files"] = [
                    {"path": e.path, "size": None if e.is_dir else e.size} for e in entries]
                for entry in entries:
                    if entry.path.upper().startswith("/EFI/BOOT/BOOT") and not entry.is_dir:
                        report["uki"] = inspect_uki(reader.read(entry.path), entry.path)
                    elif _staged_uki(entry.path) and not entry.is_dir:
                        # Path C's "uki" form (cloudboot/init/pathc/ukistage.py) on a cache disk.
                        report.setdefault("staged_ukis", []).append(
                            inspect_uki(reader.read(entry.path), entry.path))
    return report


def _staged_uki(path: str) -> bool:
    from cloudboot.init.pathc.bootentry import UKI_SUFFIX

    head, _, name = path.lower().rpartition("/")
    return head == "/efi/linux" and name.endswith(UKI_SUFFIX)


def inspect_uki(data: bytes, name: str) -> dict[str, Any]:
    try:
        img = pe.parse(data, name)
    except pe.PEError as e:
        raise InspectError(str(e)) from None

    def text(section: str) -> str | None:
        raw = img.section_data(section)
        return None if raw is None else raw.rstrip(b"\0").decode("utf-8", "replace")

    return {
        "kind": "uki" if img.section(".linux") else "pe",
        "path": name,
        "machine": pe.MACHINE_NAMES.get(img.machine, hex(img.machine)),
        "sections": [
            {"name": s.name, "virtual_address": s.virtual_address, "size": s.virtual_size}
            for s in img.sections
        ],
        "cmdline": text(".cmdline"),
        "osrel": text(".osrel"),
        "uname": text(".uname"),
        "problems": pe.check_uki(data, img.machine) if img.section(".linux") else [],
    }


def render(report: dict[str, Any]) -> str:
    """A human-readable rendering; nested values are shown compactly."""
    lines = [f"{report['path']}: {report['kind']}"]
    _render_items({k: v for k, v in report.items() if k not in ("path", "kind")}, "  ", lines)
    return "\n".join(lines)


def _render_items(items: dict[str, Any], indent: str, lines: list[str]) -> None:
    for key, value in items.items():
        if isinstance(value, list):
            lines.append(f"{indent}{key}:")
            lines.extend(f"{indent}  {json.dumps(v) if not isinstance(v, str) else v}"
                         for v in value)
        elif isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            _render_items(value, indent + "  ", lines)
        else:
            lines.append(f"{indent}{key}: {value}")
