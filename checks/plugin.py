"""preflight's pytest hooks: options, markers from the registry, the world, typed outcomes, the table.

The logic lives beside this file: ``session`` (settings, world, scans), ``selection`` (`-m`, what
narrowed the run), ``verbs`` (what checks call), ``report`` (rows and verdict), ``fetching``.
"""

from __future__ import annotations

import contextlib

import pytest

from checks.invocation import collect_checks_by_default, correct_rootdir, runs_checks
from checks.report import ReadinessReporter
from checks.selection import MarkExpressionError, Selection, marker_table, matches, unknown_markers
from checks.session import CHECKUP, NARROWED, Checkup, header_lines, is_worker, resolve_settings
from checks.verbs import (
    ASSET_KEY,
    OUTCOME_KEY,
    REQUIRED_KEY,
    AssetCheck,
    CheckSkipped,
    could_not_check,
    outcome,
)
from preflight_core.findings import Status
from preflight_core.options import OPTIONS
from preflight_core.registry import ASSETS, all_markers


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("preflight", "preflight readiness checks")
    for opt in OPTIONS.values():
        action = "store_true" if opt.is_flag else "store"
        value = {} if opt.is_flag else {"metavar": opt.value_name}
        group.addoption(opt.flag, action=action, default=None, dest=opt.dest, **value,
                        help=f"{opt.help} [env {opt.env}, ini {opt.ini}]")
        parser.addini(opt.ini, help=opt.help, type="string", default="")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    correct_rootdir(early_config, parser, args)  # `--report-json PATH` with a space: see there


def pytest_configure(config: pytest.Config) -> None:
    for name, description in all_markers().items():
        config.addinivalue_line("markers", f"{name}: {description}")
    collect_checks_by_default(config)
    if not runs_checks(config):
        return  # another project's own tests (or preflight's self-tests): options and markers only
    markexpr = config.option.markexpr or ""
    try:
        matches(markexpr, set())
    except MarkExpressionError as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[CHECKUP] = Checkup(settings := resolve_settings(config), Selection(markexpr, settings["golden"].value))
    config.stash[NARROWED] = []
    if not is_worker(config):
        # The readiness table says each failure once: no FAILURES section, no short summary, unless asked.
        if config.option.tbstyle == "auto":
            config.option.tbstyle = "no"
        if config.option.reportchars == "fE":
            config.option.reportchars = ""
        config.pluginmanager.register(ReadinessReporter(config), "preflight-report")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(), "preflight-xdist")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """`--fleet`: srun this run on every node and merge (checks.fleet_run). Under `-n`, keep each
    model's checks on one worker (xdist_group needs --dist loadgroup)."""
    from checks.fleet_run import launch_if_fleet

    collect_checks_by_default(config)
    fleet_exit = launch_if_fleet(config)
    if fleet_exit is not None:
        return fleet_exit
    if runs_checks(config) and getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", "no") == "no":
        config.option.dist = "loadgroup"


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Build (or, in an xdist worker, load) the world before workers start and before collection."""
    config = session.config
    checkup = config.stash.get(CHECKUP, None)
    if checkup is None:
        return
    unknown = unknown_markers(checkup.selection.markexpr, config.getini("markers"))
    if unknown:  # every plugin's markers are registered by now
        raise pytest.UsageError(f"-m {checkup.selection.markexpr!r}: no marker named {', '.join(unknown)}. "
                                f"preflight's markers are:\n{marker_table()}\n(pytest --markers lists them all)")
    checkup.open_world(config.workerinput.get("preflight_tiny_root") if is_worker(config) else None)
    lf = config.pluginmanager.get_plugin("lfplugin")
    if config.getoption("lf", False) and lf is not None and lf.lastfailed:
        config.stash[NARROWED].append("--lf")  # it drops passed files before collection: no deselection hook
    if checkup.value("fetch-missing") and not is_worker(config) and not checkup.problems:
        from checks.fetching import fetch_missing

        capture = config.pluginmanager.getplugin("capturemanager")  # off, so progress bars show
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            checkup.fetched = fetch_missing(checkup)


def pytest_unconfigure(config: pytest.Config) -> None:
    checkup = config.stash.get(CHECKUP, None)
    if checkup and not is_worker(config):
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
    return header_lines(config.stash[CHECKUP]) if CHECKUP in config.stash else []


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every check the markers of its asset, before `-m` deselects (hence tryfirst)."""
    if CHECKUP not in config.stash:
        return
    has_xdist = config.pluginmanager.hasplugin("xdist")
    selection = config.stash[CHECKUP].selection
    items.sort(key=lambda i: i.get_closest_marker("golden") is not None)  # stable: golden checks last in a row
    for item in items:
        marker = item.get_closest_marker("asset")
        if marker is None:
            continue
        asset = ASSETS[marker.args[0]]
        # A golden check carries its family only, unless --golden adds it to the phases' runs.
        golden_only = item.get_closest_marker("golden") is not None and not config.stash[CHECKUP].value("golden")
        for name in (asset.family,) if golden_only else asset.markers:
            item.add_marker(name)
        if has_xdist and asset.kind == "model":
            item.add_marker(pytest.mark.xdist_group(asset.name))  # one copy of each model per run
        item.user_properties.append((ASSET_KEY, asset.name))
        markers = {m.name for m in item.iter_markers()}
        item.user_properties.append((REQUIRED_KEY, selection.requires(asset, markers)))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """After every deselection: which assets still have their presence check, what narrowed the run."""
    config, checkup = session.config, session.config.stash.get(CHECKUP, None)
    if checkup is None:
        return
    for item in session.items:
        if getattr(item, "originalname", item.name) == "test_present":
            checkup.presence_selected[dict(item.user_properties)[ASSET_KEY]] = True
    if is_worker(config):
        config.workeroutput["preflight_narrowed"] = config.stash[NARROWED]


def pytest_deselected(items: list[pytest.Item]) -> None:
    """A check deselected by anything but `-m` narrows the run: say by what."""
    if not items or CHECKUP not in items[0].config.stash:
        return
    config = items[0].config
    markexpr = config.stash[CHECKUP].selection.markexpr
    if not any(matches(markexpr, {m.name for m in i.iter_markers()}) for i in items):
        return  # `-m` itself
    reasons = [r for r, on in ((f"-k {config.option.keyword!r}", config.option.keyword),
                               ("--deselect", config.option.deselect),
                               ("--sw", getattr(config.option, "stepwise", False))) if on]
    narrowed = config.stash[NARROWED]
    narrowed += [r for r in reasons or ["a plugin's deselection"] if r not in narrowed]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Every outcome reaches the report as data; one no check classified is 'could not check'."""
    report = yield
    if CHECKUP not in item.config.stash:
        return report
    exc = call.excinfo.value if call.excinfo else None
    result = getattr(exc, "preflight_outcome", None)
    if result is None and exc is not None and not report.passed:
        asset = dict(item.user_properties).get(ASSET_KEY)
        where = item.config.stash[CHECKUP].world.path(asset) if asset else None
        if isinstance(exc, pytest.skip.Exception):
            result = outcome(Status.NOT_CHECKED, f"{item.name} skipped: {exc.msg}")
        elif isinstance(exc, pytest.fail.Exception):  # a check's own plain pytest.fail: a finding
            result = outcome(Status.BROKEN, exc.msg or f"{item.name} failed")
        else:
            result = could_not_check(exc, where)
    if result is not None:
        check = f"{item.parent.nodeid}::{getattr(item, 'originalname', item.name)}"  # the same for each parameter
        report.user_properties.append((OUTCOME_KEY, {**result, "check": check}))
        if report.skipped and isinstance(report.longrepr, tuple):  # the reason, not "checks.verbs.CheckSkipped: …"
            report.longrepr = (*report.longrepr[:2], f"Skipped: {result['status']}: {result['problem']}")
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
    if "deep_shard" not in metafunc.fixturenames or CHECKUP not in metafunc.config.stash:
        return
    config = metafunc.config
    # Only xdist workers collect under -n; they know how many they are.
    workers = config.workerinput["workercount"] if is_worker(config) else 1
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
