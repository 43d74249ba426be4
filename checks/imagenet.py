"""ImageNet val tree and ImageNet metadata: load, then one small function per property.

Every ``check_*`` function returns a list of ``Finding`` (empty = fine) and never raises on bad
data, so the pytest layer, the CLI and the benchmarks all use the same logic.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import reprlib
import shlex
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from checks.scan import (
    JPEG_END,
    MAX_IMAGE_BYTES,
    FileEntry,
    has_jpeg_signature,
    iec,
    is_harmless,
    is_image_name,
    scan_tree,
    shown,
)
from preflight_core.commands import move_aside
from preflight_core.findings import Finding, Fix
from preflight_core.imagenet_files import VAL_NAME, WNID, bad_synset_lines, parse_synsets, val_name
from preflight_core.registry import (
    CLASS_INDEX,
    IMAGENET_VAL_BLURRED,
    META_FILENAMES,
    SIMPLE_LABELS,
    VAL_SYNSETS,
    WNID_TO_LABEL_FILENAME,
    ImageNetMetaFacts,
    ImageNetValFacts,
)
from preflight_core.safe_io import NotARegularFile, open_fd

if TYPE_CHECKING:
    from preflight_core.verify_cache import VerifyCache

# --------------------------------------------------------------------------- metadata

# The largest real metadata file is the 500,000-byte synsets file; 64x that is no metadata file.
# (25 million nested brackets still parse far enough to say "nested too deeply".)
MAX_META_BYTES = 32 * 2**20
_short = reprlib.Repr()
_short.maxlevel, _short.maxstring, _short.maxother, _short.maxlist, _short.maxdict = 3, 60, 60, 4, 4


def short_repr(value: object) -> str:
    """repr for a message: bounded in length and depth, whatever JSON it came from."""
    return _short.repr(value)



@dataclass
class Meta:
    """The four metadata files, parsed as far as they parse."""

    folder: Path
    class_index: dict | None = None
    simple_labels: list | None = None
    synsets: list[str] | None = None
    wnid_to_label: dict | None = None
    missing: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # file name -> why
    raw: dict[str, bytes] = field(default_factory=dict)  # file name -> its bytes (for the pins)

    @cached_property
    def class_index_wnids(self) -> list[str] | None:
        """The wnids in class-id order, or None unless every value is a ["<wnid>", "<label>"] pair."""
        ci = self.class_index
        if not isinstance(ci, dict):
            return None
        try:
            values = [ci[str(i)] for i in range(len(ci))]
        except KeyError:
            return None
        if not all(isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], str)
                   for v in values):
            return None
        return [v[0] for v in values]


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes; OSError / ValueError say why not.

    Never blocks: a FIFO or a device is refused from its type before anything is read.
    """
    try:
        fd, st = open_fd(path)  # the one safe-open rule
    except NotARegularFile as e:
        raise ValueError(f"{e.kind}, not a regular file") from None
    try:
        if st.st_size > limit:
            raise ValueError(f"{iec(st.st_size)}: far larger than this file ever is (at most {iec(limit)})")
        chunks, left = [], st.st_size + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 22))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise ValueError(f"grew past {iec(limit)} while being read")
        return data
    finally:
        os.close(fd)


def _unreadable_why(path: Path, e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "a symlink loop: it never reaches a file"
    if path.is_symlink():
        try:
            return f"a dangling symlink to {shown(os.readlink(path))}"
        except OSError:
            pass
    return f"cannot be read: {type(e).__name__}: {e.strerror or e}"


def load_meta(folder: Path) -> Meta:
    """Parse what parses; a file that cannot be read or parsed is in ``unreadable`` with the reason."""
    meta = Meta(folder)
    for name in META_FILENAMES:
        path = folder / name
        if not os.path.lexists(path):
            meta.missing.append(name)
            continue
        try:
            data = read_regular(path, MAX_META_BYTES)
        except OSError as e:
            meta.unreadable[name] = _unreadable_why(path, e)
            continue
        except ValueError as e:
            meta.unreadable[name] = str(e)
            continue
        meta.raw[name] = data
        try:
            text = data.decode("utf-8")
            value = parse_synsets(text) if name == VAL_SYNSETS else json.loads(text)
        except UnicodeDecodeError as e:
            meta.unreadable[name] = f"not UTF-8 text ({e.reason} at byte {e.start:,})"
            continue
        except RecursionError:
            meta.unreadable[name] = "does not parse: nested too deeply"
            continue
        except json.JSONDecodeError as e:  # its message is short and fixed: "Expecting value", …
            meta.unreadable[name] = f"not valid JSON: {e.msg} at line {e.lineno:,} column {e.colno:,}"
            continue
        except ValueError as e:  # e.g. an integer with 5,000 digits
            meta.unreadable[name] = f"does not parse: {type(e).__name__}: {short_repr(str(e))[1:-1]}"
            continue
        attr = {CLASS_INDEX: "class_index", SIMPLE_LABELS: "simple_labels",
                VAL_SYNSETS: "synsets", WNID_TO_LABEL_FILENAME: "wnid_to_label"}[name]
        setattr(meta, attr, value)
    return meta


def _aside_then(folder: Path, names: list[str], fix: Fix | str) -> Fix:
    """Move these files of the user's aside (never delete them), then run the fetch that replaces them."""
    fix = fix if isinstance(fix, Fix) else Fix(fix)
    moves = [move_aside(folder / n, ".old") for n in names]
    return fix.before(*moves, why="the fetch never overwrites a file that is there")


def check_meta_files_present(meta: Meta, fix: str) -> list[Finding]:
    out = []
    if meta.missing:
        out.append(Finding("metadata files missing", meta.missing, total=len(META_FILENAMES),
                           where=str(meta.folder), fix=fix))
    if meta.unreadable:
        out.append(Finding("metadata files that cannot be read or do not parse",
                           [f"{k} ({shown(v)})" for k, v in meta.unreadable.items()],
                           where=str(meta.folder), fix=_aside_then(meta.folder, list(meta.unreadable), fix)))
    return out


def check_class_index_shape(meta: Meta, facts: ImageNetMetaFacts, fix: str) -> list[Finding]:
    ci = meta.class_index
    where = str(meta.folder / CLASS_INDEX)
    if ci is None:
        return []
    if not isinstance(ci, dict):
        return [Finding(f"class index is a {type(ci).__name__}, expected an object "
                        '{"0": ["n01440764", "tench"], …}', where=shown(where), fix=fix)]
    expected_keys = {str(i) for i in range(facts.n_classes)}
    out = []
    if set(ci) != expected_keys:
        wrong = [shown(k) for k in sorted(set(ci) ^ expected_keys, key=lambda k: (len(k), k))]
        out.append(Finding(f'class index keys are not "0".."{facts.n_classes - 1}" '
                           f"({len(ci):,} keys)", wrong, where=where, fix=fix))
    bad_values = [f"{shown(k)}: {short_repr(v)}" for k, v in ci.items()
                  if not (isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)
                          and WNID.fullmatch(v[0]) and isinstance(v[1], str))]
    if bad_values:
        out.append(Finding('class index values are not ["<wnid>", "<label>"]', bad_values,
                           total=len(ci), where=where, fix=fix))
    return out


def check_class_index_sorted(meta: Meta, fix: str) -> list[Finding]:
    wnids = meta.class_index_wnids
    if wnids is None:
        return []
    out_of_order = [f"{i}: {w}" for i, (w, s) in enumerate(zip(wnids, sorted(wnids))) if w != s]
    if not out_of_order:
        return []
    return [Finding("class index is not in sorted-wnid order (= torchvision ImageFolder class order); "
                    "class ids would not match the folder order", out_of_order, total=len(wnids),
                    where=str(meta.folder / CLASS_INDEX), fix=fix)]


def check_class_index_labels(meta: Meta, facts: ImageNetMetaFacts, fix: str) -> list[Finding]:
    if not isinstance(meta.class_index, dict) or meta.class_index_wnids is None:
        return []
    counts = Counter(v[1] for v in meta.class_index.values())
    dupes = sorted(shown(label) for label, n in counts.items() if n > 1 and label not in facts.known_duplicate_labels)
    out = []
    if dupes:
        out.append(Finding("class index has duplicate labels beyond the known 'crane' and 'maillot'",
                           dupes, where=str(meta.folder / CLASS_INDEX), fix=fix))
    wnid_dupes = sorted(w for w, n in Counter(meta.class_index_wnids).items() if n > 1)
    if wnid_dupes:
        out.append(Finding("class index lists a wnid more than once", wnid_dupes,
                           where=str(meta.folder / CLASS_INDEX), fix=fix))
    return out


def check_simple_labels(meta: Meta, facts: ImageNetMetaFacts, fix: str) -> list[Finding]:
    labels = meta.simple_labels
    where = str(meta.folder / SIMPLE_LABELS)
    if labels is None:
        return []
    if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
        return [Finding("simple labels are not a list of non-empty strings", where=where, fix=fix)]
    out = []
    if len(labels) != facts.n_classes:
        out.append(Finding(f"simple labels has {len(labels):,} entries, expected {facts.n_classes:,}",
                           where=where, fix=fix))
    dupes = sorted(shown(label) for label, n in Counter(labels).items() if n > 1)
    if dupes:
        out.append(Finding("simple labels are not unique (zero-shot prompts would collide)", dupes,
                           total=len(labels), where=where, fix=fix))
    return out


def check_synsets(meta: Meta, facts: ImageNetMetaFacts, fix: str) -> list[Finding]:
    lines = meta.synsets
    where = str(meta.folder / VAL_SYNSETS)
    if lines is None:
        return []
    out = []
    if len(lines) != facts.n_val_images:
        out.append(Finding(f"synsets file has {len(lines):,} lines, expected {facts.n_val_images:,} "
                           "(line i = wnid of val image i)", where=where, fix=fix))
    bad = [f"line {i}: {short_repr(w)}" for i, w in bad_synset_lines(lines)]
    if bad:
        out.append(Finding("synsets file has lines that are not wnids", bad, total=len(lines),
                           where=where, fix=fix))
    counts = Counter(w for w in lines if WNID.fullmatch(w))
    off = sorted(f"{w}: {n}" for w, n in counts.items() if n != facts.per_class)
    if off:
        out.append(Finding(f"synsets file does not list {facts.per_class} images per wnid", off,
                           total=len(counts), where=where, fix=fix))
    return out


def check_same_wnids(meta: Meta, facts: ImageNetMetaFacts, fix: str) -> list[Finding]:
    """Class index, wnid_to_label and synsets name the same wnids; simple labels has one per class."""
    reference = meta.class_index_wnids
    if reference is None:
        return []
    ref = set(reference)
    others = {}
    if isinstance(meta.wnid_to_label, dict):
        others[WNID_TO_LABEL_FILENAME] = set(meta.wnid_to_label)
    if meta.synsets is not None:
        others[VAL_SYNSETS] = set(meta.synsets)
    out = []
    for name, wnids in others.items():
        if wnids != ref:
            diff = [f"{w} only in {CLASS_INDEX}" for w in sorted(ref - wnids)]
            diff += [f"{shown(w)} only in {name}" for w in sorted(wnids - ref)]
            out.append(Finding(f"{name} and {CLASS_INDEX} disagree on the wnids", diff,
                               where=str(meta.folder), fix=fix))
    if isinstance(meta.simple_labels, list) and len(meta.simple_labels) != len(reference):
        out.append(Finding(f"{SIMPLE_LABELS} has {len(meta.simple_labels):,} labels for "
                           f"{len(reference):,} classes in {CLASS_INDEX}", where=str(meta.folder), fix=fix))
    return out


def check_wnid_to_label(meta: Meta, fix: str) -> list[Finding]:
    if not isinstance(meta.wnid_to_label, dict) or meta.class_index_wnids is None:
        return []
    expected = {w: label for w, label in meta.class_index.values()}
    wrong = [f"{w}: {short_repr(meta.wnid_to_label[w])} (class index: {short_repr(label)})"
             for w, label in expected.items() if w in meta.wnid_to_label and meta.wnid_to_label[w] != label]
    if not wrong:
        return []
    return [Finding(f"{WNID_TO_LABEL_FILENAME} disagrees with the class index", wrong, total=len(expected),
                    where=str(meta.folder / WNID_TO_LABEL_FILENAME),
                    fix=_aside_then(meta.folder, [WNID_TO_LABEL_FILENAME], fix))]




def check_pins(meta: Meta, facts: ImageNetMetaFacts, fix: str) -> list[Finding]:
    """The downloaded files are byte-identical to the pinned upstream versions (as read by ``load_meta``)."""
    wrong, names = [], []
    for name, (size, sha256) in facts.pins.items():
        data = meta.raw.get(name)
        if data is None:  # missing or unreadable: test_files_exist_and_parse says which and why
            continue
        if len(data) != size:
            wrong.append(f"{name} ({len(data):,} bytes, pinned {size:,})")
            names.append(name)
        elif hashlib.sha256(data).hexdigest() != sha256:
            wrong.append(f"{name} (sha256 {hashlib.sha256(data).hexdigest()[:12]}…, pinned {sha256[:12]}…)")
            names.append(name)
    if not wrong:
        return []
    return [Finding("metadata files differ from the pinned upstream versions", wrong,
                    total=len(facts.pins), where=str(meta.folder),
                    fix=_aside_then(meta.folder, names, fix))]


# --------------------------------------------------------------------------- val tree


class ValImage(NamedTuple):
    image_id: int
    wnid: str  # the folder it is in
    entry: FileEntry


@dataclass
class ValTree:
    root: Path
    files: list[FileEntry]
    folders: list[str]
    facts: ImageNetValFacts
    unwalkable: list[str] = field(default_factory=list)  # "rel (why)": loops, folders that cannot be listed
    notes: list[str] = field(default_factory=list)  # the verify cache's warnings

    @cached_property
    def class_dirs(self) -> list[str]:
        return [f for f in self.folders if "/" not in f]

    @cached_property
    def _split(self) -> tuple[list[ValImage], list[FileEntry]]:
        """(val images directly in a top-level folder, every other file), in one pass."""
        images, others = [], []
        extension = self.facts.extension
        match, new = VAL_NAME.fullmatch, tuple.__new__
        for f in self.files:
            folder, _, name = f.rel.rpartition("/")
            if name.endswith(extension) and folder and "/" not in folder and (m := match(name)):
                images.append(new(ValImage, (int(m[1]), folder, f)))
            else:
                others.append(f)
        return images, others

    @property
    def images(self) -> list[ValImage]:
        """Files named like val images that sit directly in a top-level folder."""
        return self._split[0]

    @cached_property
    def stray_images(self) -> list[FileEntry]:
        """Image files ImageFolder would load that are not val images where they belong."""
        return [f for f in self._split[1] if is_image_name(f.name)]

    @cached_property
    def image_entries(self) -> list[FileEntry]:
        return [im.entry for im in self.images]

    @cached_property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @cached_property
    def other_files(self) -> list[FileEntry]:
        return [f for f in self._split[1] if not is_image_name(f.name) and not is_harmless(f.name)]


def detect_variant(files: list[FileEntry], official: ImageNetValFacts) -> ImageNetValFacts:
    """The face-blurred release names its images ``.jpg``; the official one ``.JPEG``."""
    counts = Counter(f.name[-4:] for f in files if f.name.startswith("ILSVRC2012_val_"))
    if counts[".jpg"] > counts["JPEG"]:
        blurred = IMAGENET_VAL_BLURRED
        return replace(official, extension=blurred.extension, variant=blurred.variant,
                       max_missing=blurred.max_missing, n_images=official.n_images - blurred.max_missing)
    return official


def scan_val(root: Path, facts: ImageNetValFacts, cache: VerifyCache | None = None) -> ValTree:
    scan = scan_tree(root, cache)
    return ValTree(root, scan.files, scan.folders, detect_variant(scan.files, facts), scan.unwalkable, scan.notes)


def _where(root: Path) -> str:
    return shown(str(root))


def check_not_nested(tree: ValTree, fix: str) -> list[Finding]:
    if any(WNID.fullmatch(d) for d in tree.class_dirs):
        return []
    nested = Counter(f.split("/")[0] for f in tree.folders
                     if f.count("/") == 1 and WNID.fullmatch(f.split("/")[1]))
    if not nested:
        return []
    inner, n = nested.most_common(1)[0]
    root, inside = shlex.quote(str(tree.root)), shlex.quote(str(tree.root / inner))
    return [Finding(f"the tree is one level too deep: {n:,} class folders sit in "
                    f"{shown(tree.root.name)}/{shown(inner)}/ instead of {shown(tree.root.name)}/",
                    where=_where(tree.root),
                    fix=Fix.run(f"mv {inside}/* {root}/", f"rmdir {inside}"))]


def check_class_folder_count(tree: ValTree, fix: str) -> list[Finding]:
    n = len(tree.class_dirs)
    if n == tree.facts.n_classes:
        return []
    return [Finding(f"{n:,} class folders, expected {tree.facts.n_classes:,}", where=_where(tree.root), fix=fix)]


def check_class_folder_names(tree: ValTree, fix: str) -> list[Finding]:
    bad = [shown(d) for d in tree.class_dirs if not WNID.fullmatch(d)]
    if not bad:
        return []
    return [Finding("folders not named like a wnid (n########)", bad, total=len(tree.class_dirs),
                    where=_where(tree.root), fix=fix)]


def check_class_folders_match(tree: ValTree, class_index_wnids: list[str], meta_where: str,
                              fix: str) -> list[Finding]:
    have, want = set(tree.class_dirs), set(class_index_wnids)
    if have == want:
        return []
    diff = [f"{w} (no folder)" for w in sorted(want - have)]
    diff += [f"{shown(w)} (not in class index)" for w in sorted(have - want)]
    return [Finding(f"class folders and {meta_where} disagree", diff, total=len(want),
                    where=_where(tree.root), fix=fix)]


def check_images_per_class(tree: ValTree, fix: str) -> list[Finding]:
    counts = Counter(im.wnid for im in tree.images)
    per_class, allowed_short = tree.facts.per_class, tree.facts.max_missing
    off = [(d, counts.get(d, 0)) for d in tree.class_dirs if counts.get(d, 0) != per_class]
    # The face-blurred release dropped a few images: up to ``max_missing`` classes may be one short.
    short_by_one = [d for d, n in off if n == per_class - 1]
    if allowed_short and len(short_by_one) == len(off) and len(off) <= allowed_short:
        return []
    if not off:
        return []
    return [Finding(f"class folders without exactly {per_class} images", [f"{shown(d)}: {n}" for d, n in off],
                    total=len(tree.class_dirs), where=_where(tree.root), fix=fix)]


def check_total_images(tree: ValTree, fix: str) -> list[Finding]:
    n = len(tree.images)
    if n == tree.facts.n_images:
        return []
    return [Finding(f"{n:,} val images, expected {tree.facts.n_images:,} ({tree.facts.variant} release)",
                    where=_where(tree.root), fix=fix)]


def check_file_names(tree: ValTree, fix: str) -> list[Finding]:
    stray = tree.stray_images
    if not stray:
        return []
    pattern = val_name(1, tree.facts.extension).replace("00000001", "%08d")
    return [Finding(f"image files outside the scheme <wnid>/{pattern} (ImageFolder would evaluate them too)",
                    [f.shown for f in stray], total=len(tree.files), where=_where(tree.root),
                    fix=f"move them out of the tree; {fix}")]


def check_ids(tree: ValTree, fix: str) -> list[Finding]:
    n_ids = tree.facts.n_classes * tree.facts.per_class
    ids = Counter(im.image_id for im in tree.images)
    out = []
    out_of_range = sorted(i for i in ids if not 1 <= i <= n_ids)
    if out_of_range:
        out.append(Finding(f"image ids outside 1..{n_ids:,}", [val_name(i, tree.facts.extension) for i in out_of_range],
                           where=_where(tree.root), fix=fix))
    dupes = sorted(i for i, n in ids.items() if n > 1)
    if dupes:
        where_of = {}
        for im in tree.images:
            if ids[im.image_id] > 1:
                where_of.setdefault(im.image_id, []).append(shown(im.wnid))
        out.append(Finding("image ids present more than once",
                           [f"{val_name(i, tree.facts.extension)} in {', '.join(where_of[i])}" for i in dupes],
                           where=_where(tree.root), fix=fix))
    missing = [i for i in range(1, n_ids + 1) if i not in ids]
    if len(missing) > tree.facts.max_missing:
        allowed = f" ({tree.facts.max_missing} may be absent in the {tree.facts.variant} release)" \
            if tree.facts.max_missing else ""
        out.append(Finding(f"image ids missing{allowed}", [val_name(i, tree.facts.extension) for i in missing],
                           total=n_ids, where=_where(tree.root), fix=fix))
    return out


# "A few" damaged images: at most 1% of the val set (500 of 50,000), and never fewer than 10. Those are
# re-extracted from the tar (`--reorganize-imagenet TAR --repair`); a tree with more, or wrong as a whole
# (class folders, duplicate or foreign ids), gets the whole-tree fix.
FEW_DAMAGED_FRACTION = 0.01
FEW_DAMAGED_MIN = 10


def few_damaged(tree: ValTree, decode_failures: int = 0) -> int | None:
    """How many images a repair from the tar would re-extract, if that is all the tree needs and they are few.

    Damaged = missing ids, unreadable / empty / non-JPEG files, and ``decode_failures`` (from --deep).
    None when the tree is wrong as a whole or too many images are damaged; 0 when none is.
    """
    facts = tree.facts
    n_ids = facts.n_classes * facts.per_class
    ids = Counter(im.image_id for im in tree.images)
    if tree.unwalkable or len(tree.class_dirs) != facts.n_classes or any(n > 1 for n in ids.values()) \
            or any(not 1 <= i <= n_ids for i in ids):
        return None
    missing = max(0, n_ids - len(ids) - facts.max_missing)
    unusable = sum(1 for im in tree.images
                   if im.entry.problem or not im.entry.size or not has_jpeg_signature(im.entry))
    n = missing + unusable + decode_failures
    return n if n <= max(FEW_DAMAGED_MIN, int(n_ids * FEW_DAMAGED_FRACTION)) else None


def check_labels(tree: ValTree, synsets: list[str], fix: str) -> list[Finding]:
    wrong = [f"{shown(im.wnid)}/{im.entry.name} (label {synsets[im.image_id - 1]})" for im in tree.images
             if 1 <= im.image_id <= len(synsets) and synsets[im.image_id - 1] != im.wnid]
    if not wrong:
        return []
    return [Finding(f"images in the wrong class folder (by {VAL_SYNSETS}; "
                    "mislabelled images silently corrupt accuracy)", wrong, total=len(tree.images),
                    where=_where(tree.root), fix=fix)]


def check_other_files(tree: ValTree) -> list[Finding]:
    """Non-image files are ignored by ImageFolder; worth a warning, not a failure."""
    other = [f for f in tree.other_files if not f.problem]  # the unreadable ones fail check_readable
    if not other:
        return []
    return [Finding("non-image files in the tree (ignored by ImageFolder)", [f.shown for f in other],
                    where=_where(tree.root), fix="remove them if they are not yours")]


# --------------------------------------------------------------------------- any image tree (ImageNet, COCO)


def check_walkable(unwalkable: list[str], root: Path) -> list[Finding]:
    """Folder loops, a folder reached twice, folders that cannot be listed: none, or ImageFolder misbehaves."""
    if not unwalkable:
        return []
    return [Finding("folders that cannot be walked once (symlink or mount loops, a folder linked twice, "
                    "unreadable folders)", unwalkable, where=_where(root),
                    fix="remove or replace the symlinks named (ImageFolder follows symlinked folders), "
                        "make the folders readable, then rerun")]


def check_readable(files: list[FileEntry], root: Path, fix: str) -> list[Finding]:
    """Every entry is a regular file that can be read: no FIFO, socket, device, dangling or looping symlink."""
    bad = [f"{f.shown} ({f.problem})" for f in files if f.problem]
    if not bad:
        return []
    return [Finding("entries that are not readable regular files (a data loader would hang or fail on them)",
                    bad, total=len(files), where=_where(root),
                    fix=f"remove or replace them (never a FIFO, socket, device or broken symlink in a data tree); {fix}")]


def check_sizes(files: list[FileEntry], root: Path, fix: str) -> list[Finding]:
    """No image is larger than any real val image could be (``MAX_IMAGE_BYTES``)."""
    big = [f"{f.shown} ({iec(f.size)})" for f in files if f.size > MAX_IMAGE_BYTES]
    if not big:
        return []
    return [Finding(f"files too large to be a val image (over {iec(MAX_IMAGE_BYTES)}; ImageNet and COCO val "
                    "images average 130-160 KiB)", big, total=len(files), where=_where(root), fix=fix)]


def check_not_empty(files: list[FileEntry], root: Path, fix: str) -> list[Finding]:
    empty = [f.shown for f in files if f.size == 0 and not f.problem]
    if not empty:
        return []
    return [Finding("empty files (interrupted copy or extraction?)", empty, total=len(files),
                    where=_where(root), fix=fix)]


def check_jpeg_end(files: list[FileEntry], root: Path) -> list[Finding]:
    """JPEGs end with ff d9; one that does not was probably cut short. A warning: some encoders pad."""
    cut = [f.shown for f in files if f.size and has_jpeg_signature(f) and f.tail != JPEG_END]
    if not cut:
        return []
    return [Finding("JPEGs that do not end with the end-of-image marker (ff d9): cut short by an interrupted "
                    "copy?", cut, total=len(files), where=_where(root), fix="run with --deep to decode them")]


def check_jpeg_signature(files: list[FileEntry], root: Path, fix: str) -> list[Finding]:
    bad = [f"{f.shown} (starts {f.head.hex() or 'empty'})" for f in files
           if f.size and not f.problem and not has_jpeg_signature(f)]
    if not bad:
        return []
    return [Finding("files that do not start with a JPEG signature (ff d8 ff)", bad, total=len(files),
                    where=_where(root), fix=fix)]
