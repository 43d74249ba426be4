"""Digests: sha256 of a file, and the git blob sha1 the Hub uses as the etag of a non-LFS file.

Files are opened by the one safe-open rule (``preflight_core.safe_io.open_regular``): a FIFO, socket or
device raises ``NotARegularFile`` naming it, at once, instead of blocking or reading forever.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from preflight_core.safe_io import open_regular


def _git_blob_hash(size: int):
    """sha1 primed with git's object header: feed it the ``size`` bytes of the file."""
    return hashlib.sha1(b"blob %d\0" % size)


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file: what the Hub uses as the etag of a non-LFS file."""
    with open_regular(path) as f:
        h = _git_blob_hash(os.fstat(f.fileno()).st_size)
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_blob_sha1_bytes(data: bytes) -> str:
    """``git_blob_sha1`` of a file holding ``data``."""
    h = _git_blob_hash(len(data))
    h.update(data)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    with open_regular(path) as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def blob_digest(blob: Path) -> tuple[str, str] | None:
    """(kind, actual digest) for a blob named by its etag (sha256 or git sha1), None if the name is not a hash."""
    name = blob.name
    if not all(c in "0123456789abcdef" for c in name):
        return None
    if len(name) == 64:
        return "sha256", sha256_file(blob)
    if len(name) == 40:
        return "git-sha1", git_blob_sha1(blob)
    return None


