"""Is an asset there? One answer for the checks (present / absent / broken) and for the fetchers."""

from __future__ import annotations

import os
from pathlib import Path

from preflight_core.registry import DOWNLOADS, IMAGENET_TAR_NAMES, Asset
from preflight_core.world import World


def asset_state(world: World, asset: Asset) -> tuple[str, str]:
    """("present" | "absent" | "broken", detail). Cheap: no scan, no torch."""
    path = world.path(asset)
    if asset.kind == "data":
        if path.is_symlink() and not path.exists():
            return "broken", f"{path} is a symlink to {os.readlink(path)}, which does not exist"
        if path.exists() and not path.is_dir():
            return "broken", f"{path} exists but is not a folder"
        if not path.is_dir():
            return "absent", f"{path} does not exist"
        if not any(not p.name.startswith(".") for p in path.iterdir()):
            return "absent", f"{path} is empty"  # e.g. only the lock files of a fetch that failed
        return "present", ""
    if asset.kind == "model":
        snapshots = path / "snapshots"
        if snapshots.is_dir() and any(snapshots.iterdir()):
            return "present", ""
        return "absent", f"{asset.location} is not in the Hugging Face cache {world.hf_cache}"
    return "present", ""


def find_imagenet_tar(world: World, settings: dict) -> Path | None:
    """The val tar a reorganize would use: ``--imagenet-tar``, or one in ``<data root>/downloads/``."""
    given = settings.get("imagenet-tar")
    if given:
        return Path(given)
    downloads = world.data_root / DOWNLOADS
    return next((downloads / n for n in IMAGENET_TAR_NAMES if (downloads / n).is_file()), None)
