"""Config problems: what is wrong, and exactly where."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding about one config file.

    ``path`` is a JSON path (``$.tools[0].server``); ``line`` and ``column`` are 1-based and
    present whenever the parser could tell. ``expected`` and ``found`` are short phrases; a
    ``found`` value that might be a secret is described by its type only.
    """

    file: str
    message: str
    path: str = "$"
    line: int | None = None
    column: int | None = None
    expected: str | None = None
    found: str | None = None
    severity: Severity = "error"
    code: str = "invalid"

    @property
    def location(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where

    def render(self) -> str:
        """One human line, plus expected/found details when they add something."""
        text = f"{self.location}: {self.severity}: {self.path}: {self.message}"
        details = []
        if self.expected:
            details.append(f"expected {self.expected}")
        if self.found:
            details.append(f"found {self.found}")
        if details:
            text += f" ({'; '.join(details)})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
