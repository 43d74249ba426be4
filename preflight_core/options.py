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


def _positive_seconds(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise OptionError("expected a positive number of seconds, e.g. 60")
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
               _path, Path("data/raw")),
        Option("device", "where forward passes run: cuda (default), cuda:N or cpu (cpu under --tiny)",
               _device, "cuda"),
        Option("tiny", "check a tiny generated world on the CPU instead of the real assets (CI smoke test)",
               _bool, False, is_flag=True),
        Option("deep", "also decode every image and hash every weight file (cached by path+size+mtime)",
               _bool, False, is_flag=True),
        Option("fetch-missing", "download absent assets that the selected checks need, then check them",
               _bool, False, is_flag=True),
        Option("imagenet-tar", "a downloaded ImageNet val tar to reorganize when fetching", _path, None),
        Option("coco-source", "where --fetch-missing gets COCO val2017: kaggle (default) or official",
               _choice("kaggle", "official"), "kaggle"),
        Option("report-json", "also write the readiness report as JSON to this path", _path, None),
        Option("stall-seconds", "a download attempt that receives less than 16 KiB in this many seconds ends and "
               "is retried (default: 60)", _positive_seconds, 60.0),
        Option("golden", "also run the golden check (zero-shot top-1 against the published number) with -m phaseN",
               _bool, False, is_flag=True),
        Option("golden-per-class", "images per class the golden check samples from ImageNet val (default: 5)",
               _positive_int, 5),
        Option("tiny-world", "check an already built tiny world (a folder made by checks.tiny; self-tests)",
               _path, None),
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
