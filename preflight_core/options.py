"""preflight's options: one precedence chain, command line > environment > ini > default.

Pure functions, shared by the pytest plugin and the fetch CLI; an invalid value names its source.
"""

from __future__ import annotations

import enum
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path


class OptionError(ValueError):
    pass


def _path(raw: str) -> Path:
    if not raw.strip():
        raise OptionError("expected a path, got an empty string")
    return Path(raw).expanduser()


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise OptionError("expected one of 1/0, true/false, yes/no, on/off")


def _device(raw: str) -> str:
    value = raw.strip().lower()
    if value == "cpu" or re.fullmatch(r"cuda(:\d+)?", value):
        return value
    raise OptionError("expected cuda, cuda:N or cpu")


MAX_STALL_SECONDS = 3600.0


def _positive_seconds(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise OptionError("expected a positive number of seconds, e.g. 60")
    if value > MAX_STALL_SECONDS:  # a larger limit would let a dead connection hold the fetch for hours
        raise OptionError(f"expected at most {MAX_STALL_SECONDS:g} seconds (1 hour), e.g. 60")
    return value


def _positive_int(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value <= 0:
        raise OptionError("expected a positive whole number, e.g. 5")
    return value


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.strip() in choices:
            return raw.strip()
        raise OptionError(f"expected one of {', '.join(choices)}")

    return parse


@dataclass(frozen=True)
class Option:
    name: str  # the flag without dashes, e.g. "data-root"
    help: str
    parse: Callable[[str], object]
    default: object = None
    is_flag: bool = False
    metavar: str = ""  # what --help shows for the value: PATH, SECONDS, …

    @property
    def value_name(self) -> str:
        return self.metavar or self.name.split("-")[-1].upper()

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def dest(self) -> str:
        return "preflight_" + self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return "PREFLIGHT_" + self.name.replace("-", "_").upper()

    @property
    def ini(self) -> str:
        return "preflight_" + self.name.replace("-", "_")


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option("data-root", "folder that holds imagenet_val/, imagenet_meta/, coco_val2017/ (default: data/raw)",
               _path, Path("data/raw"), metavar="PATH"),
        Option("device", "where forward passes run: cuda (default), cuda:N or cpu (cpu under --tiny)",
               _device, "cuda", metavar="cuda|cuda:N|cpu"),
        Option("tiny", "check a tiny generated world on the CPU instead of the real assets (CI smoke test)",
               _bool, False, is_flag=True),
        Option("deep", "also decode every image and hash every weight file (results cached by content identity: "
               "size, mtime, inode, ctime)",
               _bool, False, is_flag=True),
        Option("fetch-missing", "download absent assets that the selected checks need, then check them",
               _bool, False, is_flag=True),
        Option("imagenet-tar", "a downloaded ImageNet val tar to reorganize when fetching", _path, None, metavar="PATH"),
        Option("coco-source", "where --fetch-missing gets COCO val2017: kaggle (default) or official",
               _choice("kaggle", "official"), "kaggle", metavar="kaggle|official"),
        Option("report-json", "also write the readiness report as JSON to this path", _path, None, metavar="PATH"),
        Option("stall-seconds", "a download attempt that receives less than 16 KiB in this many seconds ends and "
               "is retried (default: 60)", _positive_seconds, 60.0, metavar="SECONDS"),
        Option("golden", "also run the golden check (zero-shot top-1 against the published number) with -m phaseN",
               _bool, False, is_flag=True),
        Option("golden-per-class", "images per class the golden check samples from ImageNet val (default: 5)",
               _positive_int, 5, metavar="K"),
        Option("tiny-world", "check an already built tiny world (a folder made by checks.tiny; self-tests)",
               _path, None, metavar="PATH"),
        Option("fleet", "inside a Slurm allocation: run the same checks on every node (srun, one task per node) "
               "and print one nodes x assets table", _bool, False, is_flag=True),
        Option("fleet-dir", "write this node's report (with its Slurm identity) into this shared folder "
               "(under --fleet: where the node reports go; default $SLURM_SUBMIT_DIR/preflight-fleet/JOB-TIME)",
               _path, None, metavar="DIR"),
        Option("fleet-timeout", "under --fleet: a node still checking after this many seconds is stopped and "
               "reported as timed out (default: 1800)", _positive_seconds, 1800.0, metavar="SECONDS"),
    )
}


class Origin(enum.Enum):
    """Where an option's value came from (relative paths are relative to the cwd or the project)."""

    COMMAND_LINE = "command line"
    ENVIRONMENT = "environment"
    INI = "ini"
    DEFAULT = "default"
    IMPLIED = "implied"  # by another option, e.g. --device cpu by --tiny


@dataclass(frozen=True)
class Resolved:
    value: object
    source: str  # for people: "command line --x", "environment variable X", "ini key x in FILE", "default"
    origin: Origin = Origin.DEFAULT

    @property
    def given_by_user(self) -> bool:
        """Typed by the user here and now (relative to the current directory), not read from the project."""
        return self.origin in (Origin.COMMAND_LINE, Origin.ENVIRONMENT)


def resolve(option: Option, cli: object, environ: Mapping[str, str] = os.environ,
            ini: str | None = None, ini_file: str = "the ini file") -> Resolved:
    """Apply the precedence chain; ``cli`` is None when the flag was not given."""
    if cli is not None:
        raw, source, origin = cli, f"command line {option.flag}", Origin.COMMAND_LINE
    elif environ.get(option.env, "") != "":
        raw, source, origin = environ[option.env], f"environment variable {option.env}", Origin.ENVIRONMENT
    elif ini not in (None, ""):
        raw, source, origin = ini, f"ini key {option.ini} in {ini_file}", Origin.INI
    else:
        return Resolved(option.default, "default", Origin.DEFAULT)
    if not isinstance(raw, str):  # argparse already typed it (store_true flags)
        return Resolved(raw, source, origin)
    try:
        return Resolved(option.parse(raw), source, origin)
    except OptionError as e:
        raise OptionError(f"invalid value {raw!r} for {option.flag} (from {source}): {e}") from None
