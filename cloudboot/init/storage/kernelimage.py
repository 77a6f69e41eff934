"""Recognise kernel image formats and strip compression wrappers that kexec cannot take.

arm64 Ubuntu ships `vmlinuz` as a plain gzip of the Image; newer arm64/riscv64/loong64
kernels are EFI zboot images (a small PE decompressor with the payload inside). kexec_file_load
wants the inner Image on those, so unwrap() peels both. Standard library only.
"""

from __future__ import annotations

import lzma
import re
import struct
import zlib

PE_MACHINES = {
    0x014C: "i386",
    0x8664: "x86_64",
    0x01C2: "arm (thumb)",
    0x01C4: "armv7",
    0xAA64: "arm64",
    0x5064: "riscv64",
    0x6264: "loongarch64",
}


class KernelImageError(ValueError):
    """A kernel image is in a form cloudboot-init cannot unpack."""


def is_efi_stub(data: bytes) -> bool:
    """True if `data` starts with an MZ header that points at a PE signature."""
    return _pe_offset(data) is not None


def _pe_offset(data: bytes) -> int | None:
    if len(data) < 0x40 or data[:2] != b"MZ":
        return None
    off = struct.unpack_from("<I", data, 0x3C)[0]
    if off + 6 > len(data) or data[off : off + 4] != b"PE\0\0":
        return None
    return off


def pe_machine(data: bytes) -> int | None:
    """The COFF machine field of a PE image (0x8664 x86_64, 0xAA64 arm64, ...), else None."""
    off = _pe_offset(data)
    return None if off is None else int(struct.unpack_from("<H", data, off + 4)[0])


def _zboot(data: bytes) -> tuple[str, bytes] | None:
    """(compression, payload) of an EFI zboot image, per the kernel's zboot-header.S."""
    if len(data) < 0x40 or data[:2] != b"MZ" or data[4:8] != b"zimg":
        return None
    offset, size = struct.unpack_from("<II", data, 8)
    comp = data[0x18:0x38].split(b"\0", 1)[0].decode("ascii", "replace")
    if offset + size > len(data) or size == 0:
        raise KernelImageError(
            f"EFI zboot image: payload {offset}+{size} runs past the file ({len(data)} bytes)"
        )
    return comp, data[offset : offset + size]


def _gunzip(data: bytes) -> bytes:
    # decompressobj tolerates the trailing size word / padding some builds append
    return zlib.decompressobj(wbits=31).decompress(data)


def _decompress(comp: str, payload: bytes) -> bytes:
    try:
        if comp == "gzip":
            return _gunzip(payload)
        if comp in ("xzkern", "xz"):
            return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(payload)
        if comp == "lzma":
            return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(payload)
    except (zlib.error, lzma.LZMAError) as e:
        raise KernelImageError(f"EFI zboot image: corrupt {comp} payload: {e}") from e
    if comp.startswith("zstd"):
        try:  # Python 3.14+ (the loong64 lane's runtime); absent on 3.11-3.13
            from compression import zstd  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            pass
        else:
            try:
                # one frame; zboot appends the size word after it (unused_data)
                return bytes(zstd.ZstdDecompressor().decompress(payload))
            except zstd.ZstdError as e:
                raise KernelImageError(f"EFI zboot image: corrupt zstd payload: {e}") from e
    hint = (" (zstd is in the Python standard library from 3.14 on only)"
            if comp.startswith("zstd") else "")
    raise KernelImageError(
        f"EFI zboot image compressed with {comp!r} cannot be unpacked here{hint}; "
        "boot it through Path C (the firmware runs the EFI stub), or use a gzip/xz kernel"
    )


def unwrap(data: bytes) -> bytes:
    """Return the bare kernel inside gzip and EFI zboot wrappers; other data unchanged."""
    for _ in range(4):  # wrappers nest at most a couple of times; the bound guards loops
        if data[:2] == b"\x1f\x8b":
            try:
                data = _gunzip(data)
            except zlib.error as e:
                raise KernelImageError(f"gzip-compressed kernel is corrupt: {e}") from e
            continue
        zb = _zboot(data)
        if zb is not None:
            data = _decompress(*zb)
            continue
        return data
    return data


def version_string(data: bytes) -> str | None:
    """The kernel release ("6.1.0-10-cloud-amd64") from a bzImage header or a Linux banner."""
    if len(data) > 0x210 and data[0x202:0x206] == b"HdrS":
        ptr = struct.unpack_from("<H", data, 0x20E)[0]
        if ptr:
            raw = data[0x200 + ptr : 0x200 + ptr + 256].split(b"\0", 1)[0]
            text = raw.decode("ascii", "replace").split(" ", 1)[0]
            if text:
                return text
    m = re.search(rb"Linux version (\S+) \(", data)
    return m.group(1).decode("ascii", "replace") if m else None


def describe(data: bytes) -> str:
    """One human line: format, architecture, EFI stub, version where known."""
    parts: list[str] = []
    if data[:2] == b"\x1f\x8b":
        parts.append("gzip-compressed")
    elif (zb := _zboot_safe(data)) is not None:
        parts.append(f"EFI zboot ({zb})")
    elif len(data) > 0x206 and data[0x202:0x206] == b"HdrS":
        parts.append("x86 bzImage")
    elif len(data) > 0x40 and data[0x38:0x3C] == b"ARM\x64":
        parts.append("arm64 Image")
    elif len(data) > 0x40 and data[0x38:0x3C] == b"RSC\x05":
        parts.append("riscv64 Image")
    elif len(data) > 0x28 and struct.unpack_from("<I", data, 0x24)[0] == 0x016F2818:
        parts.append("arm zImage")
    else:
        parts.append("unknown format")
    machine = pe_machine(data)
    if machine is not None:
        parts.append(f"EFI stub ({PE_MACHINES.get(machine, hex(machine))})")
    ver = version_string(data)
    if ver:
        parts.append(f"version {ver}")
    parts.append(f"{len(data)} bytes")
    return ", ".join(parts)


def _zboot_safe(data: bytes) -> str | None:
    try:
        zb = _zboot(data)
    except KernelImageError:
        return "truncated"
    return zb[0] if zb else None
