"""Fetch the published model weights from the Hugging Face Hub with huggingface_hub itself: its cache layout and bars.

What a fetch leaves behind: ``refs/main`` names a snapshot that holds every file the model needs, whole, and the
weights file there is the published one (the blob named by the pinned sha256, of the pinned size, from the
ModelFacts given). So the research code's plain offline call -- ``AutoModel.from_pretrained(repo)`` or
``open_clip.create_model_and_transforms(name, pretrained="openai")``, no revision -- loads the pinned weights.

The decision, under a per-repo lock:

1. **Already there.** ``refs/main``'s snapshot holds every needed file, each passes the cache check below, and the
   weights are the pinned blob: nothing is requested (a revision other than the pinned one is a note).
2. **Which commit.** When ``refs/main``'s snapshot already holds the published weights, that commit is kept and
   only what is missing or broken is fetched into it: a user's ``refs/main`` is never moved away from the published
   weights. Otherwise the pinned revision (``facts.revision``; ``main`` without a pin). A Hub or mirror that does
   not have the pinned commit is asked for ``main`` instead, which is taken only if its weights are the pinned ones.
3. **Before downloading**, one HEAD of the weights file: the ETag the Hub announces for an LFS file is its sha256,
   so weights other than the published ones (a re-upload, a fine-tune, a mirror's copy) are refused before a byte of
   them is downloaded -- "found <sha256> (<bytes>), published <sha256> (<bytes>)" -- and nothing is changed.
4. **Download** every needed file at that commit (``hf_hub_download``, a commit hash: huggingface_hub writes no ref);
   a cached file that fails the cache check is downloaded again (``force_download``: the blob is rewritten under the
   same name, which also heals other snapshots linking it) and the run says which file it replaced. The HF cache
   is a cache, not user data; nothing outside it is touched.
5. **Verify.** Every blob this run wrote is hashed and compared with its name (the ETag: sha256 for LFS files, git
   blob sha1 otherwise). A mismatch removes that blob and the snapshot links this run made to it, puts back the
   links it had moved aside, leaves ``refs/main`` as it was and raises, naming both digests. huggingface_hub alone
   checks sizes only.
6. **Point refs/main** at the commit (atomic rename). If it named another snapshot, the note says which and whether
   that one held other weights; that snapshot stays in the cache, loadable by its revision.

The cache check is the checks' own (``preflight_core.hf_cache.cached_file_problem``): every file but the weights up
to 64 MiB (SigLIP2's 34 MB tokenizer.json included) is hashed and compared with its blob name; the weights are
judged by name (= the pinned sha256), size (= the pinned size) and structure (the safetensors header and length)
-- not hashed, so a fetch of a complete 4.5 GB model takes milliseconds. A same-size bit flip inside the weights
is ``pytest --deep``'s to find; its fix (remove the blob, fetch again) then replaces it here.

Resolved at call time, not at import: ``HF_ENDPOINT`` (huggingface_hub reads it once, when
``huggingface_hub.constants`` is first imported, so it is passed as ``endpoint=``) and the cache (``cache_dir`` >
the HF variables, as the checks resolve them). Offline mode (``HF_HUB_OFFLINE``) is import-time: under it a fetch
that needs the network is refused with the command that works, ``HF_HUB_OFFLINE=0 python -m fetchers --siglip2``.
Errors are raised ``from None`` with the cause in the message, so no traceback shows the request (and its token).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from fetchers.download import DownloadError, FetchResult
from preflight_core.commands import shell
from preflight_core.findings import Fix
from preflight_core.hashing import blob_digest
from preflight_core.hf_cache import (
    Entry,
    Pin,
    SnapshotState,
    default_hf_cache,
    inspect_snapshot,
    label,
    model_fetch_command,
    read_ref,
    repo_dir,
)
from preflight_core.model_libraries import LibraryMismatch, ModelLibrary, library_of
from preflight_core.registry import ModelFacts

DEFAULT_ENDPOINT = "https://huggingface.co"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_ASIDE = ".preflight-aside-"  # a snapshot link this run moved aside: ".<name>.preflight-aside-<hex>"


class HubFetchError(DownloadError):
    """A Hub download failed or was refused; the message names the repo, the file and the fix."""


@dataclass(frozen=True)
class HubFetchResult(FetchResult):
    revision: str = ""  # the commit refs/main names after the fetch
    weights_sha256: str = ""  # the blob name of the weights file there
    notes: tuple[str, ...] = ()  # what else this run did or found: files replaced, refs/main moved, another revision

    def message(self) -> str:
        """One line: what happened, for the CLI and the report."""
        head = "already cached" if self.already_present else (
            f"fetched {self.bytes_downloaded / 2**20:,.1f} MiB in {self.seconds:.1f} s")
        return "; ".join((head, *self.notes))


def _print(line: str) -> None:
    print(line, flush=True)


def fetch_hf_model(asset_facts: ModelFacts, cache_dir: Path | None = None,
                   log: Callable[[str], None] | None = _print) -> HubFetchResult:
    """Make ``refs/main`` of the model's repo name a snapshot with every needed file, whole, and the pinned weights.

    ``FetchResult.path`` is the snapshot folder (transformers) or the weights file (open_clip). Each note (a file
    replaced, refs/main moved) is also passed to ``log`` as "<repo>: <note>" (``None``: silent).
    Raises HubFetchError with the reason and the fix.
    """
    facts = asset_facts
    pin = Pin.of(facts)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_hf_cache()
    endpoint = (os.environ.get("HF_ENDPOINT") or "").strip().rstrip("/") or None
    shown_endpoint = endpoint or _library_endpoint()
    library = library_of(facts)
    try:
        facts = library.loaded_files(facts)  # the repo and files the library's own loader reads
    except LibraryMismatch as e:
        raise HubFetchError(e.message, e.fix) from None
    needs: list[Entry] = _weights_first(list(facts.files), pin)
    folder = repo_dir(cache, facts.repo_id)
    t0 = time.monotonic()
    cache.mkdir(parents=True, exist_ok=True)
    lock = cache / ".locks" / "preflight" / f"{folder.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    run = _Run(facts, library, pin, folder, needs, endpoint, shown_endpoint)
    with FileLock(str(lock)):
        try:
            result = run.fetch(t0)
        except HubFetchError:
            raise
        except Exception as e:  # translated into one clear message; anything unknown propagates as is
            error = _explain(e, facts.repo_id, shown_endpoint, run.revision_asked)
            if error is None:
                raise
            # not `from e`: huggingface_hub's frames hold the request headers (the token) for `pytest -l`
            raise error from None
    if log is not None:
        for note in result.notes:
            log(f"{facts.repo_id}: {note}")
    return result


def _no_etag(meta, endpoint: str) -> str:
    """Why the answer named no sha256: a redirect to another host (named, without credentials), or no ETag."""
    from urllib.parse import urlsplit

    from preflight_core.findings import shown
    from preflight_core.redact import redact

    location = getattr(meta, "location", None) or ""
    if location and urlsplit(location).hostname not in (None, urlsplit(endpoint).hostname):
        return f"no sha256: {endpoint} redirected to {shown(redact(location.split('?', 1)[0]))}, which named none"
    return "no sha256 (no ETag)"


# --- the cache ---------------------------------------------------------------------------------
def _read_main(folder: Path) -> str | None:
    commit, _ = read_ref(folder)
    return commit


def _write_main(folder: Path, commit: str) -> None:
    """refs/main := commit, atomically (readers never see a partial ref)."""
    ref = folder / "refs" / "main"
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(f".main.{secrets.token_hex(4)}.tmp")
    tmp.write_text(commit)
    os.replace(tmp, ref)


def _blobs(folder: Path) -> dict[str, int]:
    """blob name -> inode, so a blob rewritten under the same name (force_download) shows as written."""
    blobs = folder / "blobs"
    if not blobs.is_dir():
        return {}
    return {p.name: p.stat().st_ino for p in blobs.iterdir() if p.is_file() and not p.name.endswith(".incomplete")}


# --- one fetch -----------------------------------------------------------------------------------
class _Run:
    def __init__(self, facts: ModelFacts, library: ModelLibrary, pin: Pin | None, folder: Path, needs: list[Entry],
                 endpoint: str | None, shown_endpoint: str) -> None:
        self.facts, self.library, self.pin, self.folder, self.needs = facts, library, pin, folder, needs
        self.repo_id = facts.repo_id
        self.endpoint, self.shown_endpoint = endpoint, shown_endpoint
        self.revision_asked = facts.revision or "main"
        self.notes: list[str] = []

    def fetch(self, t0: float) -> HubFetchResult:
        main_before = _read_main(self.folder)
        main_snapshot = self.folder / "snapshots" / main_before if main_before else None
        main_state = inspect_snapshot(main_snapshot, self.needs, self.pin) \
            if main_snapshot is not None and main_snapshot.is_dir() else None
        if main_before and main_snapshot and main_state is not None and main_state.complete:
            if self.pin and self.pin.revision and main_before != self.pin.revision:
                self.notes.append(f"refs/main is at {main_before[:12]}, not the pinned revision "
                                  f"{self.pin.revision[:12]}, but its {self.pin.file} is the published file")
            return self._result(main_snapshot, main_state, 0, t0, already=True)
        cached = self._pinned_snapshot_if_whole(main_before, main_state, t0)
        if cached is not None:
            return cached
        self._refuse_offline(main_state)
        commit, weights_name = self._resolve(self._revisions(main_before, main_state))
        snapshot, final, downloaded = self._repair(commit, weights_name)
        if main_before != commit:
            _write_main(self.folder, commit)
            if main_before is not None:
                self.notes.append(self._moved_note(main_before, main_state, commit))
        return self._result(snapshot, final, downloaded, t0, already=False)

    def _pinned_snapshot_if_whole(self, main_before: str | None, main_state: SnapshotState | None,
                                  t0: float) -> HubFetchResult | None:
        """The published snapshot cached whole: point refs/main at it, no request."""
        pin = self.pin
        if not (pin and pin.revision and pin.revision != main_before):
            return None
        pinned = self.folder / "snapshots" / pin.revision
        if not pinned.is_dir():
            return None
        pinned_state = inspect_snapshot(pinned, self.needs, pin)
        if not pinned_state.complete:
            return None
        _write_main(self.folder, pin.revision)
        if main_before is not None:
            self.notes.append(self._moved_note(main_before, main_state, pin.revision))
        return self._result(pinned, pinned_state, 0, t0, already=False)

    def _revisions(self, main_before: str | None, main_state: SnapshotState | None) -> list[str]:
        """Which commits to ask for, in order: a refs/main holding the published weights blob stays where it is
        (broken files are repaired there); else the pinned revision; else main (taken only with the pinned weights)."""
        pin = self.pin
        keeps = pin is not None and main_state is not None and main_state.weights_blob == pin.sha256
        revisions = list(dict.fromkeys(r for r in ((main_before if keeps else None),
                                                   (pin.revision if pin else None) or self.facts.revision or None,
                                                   "main" if pin else None) if r))
        return revisions or ["main"]

    def _repair(self, commit: str, weights_name: str | None) -> tuple[Path, SnapshotState, int]:
        """Download into snapshot ``commit`` what it lacks or holds broken; verify; (snapshot, its state, bytes)."""
        pin, folder = self.pin, self.folder
        snapshot = folder / "snapshots" / commit
        created_snapshot = not snapshot.exists()
        dest = inspect_snapshot(snapshot, self.needs, pin) if not created_snapshot else SnapshotState()
        if dest.other_weights and pin is not None:  # e.g. a mirror's re-upload once cached under the pinned commit id
            dest.bad[pin.file] = f"its blob {(dest.weights_blob or '?')[:12]}… is not the published file"
        before = _blobs(folder)
        aside: dict[str, tuple[Path, Path]] = {}  # file -> (its link, where this run moved it): put back on failure
        try:
            for name in dest.bad:
                link = snapshot / name
                aside[name] = (link, link.with_name(f".{link.name}{_ASIDE}{secrets.token_hex(4)}"))
                os.replace(link, aside[name][1])
            self._download_all(commit, dest, weights_name)
            written = {b for b, ino in _blobs(folder).items() if before.get(b) != ino}
            self._verify(snapshot, written)
            final = inspect_snapshot(snapshot, self.needs, pin)
            if not final.complete:  # e.g. an old blob of the right name that is not whole: say so
                raise self._incomplete(commit, final)
        except BaseException:
            for link, moved in aside.values():
                if os.path.lexists(link):
                    moved.unlink()
                else:
                    os.replace(moved, link)
            if created_snapshot and snapshot.is_dir() and not any(snapshot.rglob("*")):
                snapshot.rmdir()
            raise
        for name, (_, moved) in aside.items():
            target = Path(os.readlink(moved)) if moved.is_symlink() else None
            old = "a plain file" if target is None else f"blob {target.name[:12]}…" \
                if target.parent.name == "blobs" else f"a link to {target}"
            moved.unlink()
            self.notes.append(f"replaced {name} in snapshot {commit[:12]} (it was {old}: {dest.bad[name]})")
        downloaded = sum((folder / "blobs" / b).stat().st_size for b in written if (folder / "blobs" / b).is_file())
        return snapshot, final, downloaded

    def _result(self, snapshot: Path, state: SnapshotState, downloaded: int, t0: float,
                already: bool) -> HubFetchResult:
        weights = state.present.get(self.pin.file) if self.pin else None
        blob = Path(os.readlink(weights)).name if weights is not None and weights.is_symlink() else ""
        url = None if already else f"{self.shown_endpoint}/{self.repo_id}"
        return HubFetchResult(self.library.fetched_path(snapshot, state.present), downloaded, time.monotonic() - t0,
                              url, already, snapshot.name, blob, tuple(self.notes))

    # -- the network -------------------------------------------------------------------------------
    def _refuse_offline(self, main_state: SnapshotState | None) -> None:
        from huggingface_hub import constants

        if not constants.HF_HUB_OFFLINE:
            return
        if main_state is None:
            what = "the cache has no snapshot of it on refs/main"
        elif main_state.other_weights and self.pin is not None:
            what = f"refs/main's {self.pin.file} is not the published file"
        else:
            parts = [f"{label(e)} missing" for e in main_state.missing]
            parts += [f"{n} broken ({why})" for n, why in main_state.bad.items()]
            what = "; ".join(parts) or "the cache is incomplete"
        raise offline_error(self.repo_id, what)

    def _head(self, name: str, revision: str):
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(self.repo_id, name, revision=revision, endpoint=self.endpoint)
        info = self.library.client_info()
        return get_hf_file_metadata(url, endpoint=self.endpoint, library_name=info.get("library_name"),
                                    library_version=info.get("library_version"))

    def _resolve(self, revisions: list[str]) -> tuple[str, str | None]:
        """(commit, weights file name) after one HEAD of the weights file; refuses other weights than the pin.

        ``revisions`` in order of preference; one the Hub does not have (404 RevisionNotFound) gives way to the next.
        """
        from huggingface_hub.errors import RevisionNotFoundError

        first = self.needs[0]
        names = (first,) if isinstance(first, str) else first
        for i, revision in enumerate(revisions):
            self.revision_asked = revision
            try:
                meta, name = self._head_first(names, revision)
                break
            except RevisionNotFoundError:
                if i + 1 == len(revisions):
                    raise
                self.notes.append(f"revision {revision[:12]} is not on {self.shown_endpoint}, so "
                                  f"{revisions[i + 1][:12]} was asked for"
                                  + (f" (taken only with the published {self.pin.file})" if self.pin else ""))
        if meta is None:
            raise HubFetchError(
                f"{self.repo_id} has none of {', '.join(names)} at {revision} on {self.shown_endpoint}, "
                f"{self.library.needs_text}.",
                f"check the repo on https://huggingface.co/{self.repo_id}/tree/{revision} and preflight_core/registry.py.")
        commit = meta.commit_hash or (revision if _COMMIT.match(revision) else None)
        if commit is None or not _COMMIT.match(commit):
            raise HubFetchError(f"{self.shown_endpoint} named no commit (X-Repo-Commit) for {self.repo_id}@{revision}.",
                                "check HF_ENDPOINT: it does not answer like the Hugging Face Hub.")
        etag = (meta.etag or "").lower() or None
        pin = self.pin
        if pin is not None and name == pin.file and (etag != pin.sha256 or meta.size != pin.size):
            found = f"{etag[:16]}…" if etag else _no_etag(meta, self.shown_endpoint)
            size = f"{meta.size:,} B" if meta.size is not None else "size not announced"
            raise HubFetchError(
                f"{self.repo_id}@{commit[:12]} on {self.shown_endpoint} serves other weights than the published "
                f"ones: {pin.file} found {found} ({size}), published {pin.sha256[:16]}… ({pin.size:,} B). Refused "
                f"before downloading; the cache was left as it was.",
                "check HF_ENDPOINT (a mirror may serve a re-upload or a fine-tune under this repo id) and the pins "
                f"in preflight_core/registry.py; the published files are at "
                f"https://huggingface.co/{self.repo_id}/tree/{pin.revision or 'main'}.")
        return commit, name

    def _head_first(self, names: tuple[str, ...], revision: str):
        from huggingface_hub.errors import RemoteEntryNotFoundError

        for name in names:
            try:
                return self._head(name, revision), name
            except RemoteEntryNotFoundError:
                continue
        return None, None

    def _download_all(self, commit: str, dest: SnapshotState, weights_name: str | None) -> None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import RemoteEntryNotFoundError

        info = self.library.client_info()
        missing_from_repo: list[str] = []
        for entry in self.needs:
            alternatives = (entry,) if isinstance(entry, str) else entry
            if label(entry) in dest.present:
                continue  # cached at this commit and passed the cache check
            if weights_name is not None and weights_name in alternatives:
                alternatives = (weights_name,)  # the HEAD found it: the one to fetch
            got = False
            for name in alternatives:
                try:
                    hf_hub_download(self.repo_id, name, revision=commit, cache_dir=self.folder.parent,
                                    endpoint=self.endpoint, force_download=name in dest.bad,
                                    library_name=info.get("library_name"), library_version=info.get("library_version"))
                except RemoteEntryNotFoundError:
                    continue
                got = True
                break
            if not got:
                missing_from_repo.append(label(entry))
        if missing_from_repo:  # the repo lacks a needed file
            raise HubFetchError(
                f"{self.repo_id} (commit {commit}) has no {', '.join(missing_from_repo)}; the model needs "
                f"{'it' if len(missing_from_repo) == 1 else 'them'}.",
                f"check the repo id and the file list in preflight_core/registry.py against "
                f"https://huggingface.co/{self.repo_id}/tree/{commit}.")

    # -- verification ------------------------------------------------------------------------------
    def _verify(self, snapshot: Path, written: set[str]) -> None:
        """Hash every blob this run wrote; a mismatch removes it (and the snapshot's links to it) and raises.

        The links to a blob this run wrote are this run's: a link that was there before was moved aside."""
        blobs = self.folder / "blobs"
        bad: dict[str, str] = {}  # blob name -> its actual digest
        for b in sorted(written):
            got = blob_digest(blobs / b)
            if got is not None and got[1] != b:
                bad[b] = got[1]
        if not bad:
            return
        names: dict[str, str] = {}  # snapshot file -> blob
        for link in snapshot.rglob("*"):
            if _ASIDE in link.name:
                continue  # put back if the fetch fails
            if link.is_symlink() and Path(os.readlink(link)).name in bad:  # ../../blobs/<etag>
                names[link.relative_to(snapshot).as_posix()] = Path(os.readlink(link)).name
                link.unlink()
        for b in bad:
            (blobs / b).unlink(missing_ok=True)
        details = []
        for name, b in sorted(names.items()):
            published = "published" if self.pin and name == self.pin.file and b == self.pin.sha256 else \
                "announced (ETag)"
            details.append(f"{name}: found {bad[b][:16]}…, {published} {b[:16]}…")
        raise HubFetchError(
            f"{self.repo_id}: the downloaded {', '.join(sorted(names)) or ', '.join(bad)} does not match the hash "
            f"the Hub announced ({'; '.join(details) or ', '.join(b[:12] + '…' for b in bad)}): corrupted in transit "
            "or by a proxy/mirror. Removed from the cache; refs/main was left as it was.",
            "rerun the fetch; if it happens again, check HF_ENDPOINT and the proxy.")

    def _incomplete(self, commit: str, state: SnapshotState) -> HubFetchError:
        parts = [f"{label(e)} missing" for e in state.missing]
        parts += [f"{n}: {why}" for n, why in state.bad.items()]
        if state.other_weights and self.pin is not None:
            parts.append(f"{self.pin.file} is blob {(state.weights_blob or '?')[:12]}…, published "
                         f"{self.pin.sha256[:12]}…")
        return HubFetchError(
            f"{self.repo_id}: after the fetch, snapshot {commit[:12]} is still not usable ({'; '.join(parts)}); "
            "refs/main was left as it was.",
            Fix(f"remove {self.folder} (a cache folder) and run {model_fetch_command(self.repo_id)} again.",
                (shell("rm", "-rf", "--", self.folder), model_fetch_command(self.repo_id))))

    def _moved_note(self, old: str, old_state: SnapshotState | None, commit: str) -> str:
        if old_state is None:
            why = "a snapshot that is not in the cache"
        elif old_state.other_weights and self.pin:
            why = (f"whose {self.pin.file} is {(old_state.weights_blob or '?')[:12]}…, not the published "
                   f"{self.pin.sha256[:12]}…")
        else:
            gaps = [label(e) for e in old_state.missing] + list(old_state.bad)
            why = f"incomplete: {', '.join(gaps)}" if gaps else "another snapshot"
        kept = f"; snapshot {old[:12]} is still in the cache (load it with revision='{old}')" \
            if old_state is not None else ""
        return f"refs/main moved from {old[:12]} ({why}) to {commit[:12]}{kept}"


# --- what to fetch -----------------------------------------------------------------------------
def _weights_first(needs: list[Entry], pin: Pin | None) -> list[Entry]:
    """The weights file first: its HEAD decides the commit and refuses other weights before anything is fetched."""
    def is_weights(e: Entry) -> bool:
        names = (e,) if isinstance(e, str) else e
        return pin is not None and pin.file in names or any(n.endswith((".safetensors", ".bin")) for n in names)

    return sorted(needs, key=lambda e: not is_weights(e))


# --- errors ------------------------------------------------------------------------------------
def offline_error(repo_id: str, what: str) -> HubFetchError:
    """The refusal under HF_HUB_OFFLINE, with the command that works as printed (a fresh process reads the env;
    ``HF_HUB_OFFLINE=0`` also outranks TRANSFORMERS_OFFLINE)."""
    set_by = [f"{v}={os.environ[v]}" for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if os.environ.get(v)]
    how = " and ".join(set_by) if set_by else "offline mode"
    return HubFetchError(f"cannot fetch {repo_id} ({what}): {how} is set, so huggingface_hub makes no requests.",
                         Fix(f"{model_fetch_command(repo_id, hub_online=True)} (online for this one command; the checks and "
                             "your experiments can stay offline).", (model_fetch_command(repo_id, hub_online=True),)))


def _library_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except ImportError:
        return DEFAULT_ENDPOINT


def _explain(e: Exception, repo_id: str, endpoint: str, revision: str) -> HubFetchError | None:
    """The error saying what went wrong and what to do; None for errors we do not know."""
    import httpx2
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
        from huggingface_hub import get_token

        why = ("the token sent was not accepted (wrong, expired or revoked)" if get_token() else "no token was sent") \
            if status == 401 else "the token sent has not been granted access"
        return HubFetchError(f"{repo_id} is a gated model and {endpoint} refused the download (HTTP {status}: {why}).",
                             f"open {page} logged in, accept its conditions, then run `hf auth login` (or set HF_TOKEN) "
                f"with a read token of that account, and fetch again.")
    if isinstance(e, RepositoryNotFoundError):
        return HubFetchError(f"{repo_id} was not found at {endpoint} (HTTP {status}).",
                             "check the repo id in preflight_core/registry.py and HF_ENDPOINT; a private repo answers the same without a valid HF_TOKEN.")
    if isinstance(e, RevisionNotFoundError):
        return HubFetchError(f"{repo_id} has no revision '{revision}' at {endpoint} (HTTP {status}).",
                             f"check {page} and HF_ENDPOINT.")
    if isinstance(e, OfflineModeIsEnabled) or (isinstance(e, LocalEntryNotFoundError) and constants.HF_HUB_OFFLINE):
        return offline_error(repo_id, "files missing from the cache")
    cause = e.__cause__ or e.__context__
    if isinstance(e, LocalEntryNotFoundError) and isinstance(cause, HfHubHTTPError):
        e, status = cause, getattr(cause.response, "status_code", None)  # e.g. a 5xx: reached, but failed
    if isinstance(e, httpx2.TransportError):
        cause, e = e, LocalEntryNotFoundError(str(e))
    if isinstance(e, LocalEntryNotFoundError):
        detail = f"{type(cause).__name__}: {cause}" if cause else str(e).splitlines()[0]
        return HubFetchError(f"could not reach {endpoint} to fetch {repo_id} ({detail}).",
                             "check the network and proxy (HTTPS_PROXY), or point HF_ENDPOINT at a reachable mirror; files already fetched stay cached.")
    if isinstance(e, HfHubHTTPError):
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return HubFetchError(f"{endpoint} answered HTTP {status} while fetching {repo_id}: {first}.",
                             f"retry later; see {page}.")
    if isinstance(e, OSError):  # e.g. huggingface_hub's size consistency check after a broken transfer
        return HubFetchError(f"download of {repo_id} failed: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}.",
                             "rerun the fetch (the partial file was discarded); check disk space and the network.")
    return None

