"""A guard for the self-tests: DNS look-ups and connections to anything but loopback are refused."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager


def _is_loopback(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@contextmanager
def loopback_only() -> Iterator[list[str]]:
    """Refuse DNS look-ups and connections to anything but loopback; yields the list of refused attempts."""
    refused: list[str] = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not _is_loopback(host):
            refused.append(f"resolve {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: look-up of non-loopback host {host!r} refused")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address):  # type: ignore[no-untyped-def]
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            refused.append(f"connect {address[0]}")
            raise ConnectionRefusedError(f"test guard: connection to non-loopback {address[0]!r} refused")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address):  # type: ignore[no-untyped-def]
        try:
            connect(self, address)
        except OSError as e:
            return e.errno or 1
        return 0

    own_connect_ex = socket.socket.__dict__.get("connect_ex")  # normally inherited from _socket.socket
    socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    try:
        yield refused
    finally:
        socket.getaddrinfo, socket.socket.connect = real_getaddrinfo, real_connect  # type: ignore[method-assign]
        if own_connect_ex is None:
            del socket.socket.connect_ex
        else:
            socket.socket.connect_ex = own_connect_ex  # type: ignore[method-assign]
