"""Outcomes as data: a row's status, a fix (text for a person + the commands that repair it), findings.

Every failure message has one shape: what is wrong — count and % — first examples — where — fix.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_EXAMPLES = 5


class Status(enum.StrEnum):
    """What the readiness table says of an asset (and of one check, before rows are summed up)."""

    READY = "ready"
    MISSING = "missing"
    BROKEN = "broken"
    OPTIONAL_ABSENT = "optional-absent"
    NOT_CHECKED = "not-checked"
    # A check the user chose not to run (--device cpu, no --deep): says so, never a gap.
    NOT_REQUESTED = "not-requested"


@dataclass(frozen=True)
class Fix:
    """How to repair something: ``text`` for a person; ``commands`` when the repair is mechanical.

    ``commands`` run in order from the project root repair the row; empty when a person must act
    first (e.g. download the ImageNet tar with an account).
    """

    text: str = ""
    commands: tuple[str, ...] = ()
    # Commands to run after a person's step (download the tar with an account, then run …): the end of
    # ``text``, not mechanical (so not ``commands``), but printed whole on lines of their own all the same.
    then: tuple[str, ...] = ()

    @classmethod
    def run(cls, *commands: str) -> Fix:
        """A fix that is just these commands."""
        return cls(" && ".join(commands), tuple(commands))

    @classmethod
    def after(cls, step: str, *commands: str) -> Fix:
        """A person's ``step`` (ending in "then run"), then ``commands``; ``text`` says both."""
        return cls(f"{step} {' && '.join(commands)}", (), tuple(commands))

    @property
    def step(self) -> str:
        """``text`` without the ``then`` commands at its end (the person's part)."""
        tail = " " + " && ".join(self.then)
        return self.text[:-len(tail)] if self.then and self.text.endswith(tail) else self.text

    def __str__(self) -> str:
        return self.text

    def __bool__(self) -> bool:
        return bool(self.text or self.commands)

    def before(self, *commands: str, why: str = "") -> Fix:
        """This fix with ``commands`` first (e.g. ``mv`` a broken tree aside before re-fetching)."""
        lead = " && ".join(commands)
        text = f"{lead}{f' ({why})' if why else ''}, then {self.text}" if self.text else lead
        return Fix(text, tuple(commands) + self.commands if self.commands else (), self.then)


@dataclass(frozen=True)
class Finding:
    """A problem found by a check; ``examples`` is the whole list, the message shows a few."""

    what: str
    examples: Sequence[str] = field(default_factory=tuple)
    total: int | None = None  # the population the examples come from, for the percentage
    where: str = ""
    fix: Fix = Fix()  # text alone is taken as Fix(text)
    count: int | None = None  # defaults to len(examples)

    def __post_init__(self) -> None:
        if not isinstance(self.fix, Fix):
            object.__setattr__(self, "fix", Fix(str(self.fix)))

    @property
    def n(self) -> int:
        return self.count if self.count is not None else len(self.examples)

    @property
    def the_fix(self) -> Fix:
        return self.fix

    def problem(self) -> str:
        """The message without the fix: what — count and % — first examples — where."""
        parts = [self.what]
        if self.total:
            parts.append(f"{self.n:,} of {self.total:,} ({100.0 * self.n / self.total:.2f}%)")
        elif self.examples and self.n > 1:
            parts.append(f"{self.n:,} found")
        if self.examples:
            first = ", ".join(str(e) for e in list(self.examples)[:MAX_EXAMPLES])
            more = f", … (+{self.n - MAX_EXAMPLES:,} more)" if self.n > MAX_EXAMPLES else ""
            parts.append(f"first: {first}{more}" if self.n > 1 else first)
        if self.where:
            parts.append(f"in {self.where}")
        return " — ".join(parts)

    def message(self) -> str:
        fix = self.the_fix.text
        return f"{self.problem()} — fix: {fix}" if fix else self.problem()

    def as_data(self) -> dict:
        """What ``problem()`` shows, as plain data (the first examples only) that crosses xdist; no fix."""
        return {"what": self.what, "count": self.n, "total": self.total, "where": self.where,
                "examples": [str(e) for e in list(self.examples)[:MAX_EXAMPLES]]}

    @classmethod
    def from_data(cls, data: dict) -> Finding:
        return cls(data["what"], tuple(data["examples"]), data["total"], data["where"], count=data["count"])

    def plus(self, other: Finding) -> Finding:
        """This finding and the same finding in another shard of the same population (same what, total
        and where): the counts summed, the first examples in name order."""
        examples = tuple(sorted((*self.examples, *other.examples)))[:MAX_EXAMPLES]
        return Finding(self.what, examples, self.total, self.where, self.fix, count=self.n + other.n)


def human_bytes(n: float) -> str:
    """IEC units, as everywhere in preflight: 512 B, 34.5 KiB, 1.4 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def shown(text: object) -> str:
    """``text`` fit for a terminal, a JSON report and JUnit: the one escape for anything from outside.

    File names, HTTP reason phrases, headers, server bodies, a client's error message: undecodable
    bytes (``surrogateescape``) become ``\\xff``, control characters (ESC, BEL, NUL, newlines, tabs)
    ``\\x1b``, ``\\n``, ``\\t``, so nothing can move the cursor, clear the screen or paint a verdict.
    """
    text = str(text)
    if text.isprintable():
        return text
    try:  # surrogate-escaped bytes of a file name -> their bytes, then shown as \xNN
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)

