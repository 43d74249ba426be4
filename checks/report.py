"""The readiness table and the JSON report, summed up from typed outcomes; the plugin that prints them.

Each check reports (status, problem, fix) as data (``checks.verbs``); a row's status is derived
from its checks' outcomes, and the verdict from the rows, the run-wide problems and what ran.
"""

from __future__ import annotations

import json
import signal
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _pytest.junitxml import xml_key

from checks.gpus import sub_row_text
from checks.selection import narrowing_arguments
from checks.session import CHECKUP, NARROWED, Checkup, is_worker
from checks.verbs import ASSET_KEY, FIELD_KEY, INFO_KEY, OUTCOME_KEY, REQUIRED_KEY, SIZE_KEY, WARNING_KEY
from preflight_core.findings import Finding, Fix, Status, shown
from preflight_core.registry import ASSETS, AssetKind

CHECKS_DIR = Path(__file__).resolve().parent


@dataclass
class AssetRow:
    name: str
    required: bool
    path: str = ""
    size: str = ""
    asset_fix: Fix = field(default_factory=Fix)  # the asset's own fix, made to work here
    passed: int = 0
    failed: list[tuple[Status, str]] = field(default_factory=list)  # (missing | broken, problem)
    fixes: list[Fix] = field(default_factory=list)  # fixes that failing checks named themselves
    not_checked: list[str] = field(default_factory=list)  # checks that could not run, and why
    could_not_check: list[str] = field(default_factory=list)  # checks that raised what no check classified
    fetch_said: bool = False  # a check's problem already holds what --fetch-missing tried
    not_requested: list[str] = field(default_factory=list)  # checks the user chose not to run
    optional_absent: str = ""
    warnings: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)  # facts: load time, memory, device
    fetched: Any = None  # fetchers.plan.FetchOutcome (checks.fetching is the one module that imports fetchers)
    fields: dict[str, object] = field(default_factory=dict)  # per-asset facts a check recorded (revision, …)
    # (check, status) -> (its line in ``failed``, its findings summed over the check's shards so far)
    shard_findings: dict[tuple[str, Status], tuple[int, list[Finding]]] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        statuses = {s for s, _ in self.failed}
        if Status.MISSING in statuses:
            return Status.MISSING
        if self.failed:
            return Status.BROKEN
        if self.optional_absent:
            return Status.OPTIONAL_ABSENT
        if self.not_checked or self.could_not_check or not self.passed:
            return Status.NOT_CHECKED
        return Status.READY

    @property
    def only_by_choice(self) -> bool:
        """Not checked only because the user asked so (--device cpu, no --deep)."""
        return self.status is Status.NOT_CHECKED and not self.not_checked and not self.could_not_check \
            and bool(self.not_requested)

    @property
    def fails_verdict(self) -> bool:
        if self.status in (Status.MISSING, Status.BROKEN):
            return True
        return self.status is Status.NOT_CHECKED and not self.only_by_choice and (self.required or self.passed > 0)

    @property
    def fix(self) -> Fix:
        if self.status not in (Status.MISSING, Status.BROKEN, Status.OPTIONAL_ABSENT, Status.NOT_CHECKED):
            return Fix()
        if self.status is Status.NOT_CHECKED and self.only_by_choice:
            return Fix()
        if self.fetch_failed and self.fetched.fix:
            return self.fetched.fix
        own = [f for f in self.fixes if f and f.text != self.asset_fix.text]
        if self.status is Status.BROKEN and own:
            return own[0]
        if self.status is Status.NOT_CHECKED:
            return self.fixes[0] if self.fixes else Fix()
        return self.fixes[0] if self.fixes else self.asset_fix

    @property
    def fetch_failed(self) -> bool:
        return self.fetched is not None and not self.fetched.ok

    def problem_lines(self) -> list[tuple[bool, str]]:
        """(a failure?, text) for each problem: failures first, then what could not be checked."""
        out = [(True, p) for _, p in self.failed]
        if self.fetch_failed and not self.fetch_said:  # under xdist the fetch ran here, in the controller
            out.append((True, f"--fetch-missing tried: {self.fetched.message}"))
        if self.status is Status.OPTIONAL_ABSENT:
            out.append((True, self.optional_absent))
            return out
        # A missing or broken row's other checks did not run for that reason: only say what is not obvious.
        unexplained = self.not_checked + self.could_not_check if self.status is Status.NOT_CHECKED else self.could_not_check
        return out + [(False, f"not checked: {m}") for m in unexplained]

    def problems(self) -> list[str]:
        return [text for _, text in self.problem_lines()]

    def add_findings(self, check: str, status: Status, findings: list[Finding]) -> None:
        """A check's findings: the shards of one check (its parametrizations on this asset) make one
        line, each finding with the summed count of the whole population, not a line per shard."""
        index, summed = self.shard_findings.get((check, status), (len(self.failed), []))
        for finding in findings:
            key = (finding.what, finding.total, finding.where)
            same = next((i for i, s in enumerate(summed) if (s.what, s.total, s.where) == key), None)
            if same is None:
                summed.append(finding)
            else:
                summed[same] = summed[same].plus(finding)
        line = (status, "\n".join(f.problem() for f in summed))
        if index == len(self.failed):
            self.failed.append(line)
        else:
            self.failed[index] = line
        self.shard_findings[(check, status)] = (index, summed)

    def fetch_notes(self) -> list[str]:
        """What a fetch did besides fetching (a cached file it replaced, refs/main moved)."""
        return list(self.fetched.notes) if self.fetched is not None else []

    def as_dict(self) -> dict:
        fetched = None
        if self.fetched is not None:
            fetched = {"ok": self.fetched.ok, "message": self.fetched.message, "notes": self.fetch_notes(),
                       "fix": self.fetched.fix.text, "fix_commands": list(self.fetched.fix.commands)}
        return {
            "name": self.name,
            "status": str(self.status),
            "required": self.required,
            "path": self.path,
            "problems": self.problems(),
            "fix": self.fix.text,
            "fix_commands": list(self.fix.commands),
            "bytes": self.fields.get("bytes"),
            "size": self.size,
            "not_requested": self.not_requested,
            "warnings": self.warnings,
            "info": self.info + [f"fetched: {n}" for n in self.fetch_notes()],
            "fetched": fetched,
            **{k: v for k, v in self.fields.items() if k != "bytes"},
        }


@dataclass
class Coverage:
    """What the run covered: the selection, what narrowed it, how many checks ran."""

    selection: str
    narrowed_by: list[str] = field(default_factory=list)
    ran: int = 0
    interrupted: str = ""  # by what ("Ctrl-C", "SIGTERM"): a run cut short is never ready

    @property
    def complete(self) -> bool:
        return not self.narrowed_by


class Report:
    def __init__(self, selection: str, fixes: dict[str, Fix] | None = None):
        self.coverage = Coverage(selection)
        self.fixes = fixes or {}  # asset -> its fix made to work here (default: the registry's)
        self.rows: dict[str, AssetRow] = {}
        self.problems: list[tuple[str, Fix]] = []  # run-wide

    @property
    def selection(self) -> str:
        return self.coverage.selection

    def row(self, name: str, required: bool) -> AssetRow:
        if name not in self.rows:
            self.rows[name] = AssetRow(name, required, asset_fix=self.fixes.get(name, ASSETS[name].fix))
        elif required:
            self.rows[name].required = True
        return self.rows[name]

    def add(self, name: str, required: bool, passed: bool, result: dict | None) -> None:
        """One check's result: passed, or the (status, problem, fix) it raised or was given."""
        row = self.row(name, required)
        if passed and result is None:
            row.passed += 1
            return
        status = Status(result["status"])
        problem = result["problem"]
        row.fetch_said = row.fetch_said or bool(result.get("says_fetch"))
        fix = Fix(result.get("fix", ""), tuple(result.get("fix_commands", ())), tuple(result.get("fix_then", ())))
        if status in (Status.MISSING, Status.BROKEN):
            if result.get("findings") and result.get("check"):
                row.add_findings(result["check"], status, [Finding.from_data(f) for f in result["findings"]])
            elif (status, problem) not in row.failed:
                row.failed.append((status, problem))
            if fix and fix not in row.fixes:
                row.fixes.append(fix)
        elif status is Status.OPTIONAL_ABSENT:
            row.optional_absent = row.optional_absent or problem
        elif status is Status.NOT_REQUESTED:
            if problem not in row.not_requested:
                row.not_requested.append(problem)
        elif result.get("unexpected"):
            if problem not in row.could_not_check:
                row.could_not_check.append(problem)
            if fix and fix not in row.fixes:
                row.fixes.append(fix)
        elif problem not in row.not_checked:
            row.not_checked.append(problem)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.rows.values())

    @property
    def not_checked(self) -> list[str]:
        return [r.name for r in self.ordered() if r.status is Status.NOT_CHECKED]

    @property
    def ok(self) -> bool:
        """Ready: not interrupted, no run-wide problem, no failing row, and at least one check passed."""
        return not self.coverage.interrupted and not self.problems and self.passed > 0 and not any(r.fails_verdict for r in self.rows.values())

    def ordered(self) -> list[AssetRow]:
        order = list(ASSETS)
        return sorted(self.rows.values(), key=lambda r: order.index(r.name))

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "complete": self.coverage.complete,
            "selection": self.selection,
            "narrowed_by": self.coverage.narrowed_by,
            "not_checked": self.not_checked,
            "problems": [f"{p} — fix: {f}" if f else p for p, f in self.problems],
            "verdict": self.verdict(),
            "assets": [r.as_dict() for r in self.ordered()],
        }

    def junit_properties(self) -> list[tuple[str, str]]:
        """The verdict for CI (--junitxml), one plain value per testsuite property."""
        cov = self.coverage
        return [("preflight_verdict", self.verdict()), ("preflight_ok", json.dumps(self.ok)),
                ("preflight_complete", json.dumps(cov.complete)), ("preflight_selection", self.selection),
                ("preflight_narrowed_by", "; ".join(cov.narrowed_by)),
                ("preflight_not_checked", ", ".join(self.not_checked))]

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")

    # ------------------------------------------------------------------ the verdict

    def verdict(self) -> str:
        cov = self.coverage
        scope = f"for {self.selection}"
        checks = f"{cov.ran:,} check{'s' if cov.ran != 1 else ''}"
        if cov.interrupted:
            scope = f"— interrupted by {cov.interrupted} after {checks}, not a verdict on {self.selection}"
        elif not cov.complete:
            checks = f"the {checks} that ran"
            scope = f"for {checks} (narrowed by {', '.join(cov.narrowed_by)}) — not a verdict on {self.selection}"
        if self.ok:
            by_choice = [r for r in self.ordered() if r.only_by_choice and r.required]
            tail = "".join(f"; {r.name} not checked ({r.not_requested[0]})" for r in by_choice)
            return f"READY {scope}{tail}"
        why = []
        if self.problems:
            why.append(f"{len(self.problems)} run-wide problem{'s' if len(self.problems) > 1 else ''}")
        failing = [r.name for r in self.ordered() if r.fails_verdict]
        if failing:
            why.append(f"{', '.join(failing)} not ready")
        if not self.passed and not cov.interrupted:
            absent = [r.name for r in self.ordered() if r.status is Status.OPTIONAL_ABSENT]
            why.append("no check passed" + (f" ({', '.join(absent)} absent)" if absent else ""))
        return f"NOT READY {scope}" + (f": {'; '.join(why)}" if why else "")

    # ------------------------------------------------------------------ the table

    def lines(self, width: int = 120) -> list[str]:
        """The table, every string escaped for the terminal; a fix's commands whole, each on its own line."""
        rows = self.ordered()
        width = max(60, width)
        out: list[str] = []
        for problem, fix in self.problems:
            out += _wrapped("✗ ", problem, width)
            out += _fix_lines(fix, "  ", width)
        if rows:
            # The location goes last: a long path runs past the edge instead of pushing the status off it.
            head = ("asset", "status", "need", "size", "location")
            cells = [(shown(r.name), str(r.status), "required" if r.required else "optional", r.size, shown(r.path))
                     for r in rows]
            widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head[:-1])]
            fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
            out += [fmt.format(*head), fmt.format(*("-" * w for w in widths), "--------")]
            for row, cell in zip(rows, cells):
                line = fmt.format(*cell).rstrip()
                if len(line) > width:  # the terminal would cut the path: it gets a line of its own
                    line = fmt.format(*cell[:-1], "").rstrip() + f"\n    at {cell[-1]}"
                out += line.split("\n")
                out += self._details(row, width)
        out.append(shown(self.verdict()))
        return out

    @staticmethod
    def _details(row: AssetRow, width: int) -> list[str]:
        out: list[str] = []
        problems = row.problem_lines()
        for failure, problem in problems[:6]:
            marker = "✗ " if failure else "- "
            for i, line in enumerate(problem.splitlines()[:8]):
                out += _wrapped(f"    {marker if i == 0 else '  '}", line, width)
        if len(problems) > 6:
            out.append(f"    ✗ … and {len(problems) - 6} more (see --report-json)")
        if row.status is Status.NOT_CHECKED:
            for line in row.not_requested[:2]:
                out += _wrapped("    - not checked (by choice): ", line, width)
        for line in row.info:
            out += _wrapped("    · ", line, width)
        for gpu in row.fields.get("gpus") or []:  # one sub-row per visible GPU
            out += _wrapped("    ", sub_row_text(gpu), width)
        for line in row.warnings[:3]:
            out += _wrapped("    ! ", line, width)
        if row.fetched is not None and row.fetched.ok:  # a failed fetch is in the row's problem already
            out += _wrapped("    ↓ fetched: ", row.fetched.message, width)
        for note in row.fetch_notes():
            out += _wrapped("    ↓ ", note, width)
        return out + _fix_lines(row.fix, "    ", width)


def _fix_lines(fix: Fix, indent: str, width: int) -> list[str]:
    """A fix's commands each whole on a line of its own, never wrapped: pasted as printed, they run.

    Without commands (a person acts first) the text is one line too: it may name a command. The commands
    to run after the person's step (``Fix.then``) get lines of their own too.
    """
    if not fix:
        return []
    if fix.then:  # the person's step is prose (wrapped); what to run after it, whole
        return [*_wrapped(f"{indent}fix: ", fix.step, width), *(f"{indent}  {shown(c)}" for c in fix.then)]
    if not fix.commands:
        return [f"{indent}fix: {shown(fix.text)}"]
    return [f"{indent}fix (run from the project root):", *(f"{indent}  {shown(c)}" for c in fix.commands)]


def _plain(value: object) -> str:
    """One property value as plain text: a string as it is, a list one item a line, anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return "\n".join(str(v) for v in value)
    return json.dumps(value, default=str)


def plain_properties(props: list[tuple[str, object]]) -> list[tuple[str, str]]:
    """A check's properties as plain text, one value each (--junitxml writes them as they are)."""
    out = []
    for key, value in props:
        if key == OUTCOME_KEY:
            out += [(f"preflight_{k}", _plain(v)) for k, v in value.items() if v and k != "findings"]  # in problem
        elif key == FIELD_KEY:
            name, v = value
            out.append((f"preflight_{name}", v if isinstance(v, str) else json.dumps(v)))
        elif key == REQUIRED_KEY:
            out.append((key, json.dumps(bool(value))))
        else:
            out.append((key, value if isinstance(value, str) else json.dumps(value, default=str)))
    return out


def _wrapped(prefix: str, text: str, width: int) -> list[str]:
    """``text`` (escaped) wrapped to ``width`` under ``prefix``; a long path stays whole rather than being cut."""
    indent = " " * (len(prefix) - len(prefix.lstrip()) + 4)
    return textwrap.wrap(shown(text), width=width, initial_indent=prefix, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False) or [prefix.rstrip()]


# --------------------------------------------------------------------------- the pytest side


class ReadinessReporter:
    """Collects outcomes per asset (in the controller under xdist) and prints the table."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.checkup: Checkup = config.stash[CHECKUP]
        self.report: Report | None = None
        self.expected: int | None = None
        self.ran: set[str] = set()  # checks with an outcome, counted as pytest counts them
        self.active = False  # some preflight check reported (not a run of the self-tests alone)
        self.unclassified: list[str] = []  # failures that carry no preflight outcome (a worker crashed)
        self.interrupted_by = ""
        self._previous_sigterm = None

    def _report(self) -> Report:
        if self.report is None:
            checkup = self.checkup
            fixes = {n: checkup.fix(a) for n, a in ASSETS.items()}
            self.report = Report(checkup.selection.describe(), fixes)
            self.report.problems = list(checkup.problems)
        return self.report

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """A run killed outright (kill -9, a crash) must not leave an older READY report behind."""
        out = self.checkup.value("report-json")
        if out is not None:
            placeholder = Report(self.checkup.selection.describe())
            placeholder.coverage.interrupted = "the end of the process (the run did not finish)"
            placeholder.write_json(out)
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame) -> None:
        self.interrupted_by = "SIGTERM"
        raise KeyboardInterrupt("SIGTERM")  # pytest then ends the run as after Ctrl-C: the table, the JSON

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not is_worker(session.config) and not self.config.pluginmanager.hasplugin("dsession"):
            self.expected = len(session.items)

    @pytest.hookimpl(tryfirst=True)  # before --junitxml reads the properties, which this makes plain
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or not report.passed:
            self.ran.add(report.nodeid)  # one per check, as in pytest's "N passed, M failed"
        props = report.user_properties
        report.user_properties = plain_properties(props)
        name = next((v for k, v in props if k == ASSET_KEY), None)
        self.active = self.active or name is not None
        if report.failed and name is None:  # e.g. xdist's report of a worker that died mid-check
            self.unclassified.append(report.nodeid)
        result = next((v for k, v in props if k == OUTCOME_KEY), None)
        if name is None or (report.when != "call" and result is None):
            return
        report_ = self._report()
        row = report_.row(name, dict(props).get(REQUIRED_KEY, True))
        row.size = next((v for k, v in reversed(props) if k == SIZE_KEY), row.size)
        row.warnings += [v for k, v in props if k == WARNING_KEY and v not in row.warnings]
        row.info += [v for k, v in props if k == INFO_KEY and v not in row.info]
        row.fields.update(dict(v for k, v in props if k == FIELD_KEY))
        report_.add(name, row.required, report.passed, result)

    @pytest.hookimpl(tryfirst=True)  # before --junitxml writes its file
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
        if not self.active and session.exitstatus != pytest.ExitCode.INTERRUPTED:
            return
        report, checkup = self._report(), self.checkup
        world = checkup.world
        for row in report.rows.values():
            asset = ASSETS[row.name]
            row.path = str(world.path(asset)) if world and asset.kind in (AssetKind.DATA, AssetKind.MODEL) else asset.location
            row.fetched = checkup.fetched.get(row.name)
        cov = report.coverage
        cov.ran = len(self.ran)
        cov.narrowed_by = list(self.config.stash[NARROWED])
        args = self.config.args if self.config.args_source is pytest.Config.ArgsSource.ARGS else []
        cov.narrowed_by += [f"the argument {a}" for a in narrowing_arguments(
            args, CHECKS_DIR, self.config.invocation_params.dir, pyargs=self.config.option.pyargs)]
        if session.exitstatus == pytest.ExitCode.INTERRUPTED:
            cov.interrupted = self.interrupted_by or "Ctrl-C"
            cov.narrowed_by.append(f"an interruption ({cov.interrupted})")
        elif self.expected is not None and len(self.ran) < self.expected:
            cov.narrowed_by.append(f"an early stop after {len(self.ran)} of {self.expected} checks (-x/--maxfail)")
        report.problems += [(f"{n} failed without a preflight outcome (its process crashed?)", Fix(
            "rerun; if it fails again, rerun this check alone with --tb=short and report the traceback"))
            for n in self.unclassified]
        out = checkup.value("report-json")
        if out is not None:
            report.write_json(out)
        if checkup.value("fleet-dir") is not None:  # one node of a fleet run: its report, with its identity
            from checks.fleet import save_node_report

            problem = save_node_report(checkup.value("fleet-dir"), report.as_dict())
            if problem:
                report.problems.append((problem, Fix("pass --fleet-dir=DIR on a shared folder this node can write")))
        xml = self.config.stash.get(xml_key, None)
        for key, value in (report.junit_properties() if xml else []):
            xml.add_global_property(key, value)
        if not report.ok and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # e.g. a required check could not run

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.active:
            return
        report = self._report()
        if self.checkup.tiny_build_seconds is not None:  # pytest's "in N s" below starts after the build
            terminalreporter.write_line(f"preflight: the tiny world took {self.checkup.tiny_build_seconds:.1f}s "
                                        "to build, before pytest's clock started")
        terminalreporter.section("preflight readiness")
        lines = report.lines(terminalreporter._tw.fullwidth)
        for line in lines[:-1]:
            terminalreporter.write_line(line)
        terminalreporter.write_line(lines[-1], **({"green": True, "bold": True} if report.ok  # the verdict
                                                  else {"red": True, "bold": True}))
