"""Is an asset there? One answer for the checks (present / absent / broken) and for the fetchers."""

from __future__ import annotations

import enum
import os
from pathlib import Path

from preflight_core.findings import shown
from preflight_core.registry import DOWNLOADS, IMAGENET_TAR_NAMES, Asset, AssetKind
from preflight_core.world import World


class AssetState(enum.StrEnum):
    PRESENT = "present"
    ABSENT = "absent"
    BROKEN = "broken"


def asset_state(world: World, asset: Asset) -> tuple[AssetState, str]:
    """(present | absent | broken, detail). Cheap: no scan, no torch."""
    path = world.path(asset)
    where = shown(str(path))
    if asset.kind is AssetKind.DATA:
        if path.is_symlink() and not path.exists():
            return AssetState.BROKEN, f"{where} is a symlink to {shown(os.readlink(path))}, which does not exist"
        if path.exists() and not path.is_dir():
            return AssetState.BROKEN, f"{where} exists but is not a folder"
        if not path.is_dir():
            return AssetState.ABSENT, f"{where} does not exist"
        if not any(not p.name.startswith(".") for p in path.iterdir()):
            return AssetState.ABSENT, f"{where} is empty"  # e.g. only the lock files of a fetch that failed
        return AssetState.PRESENT, ""
    if asset.kind is AssetKind.MODEL:
        snapshots = path / "snapshots"
        if snapshots.is_dir() and any(snapshots.iterdir()):
            return AssetState.PRESENT, ""
        return AssetState.ABSENT, f"{asset.location} is not in the Hugging Face cache {shown(str(world.hf_cache))}"
    return AssetState.PRESENT, ""


def find_imagenet_tar(world: World, settings: dict) -> Path | None:
    """The val tar a reorganize would use: ``--imagenet-tar``, or one in ``<data root>/downloads/``."""
    given = settings.get("imagenet-tar")
    if given:
        return Path(given)
    downloads = world.data_root / DOWNLOADS
    return next((downloads / n for n in IMAGENET_TAR_NAMES if (downloads / n).is_file()), None)
