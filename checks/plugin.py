"""preflight's pytest hooks: options, markers from the registry, the world, typed outcomes, the table.

The logic lives beside this file: ``session`` (settings, world, scans), ``selection`` (`-m`, what
narrowed the run), ``verbs`` (what checks call), ``report`` (rows and verdict), ``fetching``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from checks.report import Report
from checks.selection import MarkExpressionError, Selection, matches, narrowing_arguments
from checks.session import Checkup, header_lines, resolve_settings
from checks.verbs import (
    ASSET_KEY,
    FIELD_KEY,
    INFO_KEY,
    OUTCOME_KEY,
    REQUIRED_KEY,
    SIZE_KEY,
    WARNING_KEY,
    AssetCheck,
    CheckSkipped,
    could_not_check,
    expect_none,  # noqa: F401  (transitional re-export: checks import it from checks.verbs)
    for_assets,  # noqa: F401
)
from core.findings import Status
from core.options import OPTIONS
from core.registry import ASSETS, all_markers

CHECKUP = pytest.StashKey[Checkup]()
NARROWED = pytest.StashKey[list]()  # what narrowed the run, besides -m
CHECKS_DIR = Path(__file__).resolve().parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("preflight", "preflight readiness checks")
    for opt in OPTIONS.values():
        action = "store_true" if opt.is_flag else "store"
        group.addoption(opt.flag, action=action, default=None, dest=opt.dest,
                        help=f"{opt.help} [env {opt.env}, ini {opt.ini}]")
        parser.addini(opt.ini, help=opt.help, type="string", default="")


def pytest_configure(config: pytest.Config) -> None:
    for name, description in all_markers().items():
        config.addinivalue_line("markers", f"{name}: {description}")
    markexpr = config.option.markexpr or ""
    try:
        matches(markexpr, set())
    except MarkExpressionError as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[CHECKUP] = Checkup(resolve_settings(config), Selection(markexpr))
    config.stash[NARROWED] = []
    if not _is_worker(config):
        # The readiness table says each failure once: no FAILURES section, no short summary, unless asked.
        if config.option.tbstyle == "auto":
            config.option.tbstyle = "no"
        if config.option.reportchars == "fE":
            config.option.reportchars = ""
        config.pluginmanager.register(ReadinessReporter(config), "preflight-report")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(), "preflight-xdist")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Under `-n`, keep each model's checks on one worker (xdist_group needs --dist loadgroup)."""
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", "no") == "no":
        config.option.dist = "loadgroup"


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Build (or, in an xdist worker, load) the world before workers start and before collection."""
    config = session.config
    checkup = config.stash[CHECKUP]
    checkup.open_world(config.workerinput.get("preflight_tiny_root") if _is_worker(config) else None)
    if checkup.value("fetch-missing") and not _is_worker(config) and not checkup.problems:
        from checks.fetching import fetch_missing

        capture = config.pluginmanager.getplugin("capturemanager")  # off, so progress bars show
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            checkup.fetched = fetch_missing(checkup)


def pytest_unconfigure(config: pytest.Config) -> None:
    checkup = config.stash.get(CHECKUP, None)
    if checkup and not _is_worker(config):
        checkup.close()


class XdistHooks:
    def pytest_configure_node(self, node) -> None:
        checkup = node.config.stash[CHECKUP]
        if checkup.tiny_root:
            node.workerinput["preflight_tiny_root"] = str(checkup.tiny_root)

    def pytest_testnodedown(self, node, error) -> None:
        narrowed = node.config.stash[NARROWED]
        narrowed += [r for r in getattr(node, "workeroutput", {}).get("preflight_narrowed", []) if r not in narrowed]

    def pytest_xdist_node_collection_finished(self, node, ids) -> None:
        reporter = node.config.pluginmanager.get_plugin("preflight-report")
        if reporter:
            reporter.expected = max(reporter.expected or 0, len(ids))


def pytest_report_header(config: pytest.Config) -> list[str]:
    return header_lines(config.stash[CHECKUP])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every check the markers of its asset, before `-m` deselects (hence tryfirst)."""
    has_xdist = config.pluginmanager.hasplugin("xdist")
    selection = config.stash[CHECKUP].selection
    for item in items:
        marker = item.get_closest_marker("asset")
        if marker is None:
            continue
        asset = ASSETS[marker.args[0]]
        for name in asset.markers:
            item.add_marker(name)
        if has_xdist and asset.kind == "model":
            item.add_marker(pytest.mark.xdist_group(asset.name))  # one copy of each model per run
        item.user_properties.append((ASSET_KEY, asset.name))
        markers = {m.name for m in item.iter_markers()}
        item.user_properties.append((REQUIRED_KEY, selection.requires(asset, markers)))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """After every deselection: which assets still have their presence check, what narrowed the run."""
    config, checkup = session.config, session.config.stash[CHECKUP]
    for item in session.items:
        if getattr(item, "originalname", item.name) == "test_present":
            checkup.presence_selected[dict(item.user_properties)[ASSET_KEY]] = True
    if _is_worker(config):
        config.workeroutput["preflight_narrowed"] = config.stash[NARROWED]


def pytest_deselected(items: list[pytest.Item]) -> None:
    """A check deselected by anything but `-m` narrows the run: say by what."""
    if not items:
        return
    config = items[0].config
    markexpr = config.stash[CHECKUP].selection.markexpr
    if not any(matches(markexpr, {m.name for m in i.iter_markers()}) for i in items):
        return  # `-m` itself
    reasons = [r for r, on in ((f"-k {config.option.keyword!r}", config.option.keyword),
                               ("--lf", getattr(config.option, "lf", False)),
                               ("--deselect", config.option.deselect),
                               ("--sw", getattr(config.option, "stepwise", False))) if on]
    narrowed = config.stash[NARROWED]
    narrowed += [r for r in reasons or ["a plugin's deselection"] if r not in narrowed]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Every outcome reaches the report as data; one no check classified is 'could not check'."""
    report = yield
    exc = call.excinfo.value if call.excinfo else None
    result = getattr(exc, "preflight_outcome", None)
    if result is None and exc is not None and not report.passed:
        asset = dict(item.user_properties).get(ASSET_KEY)
        where = item.config.stash[CHECKUP].world.path(asset) if asset else None
        if isinstance(exc, pytest.skip.Exception):
            result = {"status": str(Status.NOT_CHECKED), "problem": f"{item.name} skipped: {exc.msg}",
                      "fix": "", "fix_commands": []}
        else:
            result = could_not_check(exc, where)
    if result is not None:
        report.user_properties.append((OUTCOME_KEY, result))
    return report


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def checkup(request: pytest.FixtureRequest) -> Checkup:
    return request.config.stash[CHECKUP]


@pytest.fixture
def asset(request: pytest.FixtureRequest, checkup: Checkup) -> AssetCheck:
    marker = request.node.get_closest_marker("asset")
    if marker is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses the `asset` fixture without an asset(name) marker")
    return AssetCheck(ASSETS[marker.args[0]], checkup, request.node)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """--deep checks are sharded so `-n` spreads the decoding over workers."""
    if "deep_shard" not in metafunc.fixturenames:
        return
    config = metafunc.config
    # Only xdist workers collect under -n; they know how many they are.
    workers = config.workerinput["workercount"] if _is_worker(config) else 1
    count = 4 * workers if config.stash[CHECKUP].value("deep") and workers > 1 else 1
    metafunc.parametrize("deep_shard", [(i, count) for i in range(count)],
                         ids=[f"shard{i + 1}of{count}" for i in range(count)])


@pytest.fixture
def gpu_ready(checkup: Checkup) -> None:
    """Forward passes on cuda need a working GPU; without one they are not-checked (the gpu row fails)."""
    if checkup.load_device != "cpu" and checkup.gpu_report.cause not in ("ok", "not-enough-memory"):
        raise CheckSkipped(Status.NOT_CHECKED, f"needs a working GPU on {checkup.device} "
                           f"({checkup.gpu_report.cause}; see the gpu row)")


@pytest.fixture
def deep(checkup: Checkup) -> None:
    if not checkup.value("deep"):
        raise CheckSkipped(Status.NOT_REQUESTED, "decoding every file and hashing every blob runs with --deep")


# --------------------------------------------------------------------------- report


class ReadinessReporter:
    """Collects outcomes per asset (in the controller under xdist) and prints the table."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.checkup: Checkup = config.stash[CHECKUP]
        self.report: Report | None = None
        self.expected: int | None = None
        self.ran: set[str] = set()
        self.active = False  # some preflight check reported (not a run of the self-tests alone)

    def _report(self) -> Report:
        if self.report is None:
            checkup = self.checkup
            fixes = {n: checkup.fix(a, present=checkup.world is not None and checkup.world.path(a).exists()
                                    if a.kind == "data" else False) for n, a in ASSETS.items()}
            self.report = Report(checkup.selection.describe(), fixes)
            self.report.problems = list(checkup.problems)
        return self.report

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not _is_worker(session.config) and not self.config.pluginmanager.hasplugin("dsession"):
            self.expected = len(session.items)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.ran.add(report.nodeid)
        props = report.user_properties
        name = next((v for k, v in props if k == ASSET_KEY), None)
        self.active = self.active or name is not None
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

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.active:
            return
        report, checkup = self._report(), self.checkup
        world = checkup.world
        for row in report.rows.values():
            asset = ASSETS[row.name]
            row.path = str(world.path(asset)) if world and asset.kind in ("data", "model") else asset.location
            row.fetched = checkup.fetched.get(row.name)
        cov = report.coverage
        cov.ran = len(self.ran)
        cov.narrowed_by = list(self.config.stash[NARROWED])
        args = self.config.args if self.config.args_source is pytest.Config.ArgsSource.ARGS else []
        cov.narrowed_by += [f"the argument {a}" for a in narrowing_arguments(args, CHECKS_DIR,
                                                                            self.config.invocation_params.dir)]
        if session.exitstatus == pytest.ExitCode.INTERRUPTED:
            cov.narrowed_by.append("an interruption")
        elif self.expected is not None and len(self.ran) < self.expected:
            cov.narrowed_by.append(f"an early stop after {len(self.ran)} of {self.expected} checks (-x/--maxfail)")
        out = checkup.value("report-json")
        if out is not None:
            report.write_json(out)
        if not report.ok and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # e.g. a required check could not run

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.active:
            return
        report = self._report()
        terminalreporter.section("preflight readiness")
        ok = report.ok
        for line in report.lines(terminalreporter._tw.fullwidth):
            markup = {}
            if line.startswith(("READY", "NOT READY")):
                markup = {"green": True, "bold": True} if ok else {"red": True, "bold": True}
            terminalreporter.write_line(line, **markup)
