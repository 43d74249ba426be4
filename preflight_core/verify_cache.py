"""The verify cache: what passed a verification, keyed by the identity of the content that passed.

Used by the quick scan (per-file head/tail bytes), by ``--deep`` (decoded images, hashed weight blobs)
and by the HF cache check (hashed small files), so a re-run of an unchanged tree costs a ``stat`` per file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import socket
import struct
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from preflight_core.findings import human_bytes as iec
from preflight_core.findings import shown
from preflight_core.safe_io import NotARegularFile, open_fd

CACHE_FORMAT = b"preflight-verify-cache 1"
# An entry whose mtime or ctime is this recent is not trusted yet: a write in the same timestamp tick
# as our read would leave (size, mtime, ctime) unchanged ("racily clean", as git calls it). 2 s covers
# file systems with 1 s timestamps and NFS clients and servers whose clocks agree to ~1 s (NTP).
RACY_NS = 2 * 10**9
MAX_CACHE_FILE_BYTES = 512 * 2**20
STALE_TMP_SECONDS = 3600


def preflight_cache_dir() -> Path:
    """preflight's cache folder: ``$PREFLIGHT_CACHE_DIR``, else ``$XDG_CACHE_HOME/preflight``, else ``~/.cache/preflight``.

    The one place this rule lives.
    """
    base = os.environ.get("PREFLIGHT_CACHE_DIR")
    if base:
        return Path(base).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "preflight"


def default_cache_path() -> Path:
    return preflight_cache_dir() / "verified"


def why_failed(e: OSError) -> str:
    return f"{type(e).__name__}: {e.strerror or e}"


class VerifyCache:
    """What passed a verification, keyed by the identity of the content that passed.

    Safe for many processes (xdist workers) and many nodes sharing an NFS home at once, without
    locks, because nothing in it can vouch for content it did not see:

    - **Keys carry the content's identity**: name plus (size, mtime_ns, inode, ctime_ns). ctime is
      set by the kernel (or the NFS server) on every change and cannot be set back by a user, so a
      changed file never matches an old entry; entries younger than ``RACY_NS`` are not written
      (a change in the same timestamp tick as the read would be invisible). A stale, duplicated or
      merged entry can only fail to match, which means "verify again", never a false pass.
    - **Immutable files, written atomically**: a writer puts a whole new file in a temp name and
      renames it into place (atomic on a local disk and on NFS); it never appends to or rewrites a
      file. Each file is named by the sha256 of its content and starts with that checksum, so a
      truncated, torn or corrupt file (a crash, a full disk, an NFS cache) is detected, noted once
      and removed, and its files are verified again.
    - **Readers merge** every file of a namespace (one folder per tree and kind of verification).
      A writer then writes the merged set, plus what it verified, and removes only the files it
      read (their content is in the new one). Writers that merged the same files write the same
      bytes under the same name, so concurrent runs converge to one file instead of piling up.

    sqlite was dropped: its locking is unreliable on NFS (a corrupt database or a false "locked"),
    and a damaged database file failed the run (``sqlite3.DatabaseError``). Any problem here —
    damaged files, an unwritable folder — becomes one note (``take_notes()``) and a re-verify.

    ``path``: the cache folder (an old single-file sqlite cache beside it is never read or removed).
    """

    def __init__(self, path: Path | None = None):
        self.folder = Path(path) if path else default_cache_path()
        self.notes: list[str] = []
        self._read: dict[str, list[str]] = {}  # kind -> names of the files merged by the last load

    # ------------------------------------------------------------------ notes

    def _note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    def take_notes(self) -> list[str]:
        """The warnings collected so far (each once), for ``asset.note``; clears them."""
        notes, self.notes = self.notes, []
        return notes

    # ------------------------------------------------------------------ files

    def _partition(self, kind: str) -> Path:
        label = re.sub(r"[^A-Za-z0-9_-]", "", kind.split(" ", 1)[0])[:20] or "kind"
        return self.folder / f"{label}-{hashlib.sha256(os.fsencode(kind)).hexdigest()[:24]}"

    def _damaged(self, path: Path, why: str, remove: bool) -> None:
        removed = ""
        if remove:
            try:
                os.unlink(path)  # ours, and worthless: the note would otherwise repeat every run
                removed = " and removed"
            except OSError:
                pass
        self._note(f"the verify cache file {shown(str(path))} is damaged ({why}): ignored{removed}; "
                   "what it vouched for is verified again")

    def _read_file(self, path: Path, kind: str) -> Table | None:
        try:
            fd, st = open_fd(path, follow=False)  # the one safe-open rule; a symlink is not followed
        except FileNotFoundError:
            return None  # merged and removed by another process meanwhile
        except NotARegularFile as e:
            self._damaged(path, f"{e.kind}, not a regular file", remove=False)
            return None
        except OSError as e:
            is_link = e.errno == errno.ELOOP and os.path.islink(path)  # O_NOFOLLOW on a symlink says ELOOP
            self._damaged(path, "a symlink, not a cache file (not followed)" if is_link
                          else f"cannot be opened: {why_failed(e)}", remove=False)
            return None
        try:
            if st.st_size > MAX_CACHE_FILE_BYTES:
                self._damaged(path, f"{iec(st.st_size)}, larger than any cache file", remove=True)
                return None
            chunks, left = [], st.st_size + 1
            while left > 0 and (chunk := os.read(fd, min(left, 1 << 22))):
                chunks.append(chunk)
                left -= len(chunk)
            data = b"".join(chunks)
        except OSError as e:
            if e.errno == getattr(errno, "ESTALE", -1):
                return None  # NFS: removed by another node while we read it
            self._damaged(path, f"cannot be read: {why_failed(e)}", remove=False)
            return None
        finally:
            os.close(fd)
        header, sep, body = data.partition(b"\n")
        magic, _, digest = header.rpartition(b" ")
        if not sep or magic != CACHE_FORMAT or hashlib.sha256(body).hexdigest().encode() != digest:
            self._damaged(path, "truncated or corrupt: its checksum does not match", remove=True)
            return None
        table = Table.from_json(body, kind)
        if table is None:
            self._damaged(path, "not a cache file of this kind", remove=True)
        return table

    def load(self, kind: str) -> Table:
        """Every entry of ``kind``, merged from all its files."""
        part = self._partition(kind)
        self._read[kind] = []
        try:
            names = sorted(os.listdir(part))
        except FileNotFoundError:
            return Table()
        except OSError as e:
            self._note(f"cannot read the verify cache {shown(str(part))} ({why_failed(e)}): everything is verified again")
            return Table()
        tables, read = [], []
        for name in names:
            if name.startswith(".tmp-"):
                self._remove_if_stale(part / name)
            elif name.endswith(".json"):
                table = self._read_file(part / name, kind)
                if table is not None:
                    tables.append(table)
                    read.append(name)
        self._read[kind] = read
        return Table.merge(tables)

    @staticmethod
    def _remove_if_stale(path: Path) -> None:
        """A writer that died between the temp file and the rename left this behind."""
        try:
            if time.time() - os.lstat(path).st_mtime > STALE_TMP_SECONDS:
                os.unlink(path)
        except OSError:
            pass

    def save(self, kind: str, rows: Table | Iterable[tuple], changed: bool = True) -> None:
        """Replace what is cached for ``kind`` (as last loaded) by ``rows`` = (name, identity, value); never raises.

        ``rows`` sorted by name (a scan's files are).

        Unchanged, it still merges the files of concurrent writers into one (the same bytes for every
        process that merges the same files, so they converge).
        """
        read = self._read.get(kind, [])
        if changed or len(read) > 1:
            self._write(kind, rows if isinstance(rows, Table) else Table.from_rows(rows, presorted=True), read)

    def _write(self, kind: str, table: Table, read: list[str]) -> None:
        body = table.settled(time.time_ns() - RACY_NS).to_json(kind)
        digest = hashlib.sha256(body).hexdigest()
        name = f"{digest[:32]}.json"
        part = self._partition(kind)
        try:
            if body and name not in read and not os.path.exists(part / name):
                part.mkdir(parents=True, exist_ok=True)
                tmp = part / f".tmp-{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(CACHE_FORMAT + b" " + digest.encode() + b"\n" + body)
                    os.replace(tmp, part / name)
                except BaseException:
                    with_suppressed(os.unlink, tmp)
                    raise
            for old in read:
                if old != name:
                    with_suppressed(os.unlink, part / old)
        except OSError as e:
            self._note(f"cannot write the verify cache in {shown(str(self.folder))} ({why_failed(e)}): nothing new was "
                       "cached, the next run verifies again")

    # ------------------------------------------------------------------ pass / record

    def passed(self, kind: str, keys: Iterable[tuple]) -> set[str]:
        """The names among ``keys`` = (name, size, mtime_ns, …identity) that passed ``kind`` as they are now."""
        table = self.load(kind)
        return {k[0] for k in keys if table.matches(k[0], k[1:])}

    def record(self, kind: str, keys: Iterable[tuple]) -> None:
        """Remember that ``keys`` passed ``kind`` (merged with what other processes recorded)."""
        new = Table.from_rows((k[0], tuple(k[1:]), "") for k in keys)
        if not new.names:
            return
        merged = Table.merge([self.load(kind), new])
        self._write(kind, merged, self._read.get(kind, []))


def _packer(width: int) -> struct.Struct:
    """(size, mtime_ns, inode, ctime_ns) packs as q q Q q (inodes are unsigned); other widths as q…"""
    return struct.Struct("<qqQq" if width == 4 else "<" + "q" * width)


class Table:
    """Cache entries in columns: names, their identities packed in one bytes object, a value each.

    Compact on disk and quick to load (no per-entry JSON objects, no big-integer parsing): a 50,000
    entry table loads in a few tens of milliseconds.
    """

    def __init__(self, names: list[str] | None = None, ids: bytes = b"", values: list[str] | None = None,
                 width: int = 4):
        self.names = names or []
        self.ids = ids
        self.values = values if values is not None else [""] * len(self.names)
        self.width = width
        self.packer = _packer(width)
        self._index: dict[str, int] | None = None

    @property
    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = dict(zip(self.names, range(len(self.names))))
        return self._index

    def __len__(self) -> int:
        return len(self.names)

    def matches(self, name: str, identity: tuple) -> bool:
        i = self.index.get(name)
        if i is None or len(identity) != self.width:
            return False
        size = self.packer.size
        try:
            return self.packer.pack(*identity) == self.ids[i * size:(i + 1) * size]
        except struct.error:
            return False

    def row(self, i: int) -> tuple[str, tuple, str]:
        size = self.packer.size
        return self.names[i], self.packer.unpack_from(self.ids, i * size), self.values[i]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, tuple, str]], presorted: bool = False) -> Table:
        rows = list(rows) if presorted else sorted(rows)
        width = len(rows[0][1]) if rows else 4
        packer = _packer(width)
        names, ids, values = [], [], []
        for name, identity, value in rows:
            try:
                packed = packer.pack(*identity)
            except struct.error:  # an identity that does not fit (or a row of another width): not cached
                continue
            names.append(name)
            ids.append(packed)
            values.append(value)
        return cls(names, b"".join(ids), values, width)

    @classmethod
    def merge(cls, tables: list[Table]) -> Table:
        tables = [t for t in tables if t.names]
        if len(tables) <= 1:
            return tables[0] if tables else cls()
        rows: dict[str, tuple] = {}
        for t in tables:  # a later file wins a name; a stale identity can only fail to match
            for i in range(len(t)):
                name, identity, value = t.row(i)
                rows[name] = (name, identity, value)
        return cls.from_rows(rows.values())

    def settled(self, before_ns: int) -> Table:
        """The entries whose mtime and ctime are older than ``before_ns`` (see ``RACY_NS``)."""
        if self.width == 4 and self.names and sys.byteorder == "little":  # the common case, at C speed
            times = memoryview(self.ids).cast("q")
            if max(max(times[1::4]), max(times[3::4])) < before_ns:
                return self
        keep = [r for r in map(self.row, range(len(self))) if max(r[1][1], r[1][3] if self.width >= 4 else 0) < before_ns]
        return self if len(keep) == len(self) else Table.from_rows(keep)

    def to_json(self, kind: str) -> bytes:
        if not self.names:
            return b""
        values = self.values if any(self.values) else None
        return json.dumps({"kind": kind, "width": self.width, "names": self.names, "ids": self.ids.hex(),
                           "values": values}, separators=(",", ":")).encode("ascii")

    @classmethod
    def from_json(cls, body: bytes, kind: str) -> Table | None:
        try:
            doc = json.loads(body)
            if not (isinstance(doc, dict) and doc.get("kind") == kind and isinstance(doc.get("names"), list)):
                return None
            names, width, values = doc["names"], doc["width"], doc["values"]
            ids = bytes.fromhex(doc["ids"])
            if not (isinstance(width, int) and 1 <= width <= 8 and len(ids) == len(names) * _packer(width).size
                    and (values is None or (isinstance(values, list) and len(values) == len(names)))):
                return None
            return cls(names, ids, values, width)
        except (ValueError, TypeError, KeyError, RecursionError):
            return None


def with_suppressed(fn, *args) -> None:
    try:
        fn(*args)
    except OSError:
        pass
