"""Download a pinned ``RemoteFile`` over plain HTTP(S) with ``requests``, exactly once and atomically.

Per artifact: lock (filelock ``dest_dir/.<name>.lock``) -> re-check (a file already there with
the pinned size and sha256 is done; one that differs is reported, never touched) -> free-space
check -> stream into ``dest_dir/.<name>.<random>.part`` hashing on the fly -> verify size and
sha256 -> ``os.replace`` onto the final name. The URLs of ``remote.urls`` are mirrors tried in
order. A dropped connection resumes with ``Range`` (checking ``Content-Range``); attempts that
make no progress back off exponentially and give up after ``attempts`` of them in a row.
"""

from __future__ import annotations

import glob
import hashlib
import os
import queue
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, Union
from urllib.parse import urlsplit

import requests
from filelock import FileLock

from core.hashing import sha256_file
from core.redact import redact  # re-exported: fetchers.download.redact
from core.registry import RemoteFile

CHUNK_SIZE = 1 << 20  # 1 MiB: large enough that per-chunk Python overhead is negligible
MIRROR_ENV = "PREFLIGHT_MIRROR"
USER_AGENT = "preflight-fetch/1"


# --- progress --------------------------------------------------------------------------------
class ProgressBar(Protocol):
    def update(self, n: int) -> None: ...  # n more units done
    def reset(self, pos: int) -> None: ...  # position jumps back (restart from zero, next mirror)
    def close(self, message: str) -> None: ...  # finished (or failed: message empty)


# (description, total, unit) -> a bar; unit is "B" for bytes, otherwise a noun such as "img".
Progress = Callable[[str, int, str], ProgressBar]


class _TqdmBar:
    def __init__(self, desc: str, total: int, unit: str) -> None:
        from tqdm import tqdm

        byte_units = unit == "B"
        self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=byte_units,
                         unit_divisor=1024 if byte_units else 1000, dynamic_ncols=True, leave=True)

    def update(self, n: int) -> None:
        self._bar.update(n)

    def reset(self, pos: int) -> None:
        self._bar.n = pos
        self._bar.refresh()

    def close(self, message: str) -> None:
        self._bar.close()


class _LineBar:
    """Quiet while running; one line on stderr at the end."""

    def __init__(self, desc: str, total: int, unit: str) -> None:
        pass

    def update(self, n: int) -> None:
        pass

    def reset(self, pos: int) -> None:
        pass

    def close(self, message: str) -> None:
        if message:
            print(message, file=sys.stderr, flush=True)


class _NullBar(_LineBar):
    def close(self, message: str) -> None:
        pass


def tqdm_progress(desc: str, total: int, unit: str) -> ProgressBar:
    return _TqdmBar(desc, total, unit)


def line_progress(desc: str, total: int, unit: str) -> ProgressBar:
    return _LineBar(desc, total, unit)


def no_progress(desc: str, total: int, unit: str) -> ProgressBar:
    return _NullBar(desc, total, unit)


def auto_progress(desc: str, total: int, unit: str) -> ProgressBar:
    """A tqdm bar (size, rate) when stderr is a terminal, else one summary line at the end."""
    return (tqdm_progress if sys.stderr.isatty() else line_progress)(desc, total, unit)


ProgressArg = Union[Progress, Literal["auto"], None]


def resolve_progress(progress: ProgressArg) -> Progress:
    return auto_progress if progress == "auto" else (progress or no_progress)


# --- errors ----------------------------------------------------------------------------------
class DownloadError(RuntimeError):
    """A download failed; the message names the file, the URL(s) and the fix."""


class ExistingFileDiffers(DownloadError):
    pass


class NotEnoughSpace(DownloadError):
    pass


class _UrlFailed(Exception):
    """This URL cannot deliver the file (permanent for this URL); the next mirror may."""


@dataclass(frozen=True)
class FetchResult:
    path: Path
    bytes_downloaded: int
    seconds: float
    url: str | None  # the URL that delivered the file (redacted); None when already present
    already_present: bool


# --- URLs ------------------------------------------------------------------------------------
def mirrored(url: str) -> str:
    """``https://host/path`` -> ``$PREFLIGHT_MIRROR/host/path`` when PREFLIGHT_MIRROR is set, else ``url``."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{mirror.rstrip('/')}/{host}{parts.path}" + (f"?{parts.query}" if parts.query else "")


# --- helpers ---------------------------------------------------------------------------------
def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def check_free_space(folder: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise NotEnoughSpace(
            f"not enough disk space for {what} in {folder}: need {_mb(needed)}, {_mb(free)} free. "
            f"Fix: free {_mb(needed - free)} there, or choose another --data-root."
        )


def _looks_like_html(first_bytes: bytes) -> bool:
    head = first_bytes[:512].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html"))


def _expects_html(filename: str) -> bool:
    return filename.lower().endswith((".html", ".htm"))


def _parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """``bytes 100-199/1000`` -> (100, 1000); total None for ``/*``; None if unparsable."""
    if not value or not value.startswith("bytes ") or "/" not in value:
        return None
    span, total = value[6:].split("/", 1)
    try:
        start = int(span.split("-", 1)[0])
        return start, None if total.strip() == "*" else int(total)
    except ValueError:
        return None


# --- the download ----------------------------------------------------------------------------
class _Partial:
    """The temp file being written and its running sha256.

    Hashing runs in a helper thread (hashlib releases the GIL), overlapping with receiving and
    writing the next chunks; at most ``_QUEUE_CHUNKS`` chunks wait for it.
    """

    _QUEUE_CHUNKS = 16
    _RESTART, _STOP = object(), object()

    def __init__(self, file: BinaryIO, bar: ProgressBar) -> None:
        self.file, self.bar = file, bar
        self.pos = 0  # bytes in the file
        self.received = 0  # bytes received over the wire, restarts included
        self._hasher = hashlib.sha256()
        self._queue: queue.Queue = queue.Queue(self._QUEUE_CHUNKS)
        self._thread = threading.Thread(target=self._hash, name="fetch-sha256", daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        while (item := self._queue.get()) is not self._STOP:
            if item is self._RESTART:
                self._hasher = hashlib.sha256()
            elif isinstance(item, threading.Event):
                item.set()
            else:
                self._hasher.update(item)

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self._queue.put(chunk)
        self.pos += len(chunk)
        self.received += len(chunk)
        self.bar.update(len(chunk))

    def restart(self) -> None:
        self.file.seek(0)
        self.file.truncate()
        self._queue.put(self._RESTART)
        self.pos = 0
        self.bar.reset(0)

    def hexdigest(self) -> str:
        done = threading.Event()
        self._queue.put(done)
        done.wait()
        return self._hasher.hexdigest()

    def close(self) -> None:
        self._queue.put(self._STOP)
        self._thread.join()


def fetch_file(
    remote: RemoteFile,
    dest_dir: Path,
    *,
    progress: ProgressArg = "auto",
    session: requests.Session | None = None,
    attempts: int = 5,
    backoff: float = 1.0,
    max_backoff: float = 30.0,
    timeout: float | tuple[float, float] = (15.0, 60.0),
    chunk_size: int = CHUNK_SIZE,
    required_bytes: int | None = None,
    lock_timeout: float = -1,
) -> FetchResult:
    """Make ``dest_dir/remote.filename`` the pinned file, downloading it at most once.

    ``attempts``: consecutive attempts without progress before a URL is given up;
    ``backoff``: first delay between them (doubling, capped at ``max_backoff``);
    ``required_bytes``: free space demanded before downloading (default: the file size).
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / remote.filename
    t0 = time.monotonic()
    with FileLock(str(dest_dir / f".{remote.filename}.lock"), timeout=lock_timeout):
        if final.exists():  # re-check under the lock: another process may have just finished it
            _verify_existing(final, remote)
            return FetchResult(final, 0, time.monotonic() - t0, None, True)
        # Under the lock nobody else writes this artifact: temp files left by a killed run are garbage.
        for stale in dest_dir.glob(f".{glob.escape(remote.filename)}.*.part"):
            stale.unlink(missing_ok=True)
        check_free_space(dest_dir, remote.size if required_bytes is None else required_bytes, remote.filename)

        tmp = dest_dir / f".{remote.filename}.{secrets.token_hex(6)}.part"
        bar = resolve_progress(progress)(remote.filename, remote.size, "B")
        message = ""
        own_session = session is None
        session = session or requests.Session()
        try:
            with open(tmp, "xb") as f:
                part = _Partial(f, bar)
                try:
                    url = _download_from_mirrors(remote, part, session, attempts=attempts, backoff=backoff,
                                                 max_backoff=max_backoff, timeout=timeout, chunk_size=chunk_size)
                finally:
                    part.close()
                f.flush()
            # No fsync: the bytes were verified before this rename, and a file torn by a crash after
            # it fails the sha256 re-check of every later fetch and check; it is never taken as complete.
            os.replace(tmp, final)
            seconds = time.monotonic() - t0
            message = f"fetched {remote.filename} ({_mb(remote.size)} in {seconds:.1f} s) -> {final}"
            return FetchResult(final, part.received, seconds, url, False)
        finally:
            bar.close(message)
            if own_session:
                session.close()
            tmp.unlink(missing_ok=True)


def _verify_existing(final: Path, remote: RemoteFile) -> None:
    size = final.stat().st_size
    problem = None
    if size != remote.size:
        problem = f"its size is {size:,} bytes, the pinned size is {remote.size:,}"
    else:
        digest = sha256_file(final)
        if digest != remote.sha256:
            problem = f"its sha256 is {digest}, the pinned sha256 is {remote.sha256}"
    if problem:
        raise ExistingFileDiffers(
            f"{final} already exists but is not the pinned {remote.filename}: {problem}. "
            f"It was left untouched. Fix: if it is a stale or broken download, delete it and fetch again; "
            f"if you put it there on purpose, move it elsewhere first."
        )


def _download_from_mirrors(remote: RemoteFile, part: _Partial, session: requests.Session, **kw) -> str:
    failures: list[str] = []
    for original in remote.urls:
        url = mirrored(original)
        if part.pos:
            part.restart()
        try:
            _download_url(url, remote, part, session, **kw)
            return redact(url)
        except _UrlFailed as e:
            failures.append(str(e))
    tried = "\n  - ".join(failures)
    raise DownloadError(
        f"could not download {remote.filename} ({_mb(remote.size)}, sha256 {remote.sha256[:12]}…) "
        f"from any of its {len(remote.urls)} URL(s):\n  - {tried}\n"
        f"Nothing was written under the final name. Fix: see above; or download the file by hand, "
        f"check its sha256 and put it at the destination; or set {MIRROR_ENV} to a mirror that has it."
    )


class _Retry(Exception):
    """A transient answer (5xx, 429, a Range answer we cannot use): try again."""


def _download_url(url: str, remote: RemoteFile, part: _Partial, session: requests.Session, *,
                  attempts: int, backoff: float, max_backoff: float, timeout, chunk_size: int) -> None:
    """Fill ``part`` with the pinned file from ``url``, resuming and retrying. Raises _UrlFailed."""
    shown = redact(url)
    stalls = 0  # consecutive attempts that did not get further than ever before
    delay = backoff
    high = part.pos  # the furthest we have been: progress = beating it (a Range-ignoring server restarts at 0)
    validator: str | None = None  # ETag / Last-Modified of the first answer, so a changed file is not spliced
    last_problem = ""
    while True:
        try:
            headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}  # identity: Range counts raw bytes
            if part.pos:
                headers["Range"] = f"bytes={part.pos}-"
                if validator:
                    headers["If-Range"] = validator
            with session.get(url, headers=headers, stream=True, timeout=timeout) as r:
                announced = _check_response(r, shown, remote, part)
                if r.status_code == 200:
                    etag = r.headers.get("ETag", "")
                    validator = (etag if etag and not etag.startswith("W/") else None) or r.headers.get("Last-Modified")
                for chunk in r.iter_content(chunk_size):
                    if part.pos == 0 and not _expects_html(remote.filename) and _looks_like_html(chunk):
                        raise _UrlFailed(_html_message(shown, remote))
                    if announced is not None:
                        raise _UrlFailed(_size_message(shown, remote, announced))
                    if part.pos + len(chunk) > remote.size:
                        raise _UrlFailed(_size_message(shown, remote, f"more than {remote.size:,}"))
                    part.write(chunk)
            if part.pos != remote.size:  # a body that ended cleanly but short
                raise _UrlFailed(_size_message(shown, remote, f"{part.pos:,}"))
            digest = part.hexdigest()
            if digest != remote.sha256:
                raise _UrlFailed(f"{shown}: the sha256 of the downloaded {remote.filename} is {digest}, the pinned "
                                 f"sha256 is {remote.sha256}: the file changed upstream or got corrupted")
            return
        except _Retry as e:
            last_problem = str(e)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
            last_problem = f"{type(e).__name__}: {redact(str(e))}"
        if part.pos > high:  # progress: resume at once, the backoff starts over
            high, stalls, delay = part.pos, 0, backoff
            continue
        stalls += 1
        if stalls >= attempts:
            raise _UrlFailed(f"{shown}: gave up after {attempts} attempts in a row without progress "
                             f"({part.pos:,} of {remote.size:,} bytes); last error: {last_problem}. "
                             f"Fix: check the network or proxy, then rerun")
        time.sleep(delay)
        delay = min(delay * 2, max_backoff)


def _html_message(shown: str, remote: RemoteFile) -> str:
    return (f"{shown}: got an HTML page instead of {remote.filename}: the URL probably needs a login or moved. "
            f"Fix: open it in a browser; if it needs a login, download {remote.filename} by hand and put it "
            f"in place, else update its URL in checks/registry.py")


def _size_message(shown: str, remote: RemoteFile, got: str) -> str:
    return (f"{shown}: wrong size: got {got} bytes of {remote.filename}, the pinned size is {remote.size:,}: "
            f"the file changed upstream or the URL serves something else")


def _check_response(r: requests.Response, shown: str, remote: RemoteFile, part: _Partial) -> str | None:
    """Classify the answer; returns the announced length of a wrong-size 200 (reported after an HTML sniff)."""
    code = r.status_code
    if code in (401, 403):
        raise _UrlFailed(f"{shown}: HTTP {code} {r.reason}: the server wants a login or refuses this client. "
                         f"Fix: download {remote.filename} by hand (logged in) and put it in place, "
                         f"or set {MIRROR_ENV} to a mirror that has it")
    if code in (404, 410):
        raise _UrlFailed(f"{shown}: HTTP {code} {r.reason}: {remote.filename} is not there (moved or removed). "
                         f"Fix: find its new URL and update checks/registry.py, or set {MIRROR_ENV}")
    if code == 416 and part.pos:
        at = part.pos
        part.restart()  # our partial file is not a prefix of what the server has
        raise _Retry(f"HTTP 416 for a resume at byte {at:,}: starting over")
    if code == 429 or code >= 500:
        raise _Retry(f"HTTP {code} {r.reason}")
    if code not in (200, 206):
        raise _UrlFailed(f"{shown}: unexpected HTTP {code} {r.reason}")
    content_type = r.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type == "text/html" and not _expects_html(remote.filename):
        raise _UrlFailed(_html_message(shown, remote))
    if code == 200:
        if part.pos:  # the server ignored Range: start over
            part.restart()
        length = r.headers.get("Content-Length")
        return f"{int(length):,}" if length is not None and int(length) != remote.size else None
    # 206: it must continue exactly where our partial file ends, for a file of the pinned size.
    parsed = _parse_content_range(r.headers.get("Content-Range"))
    if parsed is None or parsed[0] != part.pos:
        at = part.pos
        part.restart()
        raise _Retry(f"unusable Content-Range {r.headers.get('Content-Range')!r} for a resume at byte {at:,}")
    if parsed[1] is not None and parsed[1] != remote.size:
        raise _UrlFailed(_size_message(shown, remote, f"{parsed[1]:,} (Content-Range)"))
    return None
