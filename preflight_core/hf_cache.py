"""The one answer to every question about a model's Hugging Face cache, read without huggingface_hub or torch.

``<cache>/models--org--name/{refs/main, snapshots/<rev>/<file> -> ../../blobs/<etag>}``: where the
cache is, which snapshot ``refs/main`` selects, which needed files are missing, which are not what their
name says (``cached_file_problem``: structure, and the content of every file up to 64 MiB against its
etag), whose weights these are (``weights_identity``), and the fix (``fix_for``). The checks
(``checks/test_models.py``), ``--fetch-missing`` (``fetchers.plan.needs_fetch``) and the fetch CLI
(``fetchers.hub``) all ask here.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import stat
import struct
import sys
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from preflight_core.commands import fetch_command, shell
from preflight_core.commands import remove as remove_command
from preflight_core.findings import Finding, Fix, human_bytes, shown
from preflight_core.hashing import blob_digest, sha256_file
from preflight_core.registry import ASSETS, ModelFacts
from preflight_core.safe_io import NotARegularFile, open_fd, open_regular, read_regular
from preflight_core.verify_cache import VerifyCache

Entry = str | tuple[str, ...]  # a needed file, or "one of these"

_JSON_PARSE_LIMIT = 4 << 20  # bigger JSON files (gemma's tokenizer.json: 34 MB) only get a truncation check
_SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}


def default_hf_cache() -> Path:
    """The Hugging Face hub cache, exactly as ``huggingface_hub.constants.HF_HUB_CACHE`` computes it at import.

    Same lookups in the same order, with the same expansions (huggingface_hub 2.x ``constants.py``):
    ``HF_HUB_CACHE``, else the legacy ``HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``; ``~`` and ``$VAR`` expanded.
    A variable set to the empty string counts as set, as it does there (``os.getenv`` with a default).
    The self-test compares this with huggingface_hub itself over a matrix of environments.
    """
    default_home = os.path.join(os.path.expanduser("~"), ".cache")
    hf_home = os.path.expandvars(os.path.expanduser(
        os.getenv("HF_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", default_home), "huggingface"))))
    legacy = os.getenv("HUGGINGFACE_HUB_CACHE", os.path.join(hf_home, "hub"))
    return Path(os.path.expandvars(os.path.expanduser(os.getenv("HF_HUB_CACHE", legacy))))


def repo_dir(hf_cache: Path, repo_id: str) -> Path:
    """``models--org--name``: where huggingface_hub keeps model ``repo_id`` in the cache ``hf_cache``."""
    return Path(hf_cache) / ("models--" + repo_id.replace("/", "--"))


# --------------------------------------------------------------------------- offline mode and the fix

_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub.constants.ENV_VARS_TRUE_VALUES
# HF_HUB_OFFLINE as the user's environment had it, saved while hub_offline() forces it on.
_USERS_OFFLINE_VALUE: list[str | None] = []


def offline_requested() -> bool:
    """Does the user's environment put huggingface_hub in offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)?

    The same rule as ``huggingface_hub.constants.HF_HUB_OFFLINE``, on the user's values: inside
    ``hub_offline()`` the variable the checks set themselves does not count.
    """
    value = _USERS_OFFLINE_VALUE[0] if _USERS_OFFLINE_VALUE else os.environ.get("HF_HUB_OFFLINE")
    return (value or os.environ.get("TRANSFORMERS_OFFLINE") or "").upper() in _TRUE


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """No network for the duration, whoever imported huggingface_hub first.

    huggingface_hub reads HF_HUB_OFFLINE once, at the first import of ``huggingface_hub.constants``,
    and transformers and open_clip ask ``constants.is_offline_mode()`` at call time. Setting the
    env var alone is not enough when a fetcher imported the hub earlier in this process, and
    leaving offline mode on for good would break ``--fetch-missing`` later in the same process;
    so the flag is switched on here and put back afterwards. (Imports huggingface_hub when entered.)
    """
    env_before = os.environ.get("HF_HUB_OFFLINE")
    imported_before = "huggingface_hub.constants" in sys.modules
    _USERS_OFFLINE_VALUE.append(env_before)
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from huggingface_hub import constants

        if imported_before:
            flag_before = constants.HF_HUB_OFFLINE
        else:  # it has just read our "1"; afterwards it must say what the user's environment said
            flag_before = (env_before or os.environ.get("TRANSFORMERS_OFFLINE") or "").upper() in _TRUE
        constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = flag_before
    finally:
        _USERS_OFFLINE_VALUE.pop()
        if env_before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = env_before


def fix_for(repo_id: str, remove: Path | None = None) -> Fix:
    """The one fix of every model message: the registry's fetch command, runnable as printed.

    The fetch re-downloads what ``refs/main`` lacks and any cached file that is not what its name
    says (the HF cache is a cache). ``remove``: a file the fetch would trust although it must go
    first (a plain file where huggingface_hub keeps a symlink to a blob, a large blob proven corrupt
    by ``--deep``). With HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set, huggingface_hub refuses every
    request, so the command turns offline mode off for the fetch alone.
    """
    commands = [model_fetch_command(repo_id, hub_online=offline_requested())]
    if remove is not None:
        commands.insert(0, remove_command(remove))
    return Fix.run(*commands)


def model_fetch_command(repo_id: str, hub_online: bool = False) -> str:
    """The registry's command that fetches ``repo_id`` (``python -m fetchers --siglip2``)."""
    asset = next((a for a in ASSETS.values() if a.location == repo_id), None)
    if asset is not None and asset.fetch_flag:
        return fetch_command(asset.fetch_flag, hub_online=hub_online)
    return shell(*(("HF_HUB_OFFLINE=0",) if hub_online else ()), "hf", "download", repo_id)


def label(entry: Entry) -> str:
    return entry if isinstance(entry, str) else " or ".join(entry)


# --------------------------------------------------------------------------- one cached file

REF_BYTES = 64  # a ref holds a 40-hex commit (and maybe a newline): nothing longer is read
HASHED_ALWAYS = 64 << 20  # cached files up to this size are hashed on every check; larger ones: name, size, structure
# Weight files are judged by name, size and structure (a real one is far over HASHED_ALWAYS; --deep hashes them),
# so a tiny world's weights behave as the real ones do.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth")
BLOB_KIND = "hf-blob"  # the verify cache's namespace for blobs whose content matched their name
OTHER_WEIGHTS = "other weights"  # the pinned file is whole, but another blob than the published one


@dataclass(frozen=True)
class Pin:
    """The published weights file of a model: name, size, sha256 and the revision it was pinned at."""

    file: str
    size: int
    sha256: str
    revision: str

    @classmethod
    def of(cls, facts: ModelFacts) -> Pin | None:
        if not (facts.weights_file and facts.weights_sha256):
            return None
        return cls(facts.weights_file, facts.weights_size, facts.weights_sha256.lower(), facts.revision)


def safetensors_problem(path: Path) -> str | None:
    """None if the header parses and the file is exactly as long as the header says, else why not."""
    size = path.stat().st_size
    if size < 8:
        return f"{size} bytes, too short for a safetensors header: truncated download"
    with open_regular(path) as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n == 0 or 8 + n > size:
            return f"header length {n:,} does not fit in the file's {size:,} bytes: truncated or not safetensors"
        if n > _JSON_PARSE_LIMIT * 25:  # safetensors itself refuses headers over 100 MB
            return f"header length {n:,} is beyond any safetensors header: corrupt or not safetensors"
        header = _parse_json(f.read(n))
    if isinstance(header, str):
        return f"header is not valid JSON ({header}): corrupt or not safetensors"
    if not isinstance(header, dict):
        return "header is not a JSON object: corrupt or not safetensors"
    end = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = t["data_offsets"]
            count = 1
            for d in t["shape"]:
                count *= d
            width = _SAFETENSORS_DTYPE_BYTES.get(t["dtype"])
        except (KeyError, TypeError, ValueError):
            return f"header entry {shown(name)!r} lacks dtype/shape/data_offsets: corrupt"
        if width is not None and stop - begin != count * width:
            return (f"tensor {shown(name)!r} spans {stop - begin:,} bytes but shape {t['shape']} {t['dtype']} "
                    f"needs {count * width:,}")
        end = max(end, stop)
    expected = 8 + n + end
    if size < expected:
        return f"{size:,} bytes but its header says {expected:,}: truncated ({expected - size:,} bytes short)"
    if size > expected:
        return f"{size:,} bytes but its header says {expected:,}: {size - expected:,} unexpected trailing bytes"
    return None


def _parse_json(data: bytes) -> object:
    """The parsed document, or (a str) why it does not parse: bad UTF-8, bad syntax, nested beyond any config."""
    try:
        return json.loads(data)
    except RecursionError:
        return "nested too deep to be a real file"
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        return shown(" ".join(str(e).split())[:200])


def file_problem(path: Path) -> str | None:
    """Cheap structural check of one snapshot file (follows the symlink): None if it looks whole."""
    if os.path.islink(path) and not path.exists():
        return f"dangling symlink -> {shown(os.readlink(path))} (the blob is gone)"
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    size = st.st_size
    if size == 0:
        return "zero-size file"
    name = path.name
    if name.endswith(".safetensors"):
        return safetensors_problem(path)
    if name.endswith(".json"):
        if size <= _JSON_PARSE_LIMIT:
            parsed = _parse_json(read_regular(path, _JSON_PARSE_LIMIT))
            if isinstance(parsed, str):
                return f"not valid JSON ({parsed}): truncated or corrupt"
        else:
            with open_regular(path) as f:
                head = f.read(64).lstrip()
                f.seek(-64, os.SEEK_END)
                tail = f.read().rstrip()
            if not (head.startswith(b"{") and tail.endswith(b"}")):
                return "does not end with '}': truncated JSON"
    if name.endswith(".bin"):
        with open_regular(path) as f:
            magic = f.read(2)
        # torch.save writes a zip; a zip whose central directory is gone was cut short. (Legacy
        # pickle checkpoints do not start with PK and are left to the loader.)
        if magic == b"PK" and not zipfile.is_zipfile(path):
            return "torch zip archive without its central directory: truncated download"
    return None


def cached_file_problem(link: Path, pin: Pin | None = None, verified: VerifyCache | None = None) -> str | None:
    """Is the cached ``link`` what its name says? None if so, else why not (``OTHER_WEIGHTS``: whole, other weights).

    The one answer for the checks, ``--fetch-missing`` and the fetch CLI: a dangling link, not a
    regular file, its structure (``file_problem``), and for every blob up to ``HASHED_ALWAYS`` other
    than the weights (configs, tokenizers) its content against its etag name, remembered in ``verified`` by the blob's content identity (a
    re-run costs a ``stat``). ``pin``: the published weights file, judged by blob name and size.
    """
    if link.is_symlink() and not link.exists():
        return f"its blob {Path(os.readlink(link)).name[:12]}… is gone (dangling link)"
    if not link.is_file():
        return "not a regular file"
    blob = link.resolve()
    size = blob.stat().st_size
    if pin is not None:
        if link.is_symlink() and blob.name != pin.sha256:
            problem = file_problem(link)
            return f"blob {blob.name[:12]}… is not the published file, and broken: {problem}" if problem \
                else OTHER_WEIGHTS
        if size != pin.size:
            return f"{size:,} B, the published file has {pin.size:,} B: truncated or altered"
    problem = file_problem(link)
    if problem:
        return problem
    if not link.is_symlink():
        if pin is not None:  # a cache written without symlinks: hash the file itself
            digest = sha256_file(blob)
            if digest != pin.sha256:
                return f"sha256 {digest[:12]}…, the published file's is {pin.sha256[:12]}…"
        return None
    if size <= HASHED_ALWAYS and not link.name.endswith(WEIGHT_SUFFIXES):
        return blob_problem(blob, verified)
    return None


def blob_problem(blob: Path, verified: VerifyCache | None) -> str | None:
    """Does ``blob``'s content match its etag name? Remembered in ``verified`` by content identity."""
    st = blob.stat()
    key = (str(blob), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    if verified is not None and verified.passed(BLOB_KIND, [key]):
        return None
    got = blob_digest(blob)
    if got is None:
        return None  # not named by a hash: nothing to compare (--deep names it)
    if got[1] != blob.name:
        return f"its content no longer matches its etag ({got[0]} {got[1][:12]}…, name {blob.name[:12]}…)"
    if verified is not None:
        verified.record(BLOB_KIND, [key])
    return None


# --------------------------------------------------------------------------- one snapshot


def read_ref(rdir: Path, ref: str = "main") -> tuple[str | None, str | None]:
    """(the commit refs/<ref> names, or None; why it cannot be used, or None). Reads at most ``REF_BYTES``."""
    path = rdir / "refs" / ref
    try:
        fd, _ = open_fd(path)  # the one safe-open rule
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except NotARegularFile as e:
        return None, f"refs/{ref} is {e.kind}, not a regular file"
    except OSError as e:
        return None, f"refs/{ref} cannot be read ({e.strerror or type(e).__name__})"
    try:
        data = os.read(fd, REF_BYTES + 1)
    except OSError as e:
        return None, f"refs/{ref} cannot be read ({e.strerror or type(e).__name__})"
    finally:
        os.close(fd)
    commit = data.strip()
    if len(data) > REF_BYTES or not commit or any(not 0x21 <= c < 0x7F for c in commit) or b"/" in commit \
            or commit in (b".", b".."):
        shown_bytes = commit[:40].decode("ascii", "backslashreplace")
        what = f"{len(data):,}+ bytes" if len(data) > REF_BYTES else f"'{shown(shown_bytes)}'"
        return None, f"refs/{ref} does not hold a commit hash ({what}): not written by huggingface_hub"
    return commit.decode("ascii"), None


def ref_snapshot(rdir: Path, ref: str = "main") -> tuple[Path | None, str | None]:
    """(snapshot dir, problem) for refs/<ref>."""
    snaps = sorted(p.name for p in (rdir / "snapshots").glob("*")) if (rdir / "snapshots").is_dir() else []
    commit, problem = read_ref(rdir, ref)
    if problem:
        return None, problem
    if commit is None:
        if not snaps:
            return None, None
        return None, (f"refs/{ref} is missing although snapshots exist ({', '.join(shown(s[:12]) for s in snaps)}): "
                      "offline loading resolves 'main' through it")
    snap = rdir / "snapshots" / commit
    if not snap.is_dir():
        return None, f"refs/{ref} names commit {commit[:12]} but snapshots/{commit[:12]}… does not exist"
    return snap, None


@dataclass
class SnapshotState:
    """Each needed file of one snapshot: present (and what it is), missing, or not what its name says."""

    present: dict[str, Path] = field(default_factory=dict)  # entry label -> the file the library will use
    missing: list[Entry] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)  # file name -> why it fails ``cached_file_problem``
    weights_blob: str | None = None  # blob name of the pinned weights file, when it is a link into blobs/
    other_weights: bool = False  # the weights file is there, whole, but not the pinned blob
    other_weights_link: Path | None = None

    @property
    def complete(self) -> bool:
        return not self.missing and not self.bad and not self.other_weights


def inspect_snapshot(snapshot: Path, needs: Iterable[Entry], pin: Pin | None = None,
                     verified: VerifyCache | None = None) -> SnapshotState:
    """Each needed file of ``snapshot``: present and what its name says, missing, or bad (and why).

    For "one of these" entries the first alternative that exists is the one the library will load
    (open_clip tries ``open_clip_model.safetensors`` first and does not fall back when it is corrupt).
    """
    state = SnapshotState()
    for entry in needs:
        alternatives = (entry,) if isinstance(entry, str) else entry
        there = [a for a in alternatives if os.path.lexists(snapshot / a)]
        if not there:
            state.missing.append(entry)
            continue
        name = there[0]
        link = snapshot / name
        is_weights = pin is not None and name == pin.file
        if is_weights and link.is_symlink():
            state.weights_blob = Path(os.readlink(link)).name
        problem = cached_file_problem(link, pin if is_weights else None, verified)
        if problem == OTHER_WEIGHTS:
            state.other_weights = True
            state.other_weights_link = link
        elif problem:
            state.bad[name] = problem
        else:
            state.present[label(entry)] = link
    return state


@dataclass
class CacheReport:
    """What the checks and ``--fetch-missing`` ask of a model's cache: refs/main's snapshot and its files."""

    repo_id: str
    repo_dir: Path
    snapshot: Path | None
    present: list[str] = field(default_factory=list)  # the file actually used for each needed entry
    missing: list[str] = field(default_factory=list)
    broken: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    bytes: int = 0

    @property
    def complete(self) -> bool:
        return self.snapshot is not None and not self.missing and not self.broken

    def findings(self) -> list[Finding]:
        """What is missing or broken, each with the fix (``fix_for``)."""
        fix = fix_for(self.repo_id)
        where = str(self.snapshot or self.repo_dir)
        if not self.repo_dir.is_dir():
            return [Finding(f"{self.repo_id}: not in the Hugging Face cache", where=str(self.repo_dir), fix=fix)]
        out = []
        if self.missing:
            out.append(Finding(f"{self.repo_id}: files missing from the Hugging Face cache", self.missing,
                               where=where, fix=fix))
        for name, reason in self.broken:
            path = self.snapshot / name if self.snapshot else None
            # A blob is replaced by the fetch (its content no longer matches its etag name); a plain file
            # where a symlink belongs has no etag to compare with, so it must go first.
            plain = path is not None and path.is_file() and not path.is_symlink()
            out.append(Finding(f"{self.repo_id}: {shown(name)} is broken ({reason})", where=where,
                               fix=fix_for(self.repo_id, remove=path if plain else None)))
        return out

    def problems(self) -> list[str]:
        """``findings`` as messages (what — where — fix)."""
        return [f.message() for f in self.findings()]


def cache_report(facts: ModelFacts, hf_cache: Path, verified: VerifyCache | None = None,
                 check_files: bool = True) -> CacheReport:
    """Which snapshot ``refs/main`` selects and which of ``facts.files`` are present, missing or broken.

    Broken: ``cached_file_problem`` (the same judge the fetch uses), so an edited config.json is found by
    a quick run and fetched again by ``--fetch-missing``. Whose weights these are is ``weights_identity``'s.
    ``check_files=False``: huggingface_hub's own view (a file that is there is there; a dangling link is not).
    """
    rdir = repo_dir(hf_cache, facts.repo_id)
    report = CacheReport(facts.repo_id, rdir, None)
    if not rdir.is_dir():
        report.missing = [label(e) for e in facts.files]
        return report
    snap, problem = ref_snapshot(rdir)
    if problem:
        report.broken.append(("refs/main", problem))
        return report
    if snap is None:
        report.missing = [label(e) for e in facts.files]
        return report
    report.snapshot = snap
    if not check_files:
        there = [next((a for a in ((e,) if isinstance(e, str) else e) if (snap / a).exists()), None)
                 for e in facts.files]
        report.present = [a for a in there if a is not None]
        report.missing = [label(e) for e, a in zip(facts.files, there) if a is None]
        return report
    state = inspect_snapshot(snap, facts.files, None, verified)
    report.missing = [label(e) for e in state.missing]
    report.broken = list(state.bad.items())
    used = list(state.present.values()) + ([state.other_weights_link] if state.other_weights_link else [])
    for path in used:
        report.present.append(path.name)
        report.bytes += path.stat().st_size
    return report


# --------------------------------------------------------------------------- identity of the weights


class Identity(enum.StrEnum):
    PUBLISHED = "published"  # the blob is named by the pinned sha256 and has the pinned size
    OTHER = "other"  # a different blob, or the right name with the wrong size
    UNVERIFIED = "unverified"  # nothing to compare: no published digest, a plain file, no pin
    ABSENT = "absent"  # no snapshot or no weight file: cache_report's business


@dataclass(frozen=True)
class WeightsIdentity:
    """Which weights ``refs/main`` makes the library load, named by the cache itself (no byte is read).

    ``status``: "published" (the blob is named by the pinned sha256 and has the pinned size),
    "other" (a different blob, or the right name with the wrong size), "unverified" (nothing to compare:
    a file without a published digest, a plain file instead of a symlink, no pin), or "absent" (no
    snapshot or no weight file: ``cache_report``'s business).
    """

    repo_id: str
    status: Identity
    snapshot: Path | None = None
    revision: str | None = None  # the commit refs/main names
    weights_file: str | None = None  # the file of the snapshot the library loads
    weights_sha256: str | None = None  # the blob name of that file (its sha256, for an LFS file)
    size: int | None = None
    problem: str | None = None  # what is wrong — where (unless published or absent); the fix is ``fix``
    fix: Fix | None = None
    note: str | None = None  # published weights at another revision than the pinned one

    @property
    def published(self) -> bool:
        return self.status is Identity.PUBLISHED

    def message(self) -> str | None:
        """The whole failure message: what — where — fix."""
        if self.problem is None:
            return None
        return f"{self.problem} — fix: {self.fix}" if self.fix else self.problem

    def summary(self) -> str:
        """One line of provenance for the readiness table."""
        if self.weights_file is None:
            return f"revision {_short(self.revision)}" if self.revision else "no snapshot"
        digest = _short(self.weights_sha256) if self.weights_sha256 else "(no blob digest)"
        size = f" ({human_bytes(self.size)})" if self.size is not None else ""
        verdict = {Identity.PUBLISHED: "the published weights", Identity.OTHER: "NOT the published weights",
                   Identity.UNVERIFIED: "unverified"}.get(self.status, str(self.status))
        return f"revision {_short(self.revision)}, {self.weights_file} {digest}{size}: {verdict}"


def _short(digest: str | None) -> str:
    return f"{digest[:12]}…" if digest else "?"


def _is_sha256(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def weights_identity(facts: ModelFacts, hf_cache: Path) -> WeightsIdentity:
    """Is the weight file ``refs/main`` selects the published one? By the blob's name and size: no hashing.

    huggingface_hub stores an LFS file as ``blobs/<sha256>`` and links ``snapshots/<rev>/<file>`` to it;
    after a download it has checked the size, and ``--deep`` (``verify_blobs``) hashes the blob to prove
    that the content matches the name. Pure: reads one ref, one symlink and one ``stat``.
    """
    repo = facts.repo_id
    rdir = repo_dir(hf_cache, repo)
    snap, _ = ref_snapshot(rdir)
    if snap is None:
        return WeightsIdentity(repo, Identity.ABSENT)
    revision = snap.name
    base = WeightsIdentity(repo, Identity.ABSENT, snapshot=snap, revision=revision)
    fix = fix_for(repo)
    if not (facts.weights_file and facts.weights_sha256 and facts.weights_size):
        return replace(base, status=Identity.UNVERIFIED,
                       fix=Fix("add the published revision, weight file, size and sha256 of this model to "
                               "preflight_core/registry.py"),
                       problem=f"unverified: {repo}: the registry pins no published weights for it — in {snap}")
    entry = next((e for e in facts.files
                  if facts.weights_file == e or (isinstance(e, tuple) and facts.weights_file in e)), facts.weights_file)
    alternatives = (entry,) if isinstance(entry, str) else entry
    chosen = next((a for a in alternatives if (snap / a).exists()), None)  # what the library will load
    if chosen is None:
        return base
    link = snap / chosen
    if not link.is_symlink():
        size = link.stat().st_size
        fix = fix_for(repo, remove=link)
        return replace(base, status=Identity.UNVERIFIED, weights_file=chosen, size=size, fix=fix, problem=Finding(
            f"unverified: {repo}: {chosen} is a plain file ({size:,} B), not a symlink to a blob named by its "
            "sha256, so it cannot be identified without hashing (a cache written without symlinks)",
            where=str(snap)).problem())
    blob = link.resolve()
    found, size = blob.name, blob.stat().st_size
    digest = found if _is_sha256(found) else None
    ident = replace(base, weights_file=chosen, weights_sha256=digest, size=size, fix=fix)
    published = f"published {_short(facts.weights_sha256)} ({facts.weights_size:,} B)"
    if chosen != facts.weights_file:
        return replace(ident, status=Identity.UNVERIFIED, problem=Finding(
            f"unverified: {repo}: the snapshot holds {chosen} ({_short(digest)}, {size:,} B) and no "
            f"{facts.weights_file}; the library loads it, but only {facts.weights_file} has a published digest "
            f"({published}), so these cannot be shown to be the published weights",
            where=str(snap)).problem())
    if found != facts.weights_sha256 or size != facts.weights_size:
        name = f"{_short(digest)}" if digest else f"a blob named {found[:40]!r}"
        why = ("the published name but not its size (truncated, padded or edited)" if found == facts.weights_sha256
               else "other weights (a fine-tune, a re-upload, or a random initialisation)")
        return replace(ident, status=Identity.OTHER, problem=Finding(
            f"not the published weights of {repo}: found {name} ({size:,} B), {published}: its {chosen} has {why}",
            where=str(snap)).problem())
    note = None
    if facts.revision and revision != facts.revision:
        note = (f"{repo}: refs/main is revision {_short(revision)}, not the pinned {_short(facts.revision)}, "
                f"but its {chosen} is the published one ({_short(found)}, {size:,} B)")
    return replace(ident, status=Identity.PUBLISHED, note=note)
