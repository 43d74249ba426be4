"""Reorganize a downloaded ImageNet val tar into ``<data_root>/imagenet_val/<wnid>/<image>`` in one streaming pass.

Accepted inputs: the official flat tar (``ILSVRC2012_val_00000001.JPEG`` …, any member order, labels
taken from ``ILSVRC2012_val_synsets.txt`` by FILE NAME) and the face-blurred ``val_blurred.tar.gz``
(``val_blurred/<wnid>/ILSVRC2012_val_XXXXXXXX.jpg``; its ``.jpg`` names are kept and the folder it
claims must equal the synsets label). Compressed tars are read transparently.

Files in ``<data_root>`` (all under the lock ``.imagenet_val.lock``):
  ``.imagenet_val.partial/``  the tree being written; renamed to ``imagenet_val`` at the very end.
  ``.imagenet_val.json``      {"state": "partial" | "complete", the source tar, variant, listing digest}.

Interrupted runs RESUME: a rerun with the same tar (same name and size) keeps the files already in
``.imagenet_val.partial`` that have their member's size (each was written front to back, so a file of
the full size is complete) and writes the rest; a different tar restarts from an empty folder.
An existing ``imagenet_val`` that equals what the tar gives (same file names, folders and sizes) is
left alone; one that differs is reported and never touched. The tar is only read.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import tarfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast

from filelock import FileLock

from fetchers.download import ProgressArg, ProgressBar, _note, check_free_space, resolve_progress
from fetchers.errors import FetchError, explain, fetch_command
from preflight_core.commands import move_aside
from preflight_core.findings import Finding, Fix, human_bytes, shown
from preflight_core.imagenet_files import MAX_IMAGE_BYTES, bad_synset_lines, parse_synsets
from preflight_core.registry import ASSETS, IMAGENET_META_FILES, IMAGENET_VAL_BLURRED, IMAGENET_VAL_TAR
from preflight_core.safe_io import open_regular

DEST_NAME = ASSETS["imagenet_val"].location  # under the data root
FLAT = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG")
BLURRED = re.compile(r"val_blurred/(n\d{8})/ILSVRC2012_val_(\d{8})\.jpg")
BLURRED_DIR = re.compile(r"val_blurred(/n\d{8})?")
MAX_PROBLEMS = 100  # stop reading a tar that is clearly not an ImageNet val tar
COPY_CHUNK = 1 << 20  # a member is copied in chunks of this size: memory stays bounded whatever it claims
# A .tar.gz / .tar.xz of JPEGs barely compresses (JPEG data is already compressed): a stream that
# expands more than this many times, past BOMB_AFTER bytes, is a decompression bomb, not a val tar.
BOMB_RATIO = 20
BOMB_AFTER = 64 * 2**20
EXTRA_HEADERS = 10_000  # headers allowed beyond one per image and per class folder (pax/GNU long names …)
NOTE_EVERY = 15.0  # s: a progress line this often on a non-terminal
MAX_EXAMPLES = 5  # examples kept per kind of problem (the counts are kept in full)
REDOWNLOAD = (f"download {IMAGENET_VAL_TAR.filename} ({IMAGENET_VAL_TAR.size:,} bytes, sha256 "
              f"{IMAGENET_VAL_TAR.sha256[:12]}…) or val_blurred.tar.gz again and rerun")


class ReorganizeError(FetchError):
    """The tar cannot be reorganized; the message names the tar and what is wrong, ``fix`` what to do."""


class UnsafeMember(ReorganizeError):
    pass


class ExistingTreeDiffers(ReorganizeError):
    pass


@dataclass(frozen=True)
class ReorganizeResult:
    dest: Path
    variant: str  # "official" | "face-blurred"
    n_images: int
    n_classes: int
    n_written: int  # files written by this run (fewer than n_images when it resumed an interrupted run)
    missing_ids: tuple[int, ...]  # ids absent from the tar (the face-blurred release drops 3)
    seconds: float
    already_present: bool


def read_synsets(path: Path) -> list[str]:
    """Line i = wnid of val image i."""
    labels = parse_synsets(Path(path).read_text())
    bad = bad_synset_lines(labels)
    if not labels or bad:
        raise ReorganizeError(f"{path} is not a val synsets file (one wnid such as n01440764 per line): "
                              f"{'it is empty' if not labels else f'line {bad[0][0]} is {bad[0][1]!r}'}",
                              f"move it aside ({move_aside(path, '.old')}) and fetch it again (python -m fetchers --imagenet-map)")
    return labels


@dataclass
class _Plan:
    """Validates members one by one and maps each image to its place in the tree."""

    tar: Path
    labels: list[str]
    variant: str | None = None
    seen: bytearray = field(init=False)
    problems: dict[str, list[str]] = field(default_factory=dict)  # kind -> its first examples
    counts: dict[str, int] = field(default_factory=dict)  # kind -> how many (not just the examples)
    of_all: set[str] = field(default_factory=set)  # kinds counted against all the val images (for the %)
    headers: int = 0

    def __post_init__(self) -> None:
        self.seen = bytearray(len(self.labels) + 1)
        self.max_headers = len(self.labels) + len(set(self.labels)) + EXTRA_HEADERS

    def problem(self, kind: str, example: str) -> None:
        examples = self.problems.setdefault(kind, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(example)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if sum(self.counts.values()) >= MAX_PROBLEMS:
            raise self.error(stopped=True)

    def target(self, ti: tarfile.TarInfo) -> str | None:
        """The member's path relative to the tree, or None for folders and rejected members."""
        name = ti.name
        parts = name.split("/")
        if name.startswith("/") or ".." in parts or "\\" in name:
            raise UnsafeMember(f"refusing {self.tar}: member {shown(name)} has an unsafe path (absolute or '..'); "
                               f"it was not extracted", f"this is not an ImageNet val tar: {REDOWNLOAD}")
        if not (ti.isreg() or ti.isdir()):
            kind = ("a symlink" if ti.issym() else "a hard link" if ti.islnk()
                    else "a device, FIFO or other special file")
            raise UnsafeMember(f"refusing {self.tar}: member {shown(name)} is {kind}; only regular image files are "
                               f"expected", f"this is not an ImageNet val tar: {REDOWNLOAD}")
        if ti.isreg() and ti.size > MAX_IMAGE_BYTES:
            raise UnsafeMember(f"refusing {self.tar}: member {shown(name)} claims {human_bytes(ti.size)}, more than "
                               f"any val image can be (at most {human_bytes(MAX_IMAGE_BYTES)}); not a byte of it "
                               f"was written", f"this is not an ImageNet val tar: {REDOWNLOAD}")
        self.headers += 1
        if self.headers > self.max_headers:
            raise UnsafeMember(f"refusing {self.tar}: more than {self.max_headers:,} members (the last read: "
                               f"{shown(name)}); a val tar has one per image and class folder",
                               f"this is not an ImageNet val tar: {REDOWNLOAD}")
        name = "/".join(p for p in parts if p not in ("", "."))
        if ti.isdir():
            if name and not BLURRED_DIR.fullmatch(name):
                self.problem("unknown members", name + "/")
            return None
        if m := FLAT.fullmatch(name):
            variant, folder, image_id = "official", None, int(m.group(1))
        elif m := BLURRED.fullmatch(name):
            variant, folder, image_id = "face-blurred", m.group(1), int(m.group(2))
        else:
            self.problem("unknown members", name)
            return None
        if self.variant is None:
            self.variant = variant
        elif variant != self.variant:
            self.problem("members of the other release (flat and face-blurred mixed)", name)
            return None
        if not 1 <= image_id <= len(self.labels):
            self.problem(f"image ids outside 1..{len(self.labels)}", name)
            return None
        if self.seen[image_id]:
            self.problem("duplicate images", name)
            return None
        self.seen[image_id] = 1
        label = self.labels[image_id - 1]
        if folder is not None and folder != label:
            self.problem("images in a folder their synsets label disagrees with", f"{name} (label {label})")
            return None
        return f"{label}/{name.rsplit('/', 1)[-1]}"

    def missing(self) -> list[int]:
        return [i for i in range(1, len(self.labels) + 1) if not self.seen[i]]

    def finish(self) -> str:
        """The tar's variant; raise unless the whole tar was as expected."""
        allowed = IMAGENET_VAL_BLURRED.max_missing if self.variant == "face-blurred" else 0
        missing = self.missing()
        if len(missing) > allowed:
            kind = f"missing images (at most {allowed} may be; a tar cut short looks like this)"
            self.problems[kind] = [f"id {i}" for i in missing[:MAX_EXAMPLES]]
            self.counts[kind] = len(missing)
            self.of_all.add(kind)
        if self.problems:
            raise self.error()
        assert self.variant is not None, "labels is never empty: a tar without images has them all missing"
        return self.variant

    def error(self, stopped: bool = False) -> ReorganizeError:
        """One finding per kind of problem (its count, its % of the val images, its first examples)."""
        total = len(self.labels)
        findings = "; ".join(Finding(kind, examples, total=total if kind in self.of_all else None,
                                     count=self.counts[kind]).problem()
                             for kind, examples in self.problems.items())
        return ReorganizeError(
            f"{self.tar} is not a complete ImageNet val tar"
            + (f" (stopped reading after {MAX_PROBLEMS} problems)" if stopped else "") + f": {findings}. "
            + f"Expected members: ILSVRC2012_val_XXXXXXXX.JPEG with ids 1..{total}; nothing was moved into place",
            REDOWNLOAD)


def _digest(listing: dict[str, int]) -> str:
    return hashlib.sha256("".join(f"{k}\t{v}\n" for k, v in sorted(listing.items())).encode()).hexdigest()


def _tree_listing(root: Path) -> dict[str, int]:
    listing: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for f in filenames:
            key = f if rel == "." else f"{rel}/{f}"
            listing[key] = os.stat(os.path.join(dirpath, f)).st_size
        if not filenames and not dirnames and rel != ".":
            listing[rel + "/"] = 0  # an empty folder is a difference too
    return listing


def _tar_listing(tar: Path, labels: list[str]) -> dict[str, int]:
    """What the tree made from ``tar`` would hold (headers only for an uncompressed tar: it is seekable)."""
    plan = _Plan(tar, labels)
    listing: dict[str, int] = {}
    with _open(tar, streaming=False) as reader:
        for ti in reader.members():
            if (target := plan.target(ti)) is not None:
                listing[target] = ti.size
    plan.finish()
    return listing


_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)


def _corrupt(tar: Path, e: BaseException) -> ReorganizeError:
    return ReorganizeError(f"{tar} is truncated or corrupt ({type(e).__name__}: {e})", REDOWNLOAD)


class _Readable(Protocol):
    def read(self, n: int, /) -> bytes: ...


class _StreamState(Protocol):
    """What tarfile's reader for ``"r|*"`` (the undocumented ``tarfile._Stream``) exposes."""

    pos: int  # bytes handed on so far (decompressed, for a compressed stream)
    comptype: str  # "tar" for an uncompressed stream


class _Source:
    """The tar file as read (by the one safe-open rule); ``tell()`` is how many of its bytes were consumed."""

    def __init__(self, tar: Path) -> None:
        self.tar = tar
        try:
            self.file = open_regular(tar)
        except OSError as e:
            why = shown(e) if e.errno is None else f"{shown(str(tar))}: {e.strerror}"
            raise ReorganizeError(f"cannot read the tar: {why}",
                                  f"pass the path of the downloaded tar file; {REDOWNLOAD}") from None

    def tell(self) -> int:
        return self.file.tell()

    def close(self) -> None:
        self.file.close()


@dataclass
class _Tar:
    """An open tar and the file it reads (closed together); ``streaming``: opened ``"r|*"``, read front to back."""

    source: _Source
    tf: tarfile.TarFile
    streaming: bool

    def __enter__(self) -> _Tar:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.tf.close()  # a TarFile does not close a file object it was given
        finally:
            self.source.close()

    def members(self) -> Iterator[tarfile.TarInfo]:
        """Iterate members without keeping them all (TarFile.members grows by one TarInfo per member).

        Refuses a compressed stream that expands more than ``BOMB_RATIO`` times (a decompression bomb).
        """
        try:
            while (ti := self.tf.next()) is not None:
                # TarFile.members is undocumented and absent from typeshed; clearing it is what bounds memory.
                self.tf.members.clear()  # type: ignore[attr-defined]
                self.check_ratio(ti.name)
                yield ti
        except _READ_ERRORS as e:
            raise _corrupt(self.source.tar, e) from e

    def expanded(self) -> int | None:
        """Bytes decompressed so far; None for an uncompressed tar (nothing to expand)."""
        if self.streaming:  # "r|*": the pipe-like reader the reorganizer uses
            stream = cast(_StreamState, self.tf.fileobj)
            return stream.pos if stream.comptype != "tar" else None
        if self.tf.fileobj is self.source.file:
            return None
        return self.tf.fileobj.tell()  # GzipFile, LZMAFile, BZ2File: the decompressed position

    def check_ratio(self, member: str) -> None:
        expanded, consumed = self.expanded(), self.source.tell()
        if expanded is not None and expanded > BOMB_AFTER and expanded > BOMB_RATIO * max(consumed, 1):
            raise UnsafeMember(f"refusing {self.source.tar}: {human_bytes(consumed)} of it expanded to "
                               f"{human_bytes(expanded)} (more than {BOMB_RATIO}×; JPEGs barely compress) by member "
                               f"{shown(member)}: a decompression bomb, not a val tar; reading stopped",
                               f"this is not an ImageNet val tar: {REDOWNLOAD}")

    def reader(self, ti: tarfile.TarInfo) -> _Checked:
        """The bytes of regular member ``ti``, checking the decompression ratio after every chunk."""
        reader = self.tf.extractfile(ti)
        if reader is None:  # _Plan.target passes regular members only
            raise UnsafeMember(f"refusing {self.source.tar}: member {shown(ti.name)} is not a regular file",
                               f"this is not an ImageNet val tar: {REDOWNLOAD}")
        return _Checked(reader, self, ti.name)

    def copy(self, ti: tarfile.TarInfo, out: str) -> None:
        """Stream member ``ti`` into ``out``; a short or corrupt member is the tar's fault, a write error the disk's."""
        reader = self.reader(ti)
        try:
            _write_file(out, reader)
        except _READ_ERRORS as e:
            if isinstance(e, OSError) and e.filename == out:
                raise
            raise _corrupt(self.source.tar, e) from e


def _open(tar: Path, *, streaming: bool) -> _Tar:
    """``tar`` opened ``"r|*"`` (streaming: read once, front to back) or ``"r:*"`` (seekable)."""
    source = _Source(tar)
    try:
        if streaming:  # the default bufsize: tarfile._Stream reads the file in pieces of that size
            tf = tarfile.open(name=str(tar), mode="r|*", fileobj=source.file)
        else:
            tf = tarfile.open(name=str(tar), mode="r:*", fileobj=source.file)
    except _READ_ERRORS as e:
        source.close()
        raise _corrupt(tar, e) from e
    return _Tar(source, tf, streaming)


class _Checked:
    """A member's reader that checks the decompression ratio after every chunk."""

    def __init__(self, reader: _Readable, tar: _Tar, name: str) -> None:
        self.reader, self.tar, self.name = reader, tar, name

    def read(self, n: int, /) -> bytes:
        chunk = self.reader.read(n)
        self.tar.check_ratio(self.name)
        return chunk


def reorganize_imagenet_tar(
    tar_path: Path,
    data_root: Path,
    synsets_path: Path | None = None,
    *,
    progress: ProgressArg = "auto",
    required_bytes: int | None = None,
) -> ReorganizeResult:
    """Make ``data_root/imagenet_val`` the class-folder tree of ``tar_path`` (see the module docstring).

    ``synsets_path`` defaults to ``data_root/imagenet_meta/ILSVRC2012_val_synsets.txt``;
    ``required_bytes`` is the free space demanded first (default: about the tar's size).
    """
    t0 = time.monotonic()
    tar, root = Path(tar_path), Path(data_root)
    _require_tar(tar)
    labels = _read_labels(root, synsets_path)
    root.mkdir(parents=True, exist_ok=True)
    dest, partial, marker = root / DEST_NAME, root / f".{DEST_NAME}.partial", root / f".{DEST_NAME}.json"
    tar_size = tar.stat().st_size
    source = {"tar": tar.name, "size": tar_size}

    with FileLock(str(root / f".{DEST_NAME}.lock")):
        state = _read_json(marker)
        if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):  # an empty folder counts as absent
            return _existing(dest, tar, labels, state, source, t0)

        resume = partial.is_dir() and state.get("state") == "partial" and state.get("source") == source
        if partial.exists() and not resume:
            shutil.rmtree(partial)  # ours (by name) and from another tar or an unknown state
        try:
            partial.mkdir(exist_ok=True)
            if required_bytes is None:  # the tar's size (+2% for file-system overhead), less what is already written
                already = sum(_tree_listing(partial).values()) if resume else 0
                required_bytes = max(0, int(tar_size * 1.02) - already)
            check_free_space(root, required_bytes, f"the ImageNet val images from {tar.name}")
            _write_json(marker, {"state": "partial", "source": source})

            plan = _Plan(tar, labels)
            for wnid in set(labels):
                (partial / wnid).mkdir(exist_ok=True)
            bar = resolve_progress(progress)(f"reorganize {tar.name}", len(labels), "img")
            message = ""
            try:
                listing, written = _extract(tar, tar_size, plan, partial, resume, bar)
                variant = plan.finish()
                _move_into_place(partial, dest, listing, labels, variant, resume)
                _write_json(marker, {"state": "complete", "source": source, "variant": variant,
                                     "n_images": len(listing), "listing_sha256": _digest(listing)})
                seconds = time.monotonic() - t0
                n_classes = len({t.split("/", 1)[0] for t in listing})
                message = (f"reorganized {len(listing):,} images of {tar.name} into {n_classes} class folders "
                           f"in {dest} ({seconds:.1f} s)")
                return ReorganizeResult(dest, variant, len(listing), n_classes, written, tuple(plan.missing()),
                                        seconds, False)
            finally:
                bar.close(message)
        except (FetchError, OSError, RuntimeError) as e:
            kept = _kept(e, partial, root)
            if kept is e:
                raise
            raise kept from e


def _require_tar(tar: Path) -> None:
    """Refuse a ``tar`` that is missing or not a regular file, saying what it is and where to get the real one."""
    if tar.exists() and not tar.is_file():
        _Source(tar).close()  # a FIFO, device or folder: refused by the safe-open rule, with what it is
    if not tar.is_file():
        raise ReorganizeError(f"{tar} does not exist",
                              f"download {IMAGENET_VAL_TAR.filename} ({human_bytes(IMAGENET_VAL_TAR.size)}) from "
                              f"https://image-net.org (account needed) and pass its path")


def _read_labels(root: Path, synsets_path: Path | None) -> list[str]:
    """The val labels from ``synsets_path`` (default: the one under ``root/imagenet_meta``), which must exist."""
    path = Path(synsets_path or root / "imagenet_meta" / IMAGENET_META_FILES["val_synsets"].filename)
    if not path.is_file():
        raise ReorganizeError(f"{path} is missing; it labels the val images",
                              Fix.run(fetch_command("--imagenet-map", data_root=root)))
    return read_synsets(path)


def _extract(tar: Path, tar_size: int, plan: _Plan, partial: Path, resume: bool,
             bar: ProgressBar) -> tuple[dict[str, int], int]:
    """Stream every image of ``tar`` into ``partial`` (on a resume, one already there at full size is kept).

    Returns the tree's listing (path -> size) and how many files this run wrote.
    """
    listing: dict[str, int] = {}
    written = 0
    partial_s = str(partial)
    next_note = time.monotonic() + NOTE_EVERY
    with _open(tar, streaming=True) as reader:
        for ti in reader.members():
            if time.monotonic() >= next_note:  # the bar counts images; this line counts members too
                next_note = time.monotonic() + NOTE_EVERY
                _note(bar, f"reorganize {tar.name}: {plan.headers:,} members read, {len(listing):,} "
                           f"images, {human_bytes(reader.source.tell())} of {human_bytes(tar_size)}")
            target = plan.target(ti)
            if target is None:
                continue
            listing[target] = ti.size
            out = f"{partial_s}/{target}"  # plain strings and os calls: per-file overhead dominates
            if not (resume and _size(out) == ti.size):
                reader.copy(ti, out)
                written += 1
            bar.update(1)
    return listing, written


def _move_into_place(partial: Path, dest: Path, listing: dict[str, int], labels: list[str], variant: str,
                     resume: bool) -> None:
    """Make the finished ``partial`` tree hold exactly ``listing``, then rename it to ``dest``."""
    for leftover in set(_tree_listing(partial)) - set(listing) if resume else ():  # stray files
        if not leftover.endswith("/"):
            (partial / leftover).unlink()
    if variant == "face-blurred":  # folders of classes that lost all their images stay empty; drop them
        for wnid in set(labels) - {t.split("/", 1)[0] for t in listing}:
            (partial / wnid).rmdir()
    os.replace(partial, dest)  # replaces an empty `imagenet_val` folder too


def _kept(e: BaseException, partial: Path, root: Path) -> BaseException:
    """``e``, saying that the partial tree was kept, how big it is, and how to resume or remove it."""
    if not partial.is_dir():
        return e
    n_files, size = 0, 0
    for dirpath, _, filenames in os.walk(partial):
        n_files += len(filenames)
        size += sum(os.path.getsize(os.path.join(dirpath, f)) for f in filenames)
    if not n_files:
        return e
    kept = (f"; the partial tree {partial} ({n_files:,} files, {human_bytes(size)}) was kept: a rerun with the same "
            f"tar resumes it (a tar of another size starts over), or remove it to free the space: rm -rf {partial}")
    if isinstance(e, FetchError):
        return type(e)(e.message + kept, e.fix)
    message, fix = explain(e, root)
    return ReorganizeError(message + kept, fix)


def _read_json(path: Path) -> dict:
    """The state marker; one that cannot be read counts as unknown (the partial tree then starts over)."""
    try:
        state = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _existing(dest: Path, tar: Path, labels: list[str], state: dict, source: dict, t0: float) -> ReorganizeResult:
    """``dest`` exists: succeed without touching anything if it equals what the tar gives, else refuse."""
    tree = _tree_listing(dest)
    fast = state.get("state") == "complete" and state.get("source") == source
    if fast and state.get("listing_sha256") == _digest(tree):
        variant = state["variant"]
    else:
        expected = _tar_listing(tar, labels)
        if tree != expected:
            missing = sorted(set(expected) - set(tree))
            extra = sorted(set(tree) - set(expected))
            resized = sorted(k for k in set(tree) & set(expected) if tree[k] != expected[k])
            parts = [f"{len(v):,} {what} (e.g. {', '.join(v[:3])})"
                     for what, v in (("missing", missing), ("unexpected", extra), ("of another size", resized)) if v]
            raise ExistingTreeDiffers(
                f"{dest} already exists and differs from what {tar} gives: {'; '.join(parts)}. "
                f"It was left untouched",
                f"move it aside (mv {dest} {dest}.old) and rerun, or use another --data-root")
        variant = "face-blurred" if any(k.endswith(".jpg") for k in tree) else "official"
    ids = {int(k[-13:-5] if k.endswith(".JPEG") else k[-12:-4]) for k in tree}
    missing_ids = tuple(i for i in range(1, len(labels) + 1) if i not in ids)
    n_classes = len({k.split("/", 1)[0] for k in tree})
    return ReorganizeResult(dest, variant, len(tree), n_classes, 0, missing_ids, time.monotonic() - t0, True)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return -1


def _write_file(path: str, member: _Readable) -> None:
    """Copy a tar member to ``path`` in ``COPY_CHUNK`` pieces: never the whole member in memory."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        while chunk := member.read(COPY_CHUNK):
            view = memoryview(chunk)
            while view:
                try:
                    view = view[os.write(fd, view):]
                except OSError as e:  # the file system (disk full, …): name the file being written
                    e.filename = e.filename or path
                    raise
    finally:
        os.close(fd)


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


# --- repair: re-extract the few images of an existing tree that are missing or differ -------------------
@dataclass(frozen=True)
class RepairResult:
    dest: Path
    repaired: tuple[str, ...]  # tree-relative paths re-extracted (missing, or not the tar's bytes)
    n_checked: int  # images of the tar compared with the tree
    seconds: float


def _same_bytes(path: str, member: _Readable, size: int) -> bool:
    """Is ``path`` a regular file holding exactly the member's bytes (compared chunk by chunk, both streamed)?"""
    try:
        f = open_regular(path)
    except OSError:
        return False
    with f:
        if os.fstat(f.fileno()).st_size != size:
            return False
        while chunk := member.read(COPY_CHUNK):
            if f.read(len(chunk)) != chunk:
                return False
    return True


def repair_imagenet_val(tar_path: Path, data_root: Path, synsets_path: Path | None = None, *,
                        progress: ProgressArg = "auto") -> RepairResult:
    """Re-extract from ``tar_path`` exactly the images of ``data_root/imagenet_val`` that are missing or differ.

    Two streaming passes: the first compares every member with the tree (a file that is absent, not a
    regular file, or not byte-for-byte the member is damaged); the second writes just those members into
    ``.imagenet_val.repair/``, checks each has its member's size, and renames each onto its place. The tar
    must be a complete val tar (as for a reorganize); nothing else in the tree is touched.
    """
    t0 = time.monotonic()
    tar, root = Path(tar_path), Path(data_root)
    dest, staging = root / DEST_NAME, root / f".{DEST_NAME}.repair"
    if not dest.is_dir():
        raise ReorganizeError(f"{dest} does not exist: there is no tree to repair",
                              Fix.run(fetch_command("--reorganize-imagenet", tar, data_root=root)))
    labels = _read_labels(root, synsets_path)
    with FileLock(str(root / f".{DEST_NAME}.lock")):
        plan, damaged, n_checked = _Plan(tar, labels), set(), 0
        bar = resolve_progress(progress)(f"compare {DEST_NAME} with {tar.name}", len(labels), "img")
        try:
            with _open(tar, streaming=True) as reader:
                for ti in reader.members():
                    target = plan.target(ti)
                    if target is None:
                        continue
                    n_checked += 1
                    try:
                        same = _same_bytes(str(dest / target), reader.reader(ti), ti.size)
                    except _READ_ERRORS as e:
                        raise _corrupt(tar, e) from e
                    if not same:
                        damaged.add(ti.name)
                    bar.update(1)
            plan.finish()
        finally:
            bar.close("")
        repaired: list[str] = []
        if damaged:
            if staging.exists():
                shutil.rmtree(staging)  # ours, by name: what an interrupted repair left
            staging.mkdir()
            check_free_space(root, len(damaged) * MAX_IMAGE_BYTES // 64, f"{len(damaged)} images from {tar.name}")
            staged: list[tuple[Path, Path, int]] = []
            plan = _Plan(tar, labels)
            with _open(tar, streaming=True) as reader:
                for ti in reader.members():
                    target = plan.target(ti)
                    if target is None or ti.name not in damaged:
                        continue
                    out = staging / target.replace("/", "__")
                    reader.copy(ti, str(out))
                    if out.stat().st_size != ti.size:
                        raise ReorganizeError(f"{shown(ti.name)} came out of {tar} as {out.stat().st_size:,} "
                                              f"bytes, not {ti.size:,}; nothing was replaced", REDOWNLOAD)
                    staged.append((out, dest / target, ti.size))
            for out, final, _ in staged:  # all verified: now each one replaces its damaged file, atomically
                final.parent.mkdir(exist_ok=True)
                os.replace(out, final)
                repaired.append(final.relative_to(dest).as_posix())
            shutil.rmtree(staging, ignore_errors=True)
        return RepairResult(dest, tuple(sorted(repaired)), n_checked, time.monotonic() - t0)
