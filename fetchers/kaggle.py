"""Fetch COCO val2017 from Kaggle with kagglehub, then link ``data_root/coco_val2017`` into kagglehub's cache.

kagglehub 1.0.3 downloads a dataset folder file by file (404 on the folder as a file, then a tree listing, then
one signed download per file, each MD5-checked, each with a completion marker), into
``$KAGGLEHUB_CACHE/datasets/<owner>/<slug>/versions/<n>/<path>``. We take a lock on that dataset (kagglehub
has none), skip the network when kagglehub's completion marker is there, and never replace an existing
``coco_val2017`` that is not our link: that is reported before anything is downloaded.

Credentials are found by kagglehub itself; :func:`kaggle_credential_source` mirrors its order only to *name* the
source in messages and to warn about a group/other-readable secret file. No token, key or file content is ever
put in a message. Errors are raised ``from None``: kagglehub's exceptions carry the request, whose headers
hold the credentials.

``PREFLIGHT_KAGGLE_ENDPOINT`` (or ``endpoint=``) sends the API calls to another server (air-gapped mirror,
tests); without it, ``PREFLIGHT_MIRROR`` sends them to ``$PREFLIGHT_MIRROR/api.kaggle.com``, so one variable
covers every download of an air-gapped site: kagglesdk 0.1.38 has no such setting (``KAGGLE_API_ENVIRONMENT`` only picks fixed hosts, and its
TEST value makes kagglesdk print request headers, credentials included), so the PROD entry of kagglesdk's
endpoint table is swapped for the duration of the call.
"""

from __future__ import annotations

import os
import secrets
import stat
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from fetchers.download import MIRROR_ENV, DownloadError, ExistingFileDiffers, FetchResult, mirrored
from fetchers.errors import fetch_command
from preflight_core.commands import shell
from preflight_core.findings import Fix
from preflight_core.registry import ASSETS, COCO_KAGGLE_HANDLE, COCO_KAGGLE_PATH

ENDPOINT_ENV = "PREFLIGHT_KAGGLE_ENDPOINT"
LINK_NAME = ASSETS["coco_val2017"].location  # data_root/<this> links into the kagglehub cache
TOKEN_PAGE = "https://www.kaggle.com/settings"
_ENDPOINT_LOCK = threading.Lock()


class KaggleFetchError(DownloadError):
    """A Kaggle download failed; ``message`` says why, ``fix`` what to do; neither holds a secret.

    (DownloadError first: once it derives from FetchError itself the order stays consistent.)
    """


class KaggleCredentialsWarning(UserWarning):
    pass


@dataclass(frozen=True)
class CredentialSource:
    """Where kagglehub will take credentials from; never the secret itself."""

    where: str  # e.g. "KAGGLE_USERNAME/KAGGLE_KEY environment variables", "/home/u/.kaggle/kaggle.json"
    file: Path | None = None  # the file holding the secret, if any


def fetch_coco_kaggle(data_root: Path, handle: str = COCO_KAGGLE_HANDLE, path: str = COCO_KAGGLE_PATH, *,
                      endpoint: str | None = None) -> FetchResult:
    """Download ``path`` of the Kaggle dataset ``handle`` (once) and make ``data_root/coco_val2017`` link to it."""
    import kagglehub  # noqa: F401  (registers kagglehub's resolvers)
    from kagglehub.cache import Cache
    from kagglehub.config import get_cache_folder
    from kagglehub.dataset_paths import normalize_dataset_path
    from kagglehub.handle import parse_dataset_handle

    t0 = time.monotonic()
    data_root = Path(data_root)
    link = data_root / LINK_NAME
    h = parse_dataset_handle(handle)
    path = normalize_dataset_path(path)
    url = h.to_url()
    expected = Path(Cache().get_path(h, path)) if h.is_versioned() else None
    rerun = fetch_command("--coco", data_root=data_root)
    command = f"`{rerun}`"
    _check_link_slot(link, expected, command)  # before any download: an occupied slot is reported, not replaced
    source = kaggle_credential_source()
    _warn_about_permissions(source)

    cache_root = Path(get_cache_folder())
    lock = cache_root / ".locks" / f"preflight-{h.owner}-{h.dataset}-{h.version or 'latest'}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        cache = Cache()
        cached = cache.load_from_cache(h, path) if h.is_versioned() else None
        if cached:  # kagglehub's completion marker is there: the same checks as after a download
            done = Path(cache._get_completion_marker_filepath(h, path))
            _check_download(Path(cached), handle, path, done, "kagglehub's cache holds", rerun)
            _check_link_slot(link, Path(cached), command)
            _make_link(link, Path(cached))
            return FetchResult(link, 0, time.monotonic() - t0, None, True)
        before = _sizes(expected) if expected else {}
        got = Path(_download(handle, path, url, source, endpoint or api_endpoint(), command))
        marker = Path(cache._get_completion_marker_filepath(h, path)) if h.is_versioned() else None
        _check_download(got, handle, path, marker, "kagglehub returned", rerun)
        _check_link_slot(link, got, command)
        _make_link(link, got)
        downloaded = sum(size for rel, size in _sizes(got).items() if before.get(rel) != size)
    return FetchResult(link, downloaded, time.monotonic() - t0, url, False)


# --- credentials -------------------------------------------------------------------------------
def kaggle_credential_source() -> CredentialSource | None:
    """The source kagglehub 1.0.3 will use, in its own order (``kagglehub.config.get_kaggle_credentials``)."""
    from kagglehub import config
    from kagglesdk import kaggle_env

    if config._kaggle_credentials:
        return CredentialSource("credentials set in this process (kagglehub.login / set_kaggle_credentials)")
    token, origin = kaggle_env.get_access_token_from_env()
    del token  # only the origin matters here
    if origin == "KAGGLE_API_TOKEN":
        value = os.environ.get("KAGGLE_API_TOKEN", "")
        if Path(value).exists():
            return CredentialSource(f"the token file named by KAGGLE_API_TOKEN ({value})", Path(value))
        return CredentialSource("the KAGGLE_API_TOKEN environment variable")
    if origin == "access_token":
        for name in ("access_token", "access_token.txt"):
            candidate = Path(os.path.expanduser(f"~/.kaggle/{name}"))
            if candidate.is_file():
                return CredentialSource(f"the access token file {candidate}", candidate)
    if origin == kaggle_env.KAGGLE_API_V1_TOKEN_PATH:
        token_file = Path(os.environ.get(kaggle_env.KAGGLE_API_V1_TOKEN_PATH, ""))
        return CredentialSource(f"the Kaggle notebook token file {token_file}", token_file)
    if os.environ.get(config.USERNAME_ENV_VAR_NAME) and os.environ.get(config.KEY_ENV_VAR_NAME):
        return CredentialSource("the KAGGLE_USERNAME/KAGGLE_KEY environment variables")
    creds_file = Path(config._get_kaggle_credentials_file())
    if creds_file.exists():
        return CredentialSource(str(creds_file), creds_file)
    return None


def _credential_files() -> list[Path]:
    from kagglehub import config

    files = [Path(config._get_kaggle_credentials_file())]
    files += [Path(os.path.expanduser(f"~/.kaggle/{n}")) for n in ("access_token", "access_token.txt")]
    return files


def _warn_about_permissions(source: CredentialSource | None) -> None:
    files = {*_credential_files(), *([source.file] if source and source.file else [])}
    for f in sorted(files):
        try:
            mode = f.stat().st_mode
        except OSError:
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.warn(
                f"{f} holds a Kaggle credential and is accessible to other users (mode {stat.filemode(mode)}). "
                f"({shell('chmod', '600', f)} makes it private)", KaggleCredentialsWarning, stacklevel=3)


def _no_credentials() -> tuple[str, str]:
    from kagglehub import config

    file = config._get_kaggle_credentials_file()
    return (f"no Kaggle credentials were found (looked for KAGGLE_API_TOKEN, ~/.kaggle/access_token, "
            f"KAGGLE_USERNAME/KAGGLE_KEY and {file})",
            f"create an API token at {TOKEN_PAGE} (API -> Create New Token) and save the downloaded kaggle.json as "
            f"{file} with `chmod 600`, or export KAGGLE_API_TOKEN")


# --- the download ------------------------------------------------------------------------------
KAGGLE_API = "https://api.kaggle.com"  # kagglesdk's PROD endpoint


def api_endpoint() -> str | None:
    """Where the Kaggle API calls go: ``$PREFLIGHT_KAGGLE_ENDPOINT``, else ``$PREFLIGHT_MIRROR/api.kaggle.com``
    (the mirror layout of every other download), else Kaggle itself (None)."""
    explicit = os.environ.get(ENDPOINT_ENV, "").strip()
    if explicit:
        return explicit
    return mirrored(KAGGLE_API) if os.environ.get(MIRROR_ENV, "").strip() else None

@contextmanager
def _api_endpoint(endpoint: str | None) -> Iterator[None]:
    if not endpoint:
        yield
        return
    from kagglesdk import kaggle_env

    if kaggle_env.get_env() != kaggle_env.KaggleEnv.PROD:
        raise KaggleFetchError(f"{ENDPOINT_ENV} and KAGGLE_API_ENVIRONMENT are both set", "unset one of them")
    table = kaggle_env._env_to_endpoint
    with _ENDPOINT_LOCK:  # the table is process-wide: one swapped call at a time
        saved = table[kaggle_env.KaggleEnv.PROD]
        table[kaggle_env.KaggleEnv.PROD] = endpoint.rstrip("/")
        try:
            yield
        finally:
            table[kaggle_env.KaggleEnv.PROD] = saved


def _download(handle: str, path: str, url: str, source: CredentialSource | None, endpoint: str | None,
              command: str) -> str:
    import kagglehub
    import requests
    from kagglehub.exceptions import DataCorruptionError, KaggleApiHTTPError, UnauthenticatedError

    what = f"{handle} (folder {path})"
    message: str
    fix: str
    try:
        with _api_endpoint(endpoint):
            return kagglehub.dataset_download(handle, path=path)
    except (KaggleApiHTTPError, UnauthenticatedError) as e:
        response = getattr(e, "response", None)
        status = response.status_code if response is not None else 401
        if status == 401 and source is None:
            none, create = _no_credentials()
            message, fix = f"Kaggle answered HTTP 401 (not signed in) for {what}: {none}", f"{create}; then rerun {command}"
        elif status == 401 and source is not None:
            message = f"Kaggle rejected the credentials from {source.where} (HTTP 401) for {what}"
            fix = (f"the token or key may be wrong, expired or revoked: create a new one at {TOKEN_PAGE} and put it "
                   f"in {source.where}; then rerun {command}")
        elif status == 403:
            message = (f"Kaggle refused {what} to the account of {source.where if source else 'no credentials'} "
                       f"(HTTP 403)")
            fix = (f"open {url} signed in as that account and accept the dataset's rules or terms if it asks; check "
                   f"that the token may read datasets; then rerun {command} (or use `--coco-source official`)")
        elif status == 404:
            message = f"Kaggle has no {what} (HTTP 404)"
            fix = f"check COCO_KAGGLE_HANDLE and COCO_KAGGLE_PATH in preflight_core/registry.py against {url}"
        else:
            message, fix = f"Kaggle answered HTTP {status} for {what}", f"retry later ({command}); see {url}"
    except DataCorruptionError:
        message = (f"a file of {what} failed kagglehub's MD5 check after download (corrupted in transit); "
                   f"kagglehub deleted it")
        fix = f"rerun {command} (finished files are kept)"
    except (requests.ConnectionError, requests.Timeout) as e:
        message = f"could not reach the Kaggle API for {what} ({type(e).__name__})"
        fix = (f"check the network and proxy (HTTPS_PROXY), then rerun {command} (finished files are kept); "
               f"or use `--coco-source official`")
    raise KaggleFetchError(message, fix) from None  # not `from e`: the request in e carries the credentials


# --- the link ----------------------------------------------------------------------------------
def _check_link_slot(link: Path, target: Path | None, command: str) -> None:
    """Raise unless ``link`` is free or already a symlink to ``target`` (dangling is fine: we refill it)."""
    if not link.is_symlink() and not link.exists():
        return
    if link.is_symlink():
        current = Path(os.path.abspath(link.parent / os.readlink(link)))
        if target is not None and (current == Path(os.path.abspath(target))
                                   or os.path.realpath(current) == os.path.realpath(target)):
            return
        what, remove = f"a symlink to {current}", f"remove the link (`{shell('rm', '--', link)}`)"
    else:
        what, remove = ("a folder" if link.is_dir() else "a file"), "move it away"
    goal = f"the kagglehub download at {target}" if target else "a link to the kagglehub download"
    raise ExistingFileDiffers(
        f"{link} already exists and is {what}, not {goal}. It was left untouched and nothing was downloaded.",
        f"if it holds COCO val2017, fix what the checks report about it instead; if it is stale, {remove} "
        f"and rerun {command}.")


def _check_download(out: Path, handle: str, path: str, marker: Path | None, said: str, rerun: str) -> None:
    """Raise unless ``out`` is a folder holding files (what a folder download of ``path`` must give)."""
    if out.is_dir() and not out.is_symlink() and any(p.is_file() for p in out.iterdir()):
        return
    what = ("nothing" if not (out.exists() or out.is_symlink()) else "a symlink" if out.is_symlink()
            else "an empty folder" if out.is_dir() else "a file")
    remove = shell("rm", "-rf", "--", out, *([marker] if marker else []))
    raise KaggleFetchError(
        f"{said} {what} at {out}, where the folder {path} of {handle} should be (a folder of images); "
        f"data_root/{LINK_NAME} was not linked to it",
        Fix(f"remove that cache entry ({remove}) and rerun `{rerun}`; if Kaggle serves {path} as a "
            f"file again, check COCO_KAGGLE_PATH in preflight_core/registry.py or use `--coco-source official`",
            (remove, rerun)))


def _make_link(link: Path, target: Path) -> None:
    if link.is_symlink() and os.path.realpath(link) == os.path.realpath(target):
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{secrets.token_hex(4)}.tmp")
    tmp.symlink_to(target.resolve(), target_is_directory=True)
    os.replace(tmp, link)  # atomic: no moment without a link, no half-made one


def _sizes(folder: Path) -> dict[str, int]:
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
