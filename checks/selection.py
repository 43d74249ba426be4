"""What a run covers: the `-m` expression (which assets, required or optional) and what narrowed it.

The marker expression language is pytest's own (`and`, `or`, `not`, parentheses, marker names);
it is small enough to evaluate here rather than through pytest's private parser.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from preflight_core.registry import ASSETS, SELECTORS, Asset

_TOKEN = re.compile(r"\s*(\(|\)|[\w.+-]+)")


class MarkExpressionError(ValueError):
    pass


@functools.lru_cache(maxsize=64)
def _tokens(expr: str) -> tuple[str, ...]:
    out, pos = [], 0
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise MarkExpressionError(f"cannot read -m {expr!r} at {expr[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
    return tuple(out)


def matches(markexpr: str, names: Iterable[str]) -> bool:
    """Does a check carrying the markers ``names`` match ``-m markexpr``? (Empty: everything.)"""
    if not markexpr.strip():
        return True
    names, tokens, pos = set(names), _tokens(markexpr), 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def or_expr() -> bool:
        value = and_expr()
        while peek() == "or":
            take()
            value = and_expr() or value
        return value

    def and_expr() -> bool:
        value = not_expr()
        while peek() == "and":
            take()
            value = not_expr() and value
        return value

    def not_expr() -> bool:
        token = peek()
        if token == "not":
            take()
            return not not_expr()
        if token == "(":
            take()
            value = or_expr()
            if peek() != ")":
                raise MarkExpressionError(f"unbalanced parentheses in -m {markexpr!r}")
            take()
            return value
        if token is None or token in ("and", "or", ")"):
            raise MarkExpressionError(f"cannot read -m {markexpr!r}")
        return take() in names

    value = or_expr()
    if peek() is not None:
        raise MarkExpressionError(f"cannot read -m {markexpr!r} at {peek()!r}")
    return value


def unknown_markers(markexpr: str, registered: Iterable[str]) -> list[str]:
    """Names in `-m` that no plugin registered: a typo would otherwise select nothing (exit 5, no table)."""
    known = {line.split(":")[0].split("(")[0].strip() for line in registered}
    return [t for t in _tokens(markexpr) if t not in ("and", "or", "not", "(", ")") and t not in known]


def marker_table() -> str:
    """preflight's markers for a person, one group a line."""
    from preflight_core.registry import EXPERIMENTS, FAMILIES, PHASES

    return "\n".join(f"  {title:<12} {', '.join(names)}" for title, names in (
        ("phases", PHASES), ("experiments", EXPERIMENTS), ("families", FAMILIES)))


@dataclass(frozen=True)
class Selection:
    """What a `-m` expression selects: which assets it touches, which checks it requires.

    A check is judged per phase: it is required when the expression selects it as a check of a
    phase (or experiment) that requires its asset, e.g. `-m phase2` selects SigLIP2 checks for
    phase 2, where SigLIP2 is optional, although they carry the marker phase1 too.
    """

    markexpr: str = ""
    golden: bool = False  # --golden: the golden checks join the phases' checks

    def _matches(self, names: set[str]) -> bool:
        return matches(self.markexpr, names)

    def requires(self, asset: Asset, item_markers: set[str]) -> bool:
        others = set(SELECTORS)
        return any(self._matches(item_markers - (others - {s})) for s in asset.required_in)

    def touches(self, asset: Asset) -> bool:
        """Some check of ``asset`` is selected (decided before collection, for --fetch-missing)."""
        return bool(self._combos(asset))

    def _combos(self, asset: Asset) -> list[set[str]]:
        extras = list(asset.check_markers)
        combos = [{m for i, m in enumerate(extras) if mask >> i & 1} for mask in range(2 ** len(extras))]
        return [c for c in combos for s in asset.selectors if self._matches({s, asset.family} | c)]

    def excludes_family(self, family: str) -> bool:
        """No check of ``family`` can be selected (e.g. `-m "phase2 and not gpu"` for gpu)."""
        return not any(self.touches(a) for a in ASSETS.values() if a.family == family) and not any(
            family in c for a in ASSETS.values() for c in self._combos(a))

    @cached_property
    def touched(self) -> tuple[str, ...]:
        return tuple(name for name, a in ASSETS.items() if self.touches(a))

    def describe(self) -> str:
        what = f"-m {self.markexpr!r}" if self.markexpr else "all phases"
        return f"{what} with --golden" if self.golden and self.markexpr else what


def narrowing_arguments(args: Iterable[str], checks_dir: Path, invocation_dir: Path,
                        pyargs: bool = False) -> list[str]:
    """File or node-id arguments that select less than the whole checklist (``checks/``).

    ``pyargs``: under ``--pyargs`` the package's name (``checks``, as in another project) is the whole checklist.
    """
    checks_dir = checks_dir.resolve()
    narrowed = []
    for arg in args:
        target = arg.split("::", 1)[0]
        whole_package = pyargs and target == checks_dir.name and not (invocation_dir / target).exists()
        path = checks_dir if whole_package else (invocation_dir / target).resolve()
        covers_all = path == checks_dir or path in checks_dir.parents
        if "::" in arg or not covers_all:
            narrowed.append(arg)
    return narrowed
