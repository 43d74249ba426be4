"""The readiness table: per asset ready / missing / broken / optional-absent / not-checked.

Test outcomes are classified by the prefix the checks give their messages (``missing:``,
``broken:``, ``optional-absent:``, ``not-checked:``), so the same data survives the trip from
xdist workers to the controller as plain report text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from core.registry import ASSETS

STATUSES = ("ready", "missing", "broken", "optional-absent", "not-checked")
PREFIXES = ("missing", "broken", "optional-absent", "not-checked", "not-requested")


def classify(message: str) -> str | None:
    """The status a failure/skip message declares, if any."""
    head = message.strip().removeprefix("Skipped: ").removeprefix("Failed: ")
    for prefix in PREFIXES:
        if head.startswith(prefix + ":"):
            return prefix
    return None


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def first_line(message: str) -> str:
    text = message.strip().removeprefix("Skipped: ").removeprefix("Failed: ")
    for prefix in PREFIXES:
        text = text.removeprefix(prefix + ": ")
    return text.splitlines()[0] if text else ""


@dataclass
class AssetRow:
    name: str
    required: bool
    path: str = ""
    size: str = ""
    passed: int = 0
    failed: list[str] = field(default_factory=list)  # first lines of failure messages
    declared: set[str] = field(default_factory=set)  # statuses declared by failures/skips
    not_checked: list[str] = field(default_factory=list)  # checks that could not run
    not_requested: list[str] = field(default_factory=list)  # checks the user chose not to run
    notes: list[str] = field(default_factory=list)  # warnings
    info: list[str] = field(default_factory=list)  # facts: load time, memory, device
    fetched: str = ""
    fix_command: str = ""
    specific_fixes: list[str] = field(default_factory=list)  # fixes that failing checks named themselves
    fields: dict[str, object] = field(default_factory=dict)  # per-asset facts a check recorded (revision, …)

    @property
    def status(self) -> str:
        if "missing" in self.declared:
            return "missing"
        if self.failed:
            return "broken"
        if "optional-absent" in self.declared:
            return "optional-absent"
        if self.not_checked or not self.passed:
            return "not-checked"
        return "ready"

    @property
    def fix(self) -> str:
        """What a failing check itself said to do (e.g. the `mv` for a nested tree), else the asset's fix."""
        if self.status not in ("missing", "broken", "optional-absent"):
            return ""
        return "; or ".join(self.specific_fixes[:2]) if self.status == "broken" and self.specific_fixes \
            else self.fix_command

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "required": self.required,
            "path": self.path,
            "size": self.size,
            "problems": self.failed + [f"not checked: {m}" for m in self.not_checked],
            "not_requested": self.not_requested,
            "notes": self.notes,
            "info": self.info,
            "fetched": self.fetched or None,
            "fix": self.fix,
            **self.fields,
        }


class Report:
    def __init__(self, selection: str, fixes: dict[str, str] | None = None):
        self.selection = selection
        self.fixes = fixes or {}  # asset -> the command that fixes it here (default: the registry's)
        self.rows: dict[str, AssetRow] = {}

    def row(self, name: str, required: bool) -> AssetRow:
        if name not in self.rows:
            self.rows[name] = AssetRow(name, required, fix_command=self.fixes.get(name, ASSETS[name].fix))
        return self.rows[name]

    def add(self, name: str, required: bool, outcome: str, message: str, notes: list[str],
            info: list[str] = ()) -> None:
        row = self.row(name, required)
        row.notes.extend(n for n in notes if n not in row.notes)
        row.info.extend(n for n in info if n not in row.info)
        declared = classify(message) if message else None
        if declared == "not-requested":  # the user's choice (--device cpu, no --deep): not a gap
            if outcome == "skipped":
                line = first_line(message)
                if line not in row.not_requested:
                    row.not_requested.append(line)
            return
        if declared:
            row.declared.add(declared)
        if outcome == "passed":
            row.passed += 1
        elif outcome == "failed":
            asset = ASSETS[name]
            problem, _, fix = first_line(message).removeprefix(f"{name} ({asset.title}): ").partition(" — fix: ")
            row.failed.append(problem or "failed")
            if fix and fix != row.fix_command and fix not in row.specific_fixes:
                row.specific_fixes.append(fix)
        elif outcome == "skipped" and declared == "not-checked":
            line = first_line(message)
            if line not in row.not_checked:
                row.not_checked.append(line)

    @property
    def ok(self) -> bool:
        """Ready: nothing missing or broken, and nothing required left unchecked unless by choice."""
        return not any(r.status in ("missing", "broken") or (r.required and r.not_checked)
                       for r in self.rows.values())

    def ordered(self) -> list[AssetRow]:
        order = list(ASSETS)
        return sorted(self.rows.values(), key=lambda r: order.index(r.name))

    def as_dict(self) -> dict:
        return {"selection": self.selection, "ok": self.ok, "assets": [r.as_dict() for r in self.ordered()]}

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")

    def lines(self, width: int = 120) -> list[str]:
        rows = self.ordered()
        if not rows:
            return []
        head = ("asset", "status", "need", "location", "size")
        cells = [(r.name, r.status, "required" if r.required else "optional", r.path, r.size) for r in rows]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [fmt.format(*head).rstrip(), fmt.format(*("-" * w for w in widths))]
        for row, cell in zip(rows, cells):
            out.append(fmt.format(*cell).rstrip())
            for problem in row.failed[:4]:
                out.append(f"    ✗ {_cut(problem, width)}")
            if len(row.failed) > 4:
                out.append(f"    ✗ … and {len(row.failed) - 4} more failing checks")
            for line in row.not_checked[:3] if row.status not in ("missing", "optional-absent") else ():
                out.append(f"    - not checked: {_cut(line, width)}")
            for line in row.not_requested[:2] if row.status == "not-checked" else ():
                out.append(f"    - not checked (as asked): {_cut(line, width)}")
            for line in row.info:
                out.append(f"    · {_cut(line, width)}")
            for note in row.notes[:3]:
                out.append(f"    ! {_cut(note, width)}")
            if row.fetched:
                out.append(f"    ↓ {row.fetched}")
            if row.fix:
                out.append(f"    fix: {row.fix}")
        verdict = "READY" if self.ok else "NOT READY"
        out.append(f"{verdict} for {self.selection}")
        return out
