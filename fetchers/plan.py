"""Which fetcher gets which registry asset, and the order they run in.

Used by ``pytest --fetch-missing`` (in the controller, before any xdist worker starts, so
every artifact is fetched once and its progress bar is visible) and by ``python -m fetchers``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from filelock import FileLock

from core.hf_cache import cache_report
from core.imagenet_files import derive_wnid_to_label
from core.presence import asset_state
from core.registry import (
    ASSETS,
    CLASS_INDEX,
    COCO_VAL_ZIP,
    IMAGENET_META_FILES,
    META_FILENAMES,
    WNID_TO_LABEL_FILENAME,
    Asset,
)
from core.world import World
from fetchers.download import check_free_space, fetch_file, redact

IMAGENET_TAR_NAMES = ("ILSVRC2012_img_val.tar", "val_blurred.tar.gz")
DOWNLOADS = "downloads"  # <data root>/downloads: archives kept after fetching


class FetchError(RuntimeError):
    """A fetch that cannot succeed as things are; the message says what to do."""


def _summary(n_bytes: int, seconds: float, what: str = "fetched") -> str:
    return f"{what} {n_bytes / 2**20:,.1f} MiB in {seconds:.1f} s"


# ----------------------------------------------------------------------------- policy


def needs_fetch(world: World, asset: Asset) -> bool:
    """Would a fetch add something? Absent, a dangling link, or files missing (never: files that differ)."""
    state, _ = asset_state(world, asset)
    path = world.path(asset)
    if state == "absent" or (state == "broken" and path.is_symlink()):
        return True
    if asset.name == "imagenet_meta":
        return not all((path / name).is_file() for name in META_FILENAMES)
    if asset.kind == "model":
        return bool(cache_report(world.facts_for(asset), world.hf_cache).missing)
    return False


def free_empty_folder(world: World, asset: Asset) -> None:
    """An empty folder where a data asset goes holds nothing of the user's: make room for the fetch."""
    path = world.path(asset)
    if asset.kind == "data" and path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        path.rmdir()


def fetch_imagenet_meta(world: World, settings: dict) -> str:
    folder = world.path("imagenet_meta")
    pins = world.facts_for("imagenet_meta").pins  # the registry's, or a tiny world's own
    t0, total = time.monotonic(), 0
    for remote in IMAGENET_META_FILES.values():
        pinned = replace(remote, size=pins[remote.filename][0], sha256=pins[remote.filename][1])
        total += fetch_file(pinned, folder).bytes_downloaded
    _derive_wnid_to_label(folder)
    return _summary(total, time.monotonic() - t0)


def _derive_wnid_to_label(folder: Path) -> None:
    """Write wnid_to_label.json from the class index, atomically; an existing different one is reported."""
    data = (json.dumps(derive_wnid_to_label(json.loads((folder / CLASS_INDEX).read_text())), indent=1) + "\n").encode()
    final = folder / WNID_TO_LABEL_FILENAME
    with FileLock(str(folder / f".{WNID_TO_LABEL_FILENAME}.lock")):
        if final.exists():
            if json.loads(final.read_bytes()) != json.loads(data):
                raise FetchError(f"{final} exists and disagrees with {CLASS_INDEX}; it was left as it is. "
                                 f"Fix: move it aside and run python -m fetchers --imagenet-map")
            return
        tmp = folder / f".{WNID_TO_LABEL_FILENAME}.{secrets.token_hex(4)}.part"
        tmp.write_bytes(data)
        os.replace(tmp, final)


def find_imagenet_tar(world: World, settings: dict) -> Path | None:
    given = settings.get("imagenet-tar")
    if given:
        return Path(given)
    downloads = world.data_root / DOWNLOADS
    return next((downloads / n for n in IMAGENET_TAR_NAMES if (downloads / n).is_file()), None)


def fetch_imagenet_val(world: World, settings: dict) -> str:
    from fetchers.imagenet_tar import reorganize_imagenet_tar

    tar = find_imagenet_tar(world, settings)
    if tar is None:
        raise FetchError(
            "ImageNet val cannot be downloaded automatically (an image-net.org account is needed). "
            "1. Log in at https://image-net.org and download ILSVRC2012_img_val.tar (6.3 GiB) "
            f"(or the face-blurred val_blurred.tar.gz); 2. put it in {world.data_root / DOWNLOADS}/ or pass "
            "--imagenet-tar=PATH; 3. run python -m fetchers --reorganize-imagenet PATH "
            "(or pytest --fetch-missing again)")
    if not world.path("imagenet_meta").joinpath(IMAGENET_META_FILES["val_synsets"].filename).is_file():
        fetch_imagenet_meta(world, settings)
    result = reorganize_imagenet_tar(tar, world.data_root)
    if result.already_present:
        return f"already reorganized from {tar.name}"
    return f"reorganized {result.n_images:,} images from {tar.name} in {result.seconds:.1f} s"


def fetch_coco(world: World, settings: dict) -> str:
    if settings.get("coco-source", "kaggle") == "official":
        return fetch_coco_official(world, settings)
    from fetchers.kaggle import fetch_coco_kaggle

    result = fetch_coco_kaggle(world.data_root)
    return "already in the kagglehub cache, linked" if result.already_present else _summary(
        result.bytes_downloaded, result.seconds)


def fetch_coco_official(world: World, settings: dict) -> str:
    """The cocodataset.org zip (pinned sha256), extracted into a temp folder renamed into place."""
    t0 = time.monotonic()
    _refuse_existing(world.path("coco_val2017"))  # before 815 MB of download, not after
    downloads = world.data_root / DOWNLOADS
    result = fetch_file(COCO_VAL_ZIP, downloads)
    extract_coco_zip(result.path, world.path("coco_val2017"))
    return _summary(result.bytes_downloaded, time.monotonic() - t0, "fetched and extracted")


def _refuse_existing(dest: Path) -> None:
    if dest.exists() or dest.is_symlink():
        raise FetchError(f"{dest} already exists; it was left untouched and nothing was extracted. Fix: if it is "
                         "stale, move it away and rerun; if it holds COCO val2017, fix what the checks report instead")


def extract_coco_zip(zip_path: Path, dest: Path) -> None:
    """Extract ``val2017/*.jpg`` into ``dest``: temp folder first, renamed into place when complete."""
    with FileLock(str(dest.parent / f".{dest.name}.lock")):
        _refuse_existing(dest)
        with zipfile.ZipFile(zip_path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            unsafe = [m.filename for m in members if m.filename.startswith("/") or ".." in Path(m.filename).parts
                      or not m.filename.startswith("val2017/") or m.filename.count("/") != 1]
            if unsafe:
                raise FetchError(f"{zip_path} holds unexpected or unsafe members ({', '.join(unsafe[:3])}); "
                                 "nothing was extracted. Fix: delete the zip and fetch it again")
            check_free_space(dest.parent, sum(m.file_size for m in members), "COCO val2017")
            tmp = dest.parent / f".{dest.name}.partial-{secrets.token_hex(4)}"
            tmp.mkdir(parents=True)
            try:
                for m in members:
                    with zf.open(m) as src, open(tmp / Path(m.filename).name, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                os.replace(tmp, dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)


def fetch_model(asset: Asset) -> Callable[[World, dict], str]:
    def fetch(world: World, settings: dict) -> str:
        from fetchers.hub import fetch_hf_model

        result = fetch_hf_model(world.facts_for(asset), cache_dir=world.hf_cache)
        return "already cached" if result.already_present else _summary(result.bytes_downloaded, result.seconds)

    return fetch


FETCHERS: dict[str, Callable[[World, dict], str]] = {
    "imagenet_meta": fetch_imagenet_meta,  # first: the val tar is labelled by its synsets file
    "imagenet_val": fetch_imagenet_val,
    "coco_val2017": fetch_coco,
    **{a.name: fetch_model(a) for a in ASSETS.values() if a.kind == "model"},
}


def fetch_missing(world: World, assets: Iterable[Asset], settings: dict,
                  log: Callable[[str], None] = print) -> dict[str, str]:
    """Fetch each absent asset that has a fetcher; return name -> what happened (for the report).

    A failure is recorded, not raised: the asset's checks then fail with the reason.
    """
    wanted = {a.name for a in assets}
    outcome = {}
    for name, fetch in FETCHERS.items():
        asset = ASSETS[name]
        if name not in wanted or not needs_fetch(world, asset):
            continue
        free_empty_folder(world, asset)
        log(f"preflight: fetching {name} ({asset.title}, {asset.size_hint})")
        try:
            outcome[name] = fetch(world, settings)
        except Exception as e:  # any failure becomes the asset's row, never a crashed session
            outcome[name] = "fetch failed: " + redact(" ".join(str(e).split()))  # one line for the table
        log(f"preflight: {name}: {outcome[name]}")
    return outcome
