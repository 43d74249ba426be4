"""python -m fetchers: fetch assets without pytest.

    python -m fetchers --all
    python -m fetchers --siglip2 --clip
    python -m fetchers --imagenet-map --coco [--coco-source official]
    python -m fetchers --reorganize-imagenet /path/to/ILSVRC2012_img_val.tar
"""

from __future__ import annotations

import argparse
import configparser
import os
import sys
from pathlib import Path

from core.options import OPTIONS, OptionError, resolve
from core.registry import ASSETS
from core.world import World

PROJECT = Path(__file__).resolve().parents[1]
# flag -> assets it fetches (the registry's fetch_flag), in the order the fetchers run
GROUPS = {flag: [a.name for a in ASSETS.values() if a.fetch_flag == flag]
          for flag in dict.fromkeys(a.fetch_flag for a in ASSETS.values() if a.fetch_flag)}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fetchers", description="Fetch the assets preflight checks.")
    p.add_argument("--all", action="store_true", help="everything that can be fetched (ImageNet val needs a tar)")
    p.add_argument("--siglip2", action="store_true", help="SigLIP2 base and so400m into the Hugging Face cache")
    p.add_argument("--clip", action="store_true", help="open_clip's openai weights for ViT-B/32 and ViT-L/14")
    p.add_argument("--imagenet-map", action="store_true", help="ImageNet class index, simple labels, val synsets")
    p.add_argument("--coco", action="store_true", help="COCO val2017 (Kaggle by default, see --coco-source)")
    p.add_argument("--reorganize-imagenet", metavar="TAR", type=Path,
                   help="reorganize a downloaded ILSVRC2012_img_val.tar (or val_blurred.tar.gz) into class folders")
    p.add_argument("--data-root", type=Path, default=None, help="default: $PREFLIGHT_DATA_ROOT or data/raw")
    p.add_argument("--coco-source", choices=("kaggle", "official"), default=None,
                   help="default: $PREFLIGHT_COCO_SOURCE or kaggle")
    return p


def selected(args: argparse.Namespace) -> list[str]:
    if args.all:
        return [n for names in GROUPS.values() for n in names]
    wanted = {"--siglip2": args.siglip2, "--clip": args.clip, "--imagenet-map": args.imagenet_map,
              "--coco": args.coco, "--reorganize-imagenet": args.reorganize_imagenet is not None}
    return [n for flag, names in GROUPS.items() if wanted.get(flag) for n in names]


def ini_values(path: Path = PROJECT / "pytest.ini") -> dict[str, str]:
    """The project's preflight_* ini keys, so the CLI and pytest agree on the data root."""
    parser = configparser.ConfigParser()
    parser.read(path)
    return dict(parser["pytest"]) if parser.has_section("pytest") else {}


def settings_from(args: argparse.Namespace) -> dict:
    ini = ini_values()
    cli = {"data-root": args.data_root, "coco-source": args.coco_source, "imagenet-tar": args.reorganize_imagenet}
    out = {}
    for name, value in cli.items():
        opt = OPTIONS[name]
        resolved = resolve(opt, None if value is None else str(value), os.environ, ini.get(opt.ini), "pytest.ini")
        out[name] = resolved.value
        if name == "data-root" and resolved.source in ("default", "ini key preflight_data_root in pytest.ini") \
                and not resolved.value.is_absolute():
            out[name] = PROJECT / resolved.value  # relative to the project, as under pytest
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    names = selected(args)
    if not names:
        parser().print_usage(sys.stderr)
        print("nothing selected: pass --all or one of --siglip2 --clip --imagenet-map --coco "
              "--reorganize-imagenet TAR", file=sys.stderr)
        return 2
    try:
        settings = settings_from(args)
    except OptionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from fetchers.download import redact
    from fetchers.plan import DOWNLOADS, FETCHERS, find_imagenet_tar

    world = World(Path(settings["data-root"]).absolute())
    if args.all and "imagenet_val" in names and find_imagenet_tar(world, settings) is None:
        names.remove("imagenet_val")
        print("imagenet_val: skipped: no ImageNet val tar given or found in "
              f"{world.data_root / DOWNLOADS} (download it from https://image-net.org, then run "
              "python -m fetchers --reorganize-imagenet PATH)")
    failed = 0
    for name in (n for n in FETCHERS if n in names):
        asset = ASSETS[name]
        print(f"{name}: fetching {asset.title} ({asset.size_hint}) -> {world.path(asset)}", flush=True)
        try:
            print(f"{name}: {FETCHERS[name](world, settings)}")
        except Exception as e:  # every failure is reported, and the other fetches still run
            failed += 1
            print(f"{name}: FAILED: {redact(str(e))}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(names)} fetches failed; nothing already there was changed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
