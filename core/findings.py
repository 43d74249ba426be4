"""Failure messages in one shape: what is wrong — count and % — first examples — where — the fix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Finding:
    """A problem found by a check; ``examples`` is the whole list, the message shows a few."""

    what: str
    examples: Sequence[str] = field(default_factory=tuple)
    total: int | None = None  # the population the examples come from, for the percentage
    where: str = ""
    fix: str = ""
    count: int | None = None  # defaults to len(examples)

    @property
    def n(self) -> int:
        return self.count if self.count is not None else len(self.examples)

    def message(self) -> str:
        parts = [self.what]
        if self.total:
            parts.append(f"{self.n:,} of {self.total:,} ({100.0 * self.n / self.total:.2f}%)")
        elif self.examples and self.n > 1:
            parts.append(f"{self.n:,} found")
        if self.examples:
            shown = ", ".join(str(e) for e in list(self.examples)[:MAX_EXAMPLES])
            more = f", … (+{self.n - MAX_EXAMPLES:,} more)" if self.n > MAX_EXAMPLES else ""
            parts.append(f"first: {shown}{more}" if self.n > 1 else f"{shown}")
        if self.where:
            parts.append(f"in {self.where}")
        if self.fix:
            parts.append(f"fix: {self.fix}")
        return " — ".join(parts)

