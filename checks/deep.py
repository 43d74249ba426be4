"""--deep: decode every image, remembering what already passed by (path, size, mtime).

PIL's ``verify()`` does not notice a truncated JPEG; ``load()`` does, also in draft mode, which
decodes at 1/8 scale and so costs a fraction of a full decode.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from filelock import FileLock

from checks.scan import FileEntry
from core.findings import Finding


def default_cache_path() -> Path:
    base = os.environ.get("PREFLIGHT_CACHE_DIR")
    if base:
        return Path(base) / "verified.sqlite3"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "preflight" / "verified.sqlite3"


class VerifyCache:
    """Keys that passed a named verification; any change of size or mtime invalidates a key.

    SQLite, because several xdist workers write to it at once.
    """

    def __init__(self, path: Path | None = None):
        self.path = path or default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Switching to WAL needs the database to itself: workers starting together take turns.
        with FileLock(f"{self.path}.lock"):
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS passed (kind TEXT, path TEXT, size INTEGER, mtime_ns INTEGER, "
                "PRIMARY KEY (kind, path))"
            )

    def passed(self, kind: str, keys: Iterable[tuple[str, int, int]]) -> set[str]:
        rows = {p: (s, m) for p, s, m in self._db.execute(
            "SELECT path, size, mtime_ns FROM passed WHERE kind = ?", (kind,))}
        return {p for p, s, m in keys if rows.get(p) == (s, m)}

    def record(self, kind: str, keys: Iterable[tuple[str, int, int]]) -> None:
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO passed VALUES (?, ?, ?, ?)",
                                 [(kind, p, s, m) for p, s, m in keys])

    def close(self) -> None:
        self._db.close()


def decode_error(path: str) -> str | None:
    """None if the image decodes completely, else why not."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft(im.mode if im.mode in ("L", "RGB", "CMYK") else "RGB",
                         (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except Exception as e:  # PIL raises many types for corrupt data; all mean "does not decode"
        return f"{type(e).__name__}: {e}"
    return None


def verify_images(root: Path, entries: list[FileEntry], cache: VerifyCache | None) -> tuple[list[str], int]:
    """Decode ``entries`` not already known good; return (problems, number decoded now)."""
    keys = [(str(root / e.rel), e.size, e.mtime_ns) for e in entries]
    known = cache.passed("image", keys) if cache else set()
    problems, good = [], []
    for key, entry in zip(keys, entries):
        if key[0] in known:
            continue
        err = decode_error(key[0])
        if err:
            problems.append(f"{entry.rel} ({err})")
        else:
            good.append(key)
    if cache and good:
        cache.record("image", good)
    return problems, len(keys) - len(known)


def check_decodes(root: Path, entries: list[FileEntry], cache: VerifyCache | None, fix: str) -> list[Finding]:
    """The --deep check in the shape of the others: images that do not decode, as one finding."""
    problems, _ = verify_images(root, entries, cache)
    if not problems:
        return []
    return [Finding("images that do not decode", problems, total=len(entries), where=str(root), fix=fix)]


def shard(entries: list[FileEntry], index: int, count: int) -> list[FileEntry]:
    return entries[index::count]
