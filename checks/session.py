"""One pytest session's state: settings, the world under check, run-wide problems, cached scans.

Each xdist worker has its own ``Checkup``; the controller builds the world (and fetches) first.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pytest

from checks.scan import shown
from checks.selection import Selection
from preflight_core.commands import fetch_command, move_aside
from preflight_core.findings import Fix
from preflight_core.hf_cache import offline_requested
from preflight_core.options import OPTIONS, OptionError, Origin, Resolved, resolve
from preflight_core.presence import AssetState, asset_state, find_imagenet_tar
from preflight_core.registry import ASSETS, Asset, AssetKind
from preflight_core.world import World


def stamp() -> str:
    """A suffix for a folder moved aside (unique per second, sortable)."""
    return time.strftime("%Y%m%d-%H%M%S")


class _DefaultSiglipConfigNoise(logging.Filter):
    """Drop transformers' complaint about its own default SiglipTextConfig (bos/eos 49406/49407 beyond
    its default vocabulary of 32,000), which it builds while serialising any SigLIP config: it says
    nothing about the checkpoint under check, and each xdist worker printed it again."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("(between 0 and 31999), got 4940" in message and "_token_id must be" in message)


def quiet_transformers_default_config() -> None:
    logger = logging.getLogger("transformers.configuration_utils")
    if not any(isinstance(f, _DefaultSiglipConfigNoise) for f in logger.filters):
        logger.addFilter(_DefaultSiglipConfigNoise())


def resolve_settings(config: pytest.Config) -> dict[str, Resolved]:
    """Every preflight option through its precedence chain; a bad value stops the run, naming its source."""
    ini_file = str(config.inipath) if config.inipath else "the ini file"
    settings = {}
    for name, opt in OPTIONS.items():
        try:
            settings[name] = resolve(opt, config.getoption(opt.dest), os.environ, config.getini(opt.ini), ini_file)
        except OptionError as e:
            raise pytest.UsageError(str(e)) from None
    if (settings["tiny"].value or settings["tiny-world"].value) and settings["device"].origin is Origin.DEFAULT:
        settings["device"] = Resolved("cpu", "--tiny", Origin.IMPLIED)
    root = settings["data-root"]
    if not root.value.is_absolute():  # relative to where the value was given
        base = Path.cwd() if root.given_by_user else config.rootpath
        settings["data-root"] = Resolved(base / root.value, root.source, root.origin)
    return settings


def data_root_problem(root: Path, source: str, chosen: bool = True) -> tuple[str, Fix] | None:
    """A data root that cannot hold the data: one run-wide problem instead of a 'missing' per asset.

    ``chosen``: the user named this root (command line, environment, ini). The default ``data/raw``
    of a fresh checkout does not exist yet, and that is no mistake: its rows say what to fetch.
    """
    where = f"the data root {root} (from {source})"
    if root.is_symlink() and not root.exists():
        return (f"{where} is a symlink to {os.readlink(root)}, which does not exist",
                Fix(f"mount or restore {os.readlink(root)}, or pass --data-root=PATH"))
    if root.exists() and not root.is_dir():
        return (f"{where} is not a folder",
                Fix(f"pass --data-root=PATH to the folder that holds {', '.join(_data_folders())}, "
                    f"or move {root} aside"))
    if not root.exists():
        parent = next((p for p in root.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            return (f"{where} cannot exist: {parent} is a file",
                    Fix(f"pass --data-root=PATH to a folder, or move {parent} aside"))
        if not chosen:
            return None
        return (f"{where} does not exist (a typo, or not mounted?)",
                Fix(f"pass --data-root=PATH to the folder that holds {', '.join(_data_folders())}; "
                    "or fetch into this one: the fixes below create it"))
    if not os.access(root, os.R_OK | os.X_OK):
        return f"{where} cannot be read", Fix(f"check the permissions of {root}")
    return None


def _data_folders() -> list[str]:
    return [f"{a.location}/" for a in ASSETS.values() if a.kind is AssetKind.DATA]


@dataclass
class Checkup:
    """Everything one pytest session (one xdist worker) knows: settings, world, cached scans."""

    settings: dict[str, Resolved]
    selection: Selection
    world: World | None = None
    tiny_root: Path | None = None
    fetched: dict[str, object] = field(default_factory=dict)  # asset -> fetchers.plan.FetchOutcome
    problems: list[tuple[str, Fix]] = field(default_factory=list)  # run-wide (e.g. the data root)
    owns_tiny_root: bool = False  # built by this session, removed at its end
    presence_selected: dict[str, bool] = field(default_factory=dict)  # asset -> its test_present runs
    tiny_build_seconds: float | None = None  # --tiny: before pytest's own clock starts

    def value(self, name: str):
        return self.settings[name].value

    @property
    def device(self) -> str:
        return self.value("device")

    @cached_property
    def load_device(self) -> str:
        """Where models load: the CPU when no GPU check is selected (`-m "… and not gpu"`)."""
        return "cpu" if self.selection.excludes_family("gpu") else self.device

    def fix(self, asset: Asset) -> Fix:
        """The registry's fix, made to work here: this data root, this ImageNet tar, offline mode off.

        A fetch never replaces a folder that is there: for a broken ImageNet val or COCO tree, the
        fix moves it aside first (nothing is deleted). Every command is built by ``preflight_core.commands``.
        """
        root = self._named_root(asset)
        online = asset.kind is AssetKind.MODEL and offline_requested()
        if asset.fetch_flag and asset.fetch_input and self.imagenet_tar:
            fix = Fix.run(fetch_command(asset.fetch_flag, self.imagenet_tar, data_root=root))
        elif asset.fetch_flag and asset.fix.commands:
            fix = Fix.run(fetch_command(asset.fetch_flag, data_root=root, hub_online=online))
        elif asset.fix.then:
            flag = f" {shlex.quote(f'--data-root={root}')}" if root else ""
            fix = Fix.after(asset.fix.step, *(f"{c}{flag}" for c in asset.fix.then))
        else:
            fix = Fix(asset.fix.text + (f" {shlex.quote(f'--data-root={root}')}" if root else ""))
        if asset.kind is AssetKind.DATA and not asset.fetch_fills_in and self.world is not None \
                and asset_state(self.world, asset)[0] is not AssetState.ABSENT:
            path = self.world.path(asset)
            fix = fix.before(move_aside(path, f".moved-aside-{stamp()}"),
                             why="the fetch never replaces a folder that is there")
        return fix

    def val_fix(self, asset: Asset, damaged: int | None) -> Fix:
        """The fix for a val tree with ``damaged`` images (``checks.imagenet.few_damaged``).

        A few: re-extract just those from the tar the user has (``--repair``); None (wrong as a whole,
        or many): the whole-tree fix.
        """
        if not damaged:
            return self.fix(asset)
        root = None if not self.tiny_root and self.settings["data-root"].origin is Origin.DEFAULT \
            else self.world.data_root
        tar = find_imagenet_tar(self.world, {k: r.value for k, r in self.settings.items()})
        if tar is None:
            command = fetch_command("--reorganize-imagenet", "PATH/TO/ILSVRC2012_img_val.tar", "--repair",
                                    data_root=root)
            # No count here: under -n a --deep shard sees only its own share of the damaged images.
            return Fix("re-extract the damaged images from your val tar (nothing else is touched): "
                       f"{command}")
        return Fix.run(fetch_command("--reorganize-imagenet", tar, "--repair", data_root=root))

    def _named_root(self, asset: Asset) -> Path | None:
        """The data root, when a fix must name it (a data asset, a root the user chose)."""
        root = self.settings["data-root"]
        if asset.kind is not AssetKind.DATA or self.tiny_root or root.origin is Origin.DEFAULT:
            return None
        return root.value

    @cached_property
    def imagenet_tar(self) -> Path | None:
        if self.world is None or self.tiny_root:
            return None
        return find_imagenet_tar(self.world, {k: r.value for k, r in self.settings.items()})

    @cached_property
    def verify_cache(self):
        from preflight_core.verify_cache import VerifyCache, default_cache_path

        return VerifyCache(self.tiny_root / "verified" if self.tiny_root else default_cache_path())

    @cached_property
    def meta(self):
        from checks.imagenet import load_meta

        return load_meta(self.world.path("imagenet_meta"))

    @cached_property
    def gpu_report(self):
        """One probe per session, sized for the models this selection touches."""
        from checks.gpu import probe_gpu, required_free_bytes

        touched = [self.world.facts_for(a) for a in ASSETS.values()
                   if a.kind is AssetKind.MODEL and self.selection.touches(a)]
        return probe_gpu(self.device, required_free_bytes(touched))

    # ------------------------------------------------------------------ the world

    def open_world(self, worker_tiny_root: str | None = None) -> None:
        """Build or load the world: a tiny one (--tiny, --tiny-world, or the controller's) or the data root."""
        from checks import tiny

        quiet_transformers_default_config()
        if worker_tiny_root:
            self.tiny_root = Path(worker_tiny_root)
            self.world = tiny.load_tiny_world(self.tiny_root)
        elif self.value("tiny-world"):
            self.tiny_root = self.value("tiny-world").resolve()
            if not (self.tiny_root / tiny.WORLD_FILE).is_file():
                raise pytest.UsageError(f"no tiny world in {self.tiny_root} ({tiny.WORLD_FILE} is missing): "
                                        "build one with checks.tiny.build_tiny_world, or use --tiny")
            self.world = tiny.load_tiny_world(self.tiny_root)
        elif self.value("tiny"):
            started = time.monotonic()
            self.tiny_root = Path(tempfile.mkdtemp(prefix="preflight-tiny-")) / "world"
            # Tiny models only when a model is checked: `--tiny -m "imagenet and not model"` needs no torch.
            models = any(ASSETS[n].kind == "model" for n in self.selection.touched)
            self.world = tiny.build_tiny_world(self.tiny_root, models=models)
            self.owns_tiny_root = True
            self.tiny_build_seconds = time.monotonic() - started
        else:
            self.world = World(self.value("data-root"))
            uses_data = any(ASSETS[n].kind is AssetKind.DATA for n in self.selection.touched)
            root = self.settings["data-root"]
            problem = data_root_problem(self.world.data_root, root.source, root.origin is not Origin.DEFAULT) \
                if uses_data else None
            if problem and self.value("fetch-missing"):
                problem = self._create_data_root(problem)
            if problem:
                self.problems.append(problem)

    def _create_data_root(self, problem: tuple[str, Fix]) -> tuple[str, Fix] | None:
        """--fetch-missing into a data root that does not exist yet: create it (None), or say why nothing was fetched."""
        root = self.world.data_root
        if root.exists() or root.is_symlink():  # not a folder, a dangling link: the problem stands
            return (f"{problem[0]}; --fetch-missing fetched nothing", problem[1])
        try:
            root.mkdir(parents=True)
        except OSError as e:
            return (f"{problem[0]}; --fetch-missing could not create it ({e.strerror or e}) and fetched nothing",
                    problem[1])
        return None

    def close(self) -> None:
        if self.owns_tiny_root and self.tiny_root:
            shutil.rmtree(self.tiny_root.parent, ignore_errors=True)


CHECKUP = pytest.StashKey[Checkup]()
NARROWED = pytest.StashKey[list]()  # what narrowed the run, besides -m


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def header_lines(checkup: Checkup) -> list[str]:
    """The report header: what this run checks, where, with which libraries (reproducible runs)."""
    s = checkup.settings
    device = f"device {s['device'].value} ({s['device'].source})"
    if checkup.load_device != checkup.device and any(ASSETS[n].kind == "model" for n in checkup.selection.touched):
        device = f"models load on {checkup.load_device} (-m selects no gpu check)"
    lines = [f"preflight: selection {checkup.selection.describe()}; {device}"]
    if checkup.tiny_root:
        built = f" (built in {checkup.tiny_build_seconds:.1f}s)" if checkup.tiny_build_seconds is not None else ""
        lines.append(f"preflight: tiny world in {checkup.tiny_root}{built}")
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
    return [shown(line) for line in lines]
