"""Digests: sha256 of a file, and the git blob sha1 the Hub uses as the etag of a non-LFS file."""

from __future__ import annotations

import hashlib
from pathlib import Path


def _git_blob_hash(size: int):
    """sha1 primed with git's object header: feed it the ``size`` bytes of the file."""
    return hashlib.sha1(b"blob %d\0" % size)


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file: what the Hub uses as the etag of a non-LFS file."""
    h = _git_blob_hash(path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_blob_sha1_bytes(data: bytes) -> str:
    """``git_blob_sha1`` of a file holding ``data``."""
    h = _git_blob_hash(len(data))
    h.update(data)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
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


