"""Is an asset there? One answer for the checks (present / absent / broken) and for the fetchers."""

from __future__ import annotations

import os

from checks.imagenet import META_FILENAMES
from checks.registry import Asset
from checks.world import World


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


def needs_fetch(world: World, asset: Asset) -> bool:
    """Would a fetch add something? Absent, a dangling link, or files missing (never: files that differ)."""
    state, _ = asset_state(world, asset)
    path = world.path(asset)
    if state == "absent" or (state == "broken" and path.is_symlink()):
        return True
    if asset.name == "imagenet_meta":
        return not all((path / name).is_file() for name in META_FILENAMES)
    if asset.kind == "model":
        from checks.models import cache_report

        return bool(cache_report(world.facts_for(asset), world.hf_cache).missing)
    return False


def free_empty_folder(world: World, asset: Asset) -> None:
    """An empty folder where a data asset goes holds nothing of the user's: make room for the fetch."""
    path = world.path(asset)
    if asset.kind == "data" and path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        path.rmdir()
