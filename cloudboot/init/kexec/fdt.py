"""Flattened device tree (DTB) read and write, enough to rewrite /chosen for an arm64 kexec.

Format: the devicetree specification v0.4 §5 (header, memory reservation block, structure
block of tokens, strings block). Version 17 is written. Standard library only (guest code).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAGIC = 0xD00DFEED
BEGIN_NODE, END_NODE, PROP, NOP, END = 1, 2, 3, 4, 9
_HEADER = struct.Struct(">10I")


class FdtError(ValueError):
    pass


@dataclass
class Node:
    name: str
    props: dict[str, bytes] = field(default_factory=dict)  # insertion order is kept
    children: list[Node] = field(default_factory=list)

    def child(self, name: str) -> Node | None:
        return next((c for c in self.children if c.name == name), None)

    def ensure_child(self, name: str) -> Node:
        found = self.child(name)
        if found is None:
            found = Node(name)
            self.children.append(found)
        return found


@dataclass
class Tree:
    root: Node
    reserved: list[tuple[int, int]] = field(default_factory=list)  # (address, size)
    boot_cpuid: int = 0


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _cstr(data: bytes, off: int, what: str) -> tuple[str, int]:
    end = data.find(b"\0", off)
    if end < 0:
        raise FdtError(f"unterminated {what} at offset {off}")
    return data[off:end].decode("utf-8", "replace"), end + 1


def parse(data: bytes) -> Tree:
    if len(data) < _HEADER.size:
        raise FdtError(f"DTB of {len(data)} bytes is shorter than its header")
    (magic, total, off_struct, off_strings, off_rsv, version, _last, cpuid, size_strings,
     size_struct) = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise FdtError(f"not a DTB (magic {magic:#x})")
    if total > len(data) or version < 16:
        raise FdtError(f"DTB header: totalsize {total} of {len(data)} bytes, version {version}")
    strings = data[off_strings:off_strings + size_strings]
    reserved = []
    off = off_rsv
    while True:
        addr, size = struct.unpack_from(">QQ", data, off)
        off += 16
        if addr == 0 and size == 0:
            break
        reserved.append((addr, size))
    stack: list[Node] = []
    root: Node | None = None
    off = off_struct
    end = off_struct + size_struct if version >= 17 else total
    while off < end:
        (token,) = struct.unpack_from(">I", data, off)
        off += 4
        if token == BEGIN_NODE:
            name, nxt = _cstr(data, off, "node name")
            off = _align4(nxt)
            node = Node(name)
            if stack:
                stack[-1].children.append(node)
            elif root is None:
                root = node
            else:
                raise FdtError("DTB has more than one root node")
            stack.append(node)
        elif token == END_NODE:
            if not stack:
                raise FdtError(f"unbalanced END_NODE at offset {off - 4}")
            stack.pop()
        elif token == PROP:
            length, nameoff = struct.unpack_from(">II", data, off)
            off += 8
            if not stack:
                raise FdtError(f"property outside any node at offset {off - 12}")
            pname, _ = _cstr(strings, nameoff, "property name")
            stack[-1].props[pname] = data[off:off + length]
            off = _align4(off + length)
        elif token == NOP:
            continue
        elif token == END:
            break
        else:
            raise FdtError(f"unknown DTB token {token:#x} at offset {off - 4}")
    if root is None or stack:
        raise FdtError("DTB structure block ends inside a node" if stack else "DTB has no root")
    return Tree(root, reserved, cpuid)


def serialize(tree: Tree) -> bytes:
    strings = bytearray()
    offsets: dict[str, int] = {}
    body = bytearray()

    def name_off(name: str) -> int:
        if name not in offsets:
            offsets[name] = len(strings)
            strings.extend(name.encode() + b"\0")
        return offsets[name]

    def emit(node: Node) -> None:
        raw = node.name.encode() + b"\0"
        body.extend(struct.pack(">I", BEGIN_NODE) + raw + bytes(_align4(len(raw)) - len(raw)))
        for pname, value in node.props.items():
            body.extend(struct.pack(">III", PROP, len(value), name_off(pname)) + value
                        + bytes(_align4(len(value)) - len(value)))
        for c in node.children:
            emit(c)
        body.extend(struct.pack(">I", END_NODE))

    emit(tree.root)
    body.extend(struct.pack(">I", END))
    rsv = b"".join(struct.pack(">QQ", a, s) for a, s in tree.reserved) + bytes(16)
    off_rsv = _HEADER.size  # 40: already 8-aligned as the spec wants
    off_struct = off_rsv + len(rsv)
    off_strings = off_struct + len(body)
    total = off_strings + len(strings)
    header = _HEADER.pack(MAGIC, total, off_struct, off_strings, off_rsv, 17, 16,
                          tree.boot_cpuid, len(strings), len(body))
    return header + rsv + bytes(body) + bytes(strings)


def u64(value: int) -> bytes:
    return struct.pack(">Q", value)


def string(value: str) -> bytes:
    return value.encode() + b"\0"
