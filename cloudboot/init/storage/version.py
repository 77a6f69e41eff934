"""Order kernel version strings the way dpkg orders versions (so 6.10 > 6.9, 10 > 9, ~ < "").

The whole string is compared as one upstream version: kernel release strings such as
"6.1.0-10-cloud-amd64" or "5.14.0-427.13.1.el9_4.x86_64" carry no epoch/revision split.
"""

from __future__ import annotations

import functools


def _char_order(c: str) -> int:
    # dpkg: "~" sorts before everything, even the end of a part; letters before other symbols.
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def compare(a: str, b: str) -> int:
    """Return -1, 0 or 1 as `a` is older than, equal to or newer than `b`."""
    i = j = 0
    while i < len(a) or j < len(b):
        # non-digit run, compared character by character
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ca = _char_order(a[i]) if i < len(a) else 0
            cb = _char_order(b[j]) if j < len(b) else 0
            if ca != cb:
                return -1 if ca < cb else 1
            i += 1
            j += 1
        # digit run, compared as a number
        si = i
        while i < len(a) and a[i].isdigit():
            i += 1
        sj = j
        while j < len(b) and b[j].isdigit():
            j += 1
        na = int(a[si:i] or "0")
        nb = int(b[sj:j] or "0")
        if na != nb:
            return -1 if na < nb else 1
    return 0


sort_key = functools.cmp_to_key(compare)
"""Use as `sorted(versions, key=version.sort_key)` (oldest first)."""
