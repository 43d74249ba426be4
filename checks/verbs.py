"""What checks call: the ``asset`` fixture's verbs, and the typed outcomes they raise.

A check never formats a status into text for the report to parse back: ``CheckFailed`` and
``CheckSkipped`` carry (status, problem, fix) as data, and the plugin copies them into the test
report's ``user_properties``, which cross xdist unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from checks.session import Checkup
from preflight_core.findings import Finding, Fix, Status, human_bytes
from preflight_core.presence import AssetState, asset_state
from preflight_core.registry import Asset

OUTCOME_KEY = "preflight_outcome"  # {"status", "problem", "fix", "fix_commands", "unexpected", "says_fetch",
#                                      "findings", "check"}
ASSET_KEY = "preflight_asset"
REQUIRED_KEY = "preflight_required"
WARNING_KEY = "preflight_warning"
INFO_KEY = "preflight_info"
SIZE_KEY = "preflight_size"
FIELD_KEY = "preflight_field"


def outcome(status: Status, problem: str, fix: Fix | str = "", unexpected: bool = False,
            says_fetch: bool = False, findings: Sequence[Finding] = ()) -> dict:
    """A check's result as data. ``unexpected``: an exception no check classified (``could_not_check``);
    ``says_fetch``: the problem already holds what ``--fetch-missing`` tried (else the report adds it);
    ``findings``: what ``problem`` says, as data, so the report can sum the shards of one check.
    The plugin adds ``check``: which check this is, the same for each of its parametrizations."""
    fix = fix if isinstance(fix, Fix) else Fix(fix)
    return {"status": str(status), "problem": problem, "fix": fix.text, "fix_commands": list(fix.commands),
            "fix_then": list(fix.then), "unexpected": unexpected, "says_fetch": says_fetch, "findings": [f.as_data() for f in findings]}


class CheckFailed(pytest.fail.Exception):
    """A check's failure, with its status and fix as data."""

    def __init__(self, status: Status, problem: str, fix: Fix | str = "", says_fetch: bool = False,
                 findings: Sequence[Finding] = ()):
        self.preflight_outcome = outcome(status, problem, fix, says_fetch=says_fetch, findings=findings)
        text = f"{problem} — fix: {fix}" if str(fix) else problem
        super().__init__(f"{status}: {text}", pytrace=False)


class CheckSkipped(pytest.skip.Exception):
    """A check that did not run, and why: optional-absent, not-checked or not-requested."""

    def __init__(self, status: Status, problem: str, fix: Fix | str = "", says_fetch: bool = False):
        self.preflight_outcome = outcome(status, problem, fix, says_fetch=says_fetch)
        super().__init__(f"{status}: {problem}", _use_item_location=True)


def expect_none(findings: list[Finding]) -> None:
    """Fail (broken) with the findings, in the shape what — count % — examples — where — fix."""
    if findings:
        fix = next((f.the_fix for f in findings if f.the_fix), Fix())
        raise CheckFailed(Status.BROKEN, "\n".join(f.problem() for f in findings), fix, findings=findings)


def could_not_check(exc: BaseException, where: Path | str | None) -> dict:
    """An exception no check classified: not-checked, naming the exception and what was being read."""
    text = " ".join(str(exc).split())[:300] or "(no message)"
    filename = getattr(exc, "filename", None)
    read = f" while reading {filename}" if filename else (f" while checking {where}" if where else "")
    return outcome(Status.NOT_CHECKED, f"could not check: {type(exc).__name__}: {text}{read}",
                   "this is a bug in preflight or an unreadable file: rerun with --tb=short to see where",
                   unexpected=True)


def for_assets(*names: str) -> list:
    """Parametrize one check over several assets: ``@pytest.mark.parametrize("model", for_assets(...))``."""
    return [pytest.param(n, marks=pytest.mark.asset(n), id=n) for n in names]


class AssetCheck:
    """The asset a check belongs to (``asset.spec`` is its registry entry), with the verbs checks use."""

    def __init__(self, spec: Asset, checkup: Checkup, node: pytest.Item):
        self.spec = spec
        self.checkup = checkup
        self.world = checkup.world
        self.required = dict(node.user_properties).get(REQUIRED_KEY, True)
        self._node = node

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def facts(self):
        """What the world under check expects of this asset (the registry's, or the tiny world's)."""
        return self.world.facts_for(self.spec)

    @property
    def path(self) -> Path:
        return self.world.path(self.spec)

    @property
    def fix(self) -> Fix:
        return self.checkup.fix(self.spec)

    def state(self) -> tuple[AssetState, str]:
        """(present | absent | broken, detail)."""
        return asset_state(self.world, self.spec)

    # ------------------------------------------------------------------ verbs

    def fail(self, problem: str, fix: Fix | str | None = None, status: Status = Status.BROKEN):
        raise CheckFailed(status, problem, self.fix if fix is None else fix)

    def skip(self, status: Status, problem: str, fix: Fix | str = ""):
        raise CheckSkipped(status, problem, fix)

    def check_present(self) -> None:
        """The presence check: a required asset that is absent fails; an optional one skips.

        What a failed ``--fetch-missing`` tried is part of the message where this process fetched; under
        xdist the fetch ran in the controller, and the report adds it to the row there.
        """
        state, detail = self.state()
        fix = self.fix
        fetched = self.checkup.fetched.get(self.name)
        says_fetch = fetched is not None and not fetched.ok
        if says_fetch:
            detail = f"{detail}; --fetch-missing tried: {fetched.message}"
            fix = fetched.fix or fix
        if state is AssetState.BROKEN:
            raise CheckFailed(Status.BROKEN, detail, fix, says_fetch)
        if state is AssetState.ABSENT:
            if self.required:
                raise CheckFailed(Status.MISSING, f"{self.spec.title}: {detail}", fix, says_fetch)
            raise CheckSkipped(Status.OPTIONAL_ABSENT, f"{self.spec.title} is optional for "
                               f"{self.checkup.selection.describe()}: {detail}", fix, says_fetch)

    def needs_present(self) -> None:
        """Every other check of an asset: nothing to check when it is not there.

        Skipped when the presence check already says so; failed when that check is not selected
        (e.g. `-m model`), so a required asset that is absent can never read as ready.
        """
        state, detail = self.state()
        if state is AssetState.PRESENT:
            return
        if self.required and not self.checkup.presence_selected.get(self.name):
            self.fail(f"{self.spec.title}: {detail}",
                      status=Status.MISSING if state is AssetState.ABSENT else Status.BROKEN)
        status = Status.OPTIONAL_ABSENT if state is AssetState.ABSENT and not self.required else Status.NOT_CHECKED
        self.skip(status, f"{self.name} is {state} ({detail})")

    def needs(self, other: str, what: object, why: str) -> None:
        """A cross-check that needs another asset's data (``what``); skip as not-checked without it."""
        if what is None:
            self.skip(Status.NOT_CHECKED, f"{why} needs {other}, which is missing or unreadable (see its row)")

    # ------------------------------------------------------------------ what the row shows

    def record_size(self, n_bytes: int, n_files: int | None = None) -> None:
        files = f", {n_files:,} files" if n_files is not None else ""
        self._node.user_properties.append((SIZE_KEY, f"{human_bytes(n_bytes)}{files}"))
        self.record_field("bytes", int(n_bytes))

    def record_field(self, key: str, value: object) -> None:
        """A per-asset fact for the JSON report (e.g. ``revision``, ``weights_sha256``); JSON-serialisable."""
        self._node.user_properties.append((FIELD_KEY, (key, value)))

    def info(self, message: str) -> None:
        """A fact worth a line in the readiness table (load time, memory, device name)."""
        self._node.user_properties.append((INFO_KEY, message))

    def warn(self, message: str) -> None:
        """A warning that does not fail the check; shown once, in the readiness table (and the JSON)."""
        self._node.user_properties.append((WARNING_KEY, message))
