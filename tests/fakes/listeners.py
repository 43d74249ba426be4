"""What the fake servers share: named listeners on 127.0.0.1 (random ports), the plain response, the cut."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class Listeners:
    """Mixin: one threaded HTTP server per name in ``listeners``, on 127.0.0.1 with a random port.

    A subclass names its listeners, gives each its handler class (``_handler``) and sets
    ``self._servers = {}`` before ``start``. Then ``start``/``stop``, a context manager, and
    ``_base(name)``: ``http://127.0.0.1:<port>`` of a started listener.
    """

    listeners: tuple[str, ...] = ()
    thread_prefix = "fake"  # threads are named "<thread_prefix>-<listener>"
    server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer
    _servers: dict[str, ThreadingHTTPServer]

    def _handler(self, name: str) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def _base(self, name: str) -> str:
        host, port = self._servers[name].server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        for name in self.listeners:
            httpd = self.server_class(("127.0.0.1", 0), self._handler(name))
            httpd.daemon_threads = True
            threading.Thread(target=httpd.serve_forever, args=(0.05,), name=f"{self.thread_prefix}-{name}",
                             daemon=True).start()
            self._servers[name] = httpd
        return self

    def stop(self) -> None:
        for httpd in self._servers.values():
            httpd.shutdown()
            httpd.server_close()
        self._servers.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def send_simple(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str,
                headers: dict[str, str] | None = None, head: bool = False, reason: str | None = None) -> None:
    """Status line (with ``reason`` as its phrase), Content-Type, Content-Length, ``headers``, then ``body``."""
    handler.send_response(status, reason)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    if not head:
        handler.wfile.write(body)


def cut_connection(handler: BaseHTTPRequestHandler) -> None:
    """End a response mid-body, as a planted drop: flush what was written, then shut the socket down."""
    handler.wfile.flush()
    handler.close_connection = True
    try:
        handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
