"""One pass over an image tree: names, sizes and the first bytes of every file.

Kept free of torch and PIL so the quick data checks stay light.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

JPEG_SIGNATURE = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"
# What torchvision's ImageFolder would pick up (torchvision.datasets.folder.IMG_EXTENSIONS).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# Files that operating systems and tools drop into folders; harmless to ImageFolder.
HARMLESS_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", ".directory"})


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def is_harmless(name: str) -> bool:
    return name in HARMLESS_NAMES or name.startswith("._")


@dataclass(frozen=True, slots=True)
class FileEntry:
    rel: str  # path relative to the scanned root, with "/" separators
    name: str
    size: int
    mtime_ns: int
    head: bytes  # first bytes (empty for an empty file or when not read)
    tail: bytes = b""  # last 2 bytes: a JPEG ends with ff d9 unless it was cut short

    @property
    def folder(self) -> str:
        return self.rel.rpartition("/")[0]


def _walk(root: Path) -> tuple[list[tuple[str, os.DirEntry]], list[str]]:
    """All files below root (following symlinked folders, like ImageFolder) and all folders."""
    files: list[tuple[str, os.DirEntry]] = []
    folders: list[str] = []
    stack = [("", str(root))]
    while stack:
        prefix, path = stack.pop()
        with os.scandir(path) as it:
            for entry in it:
                rel = f"{prefix}{entry.name}"
                if entry.is_dir():
                    folders.append(rel)
                    stack.append((rel + "/", entry.path))
                else:
                    files.append((rel, entry))
    return files, folders


def _stat_head_tail(path: str, n: int) -> tuple[int, int, bytes, bytes]:
    """(size, mtime_ns, first n bytes, last 2 bytes) with raw syscalls: 50,000 files in a fraction of a second."""
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if not n:
            return st.st_size, st.st_mtime_ns, b"", b""
        return st.st_size, st.st_mtime_ns, os.read(fd, n), os.pread(fd, 2, max(0, st.st_size - 2))
    finally:
        os.close(fd)


def scan_tree(root: Path, read_heads: bool = True) -> tuple[list[FileEntry], list[str]]:
    """Return (files, folders) below ``root``, with each file's first 3 and last 2 bytes.

    Serial on purpose: threads only add GIL contention to these cheap syscalls.
    """
    raw, folders = _walk(root)
    files = []
    for rel, entry in raw:
        try:
            size, mtime_ns, head, tail = _stat_head_tail(entry.path, 3 if read_heads else 0)
        except OSError:  # unreadable or a dangling symlink: report it as empty
            size, mtime_ns, head, tail = 0, 0, b"", b""
        files.append(FileEntry(rel, entry.name, size, mtime_ns, head, tail))
    files.sort(key=lambda f: f.rel)
    folders.sort()
    return files, folders


def has_jpeg_signature(entry: FileEntry) -> bool:
    return entry.head.startswith(JPEG_SIGNATURE)
