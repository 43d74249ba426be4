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

from filelock import FileLock

from fetchers.download import ProgressArg, check_free_space, resolve_progress
from fetchers.errors import FetchError, explain, fetch_command
from preflight_core.findings import Finding, Fix, human_bytes
from preflight_core.imagenet_files import bad_synset_lines, parse_synsets
from preflight_core.registry import ASSETS, IMAGENET_META_FILES, IMAGENET_VAL_BLURRED, IMAGENET_VAL_TAR

DEST_NAME = ASSETS["imagenet_val"].location  # under the data root
FLAT = re.compile(r"ILSVRC2012_val_(\d{8})\.JPEG")
BLURRED = re.compile(r"val_blurred/(n\d{8})/ILSVRC2012_val_(\d{8})\.jpg")
BLURRED_DIR = re.compile(r"val_blurred(/n\d{8})?")
MAX_PROBLEMS = 100  # stop reading a tar that is clearly not an ImageNet val tar
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
                              f"move it aside (mv {path} {path}.old) and run python -m fetchers --imagenet-map")
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

    def __post_init__(self) -> None:
        self.seen = bytearray(len(self.labels) + 1)

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
            raise UnsafeMember(f"refusing {self.tar}: member {name!r} has an unsafe path (absolute or '..'); "
                               f"it was not extracted", f"this is not an ImageNet val tar: {REDOWNLOAD}")
        if not (ti.isreg() or ti.isdir()):
            kind = ("a symlink" if ti.issym() else "a hard link" if ti.islnk()
                    else "a device, FIFO or other special file")
            raise UnsafeMember(f"refusing {self.tar}: member {name!r} is {kind}; only regular image files are "
                               f"expected", f"this is not an ImageNet val tar: {REDOWNLOAD}")
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

    def finish(self) -> None:
        """Raise unless the whole tar was as expected."""
        allowed = IMAGENET_VAL_BLURRED.max_missing if self.variant == "face-blurred" else 0
        missing = self.missing()
        if len(missing) > allowed:
            kind = f"missing images (at most {allowed} may be; a tar cut short looks like this)"
            self.problems[kind] = [f"id {i}" for i in missing[:MAX_EXAMPLES]]
            self.counts[kind] = len(missing)
            self.of_all.add(kind)
        if self.problems:
            raise self.error()

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
    with _open(tar, "r:*") as tf:
        for ti in _members(tf, tar):
            if (target := plan.target(ti)) is not None:
                listing[target] = ti.size
    plan.finish()
    return listing


_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)


def _corrupt(tar: Path, e: BaseException) -> ReorganizeError:
    return ReorganizeError(f"{tar} is truncated or corrupt ({type(e).__name__}: {e})", REDOWNLOAD)


def _open(tar: Path, mode: str) -> tarfile.TarFile:
    try:
        return tarfile.open(tar, mode)  # default bufsize: a large one makes _Stream copy its buffer per read
    except _READ_ERRORS as e:
        raise _corrupt(tar, e) from e


def _members(tf: tarfile.TarFile, tar: Path) -> Iterator[tarfile.TarInfo]:
    """Iterate members without keeping them all (TarFile.members grows by one TarInfo per member)."""
    try:
        while (ti := tf.next()) is not None:
            tf.members.clear()
            yield ti
    except _READ_ERRORS as e:
        raise _corrupt(tar, e) from e


def _read(tf: tarfile.TarFile, ti: tarfile.TarInfo, tar: Path) -> bytes:
    try:
        return tf.extractfile(ti).read()
    except _READ_ERRORS as e:
        raise _corrupt(tar, e) from e


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
    synsets_path = Path(synsets_path or root / "imagenet_meta" / IMAGENET_META_FILES["val_synsets"].filename)
    if not tar.is_file():
        raise ReorganizeError(f"{tar} does not exist",
                              f"download {IMAGENET_VAL_TAR.filename} ({human_bytes(IMAGENET_VAL_TAR.size)}) from "
                              f"https://image-net.org (account needed) and pass its path")
    if not synsets_path.is_file():
        raise ReorganizeError(f"{synsets_path} is missing; it labels the val images",
                              Fix.run(fetch_command("--imagenet-map", data_root=root)))
    labels = read_synsets(synsets_path)
    root.mkdir(parents=True, exist_ok=True)
    dest, partial, marker = root / DEST_NAME, root / f".{DEST_NAME}.partial", root / f".{DEST_NAME}.json"
    source = {"tar": tar.name, "size": tar.stat().st_size}

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
                required_bytes = max(0, int(source["size"] * 1.02) - already)
            check_free_space(root, required_bytes, f"the ImageNet val images from {tar.name}")
            _write_json(marker, {"state": "partial", "source": source})

            plan = _Plan(tar, labels)
            listing: dict[str, int] = {}
            written = 0
            partial_s = str(partial)
            for wnid in set(labels):
                (partial / wnid).mkdir(exist_ok=True)
            bar = resolve_progress(progress)(f"reorganize {tar.name}", len(labels), "img")
            message = ""
            try:
                with _open(tar, "r|*") as tf:
                    for ti in _members(tf, tar):
                        target = plan.target(ti)
                        if target is None:
                            continue
                        listing[target] = ti.size
                        out = f"{partial_s}/{target}"  # plain strings and os calls: per-file overhead dominates
                        if not (resume and _size(out) == ti.size):
                            _write_file(out, _read(tf, ti, tar))
                            written += 1
                        bar.update(1)
                plan.finish()
                for leftover in set(_tree_listing(partial)) - set(listing) if resume else ():  # stray files
                    if not leftover.endswith("/"):
                        (partial / leftover).unlink()
                if plan.variant == "face-blurred":  # folders of classes that lost all their images stay empty; drop them
                    for wnid in set(labels) - {t.split("/", 1)[0] for t in listing}:
                        (partial / wnid).rmdir()
                os.replace(partial, dest)  # replaces an empty `imagenet_val` folder too
                _write_json(marker, {"state": "complete", "source": source, "variant": plan.variant,
                                     "n_images": len(listing), "listing_sha256": _digest(listing)})
                seconds = time.monotonic() - t0
                n_classes = len({t.split("/", 1)[0] for t in listing})
                message = (f"reorganized {len(listing):,} images of {tar.name} into {n_classes} class folders "
                           f"in {dest} ({seconds:.1f} s)")
                return ReorganizeResult(dest, plan.variant, len(listing), n_classes, written, tuple(plan.missing()),
                                        seconds, False)
            finally:
                bar.close(message)
        except (FetchError, OSError, RuntimeError) as e:
            kept = _kept(e, partial, root)
            if kept is e:
                raise
            raise kept from e


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


def _write_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)
