"""The one exception that ends cloudboot-init's normal flow, and its failure categories.

Standard library only: runs as PID 1 in the bootstrap initramfs.
"""

from __future__ import annotations

# DESIGN §5 "Failure categories": every failed lab cell gets exactly one of these.
CATEGORIES: frozenset[str] = frozenset(
    {
        "firmware",
        "bootstrap-kernel",
        "init-plan",
        "init-network",
        "init-disk",
        "handoff",
        "target-kernel",
        "target-userspace",
        "timeout",
        "lab",
    }
)


class Fatal(Exception):
    """An error that stops the boot; main() turns it into exactly one `fatal` event."""

    def __init__(self, category: str, message: str) -> None:
        if category not in CATEGORIES:
            raise ValueError(
                f"unknown failure category {category!r} (known: {', '.join(sorted(CATEGORIES))})"
            )
        super().__init__(message)
        self.category = category
        self.message = message

    def __str__(self) -> str:
        return f"[{self.category}] {self.message}"
