"""One pass over an image tree: names, types, sizes and the first and last bytes of every file.

Kept free of torch and PIL so the quick data checks stay light.

Hostile trees are data, never a hang or a crash. The scan opens only what the directory entry
(or a ``stat``) says is a regular file, and opens it with ``O_NONBLOCK`` and checks it again with
``fstat`` in case it was swapped for a FIFO meanwhile. It follows symlinked folders as torchvision's
ImageFolder does (``os.walk(followlinks=True)``), but remembers every folder by ``(st_dev, st_ino)``,
so a link back up the tree (``class_dir/up -> ..``), a bind-mount loop or two links to one folder is
reported once instead of walked forever. Dangling links, self-links (ELOOP), FIFOs, sockets, devices
and folders that cannot be listed become entries with a ``problem``; the checks turn them into
failing findings that name the file. Names are shown with :func:`shown`, which makes newlines and
undecodable bytes (``surrogateescape``) readable instead of crashing the terminal.

With a cache (``preflight_core.verify_cache.VerifyCache``), a file whose identity (size, mtime_ns, inode,
ctime_ns) is unchanged since an earlier scan is not opened at all: a re-run costs a directory
listing plus one ``stat`` per file.
"""

from __future__ import annotations

import errno
import operator
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from preflight_core.findings import human_bytes as iec  # noqa: F401  (IEC units, one implementation; re-exported)
from preflight_core.findings import shown  # noqa: F401  (re-exported)
from preflight_core.imagenet_files import MAX_IMAGE_BYTES  # noqa: F401  (the one bound; re-exported)
from preflight_core.safe_io import NotARegularFile, kind_of, open_fd

if TYPE_CHECKING:
    from preflight_core.verify_cache import Table, VerifyCache

JPEG_SIGNATURE = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"
# What torchvision's ImageFolder would pick up (torchvision.datasets.folder.IMG_EXTENSIONS).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# Files that operating systems and tools drop into folders; harmless to ImageFolder.
HARMLESS_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", ".directory"})
HEAD_BYTES, TAIL_BYTES = 3, 2
QUICK_KIND = "quick"  # the verify cache's namespace for head/tail bytes
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def is_harmless(name: str) -> bool:
    return name in HARMLESS_NAMES or name.startswith("._")


class FileEntry(NamedTuple):
    rel: str  # path relative to the scanned root, with "/" separators
    name: str
    size: int
    mtime_ns: int
    head: bytes  # first bytes (empty for an empty file or when not read)
    tail: bytes = b""  # last 2 bytes: a JPEG ends with ff d9 unless it was cut short
    ino: int = 0
    ctime_ns: int = 0
    problem: str = ""  # why it cannot be read as an image ("a FIFO, not a regular file", …); "" = fine

    @property
    def shown(self) -> str:
        return shown(self.rel)

    @property
    def identity(self) -> tuple[int, int, int, int]:
        """What changes when the content can have changed: size, mtime, inode, ctime (set by the kernel)."""
        return (self.size, self.mtime_ns, self.ino, self.ctime_ns)


@dataclass
class Scan:
    files: list[FileEntry]
    folders: list[str]
    # Folders not walked: "rel (why)" — loops, folders reached twice, folders that cannot be listed.
    unwalkable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # the cache's warnings, for asset.note
    opened: int = 0  # files opened and read now (the rest came from the cache)


def _why(e: OSError) -> str:
    return f"{type(e).__name__}: {e.strerror or e}"


def _link_problem(dir_fd: int, name: str, e: OSError) -> str:
    """Why following the symlink ``name`` failed, in words."""
    try:
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError:
        target = "?"
    if e.errno == errno.ELOOP:
        return f"a symlink loop ({shown(name)} -> {shown(target)} never reaches a file)"
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return f"a dangling symlink to {shown(target)}, which does not exist"
    return f"a symlink to {shown(target)} that cannot be followed ({_why(e)})"


def _read_head_tail(dir_fd: int, name: str) -> tuple[os.stat_result | None, bytes, bytes, str]:
    """(stat, first bytes, last 2 bytes, problem) of a file believed to be regular."""
    try:
        fd, st = open_fd(name, dir_fd=dir_fd)  # the one safe-open rule: a FIFO swapped in cannot block us
    except NotARegularFile as e:
        return None, b"", b"", f"{e.kind}, not a regular file"
    except OSError as e:
        return None, b"", b"", f"cannot be opened ({_why(e)})"
    try:
        if not st.st_size:
            return st, b"", b"", ""
        return st, os.read(fd, HEAD_BYTES), os.pread(fd, TAIL_BYTES, max(0, st.st_size - TAIL_BYTES)), ""
    except OSError as e:
        return None, b"", b"", f"cannot be read ({_why(e)})"
    finally:
        os.close(fd)


_rel = operator.itemgetter(0)


def _classify(entry: os.DirEntry, dir_fd: int, rel: str) -> str | FileEntry:
    """An entry that is not a plain regular file: "dir", "file" (a symlink to one), or a FileEntry with its problem."""
    name = entry.name
    try:
        if entry.is_dir(follow_symlinks=False):
            return "dir"
        try:
            st = os.stat(name, dir_fd=dir_fd)  # follows a symlink
        except OSError as e:
            why = _link_problem(dir_fd, name, e) if entry.is_symlink() else f"cannot be read ({_why(e)})"
            return FileEntry(rel, name, 0, 0, b"", b"", problem=why)
    except OSError as e:  # the entry vanished or cannot be stat'ed
        return FileEntry(rel, name, 0, 0, b"", b"", problem=f"cannot be read ({_why(e)})")
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISREG(st.st_mode):
        return "file"
    return FileEntry(rel, name, 0, st.st_mtime_ns, b"", b"", st.st_ino, st.st_ctime_ns,
                     f"{kind_of(st.st_mode)}, not a regular file")


def _enter(rel: str, parent_fd: int | None, name: str, seen: dict[tuple[int, int], str],
           unwalkable: list[str]) -> int | None:
    """Open a folder to list it, unless it is one already walked (a loop or a second way in)."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd) if parent_fd is not None else os.open(name, _DIR_FLAGS)
    except OSError as e:
        unwalkable.append(f"{shown(rel) or '.'} (cannot be opened: {_why(e)})")
        return None
    try:
        st = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        unwalkable.append(f"{shown(rel) or '.'} (cannot be read: {_why(e)})")
        return None
    key = (st.st_dev, st.st_ino)
    if key in seen:
        os.close(fd)
        first = seen[key]
        if first == "" or rel.startswith(first + "/"):
            unwalkable.append(f"{shown(rel)} (a folder loop: it is {shown(first) or 'the root'} again, "
                              "so ImageFolder would walk it over and over)")
        else:
            unwalkable.append(f"{shown(rel)} (the same folder as {shown(first)}: "
                              "ImageFolder would load its images twice)")
        return None
    seen[key] = rel
    return fd


def _remember(cache: VerifyCache, kind: str, files: list[FileEntry], known: Table | None, changed: bool) -> list[str]:
    """Save the quick bytes of ``files`` in the verify cache (only when something changed); its notes."""
    if changed:  # else the cache holds exactly these files already
        hexes: dict[tuple[bytes, bytes], str] = {}
        rows = []
        for f in files:
            if not f.problem:
                value = hexes.get((f.head, f.tail))
                if value is None:
                    value = hexes[f.head, f.tail] = f"{f.head.hex()}:{f.tail.hex()}"
                rows.append((f.rel, (f.size, f.mtime_ns, f.ino, f.ctime_ns), value))
        cache.save(kind, rows)
    elif known is not None:
        cache.save(kind, known, changed=False)  # merges the files of concurrent writers, if any
    return cache.take_notes()


def scan_tree(root: Path, cache: VerifyCache | None = None) -> Scan:
    """Every file below ``root`` with its first 3 and last 2 bytes; every folder; what could not be walked.

    Serial on purpose: threads only add GIL contention to these cheap syscalls. With ``cache``,
    unchanged files are not opened (their bytes come from the cache) and the new ones are added.
    """
    root_s = str(root)
    kind = f"{QUICK_KIND} {os.path.realpath(root_s)}"
    known = cache.load(kind) if cache is not None else None
    if known is not None and known.width != 4:
        known = None
    index = known.index if known is not None else {}
    ids, values = (known.ids, known.values) if known is not None else (b"", [])
    pack = known.packer.pack if known is not None else None
    heads: dict[str, tuple[bytes, bytes]] = {}  # "ffd8ff:ffd9" -> the bytes: the same few values over and over
    new = tuple.__new__  # FileEntry(...) without the keyword-argument machinery: 50,000 of them
    hits = 0
    files: list[FileEntry] = []
    index_get, append, S_ISREG = index.get, files.append, stat.S_ISREG
    folders: list[str] = []
    unwalkable: list[str] = []
    seen: dict[tuple[int, int], str] = {}  # (st_dev, st_ino) -> the folder's rel path
    opened = 0

    root_fd = _enter("", None, root_s, seen, unwalkable)
    stack: list[tuple[str, int]] = [("", root_fd)] if root_fd is not None else []
    while stack:
        prefix, dir_fd = stack.pop()
        subdirs: list[tuple[str, str]] = []
        try:
            try:
                with os.scandir(dir_fd) as it:
                    entries = list(it)
            except OSError as e:
                unwalkable.append(f"{shown(prefix[:-1]) or '.'} (cannot be listed: {_why(e)})")
                continue
            for entry in entries:
                name = entry.name
                rel = prefix + name
                try:
                    regular = entry.is_file(follow_symlinks=False)  # from d_type: no syscall
                except OSError:
                    regular = False
                if regular:  # the fast path: an unchanged file is one fstatat and no open
                    i = index_get(rel)
                    if i is not None:
                        try:
                            st = entry.stat()
                        except OSError:
                            st = None
                        if st is not None and S_ISREG(st.st_mode) and pack(
                                st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns) == ids[i * 32:i * 32 + 32]:
                            value = values[i]
                            ht = heads.get(value)
                            if ht is None:
                                h, _, t = value.partition(":")
                                ht = heads[value] = (bytes.fromhex(h), bytes.fromhex(t))
                            append(new(FileEntry, (rel, name, st.st_size, st.st_mtime_ns, ht[0], ht[1], st.st_ino,
                                                   st.st_ctime_ns, "")))
                            hits += 1
                            continue
                else:
                    kind_here = _classify(entry, dir_fd, rel)
                    if isinstance(kind_here, FileEntry):  # not a folder, not a file that can be read
                        append(kind_here)
                        continue
                    if kind_here == "dir":
                        subdirs.append((rel, name))
                        continue
                st, head, tail, problem = _read_head_tail(dir_fd, name)
                opened += 1
                if st is None:
                    append(FileEntry(rel, name, 0, 0, b"", b"", problem=problem))
                else:
                    append(FileEntry(rel, name, st.st_size, st.st_mtime_ns, head, tail, st.st_ino, st.st_ctime_ns,
                                     problem))
            for rel, name in sorted(subdirs, reverse=True):
                fd = _enter(rel, dir_fd, name, seen, unwalkable)
                if fd is not None:
                    folders.append(rel)
                    stack.append((rel + "/", fd))
        finally:
            os.close(dir_fd)
    files.sort(key=_rel)  # by the str alone: much quicker than comparing the tuples
    folders.sort()
    notes: list[str] = []
    if cache is not None:
        changed = bool(opened) or hits != (len(known) if known is not None else 0)
        notes = _remember(cache, kind, files, known, changed)
    return Scan(files, folders, unwalkable, notes, opened)


def has_jpeg_signature(entry: FileEntry) -> bool:
    return entry.head.startswith(JPEG_SIGNATURE)
