"""python -m fetchers: fetch assets without pytest.

    python -m fetchers --all
    python -m fetchers --siglip2 --clip
    python -m fetchers --imagenet-map --coco [--coco-source official]
    python -m fetchers --reorganize-imagenet /path/to/ILSVRC2012_img_val.tar

The fetch flags come from the registry (each asset's ``fetch_flag``); a flag whose fetcher reads an
option (the registry's ``fetch_input``: the ImageNet val tar) takes that option's value.
"""

from __future__ import annotations

import argparse
import configparser
import os
import sys
from pathlib import Path

from fetchers.plan import FETCHERS, fetch_one, size_text
from preflight_core.findings import human_bytes, shown
from preflight_core.options import OPTIONS, OptionError, resolve
from preflight_core.presence import find_imagenet_tar
from preflight_core.registry import ASSETS, DOWNLOADS
from preflight_core.world import World

PROJECT = Path(__file__).resolve().parents[1]
# flag -> assets it fetches (the registry's fetch_flag), in the order the fetchers run
GROUPS = {flag: [a.name for a in ASSETS.values() if a.fetch_flag == flag]
          for flag in dict.fromkeys(a.fetch_flag for a in ASSETS.values() if a.fetch_flag)}


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _input_of(names: list[str]) -> str | None:
    """The option a flag's value stands for (e.g. ``imagenet-tar``), if its fetchers read one."""
    return next((ASSETS[n].fetch_input for n in names if ASSETS[n].fetch_input), None)


def _help(names: list[str]) -> str:
    assets = [ASSETS[n] for n in names]
    size = sum(a.approx_bytes for a in assets)
    text = ", ".join(a.title for a in assets) + (f" ({human_bytes(size)})" if size else "")
    notes = [a.fetch_note for a in assets if a.fetch_note]
    return "; ".join([text, *notes])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fetchers", description="Fetch the assets preflight checks.")
    p.add_argument("--all", action="store_true", help="everything that can be fetched (ImageNet val needs a tar)")
    for flag, names in GROUPS.items():
        option = _input_of(names)
        if option:
            p.add_argument(flag, metavar=option.rsplit("-", 1)[-1].upper(), type=Path, help=_help(names))
        else:
            p.add_argument(flag, action="store_true", help=_help(names))
    p.add_argument("--data-root", type=Path, default=None, help="default: $PREFLIGHT_DATA_ROOT or data/raw")
    p.add_argument("--coco-source", choices=("kaggle", "official"), default=None,
                   help="default: $PREFLIGHT_COCO_SOURCE or kaggle")
    p.add_argument("--stall-seconds", default=None, help=OPTIONS["stall-seconds"].help)
    p.add_argument("--repair", action="store_true",
                   help="with --reorganize-imagenet TAR: re-extract from TAR only the images of an existing "
                        "imagenet_val that are missing or differ from the tar (nothing else is touched)")
    return p


def selected(args: argparse.Namespace) -> list[str]:
    """The assets the flags ask for."""
    return [n for flag, names in GROUPS.items()
            if args.all or getattr(args, _dest(flag)) not in (None, False) for n in names]


def ini_values(path: Path = PROJECT / "pytest.ini") -> dict[str, str]:
    """The project's preflight_* ini keys, so the CLI and pytest agree on the data root."""
    parser = configparser.ConfigParser()
    parser.read(path)
    return dict(parser["pytest"]) if parser.has_section("pytest") else {}


def settings_from(args: argparse.Namespace) -> dict:
    ini = ini_values()
    cli = {"data-root": args.data_root, "coco-source": args.coco_source, "stall-seconds": args.stall_seconds}
    for flag, names in GROUPS.items():
        if option := _input_of(names):
            cli[option] = getattr(args, _dest(flag))
    out = {}
    for name, value in cli.items():
        opt = OPTIONS[name]
        resolved = resolve(opt, None if value is None else str(value), os.environ, ini.get(opt.ini), "pytest.ini")
        out[name] = resolved.value
        if name == "data-root" and not resolved.given_by_user and not Path(str(resolved.value)).is_absolute():
            out[name] = PROJECT / str(resolved.value)  # relative to the project, as under pytest
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    names = selected(args)
    if not names:
        parser().print_usage(sys.stderr)
        flags = " ".join(f"{f} {option.rsplit('-', 1)[-1].upper()}" if (option := _input_of(n)) else f
                         for f, n in GROUPS.items())
        print(f"nothing selected: pass --all or one of {flags}", file=sys.stderr)
        return 2
    try:
        settings = settings_from(args)
    except OptionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    world = World(Path(settings["data-root"]).absolute())
    if args.repair:
        return repair(args, world, settings)
    if args.all and "imagenet_val" in names and find_imagenet_tar(world, settings) is None:
        names.remove("imagenet_val")
        print("imagenet_val: skipped: no ImageNet val tar given or found in "
              f"{world.data_root / DOWNLOADS} (download it from https://image-net.org, then run "
              "python -m fetchers --reorganize-imagenet PATH)")
    failed = 0
    for name in (n for n in FETCHERS if n in names):  # the fetchers' order: metadata before the val tar
        asset = ASSETS[name]
        print(f"{name}: fetching {asset.title} ({size_text(world, asset, settings)}) -> {shown(world.path(asset))}",
              flush=True)
        try:
            outcome = fetch_one(world, name, settings)
        except KeyboardInterrupt as e:  # FetchInterrupted: one line, what was left and that a rerun resumes
            print(f"\n{shown(e)}" if str(e) else f"\ninterrupted while fetching {name}", file=sys.stderr)
            return 130
        if outcome.ok:
            print(f"{name}: {shown(outcome.message)}")
        else:  # every failure is reported once, with its fix, and the other fetches still run
            failed += 1
            fix = f"\n{name}: fix: {shown(outcome.fix.text)}" if outcome.fix else ""
            print(f"{name}: FAILED: {shown(outcome.message)}{fix}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(names)} fetches failed (the fix is under each)", file=sys.stderr)
    return 1 if failed else 0


def repair(args: argparse.Namespace, world: World, settings: dict) -> int:
    """``--reorganize-imagenet TAR --repair``: re-extract the damaged images of an existing tree."""
    from fetchers.errors import explain
    from fetchers.imagenet_tar import repair_imagenet_val

    if not args.reorganize_imagenet or args.all or selected(args) != ["imagenet_val"]:
        print("error: --repair goes with --reorganize-imagenet TAR alone", file=sys.stderr)
        return 2
    tar = Path(settings["imagenet-tar"])
    print(f"imagenet_val: comparing {shown(world.path(ASSETS['imagenet_val']))} with {shown(tar)}", flush=True)
    try:
        result = repair_imagenet_val(tar, world.data_root)
    except KeyboardInterrupt:
        print("\ninterrupted: nothing was replaced in the tree; rerun the same command", file=sys.stderr)
        return 130
    except Exception as e:  # the tar, the tree, the file system: one message and its fix
        message, fix = explain(e, world.data_root)
        print(f"imagenet_val: FAILED: {shown(message)}" + (f"\nimagenet_val: fix: {shown(fix.text)}" if fix else ""),
              file=sys.stderr)
        return 1
    if not result.repaired:
        print(f"imagenet_val: all {result.n_checked:,} images equal those of {shown(tar.name)}; nothing to repair")
    else:
        names = ", ".join(shown(p) for p in result.repaired[:5]) + (" …" if len(result.repaired) > 5 else "")
        print(f"imagenet_val: re-extracted {len(result.repaired):,} of {result.n_checked:,} images from "
              f"{shown(tar.name)} ({names}) in {result.seconds:.1f} s; nothing else was touched")
    return 0


def run(argv: list[str] | None = None) -> int:
    """The console entry: ``main`` with Ctrl-C outside a fetch (start-up) also ending in one line."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("\ninterrupted before any fetch started; nothing was changed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(run())
