"""Fetch model weights from the Hugging Face Hub with huggingface_hub itself: its cache layout, locks and bars.

- SigLIP2 (transformers): ``snapshot_download(repo, allow_patterns=<the files of facts.files>)``.
- CLIP (open_clip, ``pretrained="openai"``): the one weights file open_clip 3.x looks for. The repo comes from
  open_clip's own pretrained table (``hf_hub`` of the tag, cross-checked with the registry) and the file name
  follows ``open_clip.pretrained.download_pretrained_from_hf``: ``open_clip_model.safetensors`` first, else
  ``open_clip_pytorch_model.bin``. We call ``hf_hub_download`` with the same repo, file, cache_dir and revision
  as open_clip does, so the file lands exactly where open_clip looks; we do not call open_clip's function
  because it swallows every error of the safetensors attempt and turns the last one into "Failed to download
  file (open_clip_pytorch_model.bin)", which hides a 401, a gated repo or a dead network, and it cannot be
  given an endpoint.

Resolved at call time, not at import: ``HF_ENDPOINT`` (huggingface_hub reads it only once, when
``huggingface_hub.constants`` is first imported, so it is passed explicitly as ``endpoint=``) and the cache
(``cache_dir`` argument > ``HF_HUB_CACHE`` > ``HF_HOME``/hub > ~/.cache/huggingface/hub, as the checks resolve it).

huggingface_hub checks sizes only. After a download every blob this call created is hashed and compared with
its name (the ETag: sha256 for LFS files, git blob sha1 otherwise); a mismatch removes that blob and its
snapshot link (they are ours, just written) and raises. Errors are raised ``from None`` with the cause in the
message, so no traceback shows the request (and its token).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from filelock import FileLock

from core.hashing import blob_digest
from core.hf_cache import cache_report, default_hf_cache, repo_dir
from core.registry import ModelFacts
from fetchers.download import DownloadError, FetchResult

DEFAULT_ENDPOINT = "https://huggingface.co"
REVISION = "main"


class HubFetchError(DownloadError):
    """A Hub download failed; the message names the repo, the file and the fix."""


def fetch_hf_model(asset_facts: ModelFacts, cache_dir: Path | None = None) -> FetchResult:
    """Put the files the model needs into the HF cache (exactly once, under a lock); verify what was downloaded.

    ``FetchResult.path`` is the snapshot folder (transformers) or the weights file (open_clip).
    """
    facts = asset_facts
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_hf_cache()
    endpoint = (os.environ.get("HF_ENDPOINT") or "").strip().rstrip("/") or None
    shown_endpoint = endpoint or _library_endpoint()
    if facts.library == "open_clip":
        repo_id, candidates = _open_clip_weights(facts)
        facts = dataclasses.replace(facts, repo_id=repo_id, files=(candidates,))  # what open_clip will look for
    repo_id, needs = facts.repo_id, list(facts.files)
    folder = repo_dir(cache, repo_id)
    t0 = time.monotonic()
    cache.mkdir(parents=True, exist_ok=True)
    lock = cache / ".locks" / "preflight" / f"{folder.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        present = _cached_path(facts, cache)
        if present is not None:  # re-check under the lock: another worker may have just fetched it
            return FetchResult(present, 0, time.monotonic() - t0, None, True)
        before = _blobs(folder)
        try:
            if facts.library == "open_clip":
                path = _download_first(repo_id, candidates, cache, endpoint)
            else:
                path = _snapshot(repo_id, needs, cache, endpoint)
        except HubFetchError:
            raise
        except Exception as e:  # translated into one clear message; anything unknown propagates as is
            message = _explain(e, repo_id, shown_endpoint)
            if message is None:
                raise
            # not `from e`: huggingface_hub's frames hold the request headers (the token) for `pytest -l`
            raise HubFetchError(message) from None
        new = _blobs(folder) - before
        _verify_new_blobs(folder, repo_id, new)
        downloaded = sum((folder / "blobs" / b).stat().st_size for b in new)
    return FetchResult(path, downloaded, time.monotonic() - t0, f"{shown_endpoint}/{repo_id}", False)


# --- what to fetch -----------------------------------------------------------------------------
def _open_clip_weights(facts: ModelFacts) -> tuple[str, tuple[str, ...]]:
    """(repo, file names in the order open_clip tries them) for ``pretrained="openai"``."""
    alternatives = next((f for f in facts.files if isinstance(f, tuple)), None)
    fallback = alternatives or tuple(f for f in facts.files if isinstance(f, str))
    try:
        import open_clip
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    except ImportError:  # open_clip absent: the registry's facts say the same thing
        return facts.repo_id, fallback
    name = facts.open_clip_name or ""
    cfg = open_clip.get_pretrained_cfg(name, "openai")
    if not cfg.get("hf_hub"):
        raise HubFetchError(
            f"open_clip {open_clip.__version__} knows no 'openai' weights on the Hugging Face Hub for {name!r}, "
            f"so `open_clip.create_model_and_transforms({name!r}, pretrained='openai')` cannot load them. "
            f"Fix: check open_clip_name in checks/registry.py and the installed open_clip version.")
    repo_id, filename = os.path.split(cfg["hf_hub"])  # "org/repo/" -> no file name: open_clip's default
    filename = filename or HF_WEIGHTS_NAME
    if repo_id != facts.repo_id:
        raise HubFetchError(
            f"open_clip {open_clip.__version__} loads {name} 'openai' weights from {repo_id}, the registry says "
            f"{facts.repo_id}. Fix: update repo_id in checks/registry.py to {repo_id}.")
    names = [filename]
    if filename == HF_WEIGHTS_NAME:
        names.insert(0, HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    try:
        import safetensors  # noqa: F401  (open_clip skips the safetensors file without it)
    except ImportError:
        names = names[-1:]
    return repo_id, tuple(names)


def _flatten(needs: list[str | tuple[str, ...]]) -> list[str]:
    return [n for need in needs for n in ((need,) if isinstance(need, str) else need)]


# --- the cache ---------------------------------------------------------------------------------
def _blobs(folder: Path) -> set[str]:
    blobs = folder / "blobs"
    return {p.name for p in blobs.iterdir() if p.is_file() and not p.name.endswith(".incomplete")} \
        if blobs.is_dir() else set()


def _cached_path(facts: ModelFacts, cache: Path) -> Path | None:
    """The snapshot folder (or the weights file) if refs/main points to a snapshot holding every needed file.

    Files are not checked beyond being there: huggingface_hub would not download them again either.
    """
    report = cache_report(facts, cache, check_files=False)
    if not report.complete:
        return None
    return report.snapshot / report.present[0] if facts.library == "open_clip" else report.snapshot


# --- downloads ---------------------------------------------------------------------------------
def _snapshot(repo_id: str, needs: list[str | tuple[str, ...]], cache: Path, endpoint: str | None) -> Path:
    from huggingface_hub import snapshot_download

    snapshot = Path(snapshot_download(repo_id, revision=REVISION, allow_patterns=_flatten(needs),
                                      cache_dir=cache, endpoint=endpoint))
    missing = [" or ".join((n,) if isinstance(n, str) else n) for n in needs
               if not any((snapshot / o).is_file() for o in ((n,) if isinstance(n, str) else n))]
    if missing:  # snapshot_download silently skips patterns that match nothing
        raise HubFetchError(
            f"{repo_id} (commit {snapshot.name}) has no {', '.join(missing)}; the model needs "
            f"{'it' if len(missing) == 1 else 'them'}. Fix: check the repo id and the file list in "
            f"checks/registry.py against https://huggingface.co/{repo_id}/tree/main.")
    return snapshot


def _download_first(repo_id: str, names: tuple[str, ...], cache: Path, endpoint: str | None) -> Path:
    """The first of ``names`` the repo has, downloaded as open_clip would (same repo, file, cache, revision)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        import open_clip

        library = {"library_name": "open_clip", "library_version": open_clip.__version__}
    except ImportError:
        library = {}
    for name in names:
        try:
            return Path(hf_hub_download(repo_id, name, revision=REVISION, cache_dir=cache, endpoint=endpoint,
                                        **library))
        except RemoteEntryNotFoundError:
            continue
    raise HubFetchError(
        f"{repo_id} has none of {', '.join(names)}, the weights open_clip looks for. "
        f"Fix: check the repo on https://huggingface.co/{repo_id}/tree/main and checks/registry.py.")


# --- verification ------------------------------------------------------------------------------
def _digest_differs(blob: Path) -> bool:
    """Does the blob not hash to its name? False when the name is not a digest we know (sha256 / git sha1)."""
    got = blob_digest(blob)
    return got is not None and got[1] != blob.name


def _verify_new_blobs(folder: Path, repo_id: str, new: set[str]) -> None:
    bad = [b for b in sorted(new) if _digest_differs(folder / "blobs" / b)]
    if not bad:
        return
    names: list[str] = []
    for snapshot in (folder / "snapshots").glob("*"):
        for link in snapshot.rglob("*"):
            if link.is_symlink() and Path(os.readlink(link)).name in bad:  # ../../blobs/<etag>
                names.append(link.relative_to(snapshot).as_posix())
                link.unlink()
    for b in bad:
        (folder / "blobs" / b).unlink(missing_ok=True)
    raise HubFetchError(
        f"{repo_id}: the downloaded {', '.join(sorted(set(names)) or bad)} does not match the hash the Hub "
        f"announced (ETag {', '.join(b[:12] + '…' for b in bad)}): corrupted in transit or by a proxy/mirror. "
        f"Removed from the cache. Fix: rerun the fetch; if it happens again, check HF_ENDPOINT and the proxy.")


# --- errors ------------------------------------------------------------------------------------
def _library_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except ImportError:
        return DEFAULT_ENDPOINT


def _explain(e: Exception, repo_id: str, endpoint: str) -> str | None:
    """One message saying what went wrong and what to do; None for errors we do not know."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    status = getattr(getattr(e, "response", None), "status_code", None)
    page = f"https://huggingface.co/{repo_id}"
    if isinstance(e, GatedRepoError):
        why = "no token was sent" if status == 401 else "the token sent has not been granted access"
        return (f"{repo_id} is a gated model and {endpoint} refused the download (HTTP {status}: {why}). "
                f"Fix: open {page} logged in, accept its conditions, then run `hf auth login` (or set HF_TOKEN) "
                f"with a read token of that account, and fetch again.")
    if isinstance(e, RepositoryNotFoundError):
        return (f"{repo_id} was not found at {endpoint} (HTTP {status}). Fix: check the repo id in "
                f"checks/registry.py and HF_ENDPOINT; a private repo answers the same without a valid HF_TOKEN.")
    if isinstance(e, RevisionNotFoundError):
        return f"{repo_id} has no revision '{REVISION}' at {endpoint} (HTTP {status}). Fix: check {page}."
    if isinstance(e, OfflineModeIsEnabled) or (isinstance(e, LocalEntryNotFoundError) and constants.HF_HUB_OFFLINE):
        return (f"cannot fetch {repo_id}: HF_HUB_OFFLINE is set, so huggingface_hub makes no requests. "
                f"Fix: run the fetch without HF_HUB_OFFLINE (the checks set offline mode themselves).")
    cause = e.__cause__ or e.__context__
    if isinstance(e, LocalEntryNotFoundError) and isinstance(cause, HfHubHTTPError):
        e, status = cause, getattr(cause.response, "status_code", None)  # e.g. a 5xx: reached, but failed
    if isinstance(e, LocalEntryNotFoundError):
        detail = f"{type(cause).__name__}: {cause}" if cause else str(e).splitlines()[0]
        return (f"could not reach {endpoint} to fetch {repo_id} ({detail}). Fix: check the network and proxy "
                f"(HTTPS_PROXY), or point HF_ENDPOINT at a reachable mirror; files already fetched stay cached.")
    if isinstance(e, HfHubHTTPError):
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"{endpoint} answered HTTP {status} while fetching {repo_id}: {first}. Fix: retry later; see {page}."
    if isinstance(e, OSError):  # e.g. huggingface_hub's size consistency check after a broken transfer
        return (f"download of {repo_id} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
                f"Fix: rerun the fetch (the partial file was discarded); check disk space and the network.")
    return None
