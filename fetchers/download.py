"""Download a pinned ``RemoteFile`` over plain HTTP(S) with ``requests``, exactly once and atomically.

Per artifact: lock (filelock ``dest_dir/.<name>.lock``) -> re-check (a file already there with the
pinned size and sha256 is done; one that differs, a folder, or a symlink whose target is not the pinned
file is reported and never touched) -> free-space check -> stream into ``dest_dir/.<name>.<random>.part``
-> verify size and sha256 -> link onto the final name (never over anything that appeared there).

The URLs of ``remote.urls`` are mirrors tried in order. Per URL:

- every byte received counts: a dropped or stalled transfer resumes with ``Range`` from what was
  written (checking ``Content-Range`` and ``If-Range``), whatever the file's size;
- an attempt that receives less than ``STALL_MIN_BYTES`` in ``stall_seconds`` (default
  ``$PREFLIGHT_STALL_SECONDS`` or 60) ends and is retried: a server that drips bytes cannot hold
  the fetch; the socket read timeout is at most the stall limit too;
- 429 / 503 wait what ``Retry-After`` asks (seconds or an HTTP date), at most ``retry_after_cap``;
  other transient failures back off exponentially; an attempt that got further than ever before
  resets that budget (as huggingface_hub does), ``attempts`` in a row without progress give up;
- the whole fetch is bounded by ``max_seconds`` (default: 15 min plus the file at 32 KiB/s).

Each retry prints one line (what, why, next try in N s) through the progress sink; a failure is one
``DownloadError`` whose ``message`` says what and why and whose ``fix`` says what to do.

Speed: the socket is read into a few large reusable buffers, one system call at a time (so a drop
loses nothing and a stall is seen); each filled buffer is written, then hashed by a helper thread
(hashlib releases the GIL), overlapping with receiving the next ones.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import glob
import hashlib
import http.client
import json
import os
import queue
import secrets
import shutil
import socket
import ssl
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, Union
from urllib.parse import urlsplit

import filelock
import requests
import urllib3
from filelock import FileLock

from fetchers.errors import FetchError, explain_os_error
from preflight_core.findings import human_bytes, shown
from preflight_core.hashing import sha256_file
from preflight_core.options import OPTIONS, OptionError, resolve
from preflight_core.redact import redact  # re-exported: fetchers.download.redact
from preflight_core.registry import RemoteFile
from preflight_core.safe_io import read_regular

CHUNK_SIZE = 1 << 20  # bytes per buffer: per-buffer Python overhead negligible, still warm in cache when hashed
BUFFERS = 8  # buffers in flight (received, waiting to be hashed): at most 8 MiB
COMMIT_EVERY = 0.25  # s: on a slow link a buffer is written (and shown) at least this often
STALL_MIN_BYTES = 16 << 10  # an attempt that receives less than this in stall_seconds has stalled
DEFAULT_STALL_SECONDS = 60.0
RETRY_AFTER_CAP = 120.0  # s: the longest Retry-After wait honoured
MIN_RATE = 32 << 10  # B/s: the default time limit of a whole fetch allows the file at this rate ...
BASE_SECONDS = 900.0  # ... plus this
MIRROR_ENV = "PREFLIGHT_MIRROR"
STALL_ENV = OPTIONS["stall-seconds"].env  # PREFLIGHT_STALL_SECONDS
USER_AGENT = "preflight-fetch/1"


# --- progress --------------------------------------------------------------------------------
class ProgressBar(Protocol):
    def update(self, n: int) -> None: ...  # n more units done
    def reset(self, pos: int) -> None: ...  # position jumps back (restart from zero, next mirror)
    def close(self, message: str) -> None: ...  # finished (or failed: message empty)
    # Optional: ``note(line)`` shows one line (a retry) without breaking the bar.


# (description, total, unit) -> a bar; unit is "B" for bytes, otherwise a noun such as "img".
Progress = Callable[[str, int, str], ProgressBar]


def _iec_tqdm() -> type:
    """tqdm with an ``{iec}`` field: done, total and rate in IEC units (tqdm's own scaling says "MB" for MiB)."""
    from tqdm import tqdm

    class IecTqdm(tqdm):
        @property
        def format_dict(self) -> dict:
            d = super().format_dict
            rate = d.get("rate") or (d["n"] / d["elapsed"] if d.get("elapsed") else 0)
            d["iec"] = (f"{human_bytes(d['n'])} of {human_bytes(d['total'] or 0)}"
                        + (f", {human_bytes(rate)}/s" if rate else ""))
            return d

    return IecTqdm


class _TqdmBar:
    def __init__(self, desc: str, total: int, unit: str) -> None:
        from tqdm import tqdm

        if unit == "B":
            self._bar = _iec_tqdm()(total=total, desc=desc, unit="B", dynamic_ncols=True, leave=True,
                                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {iec}")
        else:
            self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=True)

    def update(self, n: int) -> None:
        self._bar.update(n)

    def reset(self, pos: int) -> None:
        self._bar.n = pos
        self._bar.refresh()

    def note(self, line: str) -> None:
        self._bar.write(line, file=sys.stderr)

    def close(self, message: str) -> None:
        self._bar.close()


class _LineBar:
    """Quiet while running; a line per retry and one at the end, on stderr."""

    def __init__(self, desc: str, total: int, unit: str) -> None:
        pass

    def update(self, n: int) -> None:
        pass

    def reset(self, pos: int) -> None:
        pass

    def note(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def close(self, message: str) -> None:
        if message:
            print(message, file=sys.stderr, flush=True)


class _NullBar(_LineBar):
    def note(self, line: str) -> None:
        pass

    def close(self, message: str) -> None:
        pass


def tqdm_progress(desc: str, total: int, unit: str) -> ProgressBar:
    return _TqdmBar(desc, total, unit)


def line_progress(desc: str, total: int, unit: str) -> ProgressBar:
    return _LineBar(desc, total, unit)


def no_progress(desc: str, total: int, unit: str) -> ProgressBar:
    return _NullBar(desc, total, unit)


def auto_progress(desc: str, total: int, unit: str) -> ProgressBar:
    """A tqdm bar (size, rate) when stderr is a terminal, else a line per retry and one at the end."""
    return (tqdm_progress if sys.stderr.isatty() else line_progress)(desc, total, unit)


ProgressArg = Union[Progress, Literal["auto"], None]


def resolve_progress(progress: ProgressArg) -> Progress:
    return auto_progress if progress == "auto" else (progress or no_progress)


def _note(bar: ProgressBar, line: str) -> None:
    note = getattr(bar, "note", None)
    if note is not None:
        note(line)
    else:  # a sink without note(): the line still reaches the user
        print(line, file=sys.stderr, flush=True)


# --- errors ----------------------------------------------------------------------------------
class DownloadError(FetchError):
    """A download failed: ``message`` says what and why (one line), ``fix`` what to do."""


class ExistingFileDiffers(DownloadError):
    """Something of the user's is where the file goes (a different file, a folder, a symlink): left as it is."""


class NotEnoughSpace(DownloadError):
    pass


class _UrlFailed(Exception):
    """This URL cannot deliver the file (permanent for this URL); the next mirror may."""

    def __init__(self, reason: str, fix: str = "") -> None:
        super().__init__(reason)
        self.reason, self.fix = reason, fix


class _Retry(Exception):
    """A transient failure of one attempt: try again (after ``wait`` seconds if the server said so)."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.wait = reason, wait


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


# --- the lock --------------------------------------------------------------------------------
def _owner_file(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".owner")


def _owner(lock_path: Path) -> str:
    """Who holds the lock, from the side file its holder wrote: "pid 123 on host since 12:00:01 UTC"."""
    try:
        info = json.loads(read_regular(_owner_file(lock_path), 4096))
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(info["since"])))
        return shown(f"pid {int(info['pid'])} on {info['host']}, since {since}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that did not say who it is"


def acquire_lock(lock_path: Path, what: str, timeout: float = -1, progress: ProgressArg = "auto",
                 watch: tuple[Path, str, int] | None = None) -> FileLock:
    """Take ``lock_path``; while another process holds it, say who (pid, host, since when) and wait with a bar.

    ``watch`` = (folder, glob, total bytes): the bar follows the holder's temp file there. The holder's
    identity is written next to the lock (``<lock>.owner``) for the next waiter to read.
    """
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        t0 = time.monotonic()
        bar = resolve_progress(progress)(f"waiting for {Path(what).name}", watch[2] if watch else 0,
                                         "B" if watch else "s")
        _note(bar, f"{shown(what)}: another fetch holds {shown(str(lock_path))} ({_owner(lock_path)}); "
                   "waiting for it to finish")
        done, message = 0, ""
        try:
            while True:
                try:
                    lock.acquire(timeout=1.0)
                    message = f"{shown(what)}: the other fetch finished after {_seconds(time.monotonic() - t0)}"
                    break
                except filelock.Timeout:
                    if 0 <= timeout <= time.monotonic() - t0:
                        raise DownloadError(
                            f"another process has been fetching {shown(what)} for more than {timeout:g} s "
                            f"(it holds {shown(str(lock_path))}: {_owner(lock_path)})",
                            "wait for it to finish, or stop it; then rerun") from None
                    if watch:
                        sizes = [p.stat().st_size for p in watch[0].glob(watch[1]) if p.is_file()]
                        now = max(sizes, default=0)
                        bar.update(now - done) if now >= done else bar.reset(now)
                        done = now
        finally:
            bar.close(message)
    try:
        _write_owner(lock_path)
    except OSError:
        pass  # only a courtesy to the next waiter
    return lock


def _write_owner(lock_path: Path) -> None:
    owner = _owner_file(lock_path)
    tmp = owner.with_name(f"{owner.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
    os.replace(tmp, owner)


def release_lock(lock: FileLock) -> None:
    with contextlib.suppress(OSError):
        _owner_file(Path(lock.lock_file)).unlink()
    lock.release()


# --- helpers ---------------------------------------------------------------------------------
def check_free_space(folder: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise NotEnoughSpace(
            f"not enough disk space for {what} in {folder}: need {human_bytes(needed)}, {human_bytes(free)} free.",
            f"free {human_bytes(needed - free)} there, or choose another --data-root.")


def default_stall_seconds() -> float:
    """``$PREFLIGHT_STALL_SECONDS``, else 60 (the pytest option and the fetch CLI pass theirs explicitly)."""
    try:
        value = resolve(OPTIONS["stall-seconds"], None, os.environ).value
    except OptionError as e:
        raise DownloadError(str(e), f"set {STALL_ENV} to a positive number of seconds (e.g. 60), "
                                    "or unset it") from None
    return float(value) if isinstance(value, (int, float)) else DEFAULT_STALL_SECONDS


def _looks_like_html(first_bytes: bytes | memoryview) -> bool:
    head = bytes(first_bytes[:512]).lstrip().lower()
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


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait for a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/unparsable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


def _unreachable(e: BaseException) -> bool:
    """The host cannot be reached at all (DNS failure, connection refused): retrying the same URL is pointless."""
    chain = _chain(e)
    return any(isinstance(c, (socket.gaierror, urllib3.exceptions.NameResolutionError, ConnectionRefusedError))
               for c in chain)


def _chain(e: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and all(cur is not c for c in chain) and len(chain) < 12:
        chain.append(cur)
        nxt = getattr(cur, "reason", None)  # urllib3's MaxRetryError / ProxyError
        if not isinstance(nxt, BaseException):
            nxt = next((a for a in cur.args if isinstance(a, BaseException)), None)  # requests wraps in args[0]
        cur = nxt if nxt is not None else (cur.__cause__ or cur.__context__)
    return chain


def _describe(e: BaseException, timeout: tuple[float, float]) -> str:
    """A network failure in words, without the client's wrapping ("Max retries exceeded ... Caused by ...")."""
    chain = _chain(e)

    def has(*kinds: type) -> BaseException | None:
        return next((c for c in chain if isinstance(c, kinds)), None)

    if has(socket.gaierror, urllib3.exceptions.NameResolutionError):
        return "the host name could not be resolved (DNS)"
    if has(ConnectionRefusedError):
        return "connection refused (nothing listens there, or a firewall)"
    if has(requests.exceptions.ProxyError, urllib3.exceptions.ProxyError):
        return "the proxy failed or refused the connection"
    if has(ssl.SSLError, urllib3.exceptions.SSLError, requests.exceptions.SSLError):
        inner = has(ssl.SSLError)
        why = getattr(inner, "reason", None) or (str(inner).splitlines()[0] if inner else "")
        return f"TLS error{': ' + str(why) if why else ''} (a proxy that intercepts HTTPS?)"
    if has(requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError) \
            and not has(urllib3.exceptions.NewConnectionError):
        return f"no connection within {_seconds(timeout[0])}"
    if has(urllib3.exceptions.NewConnectionError):
        inner = has(OSError)
        return f"could not connect ({inner.strerror})" if isinstance(inner, OSError) and inner.strerror \
            else "could not connect"
    if has(requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError, socket.timeout):
        return f"no data for {_seconds(timeout[1])}"
    if has(ConnectionResetError, BrokenPipeError, http.client.IncompleteRead, http.client.RemoteDisconnected,
           urllib3.exceptions.ProtocolError, requests.exceptions.ChunkedEncodingError):
        return "the connection was dropped"
    inner = chain[-1]
    text = next((line for line in str(inner).splitlines() if line.strip()), "")
    return shown(redact(f"{type(inner).__name__}{': ' + text if text else ''}"))


# --- the partial file ------------------------------------------------------------------------
class _Partial:
    """The temp file being written and its running sha256.

    The reader fills buffers from a small pool, writes each one, and queues it for the hasher thread,
    which gives it back to the pool when hashed: at most ``BUFFERS`` buffers exist.
    """

    _RESTART, _STOP = object(), object()

    def __init__(self, file: BinaryIO, bar: ProgressBar, buffer_size: int) -> None:
        self.file, self.bar = file, bar
        self.pos = 0  # bytes in the file
        self.received = 0  # bytes received over the wire, restarts included
        self.adopted = 0  # bytes taken over from a killed run's temp file (0 once restarted)
        self.buffer_size = buffer_size
        self._made = 0
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        self._hasher = hashlib.sha256()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._hash, name="fetch-sha256", daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        while (item := self._queue.get()) is not self._STOP:
            if item is self._RESTART:
                self._hasher = hashlib.sha256()
            elif isinstance(item, threading.Event):
                item.set()
            else:
                buf, n = item
                self._hasher.update(memoryview(buf)[:n])
                self._pool.put(buf)

    def take(self) -> bytearray:
        """A free buffer (waits for the hasher when all are in flight)."""
        if self._made < BUFFERS:
            try:
                return self._pool.get_nowait()
            except queue.Empty:
                self._made += 1
                return bytearray(self.buffer_size)
        return self._pool.get()

    def give_back(self, buf: bytearray) -> None:
        self._pool.put(buf)

    def commit(self, buf: bytearray, n: int) -> None:
        """The first ``n`` bytes of ``buf`` continue the file: write them, queue them for hashing."""
        if not n:
            self._pool.put(buf)
            return
        self.file.write(memoryview(buf)[:n])
        self._queue.put((buf, n))
        self.pos += n
        self.received += n
        self.bar.update(n)

    def adopt(self) -> None:
        """Continue the bytes already in the file (a killed run's): hash them, carry on after them."""
        self.file.seek(0)
        while chunk := self.file.read(1 << 20):
            self._hasher.update(chunk)  # before any commit: the hasher thread has nothing queued yet
            self.pos += len(chunk)
        self.adopted = self.pos
        self.bar.update(self.pos)

    def restart(self) -> None:
        self.adopted = 0
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


# --- the download ----------------------------------------------------------------------------
@dataclass
class _Limits:
    attempts: int
    backoff: float
    max_backoff: float
    timeout: tuple[float, float]  # (connect, read); read is at most the stall limit
    stall: float
    retry_after_cap: float
    deadline: float  # time.monotonic() after which the fetch gives up


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
    stall_seconds: float | None = None,
    retry_after_cap: float = RETRY_AFTER_CAP,
    max_seconds: float | None = None,
) -> FetchResult:
    """Make ``dest_dir/remote.filename`` the pinned file, downloading it at most once.

    ``attempts``: consecutive attempts without progress before a URL is given up;
    ``backoff``: first delay between them (doubling, capped at ``max_backoff``);
    ``stall_seconds``: an attempt receiving less than 16 KiB in this long ends (default
    ``$PREFLIGHT_STALL_SECONDS`` or 60); ``retry_after_cap``: the longest ``Retry-After`` honoured;
    ``max_seconds``: the whole fetch gives up after this long (default 15 min + the file at 32 KiB/s);
    ``chunk_size``: the size of each receive buffer;
    ``required_bytes``: free space demanded before downloading (default: the file size).
    """
    t0 = time.monotonic()
    dest_dir = Path(dest_dir)
    final = dest_dir / remote.filename
    stall = default_stall_seconds() if stall_seconds is None else float(stall_seconds)
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    limits = _Limits(attempts, backoff, max_backoff, (connect, min(read, stall)), stall, retry_after_cap,
                     t0 + (BASE_SECONDS + remote.size / MIN_RATE if max_seconds is None else max_seconds))
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        lock = acquire_lock(dest_dir / f".{remote.filename}.lock", str(final), lock_timeout, progress,
                            watch=(dest_dir, f".{glob.escape(remote.filename)}.*.part", remote.size))
    except OSError as e:
        raise _fs_error(e, f"preparing {dest_dir} for {remote.filename}", dest_dir) from None
    try:
        if _occupied(final):  # re-check under the lock: another process may have just finished it
            _verify_existing(final, remote)
            return FetchResult(final, 0, time.monotonic() - t0, None, True)
        # Under the lock nobody else writes this artifact: a temp file left by a killed run is resumed
        # (the longest one; the rest are garbage). Its bytes are hashed first and the whole file is still
        # verified by size and sha256 before the rename, so a stale or foreign prefix is never taken.
        resume = _stale_part(dest_dir, remote)
        already = resume.stat().st_size if resume else 0
        check_free_space(dest_dir, (remote.size - already) if required_bytes is None else required_bytes,
                         remote.filename)
        return _fetch_locked(remote, final, progress, session, limits, chunk_size, t0, resume)
    finally:
        release_lock(lock)


def _stale_part(dest_dir: Path, remote: RemoteFile) -> Path | None:
    """The longest regular ``.part`` a killed run left (at most the pinned size); the others are removed."""
    parts = []
    for p in dest_dir.glob(f".{glob.escape(remote.filename)}.*.part"):
        try:
            st = p.lstat()
        except OSError:
            continue
        parts.append((st.st_size if stat.S_ISREG(st.st_mode) and st.st_size <= remote.size else -1, p))
    parts.sort(key=lambda sp: sp[0])
    keep = parts.pop()[1] if parts and parts[-1][0] > 0 else None
    for _, p in parts:
        p.unlink(missing_ok=True)
    return keep


def _fetch_locked(remote: RemoteFile, final: Path, progress: ProgressArg, session: requests.Session | None,
                  limits: _Limits, chunk_size: int, t0: float, resume: Path | None = None) -> FetchResult:
    tmp = resume or final.parent / f".{remote.filename}.{secrets.token_hex(6)}.part"
    bar = resolve_progress(progress)(remote.filename, remote.size, "B")
    message = ""
    own_session = session is None
    session = session or requests.Session()
    try:
        try:
            f = open(tmp, "r+b" if resume else "xb", buffering=0)
        except OSError as e:
            raise _fs_error(e, f"creating a temp file in {final.parent}", final.parent) from None
        with f:
            part = _Partial(f, bar, max(64 << 10, min(chunk_size, remote.size)))
            if resume:
                try:
                    part.adopt()
                except OSError as e:
                    part.close()
                    raise _fs_error(e, f"reading {tmp}", tmp) from None
                _note(bar, f"{remote.filename}: resuming the {human_bytes(part.pos)} a stopped run left in {tmp.name}")
            try:
                url = _download_from_mirrors(remote, final, part, session, limits)
            except OSError as e:  # the reads catch their own: this is the file system
                raise _fs_error(e, f"writing {tmp}", tmp) from None
            finally:
                part.close()
        # No fsync: the bytes were verified before this rename, and a file torn by a crash after
        # it fails the sha256 re-check of every later fetch and check; it is never taken as complete.
        _place(tmp, final, remote)
        seconds = time.monotonic() - t0
        message = f"fetched {remote.filename} ({human_bytes(remote.size)} in {seconds:.1f} s) -> {final}"
        return FetchResult(final, part.received, seconds, url, False)
    finally:
        bar.close(message)
        if own_session:
            session.close()
        tmp.unlink(missing_ok=True)


def _occupied(path: Path) -> bool:
    return path.is_symlink() or path.exists()


def _place(tmp: Path, final: Path, remote: RemoteFile) -> None:
    """Give the verified temp file its final name, never replacing anything that appeared there meanwhile."""
    try:
        os.link(tmp, final)  # fails if anything (even a dangling symlink) is there
        return
    except FileExistsError:
        _verify_existing(final, remote)  # the same file: fine; else reported, untouched
        return
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise _fs_error(e, f"moving {tmp.name} to {final}") from None
    if _occupied(final):  # a file system without hard links: check, then rename
        _verify_existing(final, remote)
        return
    try:
        os.replace(tmp, final)
    except OSError as e:
        raise _fs_error(e, f"moving {tmp.name} to {final}") from None


def _fs_error(e: OSError, doing: str, path: Path | None = None) -> DownloadError:
    """A file-system failure as a DownloadError whose fix names the cause (fetchers.errors' one rule).

    ``path``: the file or folder being written, when the error itself does not name one (a failed write).
    """
    if e.filename is None and path is not None:
        e.filename = str(path)
    message, fix = explain_os_error(e)
    return DownloadError(f"{message} (while {doing})", fix)


def _verify_existing(final: Path, remote: RemoteFile) -> None:
    link = ""
    if final.is_symlink():
        target = os.readlink(final)
        link = f"a symlink to {target}"
        if not final.exists():
            raise ExistingFileDiffers(
                f"{final} is {link}, which does not exist (a dangling link); it was left as it is and "
                f"nothing was downloaded.",
                f"if {target} should hold {remote.filename}, put the file there; otherwise move the link "
                f"aside (mv {final} {final}.old) and fetch again.")
    problem = None
    if final.is_dir():
        problem = "it is a folder, not a file"
    else:
        size = final.stat().st_size
        if size != remote.size:
            problem = f"its size is {size:,} bytes, the pinned size is {remote.size:,}"
        else:
            digest = sha256_file(final)
            if digest != remote.sha256:
                problem = f"its sha256 is {digest}, the pinned sha256 is {remote.sha256}"
    if problem:
        what = f"{final} ({link})" if link else str(final)
        raise ExistingFileDiffers(
            f"{what} already exists but is not the pinned {remote.filename}: {problem}. "
            f"It was left untouched.",
            f"if it is a stale or broken download, move it aside (mv {final} {final}.old) and fetch again; "
            f"if you put it there on purpose, move it elsewhere first.")


def _download_from_mirrors(remote: RemoteFile, final: Path, part: _Partial, session: requests.Session,
                           limits: _Limits) -> str:
    failures: list[tuple[str, _UrlFailed]] = []
    urls = [mirrored(u) for u in remote.urls]
    for i, url in enumerate(urls):
        if i and part.pos:  # the next mirror starts from zero (a killed run's bytes are tried on the first)
            part.restart()
        try:
            _download_url(url, remote, part, session, limits)
            return redact(url)
        except _UrlFailed as e:
            failures.append((redact(url), e))
            if i + 1 < len(urls) and time.monotonic() < limits.deadline and e.fix != _UNREACHABLE_FIX:
                _note(part.bar, f"{remote.filename}: {redact(url)}: {e.reason} — trying the next URL")
    if len(failures) == 1:
        why = f"from {failures[0][0]}: {failures[0][1].reason}"
    else:
        why = f"from any of its {len(failures)} URLs: " + "; ".join(f"{u}: {e.reason}" for u, e in failures)
    fixes = list(dict.fromkeys(e.fix for _, e in failures if e.fix))
    fixes.append(f"download {remote.filename} by hand, check that its sha256 is {remote.sha256}, and put it at "
                 f"{final}; or set {MIRROR_ENV}=http://HOST:PORT to a mirror that has it")
    raise DownloadError(f"could not download {remote.filename} ({human_bytes(remote.size)}) {why}; "
                        f"nothing was written at {final}.", "; or ".join(fixes) + ".")


def _download_url(url: str, remote: RemoteFile, part: _Partial, session: requests.Session, limits: _Limits) -> None:
    """Fill ``part`` with the pinned file from ``url``, resuming and retrying. Raises _UrlFailed."""
    url_shown = redact(url)
    stalls = 0  # consecutive attempts that did not get further than ever before
    delay = limits.backoff
    high = part.pos  # the furthest we have been: progress = beating it (a Range-ignoring server restarts at 0)
    validator: str | None = None  # ETag / Last-Modified of the first answer, so a changed file is not spliced
    while True:
        wait: float | None = None
        try:
            validator = _attempt(url, url_shown, remote, part, session, limits, validator)
            return
        except _Retry as e:
            problem, wait = e.reason, e.wait
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as e:
            problem = _describe(e, limits.timeout)
            if _unreachable(e):  # refused / no DNS: the next mirror, at once (drops, timeouts, 5xx still retry)
                raise _UrlFailed(problem, _UNREACHABLE_FIX) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as e:
            raise _UrlFailed(f"not a valid URL ({type(e).__name__})",
                             f"check {MIRROR_ENV} (it must look like http://host:port)") from None
        except requests.RequestException as e:
            raise _UrlFailed(_describe(e, limits.timeout)) from None
        # Progress = at least STALL_MIN_BYTES (or the rest) beyond the furthest point yet: a drip is not progress.
        progressed = part.pos >= high + max(1, min(STALL_MIN_BYTES, remote.size - high))
        high = max(high, part.pos)
        if progressed:  # resume at once, the backoff starts over
            stalls, delay = 0, limits.backoff
            pause = 0.0
        else:
            stalls += 1
            if stalls >= limits.attempts:
                raise _UrlFailed(f"gave up after {limits.attempts} attempts in a row without progress "
                                 f"({human_bytes(part.pos)} of {human_bytes(remote.size)} received); "
                                 f"last error: {problem}",
                                 "check the network or proxy (or the mirror), then rerun")
            pause = delay
            delay = min(delay * 2, limits.max_backoff)
        if wait is not None:  # the server said how long (Retry-After), within reason
            pause = min(max(wait, pause if not progressed else 0.0), limits.retry_after_cap)
        left = limits.deadline - time.monotonic()
        if pause >= left:
            raise _UrlFailed(f"gave up: the time limit for this file ran out ({human_bytes(part.pos)} of "
                             f"{human_bytes(remote.size)} received); last error: {problem}",
                             "check the network speed or the mirror, then rerun")
        at = f", resuming at {human_bytes(part.pos)} of {human_bytes(remote.size)}" if part.pos else ""
        budget = "" if progressed else f" (attempt {stalls} of {limits.attempts} without progress)"
        _note(part.bar, f"{remote.filename}: {problem} — next try in {_seconds(pause)}{at}{budget}")
        if pause:
            time.sleep(pause)


def _attempt(url: str, url_shown: str, remote: RemoteFile, part: _Partial, session: requests.Session,
             limits: _Limits, validator: str | None) -> str | None:
    """One GET: stream what it gives into ``part``; returns the validator to resume with. Raises _Retry/_UrlFailed."""
    if part.adopted and part.pos == remote.size:  # killed after the last byte, before the rename
        if part.hexdigest() == remote.sha256:
            return validator
        part.restart()
    headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}  # identity: Range counts raw bytes
    if part.pos:
        headers["Range"] = f"bytes={part.pos}-"
        if validator:
            headers["If-Range"] = validator
    with session.get(url, headers=headers, stream=True, timeout=limits.timeout) as r:
        announced = _check_response(r, url_shown, remote, part)
        if r.status_code == 200:
            etag = r.headers.get("ETag", "")
            validator = (etag if etag and not etag.startswith("W/") else None) or r.headers.get("Last-Modified")
        _stream(r, url_shown, remote, part, limits, announced)
    if part.pos != remote.size:  # a body that ended cleanly but short
        raise _UrlFailed(_size_message(remote, announced or f"{part.pos:,}"), _SIZE_FIX)
    digest = part.hexdigest()
    if digest != remote.sha256 and part.adopted:  # the resumed prefix was not this file's: once more, from zero
        part.restart()
        raise _Retry("the partial file a stopped run left did not match the pinned sha256: starting over")
    if digest != remote.sha256:
        at = part.pos
        part.restart()
        raise _UrlFailed(f"the sha256 of the downloaded {remote.filename} ({at:,} bytes) is {digest}, the pinned "
                         f"sha256 is {remote.sha256}: the file changed upstream or got corrupted", _SIZE_FIX)
    return validator


def _reader(r: requests.Response) -> Callable[[memoryview], int]:
    """``read(buffer) -> n``: at most one system call, every byte it got counted (0 = end of body).

    Reads the socket's buffered reader directly when the body is a plain Content-Length body (no
    copies, no per-call allocation), else urllib3's ``read1`` (chunked bodies).
    """
    raw = r.raw
    hr = getattr(raw, "_fp", None)
    fp = getattr(hr, "fp", None)
    if isinstance(hr, http.client.HTTPResponse) and not hr.chunked and hasattr(fp, "readinto1") \
            and getattr(raw, "_fp_bytes_read", 0) == 0:
        def read(mv: memoryview) -> int:
            if hr.fp is None:
                return 0
            if hr.length is not None and hr.length < len(mv):
                mv = mv[:hr.length]
            if not len(mv):
                return 0
            n = hr.fp.readinto1(mv)
            if hr.length is not None:
                if not n:  # the connection ended before the announced length: a drop, not the end
                    raise http.client.IncompleteRead(b"", hr.length)
                hr.length -= n  # keep http.client's count, as its own read1 does
            return n
        return read

    def read_via_urllib3(mv: memoryview) -> int:
        data = raw.read1(len(mv), decode_content=False)
        mv[:len(data)] = data
        return len(data)
    return read_via_urllib3


def _stream(r: requests.Response, url_shown: str, remote: RemoteFile, part: _Partial, limits: _Limits,
            announced: str | None) -> None:
    """Receive the body into ``part`` until the pinned size, the end of the body, an error or a stall."""
    read = _reader(r)
    mark_pos, mark_t = part.pos, time.monotonic()  # progress: STALL_MIN_BYTES more since the mark
    while part.pos < remote.size:
        waited = time.monotonic()
        buf = part.take()
        mark_t += time.monotonic() - waited  # waiting for the hasher is not the server's stall
        mv = memoryview(buf)
        n, end, t_commit = 0, False, time.monotonic()
        want = min(len(mv), remote.size - part.pos)
        first = part.pos == 0
        try:
            while n < want:
                try:
                    k = read(mv[n:want])
                except (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException) as e:
                    raise _Retry(_describe(e, limits.timeout)) from None
                if not k:
                    end = True
                    break
                n += k
                now = time.monotonic()
                if part.pos + n - mark_pos >= min(STALL_MIN_BYTES, remote.size - mark_pos):
                    mark_pos, mark_t = part.pos + n, now
                elif now - mark_t >= limits.stall:
                    raise _Retry(f"stalled: less than {human_bytes(STALL_MIN_BYTES)} in "
                                 f"{_seconds(limits.stall)} ({human_bytes(part.pos + n - mark_pos)})")
                if now > limits.deadline:
                    raise _UrlFailed(f"gave up: the time limit for this file ran out ({human_bytes(part.pos + n)} "
                                     f"of {human_bytes(remote.size)} received)",
                                     "check the network speed or the mirror, then rerun")
                if now - t_commit >= COMMIT_EVERY:
                    break
        finally:
            if first and n and not _expects_html(remote.filename) and _looks_like_html(mv[:n]):
                part.give_back(buf)
                raise _UrlFailed(*_html_message(remote))
            part.commit(buf, n)
        if first and n and announced is not None:
            raise _UrlFailed(_size_message(remote, announced), _SIZE_FIX)
        if end:
            return
    if r.headers.get("Content-Length") is None:  # no announced length: is there more than the pinned size?
        try:
            extra = r.raw.read1(1, decode_content=False)
        except (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException):
            extra = b""
        if extra:
            raise _UrlFailed(_size_message(remote, f"more than {remote.size:,}"), _SIZE_FIX)


_UNREACHABLE_FIX = (f"check the network, proxy (HTTPS_PROXY) and DNS, or set {MIRROR_ENV}=http://HOST:PORT to a "
                    "reachable mirror")
_SIZE_FIX = "if the file really changed upstream, its pin in preflight_core/registry.py needs updating; else try a mirror"


def _html_message(remote: RemoteFile) -> tuple[str, str]:
    return (f"got an HTML page instead of {remote.filename}: the URL probably needs a login or moved",
            f"open the URL in a browser; if it needs a login, download {remote.filename} by hand and put it "
            f"in place, else update its URL in preflight_core/registry.py")


def _size_message(remote: RemoteFile, got: str) -> str:
    return (f"wrong size: got {got} bytes of {remote.filename}, the pinned size is {remote.size:,}: "
            f"the file changed upstream or the URL serves something else")


def _check_response(r: requests.Response, url_shown: str, remote: RemoteFile, part: _Partial) -> str | None:
    """Classify the answer; returns the announced length of a wrong-size 200 (reported after an HTML sniff)."""
    code = r.status_code
    if code in (401, 403):
        raise _UrlFailed(f"HTTP {code} {shown(r.reason)}: the server wants a login or refuses this client",
                         f"download {remote.filename} by hand (logged in) and put it in place")
    if code in (404, 410):
        raise _UrlFailed(f"HTTP {code} {shown(r.reason)}: {remote.filename} is not there (moved or removed)",
                         "find its new URL and update preflight_core/registry.py")
    if code == 416 and part.pos:
        at = part.pos
        part.restart()  # our partial file is not a prefix of what the server has
        raise _Retry(f"HTTP 416 for a resume at byte {at:,}: starting over")
    if code == 429 or code >= 500:
        wait = parse_retry_after(r.headers.get("Retry-After")) if code in (429, 503) else None
        asked = f", Retry-After {shown(r.headers.get('Retry-After'))}" if wait is not None else ""
        raise _Retry(f"HTTP {code} {shown(r.reason)}{asked}", wait)
    if code not in (200, 206):
        raise _UrlFailed(f"unexpected HTTP {code} {shown(r.reason)}")
    content_type = r.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type == "text/html" and not _expects_html(remote.filename):
        raise _UrlFailed(*_html_message(remote))
    if code == 200:
        if part.pos:  # the server ignored Range: start over
            part.restart()
        length = r.headers.get("Content-Length")
        return f"{int(length):,}" if length is not None and length.isdigit() and int(length) != remote.size else None
    # 206: it must continue exactly where our partial file ends, for a file of the pinned size.
    parsed = _parse_content_range(r.headers.get("Content-Range"))
    if parsed is None or parsed[0] != part.pos:
        at = part.pos
        part.restart()
        raise _Retry(f"unusable Content-Range {shown(r.headers.get('Content-Range'))} for a resume at byte {at:,}")
    if parsed[1] is not None and parsed[1] != remote.size:
        raise _UrlFailed(_size_message(remote, f"{parsed[1]:,} (Content-Range)"), _SIZE_FIX)
    return None
