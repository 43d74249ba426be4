"""The pytest glue: options, markers from the registry, the world, asset fixtures, the report.

Domain logic lives in plain modules (``checks.imagenet``, ``checks.models``, ``fetchers``…);
this file only wires it into pytest.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pytest

from checks.report import Report
from core.findings import Finding
from core.options import OPTIONS, OptionError, Resolved, resolve
from core.presence import asset_state
from core.registry import ASSETS, SELECTORS, Asset, all_markers
from core.world import World

ASSET_KEY = "preflight_asset"
NOTE_KEY = "preflight_note"
REQUIRED_KEY = "preflight_required"
INFO_KEY = "preflight_info"
SIZE_KEY = "preflight_size"
FIELD_KEY = "preflight_field"


# --------------------------------------------------------------------------- selection


def _matches(markexpr: str, names: set[str]) -> bool:
    from _pytest.mark.expression import Expression  # what `-m` itself uses

    return Expression.compile(markexpr).evaluate(lambda name, **_: name in names)


@dataclass(frozen=True)
class Selection:
    """What a `-m` expression selects: which assets it touches, which checks it requires.

    A check is judged per phase: it is required when the expression selects it as a check of a
    phase (or experiment) that requires its asset, e.g. `-m phase2` selects SigLIP2 checks for
    phase 2, where SigLIP2 is optional, although they carry the marker phase1 too.
    """

    markexpr: str = ""

    def _matches(self, names: set[str]) -> bool:
        return not self.markexpr or _matches(self.markexpr, names)

    def requires(self, asset: Asset, item_markers: set[str]) -> bool:
        others = set(SELECTORS)
        return any(self._matches(item_markers - (others - {s})) for s in asset.required_in)

    def touches(self, asset: Asset) -> bool:
        """Some check of ``asset`` is selected (decided before collection, for --fetch-missing)."""
        extras = list(asset.check_markers)
        combos = [{m for i, m in enumerate(extras) if mask >> i & 1} for mask in range(2 ** len(extras))]
        return any(self._matches({s, asset.family} | combo) for s in asset.selectors for combo in combos)

    def describe(self) -> str:
        return f"-m {self.markexpr!r}" if self.markexpr else "all phases"


# --------------------------------------------------------------------------- settings


@dataclass
class Checkup:
    """Everything one pytest session (one xdist worker) knows: settings, world, cached scans."""

    settings: dict[str, Resolved]
    selection: Selection
    world: World | None = None
    tiny_root: Path | None = None
    fetched: dict[str, str] = field(default_factory=dict)
    owns_tiny_root: bool = False  # built by this session, removed at its end
    presence_selected: dict[str, bool] = field(default_factory=dict)  # asset -> its test_present runs

    def value(self, name: str):
        return self.settings[name].value

    @property
    def device(self) -> str:
        return self.value("device")

    def fix(self, asset: Asset) -> str:
        """The registry's fix, pointed at this data root when it is not the default one."""
        root = self.settings["data-root"]
        if asset.kind != "data" or root.source == "default" or self.tiny_root:
            return asset.fix
        command, sep, note = asset.fix.partition(" (")
        return f"{command} --data-root={root.value}{sep}{note}"

    @cached_property
    def verify_cache(self):
        from checks.deep import VerifyCache, default_cache_path

        return VerifyCache(self.tiny_root / "verified.sqlite3" if self.tiny_root else default_cache_path())

    @cached_property
    def val_tree(self):
        from checks.imagenet import scan_val

        return scan_val(self.world.path("imagenet_val"), self.world.facts_for("imagenet_val"))

    @cached_property
    def meta(self):
        from checks.imagenet import load_meta

        return load_meta(self.world.path("imagenet_meta"))

    @cached_property
    def gpu_report(self):
        """One probe per session, sized for the models this selection touches."""
        from checks.gpu import probe_gpu, required_free_bytes

        touched = [self.world.facts_for(a) for a in ASSETS.values() if a.kind == "model" and self.selection.touches(a)]
        return probe_gpu(self.device, required_free_bytes(touched))

    @cached_property
    def coco_tree(self):
        from checks.coco import scan_coco

        return scan_coco(self.world.path("coco_val2017"), self.world.facts_for("coco_val2017"))


CHECKUP = pytest.StashKey[Checkup]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("preflight", "preflight readiness checks")
    for opt in OPTIONS.values():
        help_text = f"{opt.help} [env {opt.env}, ini {opt.ini}]"
        if opt.is_flag:
            group.addoption(opt.flag, action="store_true", default=None, dest=opt.dest, help=help_text)
        else:
            group.addoption(opt.flag, action="store", default=None, dest=opt.dest, help=help_text)
        parser.addini(opt.ini, help=opt.help, type="string", default="")


def _settings(config: pytest.Config) -> dict[str, Resolved]:
    ini_file = str(config.inipath) if config.inipath else "the ini file"
    settings = {}
    for name, opt in OPTIONS.items():
        try:
            settings[name] = resolve(opt, config.getoption(opt.dest), os.environ, config.getini(opt.ini), ini_file)
        except OptionError as e:
            raise pytest.UsageError(str(e)) from None
    if (settings["tiny"].value or settings["tiny-world"].value) and settings["device"].source == "default":
        settings["device"] = Resolved("cpu", "--tiny")
    root = settings["data-root"]
    if not root.value.is_absolute():  # relative to where the value was given
        base = Path.cwd() if root.source.startswith(("command line", "environment")) else config.rootpath
        settings["data-root"] = Resolved(base / root.value, root.source)
    return settings


def _check_markers_registered(config: pytest.Config) -> None:
    registered = {line.split(":")[0].split("(")[0].strip() for line in config.getini("markers")}
    unregistered = sorted(set(all_markers()) - registered)
    if unregistered:
        raise pytest.UsageError(
            f"markers {', '.join(unregistered)} come from checks/registry.py but are not registered in "
            f"{config.inipath or 'pytest.ini'}: add them under `markers =`")


def pytest_configure(config: pytest.Config) -> None:
    _check_markers_registered(config)
    checkup = Checkup(_settings(config), Selection(config.option.markexpr or ""))
    config.stash[CHECKUP] = checkup
    config.pluginmanager.register(PresenceRecorder(), "preflight-presence")
    if not _is_worker(config):
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
    if _is_worker(config):
        tiny_root = config.workerinput.get("preflight_tiny_root")
        if tiny_root:
            from checks.tiny import load_tiny_world

            checkup.tiny_root = Path(tiny_root)
            checkup.world = load_tiny_world(checkup.tiny_root)
        else:
            checkup.world = World(checkup.value("data-root"))
        return
    if checkup.value("tiny-world"):
        from checks.tiny import WORLD_FILE, load_tiny_world

        checkup.tiny_root = checkup.value("tiny-world").resolve()
        if not (checkup.tiny_root / WORLD_FILE).is_file():
            raise pytest.UsageError(f"no tiny world in {checkup.tiny_root} ({WORLD_FILE} is missing): "
                                    "build one with checks.tiny.build_tiny_world, or use --tiny")
        checkup.world = load_tiny_world(checkup.tiny_root)
    elif checkup.value("tiny"):
        from checks.tiny import build_tiny_world

        checkup.tiny_root = Path(tempfile.mkdtemp(prefix="preflight-tiny-")) / "world"
        checkup.world = build_tiny_world(checkup.tiny_root)
        checkup.owns_tiny_root = True
    else:
        checkup.world = World(checkup.value("data-root"))
    if checkup.value("fetch-missing"):
        from fetchers.plan import fetch_missing

        # Output capture off while fetching, so progress bars reach the terminal.
        capture = config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            checkup.fetched = fetch_missing(checkup.world,
                                            [a for a in ASSETS.values() if checkup.selection.touches(a)],
                                            settings={k: r.value for k, r in checkup.settings.items()})


def pytest_unconfigure(config: pytest.Config) -> None:
    checkup = config.stash.get(CHECKUP, None)
    if checkup and checkup.owns_tiny_root and not _is_worker(config):
        shutil.rmtree(checkup.tiny_root.parent, ignore_errors=True)


class XdistHooks:
    def pytest_configure_node(self, node) -> None:
        checkup = node.config.stash[CHECKUP]
        if checkup.tiny_root:
            node.workerinput["preflight_tiny_root"] = str(checkup.tiny_root)


def pytest_report_header(config: pytest.Config) -> list[str]:
    checkup = config.stash[CHECKUP]
    s = checkup.settings
    lines = [f"preflight: selection {checkup.selection.describe()}; device {s['device'].value} ({s['device'].source})"]
    if checkup.tiny_root:
        lines.append(f"preflight: tiny world in {checkup.tiny_root}")
    else:
        lines.append(f"preflight: data root {s['data-root'].value} ({s['data-root'].source})")
    if checkup.world:
        lines.append(f"preflight: Hugging Face cache {checkup.world.hf_cache}")
    try:
        from checks.envinfo import environment_summary

        env = environment_summary()
        cuda = f" (CUDA {env['torch_cuda_build']})" if env.get("torch_cuda_build") else " (CPU build)"
        versions = [f"{k} {env[k]}" + (cuda if k == "torch" else "") for k in
                    ("python", "torch", "torchvision", "transformers", "open_clip", "huggingface_hub") if env.get(k)]
        lines.append("preflight: " + ", ".join(versions))
        redirects = [f"{k} {env[k]}" for k in ("hf_endpoint", "preflight_mirror", "hf_hub_offline") if env.get(k)]
        if redirects:
            lines.append("preflight: " + ", ".join(redirects))
    except Exception as e:  # the header never fails the run
        lines.append(f"preflight: environment summary unavailable ({type(e).__name__})")
    return lines


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every check the markers of its asset, before `-m` deselects (hence tryfirst)."""
    has_xdist = config.pluginmanager.hasplugin("xdist")
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
        item.user_properties.append((REQUIRED_KEY, config.stash[CHECKUP].selection.requires(asset, markers)))


class PresenceRecorder:
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """After `-m` deselected: which assets still have their presence check in this run."""
        checkup = config.stash[CHECKUP]
        for item in items:
            if getattr(item, "originalname", item.name) == "test_present":
                checkup.presence_selected[dict(item.user_properties)[ASSET_KEY]] = True


# --------------------------------------------------------------------------- fixtures


class AssetUnderCheck:
    """The asset a check belongs to, with the verbs checks use to pass, fail or skip."""

    def __init__(self, asset: Asset, checkup: Checkup, node: pytest.Item):
        self.asset = asset
        self.checkup = checkup
        self.world = checkup.world
        self.required = dict(node.user_properties).get(REQUIRED_KEY, True)
        self._node = node

    @property
    def name(self) -> str:
        return self.asset.name

    @property
    def facts(self):
        return self.world.facts_for(self.asset)

    @property
    def path(self) -> Path:
        return self.world.path(self.asset)

    @property
    def fix(self) -> str:
        return self.checkup.fix(self.asset)

    def state(self) -> tuple[str, str]:
        """("present" | "absent" | "broken", detail)."""
        return asset_state(self.world, self.asset)

    def check_present(self) -> None:
        """The presence check: a required asset that is absent fails; an optional one skips."""
        state, detail = self.state()
        fetched = self.checkup.fetched.get(self.name, "")
        if fetched.startswith("fetch failed"):
            detail = f"{detail}; --fetch-missing tried: {fetched}"
        if state == "broken":
            pytest.fail(f"broken: {self.name}: {detail} — fix: {self.fix}", pytrace=False)
        if state == "absent":
            if self.required:
                pytest.fail(f"missing: {self.name} ({self.asset.title}): {detail} — fix: {self.fix}", pytrace=False)
            pytest.skip(f"optional-absent: {self.name} ({self.asset.title}) is optional for "
                        f"{self.checkup.selection.describe()}: {detail} — to add it: {self.fix}")

    def needs_present(self) -> None:
        """Every other check of an asset: nothing to check when it is not there.

        Skipped when the presence check already says so; failed when that check is not selected
        (e.g. `-m model`), so a required asset that is absent can never read as ready.
        """
        state, detail = self.state()
        if state == "present":
            return
        if self.required and not self.checkup.presence_selected.get(self.name):
            pytest.fail(f"{'missing' if state == 'absent' else 'broken'}: {self.name} ({self.asset.title}): "
                        f"{detail} — fix: {self.fix}", pytrace=False)
        kind = "optional-absent" if state == "absent" and not self.required else "not-checked"
        pytest.skip(f"{kind}: {self.name} is {state} ({detail})")

    def needs(self, other: str, what: object, why: str) -> None:
        """A cross-check that needs another asset's data (``what``); skip as not-checked without it."""
        if what is None:
            pytest.skip(f"not-checked: {why} needs {other}, which is missing or unreadable")

    def record_size(self, n_bytes: int, n_files: int | None = None) -> None:
        files = f", {n_files:,} files" if n_files is not None else ""
        self._node.user_properties.append((SIZE_KEY, f"{human_bytes(n_bytes)}{files}"))

    def record_field(self, key: str, value: object) -> None:
        """A per-asset fact for the JSON report (e.g. ``revision``, ``weights_sha256``); JSON-serialisable."""
        self._node.user_properties.append((FIELD_KEY, (key, value)))

    def note_info(self, message: str) -> None:
        """A fact worth a line in the readiness table (load time, memory, device name)."""
        self._node.user_properties.append((INFO_KEY, message))

    def note(self, message: str) -> None:
        """A warning that does not fail the check; shown in the readiness table."""
        self._node.user_properties.append((NOTE_KEY, message))
        import warnings

        warnings.warn(PreflightWarning(message), stacklevel=2)


class PreflightWarning(UserWarning):
    pass


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def expect_none(findings: list[Finding]) -> None:
    """Fail with the findings' messages, in the shape what — count % — examples — where — fix."""
    if findings:
        pytest.fail("\n".join(f.message() for f in findings), pytrace=False)


@pytest.fixture(scope="session")
def checkup(request: pytest.FixtureRequest) -> Checkup:
    return request.config.stash[CHECKUP]


@pytest.fixture
def asset(request: pytest.FixtureRequest, checkup: Checkup) -> AssetUnderCheck:
    marker = request.node.get_closest_marker("asset")
    if marker is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses the `asset` fixture without an asset(name) marker")
    return AssetUnderCheck(ASSETS[marker.args[0]], checkup, request.node)


def for_assets(*names: str) -> list:
    """Parametrize one check over several assets: ``@pytest.mark.parametrize("name", for_assets(...))``."""
    return [pytest.param(n, marks=pytest.mark.asset(n), id=n) for n in names]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """--deep checks are sharded so `-n` spreads the decoding over workers."""
    if "deep_shard" not in metafunc.fixturenames:
        return
    config = metafunc.config
    deep = config.stash[CHECKUP].value("deep")
    # Only xdist workers collect under -n; they know how many they are.
    workers = config.workerinput["workercount"] if _is_worker(config) else 1
    count = 4 * workers if deep and workers > 1 else 1
    metafunc.parametrize("deep_shard", [(i, count) for i in range(count)],
                         ids=[f"shard{i + 1}of{count}" for i in range(count)])


@pytest.fixture
def gpu_ready(checkup: Checkup) -> None:
    """Forward passes on cuda need a working GPU; without one they are not-checked (the gpu row fails)."""
    if checkup.device != "cpu" and checkup.gpu_report.cause not in ("ok", "not-enough-memory"):
        pytest.skip(f"not-checked: forward passes on {checkup.device} need a working GPU "
                    f"({checkup.gpu_report.cause}; see the gpu row)")


@pytest.fixture
def deep(checkup: Checkup) -> None:
    if not checkup.value("deep"):
        pytest.skip("not-requested: decoding every file runs with --deep")


# --------------------------------------------------------------------------- report


class ReadinessReporter:
    """Collects outcomes per asset (in the controller under xdist) and prints the table."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.checkup: Checkup = config.stash[CHECKUP]
        self.report = Report(self.checkup.selection.describe(), {n: self.checkup.fix(a) for n, a in ASSETS.items()})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = report.user_properties
        name = next((v for k, v in props if k == ASSET_KEY), None)
        if name is None or (report.when != "call" and not (report.failed or report.skipped)):
            return
        row = self.report.row(name, dict(props).get(REQUIRED_KEY, True))
        sizes = [v for k, v in props if k == SIZE_KEY]
        if sizes:
            row.size = sizes[-1]
        message = report.longreprtext if report.failed else ""
        if report.skipped:
            message = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        self.report.add(name, row.required, report.outcome, message, [v for k, v in props if k == NOTE_KEY],
                        [v for k, v in props if k == INFO_KEY])
        row.fields.update(dict(v for k, v in props if k == FIELD_KEY))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        world = self.checkup.world
        for row in self.report.rows.values():
            asset = ASSETS[row.name]
            row.path = str(world.path(asset)) if world and asset.kind in ("data", "model") else asset.location
            row.fetched = self.checkup.fetched.get(row.name, "")
        out = self.checkup.value("report-json")
        if out is not None:
            self.report.write_json(out)
        if self.report.rows and not self.report.ok and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a required check could not run

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.report.rows:
            return
        terminalreporter.section("preflight readiness")
        for line in self.report.lines():
            markup = {}
            if line.startswith(("READY", "NOT READY")):
                markup = {"green": True, "bold": True} if self.report.ok else {"red": True, "bold": True}
            terminalreporter.write_line(line, **markup)
