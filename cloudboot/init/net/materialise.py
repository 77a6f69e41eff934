"""Materialise an OCI target: pull its kernel, initrd, modules and cmdline layers into /run.

A target lists refs in slots (`index`, `kernel`, `initrd` [...], `modules` [...], or a bare
`cloudboot.image=` ref, which is like `index`). Each ref is resolved to this machine's
manifest; the layers of the roles its slot provides are taken. A later slot overrides an
earlier one role by role (a `kernel` ref replaces the index's kernel); refs in the same slot
add up (`initrd = [a, b]`). Initrds, then modules archives (cpio+gzip), are concatenated into
one initrd: the kernel unpacks concatenated archives in order. Every blob is digest-checked
by the client before it is kept. Standard library only: runs as PID 1.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cloudboot.oci.client import OCIError, Registry
from cloudboot.oci.manifest import Descriptor, Platform
from cloudboot.oci.pull import layers_by_role, resolve
from cloudboot.oci.ref import Reference, parse_ref

KERNEL_CAP = 256 << 20
INITRD_CAP = 1 << 30
CMDLINE_CAP = 64 << 10
# slot -> the layer roles a ref in that slot contributes
SLOT_ROLES = {
    "index": ("kernel", "initrd", "modules", "cmdline"),
    "image": ("kernel", "initrd", "modules", "cmdline"),
    "kernel": ("kernel", "cmdline"),
    "initrd": ("initrd",),
    "modules": ("modules",),
}


@dataclass
class Pulled:
    kernel: Path
    initrd: Path | None
    cmdline: str | None  # from a cmdline layer
    refs: list[str] = field(default_factory=list)  # digest-pinned manifests used
    bytes: int = 0
    seconds: float = 0.0
    kernel_bytes: int = 0
    kernel_seconds: float = 0.0


def plan_layers(reg: Registry, slots: list[tuple[str, str]], platform: Platform
                ) -> tuple[dict[str, list[tuple[Reference, Descriptor]]], list[str]]:
    """role -> [(pinned ref, layer)] after the override rules; and the manifests used."""
    chosen: dict[str, list[tuple[Reference, Descriptor]]] = {}
    owner: dict[str, str] = {}
    pinned_refs = []
    for slot, text in slots:
        roles = SLOT_ROLES[slot]
        try:
            ref = parse_ref(text)
        except ValueError as e:
            raise OCIError("manifest", f"{slot} = {text!r}: {e}") from None
        pinned, manifest = resolve(reg, ref, platform)
        pinned_refs.append(str(pinned))
        layers = layers_by_role(pinned, manifest, roles)
        got: dict[str, list[tuple[Reference, Descriptor]]] = {}
        for d in layers:
            assert d.role is not None
            got.setdefault(d.role, []).append((pinned, d))
        for role, items in got.items():
            if owner.get(role) == slot and slot in ("initrd", "modules"):
                chosen[role] += items
            else:
                chosen[role] = items
            owner[role] = slot
    return chosen, pinned_refs


def pull(reg: Registry, slots: list[tuple[str, str]], platform: Platform, out: Path, *,
         log: Callable[[str], None] | None = None) -> Pulled:
    t0 = time.monotonic()
    chosen, refs = plan_layers(reg, slots, platform)
    if "kernel" not in chosen:
        where = ", ".join(f"{s}={r}" for s, r in slots)
        raise OCIError("media-type", f"no kernel layer for {platform} in {where}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    total = 0
    ref, desc = chosen["kernel"][-1]  # one kernel: the last one wins
    kernel = out / "vmlinuz"
    k0 = time.monotonic()
    kbytes = reg.fetch_blob(ref, desc, kernel, KERNEL_CAP)
    kseconds = time.monotonic() - k0
    total += kbytes
    if log:
        log(f"pulled kernel {desc.digest[:19]} ({kbytes} bytes) from {ref.host}/"
            f"{ref.repository}")
    parts = chosen.get("initrd", []) + chosen.get("modules", [])
    initrd = None
    if parts:
        initrd = out / "initrd"
        with open(initrd, "wb") as dst:
            for i, (ref, desc) in enumerate(parts):
                part = out / f"part{i}"
                total += reg.fetch_blob(ref, desc, part, INITRD_CAP)
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.unlink(part)
    cmdline = None
    if "cmdline" in chosen:
        ref, desc = chosen["cmdline"][-1]
        data = reg.blob_bytes(ref, desc, CMDLINE_CAP)
        total += len(data)
        cmdline = data.decode("utf-8", "replace").strip() or None
    return Pulled(kernel, initrd, cmdline, refs, total, round(time.monotonic() - t0, 3),
                  kbytes, round(kseconds, 3))
