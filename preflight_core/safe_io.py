"""The one rule for opening a file preflight reads, and the one escape for text that comes from outside.

Every tree preflight reads (the data root, the HF cache, the kagglehub cache, the verify cache, a
tar) may hold a FIFO, a socket or a device where a file belongs. :func:`open_regular` opens with
``O_NONBLOCK`` (a FIFO cannot block the open), checks the type with ``fstat`` on the open
descriptor (nothing can be swapped in between) and refuses anything but a regular file with
:class:`NotARegularFile`, an ``OSError`` that names the file and what it is.

:func:`preflight_core.findings.shown` makes any text from outside (file names, HTTP reason phrases, headers, server
bodies, a client's error message) safe for a terminal, a JSON report and JUnit: control characters
(ESC, BEL, CSI, NUL, newlines) and undecodable bytes become visible escapes such as ``\\x1b``.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from preflight_core.findings import shown

_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def kind_of(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words (for anything that is not a regular file)."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISLNK(mode):
        return "a symlink"
    return "not a regular file"


class NotARegularFile(OSError):
    """A FIFO, socket, device or folder where a file was expected; ``str()`` names the file and what it is."""

    def __init__(self, path: str | os.PathLike, mode: int) -> None:
        self.path, self.kind = os.fspath(path), kind_of(mode)
        self.message, self.fix = f"{shown(self.path)} is {self.kind}, not a regular file", ""
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class TooLarge(OSError):
    """A file larger than the reader's bound; ``str()`` names the file and both sizes."""

    def __init__(self, path: str | os.PathLike, size: int, limit: int) -> None:
        self.path = os.fspath(path)
        self.message, self.fix = f"{shown(self.path)} is {size:,} bytes, more than this file can be ({limit:,})", ""
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def open_fd(path: str | os.PathLike, *, dir_fd: int | None = None, follow: bool = True) -> tuple[int, os.stat_result]:
    """(fd, fstat) of ``path`` if it is a regular file; never blocks. Raises OSError / NotARegularFile."""
    flags = _READ_FLAGS | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(path, st.st_mode)
        os.set_blocking(fd, True)  # regular files never block; later reads behave as usual
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def open_regular(path: str | os.PathLike, *, max_bytes: int | None = None) -> io.BufferedReader:
    """``open(path, "rb")`` for a regular file (at most ``max_bytes`` long); anything else is refused, never waited on."""
    fd, st = open_fd(path)
    if max_bytes is not None and st.st_size > max_bytes:
        os.close(fd)
        raise TooLarge(path, st.st_size, max_bytes)
    raw = io.FileIO(fd, "rb")
    raw.name = os.fspath(path)  # for messages: the file, not "<_io.BufferedReader name=12>"
    return io.BufferedReader(raw)


def read_regular(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (a file that grows meanwhile is cut at limit + 1)."""
    with open_regular(path, max_bytes=limit) as f:
        return f.read(limit + 1)


def read_text_regular(path: str | os.PathLike, limit: int) -> str:
    """``read_regular`` decoded as UTF-8; a ValueError names the file when it is not text."""
    data = read_regular(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{shown(os.fspath(path))} is not UTF-8 text (byte {e.start})") from None


def is_regular(path: Path) -> bool:
    """lstat-free test used before reading: a regular file (after symlinks)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
