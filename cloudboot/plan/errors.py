"""The one exception the plan package raises."""

from __future__ import annotations


class PlanError(ValueError):
    """A plan is malformed or cannot be used; says which file, line and target.

    str() reads like ``plan.hcl:12: target "debian": two sources (disk and kernel); ...``
    with the parts that are unknown left out.
    """

    def __init__(
        self,
        message: str,
        filename: str | None = None,
        line: int | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.filename = filename
        self.line = line
        self.target = target

    def located(self, filename: str | None = None, target: str | None = None) -> PlanError:
        """Fill in the file or target when a lower layer did not know them."""
        if self.filename is None:
            self.filename = filename
        if self.target is None:
            self.target = target
        return self

    def __str__(self) -> str:
        where = ""
        if self.filename:
            where = self.filename + (f":{self.line}" if self.line else "") + ": "
        elif self.line:
            where = f"line {self.line}: "
        if self.target is not None:
            where += f'target "{self.target}": '
        return where + self.message
