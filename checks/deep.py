"""--deep: decode every image, remembering what already passed by the identity of its content.

PIL's ``verify()`` does not notice a truncated JPEG; ``load()`` does, also in draft mode, which
decodes at 1/8 scale and so costs a fraction of a full decode. What passed is remembered in the
verify cache (``preflight_core.verify_cache``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from checks.scan import MAX_IMAGE_BYTES, FileEntry, iec, shown
from preflight_core.findings import Finding
from preflight_core.safe_io import NotARegularFile, open_fd
from preflight_core.verify_cache import RACY_NS, VerifyCache, why_failed  # noqa: F401  (RACY_NS: for the self-tests)


def decode(path: str) -> tuple[str | None, tuple[int, int, int, int] | None]:
    """(why it does not decode or None, the identity of the content that was decoded)."""
    from PIL import Image

    try:
        fd, st = open_fd(path)  # the one safe-open rule: a FIFO or a device is refused, never waited on
    except NotARegularFile as e:
        return f"{e.kind}, not a regular file", None
    except OSError as e:
        return f"cannot be opened: {why_failed(e)}", None
    if st.st_size > MAX_IMAGE_BYTES:
        os.close(fd)
        return f"{iec(st.st_size)}, over the {iec(MAX_IMAGE_BYTES)} bound for a val image", None
    identity = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    try:
        f = os.fdopen(fd, "rb")
        f.raw.name = path
        with f, Image.open(f) as im:
            if im.format == "JPEG":
                im.draft(im.mode if im.mode in ("L", "RGB", "CMYK") else "RGB",
                         (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except Image.UnidentifiedImageError:
        return "not an image PIL can identify", identity
    except Exception as e:  # PIL raises many types for corrupt data; all mean "does not decode"
        text = re.sub(r"<_io\.\w+ name=[^>]*>", "the file", str(e))  # never "<_io.BufferedReader name=12>"
        return shown(f"{type(e).__name__}: {text}"), identity
    return None, identity


def decode_kind(root: Path) -> str:
    return f"decode {os.path.realpath(root)}"


def verify_images(root: Path, entries: list[FileEntry], cache: VerifyCache | None) -> tuple[list[str], int]:
    """Decode ``entries`` not already known good; return (problems, number looked at now)."""
    kind = decode_kind(root)
    known = cache.passed(kind, [(e.rel, *e.identity) for e in entries]) if cache else set()
    problems, good = [], []
    for entry in entries:
        if entry.rel in known:
            continue
        if entry.problem:
            problems.append(f"{entry.shown} (not decoded: {entry.problem})")
            continue
        if entry.size > MAX_IMAGE_BYTES:  # bounded work per file: the quick checks name it too
            problems.append(f"{entry.shown} (not decoded: {iec(entry.size)}, over the "
                            f"{iec(MAX_IMAGE_BYTES)} bound for a val image)")
            continue
        err, identity = decode(str(root / entry.rel))
        if err:
            problems.append(f"{entry.shown} ({err})")
        else:  # the identity of what was decoded, not what the scan saw: it may have changed since
            good.append((entry.rel, *identity))
    if cache and good:
        cache.record(kind, good)
    return problems, len(entries) - len(known)


def check_decodes(root: Path, entries: list[FileEntry], cache: VerifyCache | None, fix: str,
                  part: tuple[int, int] = (0, 1)) -> list[Finding]:
    """The --deep check in the shape of the others: images that do not decode, as one finding.

    ``part`` (index, count): decode only that shard of ``entries``; the finding's total is all of them,
    so the report can add up the shards' counts into one line (``checks.report``).
    """
    problems, _ = verify_images(root, shard(entries, *part), cache)
    if not problems:
        return []
    return [Finding("images that do not decode", problems, total=len(entries), where=shown(str(root)), fix=fix)]


def shard(entries: list[FileEntry], index: int, count: int) -> list[FileEntry]:
    return entries[index::count]
