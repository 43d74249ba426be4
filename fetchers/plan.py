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
from dataclasses import dataclass, replace
from pathlib import Path

from filelock import FileLock

from fetchers.download import check_free_space, fetch_file
from fetchers.errors import FetchError, FetchInterrupted, explain, fetch_command
from preflight_core.commands import move_aside, shell
from preflight_core.findings import Fix, human_bytes
from preflight_core.hf_cache import Identity, cache_report, weights_identity
from preflight_core.imagenet_files import derive_wnid_to_label
from preflight_core.presence import AssetState, asset_state, find_imagenet_tar
from preflight_core.registry import (
    ASSETS,
    CLASS_INDEX,
    COCO_VAL_ZIP,
    DOWNLOADS,
    IMAGENET_META_FILES,
    IMAGENET_VAL_TAR,
    WNID_TO_LABEL_FILENAME,
    Asset,
    AssetKind,
)
from preflight_core.world import World

__all__ = ["FETCHERS", "FetchError", "FetchOutcome", "fetch_missing", "fetch_one"]


@dataclass(frozen=True)
class FetchOutcome:
    """What one fetch did, for the report: ``ok`` (the asset is there now), a message, a fix when not ok.

    ``notes``: what else the fetch did or found (a cached file it replaced, refs/main moved), for the row.
    """

    asset: str
    ok: bool
    message: str
    fix: Fix = Fix()
    changed: bool = False  # something was written (downloaded, linked, reorganized)
    notes: tuple[str, ...] = ()


def _summary(n_bytes: int, seconds: float, what: str = "fetched") -> str:
    return f"{what} {human_bytes(n_bytes)} in {seconds:.1f} s"


def size_text(world: World, asset: Asset, settings: dict) -> str:
    """What fetching ``asset`` moves: the local tar a reorganize reads, else the registry's download size."""
    if asset.fetch_input == "imagenet-tar":
        tar = find_imagenet_tar(world, settings)
        if tar is not None and tar.is_file():
            return f"{human_bytes(tar.stat().st_size)} local tar"
    return asset.size_hint


def rerun(world: World, *args: str) -> str:
    """The command that (re)fetches with ``args`` into this world's data root."""
    return fetch_command(*args, data_root=world.data_root)


# ----------------------------------------------------------------------------- policy


def needs_fetch(world: World, asset: Asset) -> bool:
    """Would a fetch add something? Absent, a dangling link, files missing; for a model also broken files
    or weights other than the published ones (never: a user's data files that differ)."""
    state, _ = asset_state(world, asset)
    path = world.path(asset)
    if state is AssetState.ABSENT or (state is AssetState.BROKEN and path.is_symlink()):
        return True
    if asset.fetch_fills_in:
        return not all((path / name).is_file() for name in asset.fetch_fills_in)
    if asset.kind is AssetKind.MODEL:  # the HF cache is a cache: broken files and other weights are fetched again
        facts = world.facts_for(asset)
        report = cache_report(facts, world.hf_cache)  # the checks' answer: small files hashed
        return bool(report.missing or report.broken) or \
            weights_identity(facts, world.hf_cache).status in (Identity.OTHER, Identity.UNVERIFIED)
    return False


def free_empty_folder(world: World, asset: Asset) -> None:
    """An empty folder where a data asset goes holds nothing of the user's: make room for the fetch.

    Only for fetches that put a link (or a new folder) where the asset goes (``fetch_needs_free_slot``);
    the others fill an empty folder in place (metadata) or rename onto it (the reorganized val tree).
    """
    path = world.path(asset)
    if asset.fetch_needs_free_slot and path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        path.rmdir()  # may fail (read-only, immutable, a mount point): fetch_one makes that the asset's outcome


def fetch_imagenet_meta(world: World, settings: dict) -> FetchOutcome:
    folder = world.path("imagenet_meta")
    pins = world.facts_for("imagenet_meta").pins  # the registry's, or a tiny world's own
    t0, total = time.monotonic(), 0
    for remote in IMAGENET_META_FILES.values():
        pinned = replace(remote, size=pins[remote.filename][0], sha256=pins[remote.filename][1])
        total += fetch_file(pinned, folder, stall_seconds=settings.get("stall-seconds")).bytes_downloaded
    wrote = _derive_wnid_to_label(folder, rerun(world, "--imagenet-map"))
    if not total and not wrote:
        return FetchOutcome("imagenet_meta", True, "already there (pinned sizes and sha256 match)")
    message = _summary(total, time.monotonic() - t0) if total else f"derived {WNID_TO_LABEL_FILENAME} from {CLASS_INDEX}"
    return FetchOutcome("imagenet_meta", True, message, changed=True)


def _derive_wnid_to_label(folder: Path, command: str) -> bool:
    """Write wnid_to_label.json from the class index, atomically (True); an existing one is kept and checked."""
    data = (json.dumps(derive_wnid_to_label(json.loads((folder / CLASS_INDEX).read_text())), indent=1) + "\n").encode()
    final = folder / WNID_TO_LABEL_FILENAME
    aside = Fix.run(move_aside(final, ".old"), command)
    with FileLock(str(folder / f".{WNID_TO_LABEL_FILENAME}.lock")):
        if final.exists() or final.is_symlink():
            try:
                existing = json.loads(final.read_bytes())
            except (OSError, ValueError) as e:  # not JSON, not UTF-8, a dangling link, a folder
                raise FetchError(f"{final} exists but cannot be read as JSON ({type(e).__name__}: "
                                 f"{' '.join(str(e).split())}); it was left as it is", aside) from None
            if existing != json.loads(data):
                raise FetchError(f"{final} exists and disagrees with {CLASS_INDEX}; it was left as it is", aside)
            return False
        tmp = folder / f".{WNID_TO_LABEL_FILENAME}.{secrets.token_hex(4)}.part"
        tmp.write_bytes(data)
        os.replace(tmp, final)
        return True


def fetch_imagenet_val(world: World, settings: dict) -> FetchOutcome:
    from fetchers.imagenet_tar import reorganize_imagenet_tar

    tar = find_imagenet_tar(world, settings)
    if tar is None:
        raise FetchError(
            "ImageNet val cannot be downloaded automatically (an image-net.org account is needed); no val tar was "
            f"given (--imagenet-tar) or found in {world.data_root / DOWNLOADS}",
            f"1. log in at https://image-net.org and download {IMAGENET_VAL_TAR.filename} "
            f"({human_bytes(IMAGENET_VAL_TAR.size)}) or the face-blurred val_blurred.tar.gz; 2. put it in "
            f"{world.data_root / DOWNLOADS}/ or pass --imagenet-tar=PATH; 3. run "
            f"{rerun(world, '--reorganize-imagenet', 'PATH')} (or pytest --fetch-missing again)")
    if not world.path("imagenet_meta").joinpath(IMAGENET_META_FILES["val_synsets"].filename).is_file():
        fetch_imagenet_meta(world, settings)
    result = reorganize_imagenet_tar(tar, world.data_root)
    if result.already_present:
        return FetchOutcome("imagenet_val", True, f"already reorganized from {tar.name}")
    return FetchOutcome("imagenet_val", True,
                        f"reorganized {result.n_images:,} images from {tar.name} in {result.seconds:.1f} s",
                        changed=True)


def fetch_coco(world: World, settings: dict) -> FetchOutcome:
    if settings.get("coco-source", "kaggle") == "official":
        return fetch_coco_official(world, settings)
    from fetchers.kaggle import fetch_coco_kaggle

    result = fetch_coco_kaggle(world.data_root)
    if result.already_present:
        return FetchOutcome("coco_val2017", True, "already in the kagglehub cache, linked")
    return FetchOutcome("coco_val2017", True, _summary(result.bytes_downloaded, result.seconds), changed=True)


def fetch_coco_official(world: World, settings: dict) -> FetchOutcome:
    """The cocodataset.org zip (pinned sha256), extracted into a temp folder renamed into place."""
    t0 = time.monotonic()
    _refuse_existing(world.path("coco_val2017"))  # before 815 MB of download, not after
    downloads = world.data_root / DOWNLOADS
    result = fetch_file(COCO_VAL_ZIP, downloads, stall_seconds=settings.get("stall-seconds"))
    extract_coco_zip(result.path, world.path("coco_val2017"))
    return FetchOutcome("coco_val2017", True,
                        _summary(result.bytes_downloaded, time.monotonic() - t0, "fetched and extracted"),
                        changed=True)


def _refuse_existing(dest: Path) -> None:
    if dest.exists() or dest.is_symlink():
        raise FetchError(f"{dest} already exists; it was left untouched and nothing was extracted",
                         f"if it is stale, move it away ({move_aside(dest, '.old')}) and rerun; if it holds COCO "
                         "val2017, fix what the checks report instead")


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
                                 "nothing was extracted",
                                 Fix(f"delete the zip ({shell('rm', '--', zip_path)}) and fetch it again"))
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


def fetch_model(asset: Asset) -> Callable[[World, dict], FetchOutcome]:
    def fetch(world: World, settings: dict) -> FetchOutcome:
        from fetchers.hub import fetch_hf_model

        result = fetch_hf_model(world.facts_for(asset), cache_dir=world.hf_cache)
        if result.already_present:
            return FetchOutcome(asset.name, True, "already cached", notes=result.notes)
        return FetchOutcome(asset.name, True, _summary(result.bytes_downloaded, result.seconds), changed=True,
                            notes=result.notes)

    return fetch


FETCHERS: dict[str, Callable[[World, dict], FetchOutcome]] = {
    "imagenet_meta": fetch_imagenet_meta,  # first: the val tar is labelled by its synsets file
    "imagenet_val": fetch_imagenet_val,
    "coco_val2017": fetch_coco,
    **{a.name: fetch_model(a) for a in ASSETS.values() if a.kind is AssetKind.MODEL},
}


# ----------------------------------------------------------------------------- running


def fetch_one(world: World, name: str, settings: dict) -> FetchOutcome:
    """Fetch one asset. Every failure becomes the outcome (message + fix); Ctrl-C becomes FetchInterrupted."""
    asset = ASSETS[name]
    try:
        free_empty_folder(world, asset)
        return FETCHERS[name](world, settings)
    except KeyboardInterrupt:
        raise FetchInterrupted(interrupted_line(world, asset)) from None
    except Exception as e:  # network, file system, permissions, read-only, a client's bug: the asset's row
        message, fix = explain(e, world.data_root)
        return FetchOutcome(name, False, message, fix)


def interrupted_line(world: World, asset: Asset) -> str:
    """One line for Ctrl-C: what was left where, and that the same command resumes."""
    left = [f"{path} ({human_bytes(size)})" for path, size in leftovers(world, asset)]
    if not left:
        return f"interrupted while fetching {asset.name}: nothing partial was left; rerun the same command to fetch it"
    return (f"interrupted while fetching {asset.name}: left {', '.join(left)}; rerun the same command to resume "
            f"(or remove it: {shell('rm', '-rf', *(p for p, _ in leftovers(world, asset)))})")


def leftovers(world: World, asset: Asset) -> list[tuple[Path, int]]:
    """Partial files and folders a stopped fetch of ``asset`` left behind, with their sizes in bytes."""
    found: list[Path] = []
    if asset.kind is AssetKind.DATA:
        root = world.data_root
        found += sorted(root.glob(f".{asset.location}.partial*")) if root.is_dir() else []
        for folder in (world.path(asset), root / DOWNLOADS):
            if folder.is_dir() and not folder.is_symlink():
                found += sorted(folder.glob(".*.part"))
    elif asset.kind is AssetKind.MODEL:
        blobs = world.path(asset) / "blobs"
        found += sorted(blobs.glob("*.incomplete")) if blobs.is_dir() else []
    return [(p, _tree_size(p)) for p in found if p.exists()]


def _tree_size(path: Path) -> int:
    if not path.is_dir():
        return path.stat().st_size
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


FAILED_LOG = "fetch failed (its row in the readiness table says why and how to fix it)"


def fetch_missing(world: World, assets: Iterable[Asset], settings: dict,
                  log: Callable[[str], None] = print) -> dict[str, FetchOutcome]:
    """Fetch each absent asset that has a fetcher; return name -> what happened (for the report).

    A failure is recorded, never raised: the asset's checks then fail with the reason and the fix.
    Ctrl-C raises :class:`FetchInterrupted`, whose text is the one line to show.
    """
    wanted = {a.name for a in assets}
    outcomes: dict[str, FetchOutcome] = {}
    for name in FETCHERS:
        asset = ASSETS[name]
        if name not in wanted:
            continue
        try:
            if not needs_fetch(world, asset):
                continue
        except OSError as e:  # e.g. the data root cannot be read: the fetch says why
            outcomes[name] = FetchOutcome(name, False, *explain(e, world.data_root))
            log(f"preflight: {name}: {FAILED_LOG}")
            continue
        log(f"preflight: fetching {name} ({asset.title}, {size_text(world, asset, settings)})")
        outcomes[name] = outcome = fetch_one(world, name, settings)
        log(f"preflight: {name}: {outcome.message}" if outcome.ok
            else f"preflight: {name}: {FAILED_LOG}")
    return outcomes
