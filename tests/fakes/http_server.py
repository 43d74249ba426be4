"""A small static HTTP server on 127.0.0.1 with planted faults, for the download tests and benches.

Files are served under the mirror layout ``/<original host>/<original path>`` so that
``PREFLIGHT_MIRROR=server.url`` redirects real URLs to it. Content comes from a dict
(``path -> bytes | Path``) or a directory. Faults are planted per path (``server.fault(...)``).
Every request is logged (method, path, Range header, status) so tests can count GETs.

    with FakeHTTPServer() as server:
        server.serve_url("https://example.org/a.bin", b"...")
        server.fault("/example.org/a.bin", drop_after=1000)   # drop once after 1000 body bytes

Run standalone (benches): ``python tests/fakes/http_server.py --root DIR`` prints the base URL.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

if __name__ == "__main__":  # run as a script (benches): `tests.fakes` imports from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fakes.listeners import Listeners, cut_connection, send_simple  # noqa: E402

HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
    b"<body><h1>Please sign in to continue</h1></body></html>\n"
)
_SEND_CHUNK = 256 * 1024


@dataclass
class Fault:
    """Faults planted on one path. Counters (``*_times``) count requests that hit the fault; None = always."""

    drop_after: int | None = None  # close the connection after this many body bytes of a response
    drop_times: int | None = 1
    ignore_range: bool = False  # answer 200 with the whole body even when Range is asked
    range_from_zero: bool = False  # answer a Range with 206 for the whole body (honest Content-Range 0-…)
    html: bool = False  # answer 200 text/html with an error page
    html_content_type: str = "text/html; charset=utf-8"
    wrong_size: int | None = None  # serve a body of this length (truncated or padded), honestly labelled
    status: int | None = None  # answer this status (404, 403, 503, ...) instead of the file
    status_times: int | None = None
    reason: str | None = None  # the reason phrase of the forced status (default: the standard one)
    retry_after: str | None = None  # a Retry-After header (seconds or an HTTP date) on the forced status
    drip_after: int | None = None  # after this many body bytes, send one byte per drip_interval (a stalling server)
    drip_interval: float = 0.2
    drip_times: int | None = None
    chunked: bool = False  # send the body with Transfer-Encoding: chunked (no Content-Length)
    delay: float = 0.0  # seconds to sleep before each chunk of body (slow server)
    body: bytes | None = None  # serve these bytes instead (e.g. corrupted content of the right size)
    hits: dict[str, int] = field(default_factory=lambda: {"drop": 0, "status": 0, "drip": 0})

    def _take(self, kind: str, times: int | None) -> bool:
        if times is not None and self.hits[kind] >= times:
            return False
        self.hits[kind] += 1
        return True


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    range: str | None
    status: int


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):  # clients hang up on purpose here
            super().handle_error(request, client_address)


class FakeHTTPServer(Listeners):
    """Threaded static server on 127.0.0.1 (random port). A context manager; ``url`` is the base URL."""

    listeners = ("http",)
    server_class = _QuietServer

    def __init__(self, files: dict[str, bytes | Path] | None = None, root: Path | None = None,
                 default_fault: Fault | None = None) -> None:
        self.files: dict[str, bytes | Path] = dict(files or {})
        self.root = Path(root) if root else None
        self.faults: dict[str, Fault] = {}
        self.default_fault = default_fault  # applies to paths without their own fault (e.g. a slow link)
        self.log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._servers = {}

    # -- content and faults -------------------------------------------------------------------
    @staticmethod
    def mirror_path(url: str) -> str:
        """``https://host/a/b`` -> ``/host/a/b`` (the PREFLIGHT_MIRROR layout)."""
        parts = urlsplit(url)
        return f"/{parts.netloc}{parts.path}"

    def serve_url(self, url: str, content: bytes | Path) -> str:
        """Serve ``content`` where ``mirrored(url)`` points; returns the server path."""
        path = self.mirror_path(url)
        self.files[path] = content
        return path

    def add(self, path: str, content: bytes | Path) -> None:
        self.files[path] = content

    def fault(self, path: str, **kwargs) -> Fault:
        with self._lock:
            self.faults[path] = Fault(**kwargs)
            return self.faults[path]

    def reset(self) -> None:
        """Forget faults and the request log (files stay)."""
        with self._lock:
            self.faults.clear()
            self.log.clear()

    def requests(self, path: str | None = None, method: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.log if (path is None or r.path == path) and (method is None or r.method == method)]

    def _lookup(self, path: str) -> bytes | Path | None:
        if path in self.files:
            return self.files[path]
        if self.root is not None:
            candidate = (self.root / path.lstrip("/")).resolve()
            if candidate.is_relative_to(self.root.resolve()) and candidate.is_file():
                return candidate
        return None

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._servers, "server not started"
        return self._base("http")

    def _handler(self, name: str) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"owner": self})


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    owner: FakeHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _record(self, status: int) -> None:
        with self.owner._lock:
            self.owner.log.append(LoggedRequest(self.command, self._path, self.headers.get("Range"), status))

    def _simple(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8", head: bool = False,
                extra: dict[str, str] | None = None, reason: str | None = None) -> None:
        self._record(status)
        send_simple(self, status, body, content_type, extra, head, reason)

    def _serve(self, head: bool) -> None:
        self._path = unquote(urlsplit(self.path).path)
        owner = self.owner
        with owner._lock:
            fault = owner.faults.get(self._path, owner.default_fault)
            content = owner._lookup(self._path)
            forced = fault is not None and fault.status is not None and fault._take("status", fault.status_times)
            forced_status = fault.status if forced else None
            drop = fault.drop_after if fault and fault.drop_after is not None and not head else None
            if drop is not None and not fault._take("drop", fault.drop_times):
                drop = None
            drip = fault.drip_after if fault and fault.drip_after is not None and not head and not forced else None
            if drip is not None and not fault._take("drip", fault.drip_times):
                drip = None
        if forced_status:
            phrase = HTTPStatus(forced_status).phrase
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
            return self._simple(forced_status, f"{forced_status} {fault.reason or phrase}\n".encode(), head=head,
                                extra=extra, reason=fault.reason)
        if content is None:
            return self._simple(404, b"404 Not Found\n", head=head)
        if fault and fault.html:
            return self._simple(200, HTML_ERROR_PAGE, fault.html_content_type, head=head)

        data, size, mtime = _materialize(content, fault)
        etag = f'"{hashlib.sha1(f"{self._path}:{size}:{mtime}".encode()).hexdigest()[:16]}"'
        start, end = 0, size - 1
        status = 200
        range_header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if range_header and not (fault and fault.ignore_range) and (if_range is None or if_range == etag):
            m = _RANGE.match(range_header.strip())
            if m is None or (not m.group(1) and not m.group(2)):
                return self._simple(416, b"bad range\n", head=head,
                                    extra={"Content-Range": f"bytes */{size}"})
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # suffix range: last N bytes
                start, end = max(0, size - int(m.group(2))), size - 1
            if start >= size or start > end:
                return self._simple(416, b"range not satisfiable\n", head=head,
                                    extra={"Content-Range": f"bytes */{size}"})
            status = 206
            if fault and fault.range_from_zero:
                start, end = 0, size - 1

        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        if fault and fault.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.formatdate(mtime, usegmt=True))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head:
            return
        if fault and fault.chunked:
            return self._send_chunked(data, start, end + 1, drop)
        self._send_body(data, start, end + 1, drop, fault.delay if fault else 0.0,
                        drip, fault.drip_interval if fault else 0.0)

    def _send_body(self, data: bytes | Path, start: int, stop: int, drop: int | None, delay: float,
                   drip: int | None = None, drip_interval: float = 0.0) -> None:
        limit = stop if drop is None else min(stop, start + drop)
        if drip is not None:  # a stalling server: the first `drip` bytes at once, then one byte at a time
            raw = data.read_bytes() if isinstance(data, Path) else data
            try:
                self.wfile.write(raw[start:min(limit, start + drip)])
                for pos in range(start + drip, limit):
                    time.sleep(drip_interval)
                    self.wfile.write(raw[pos:pos + 1])
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            return
        try:
            if isinstance(data, Path):
                with open(data, "rb") as f:
                    if drop is None and not delay:  # fast path for benches
                        self.wfile.flush()
                        self.connection.sendfile(f, offset=start, count=stop - start)
                    else:
                        f.seek(start)
                        pos = start
                        while pos < limit:
                            chunk = f.read(min(_SEND_CHUNK, limit - pos))
                            if delay:
                                time.sleep(delay)
                            self.wfile.write(chunk)
                            pos += len(chunk)
            else:
                view = memoryview(data)
                for pos in range(start, limit, _SEND_CHUNK):
                    if delay:
                        time.sleep(delay)
                    self.wfile.write(view[pos:min(pos + _SEND_CHUNK, limit)])
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if limit < stop:  # planted drop: cut the connection mid-body
            cut_connection(self)


    def _send_chunked(self, data: bytes | Path, start: int, stop: int, drop: int | None) -> None:
        raw = data.read_bytes() if isinstance(data, Path) else data
        limit = stop if drop is None else min(stop, start + drop)
        try:
            for pos in range(start, limit, 50_000):
                piece = raw[pos:min(pos + 50_000, limit)]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            if limit == stop:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if limit < stop:
            cut_connection(self)


def _materialize(content: bytes | Path, fault: Fault | None) -> tuple[bytes | Path, int, float]:
    """The body to serve (bytes or a file path), its size and mtime, after body-changing faults."""
    if isinstance(content, Path):
        st = content.stat()
        data: bytes | Path = content
        size, mtime = st.st_size, st.st_mtime
    else:
        data, size, mtime = content, len(content), 1_700_000_000.0
    if fault and (fault.body is not None or fault.wrong_size is not None):
        raw = fault.body if fault.body is not None else (data.read_bytes() if isinstance(data, Path) else data)
        if fault.wrong_size is not None:
            raw = raw[: fault.wrong_size].ljust(fault.wrong_size, b"\0")
        data, size = raw, len(raw)
    return data, size, mtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a directory in the PREFLIGHT_MIRROR layout on 127.0.0.1.")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--rate-mbps", type=float, default=0, help="throttle every response to about this many MB/s")
    args = parser.parse_args(argv)
    slow = Fault(delay=_SEND_CHUNK / (args.rate_mbps * 1e6)) if args.rate_mbps else None
    server = FakeHTTPServer(root=args.root, default_fault=slow).start()
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
