"""Synthetic ImageNet val tars (flat official layout or face-blurred class folders) for tests and benches."""

from __future__ import annotations

import io
import random
import signal
import tarfile
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from pathlib import Path


@cache
def tiny_jpeg(size: int = 8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 60)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def member_name(image_id: int, wnid: str, variant: str = "official") -> str:
    if variant == "official":
        return f"ILSVRC2012_val_{image_id:08d}.JPEG"
    return f"val_blurred/{wnid}/ILSVRC2012_val_{image_id:08d}.jpg"


def write_val_tar(
    path: Path,
    labels: Sequence[str],
    *,
    variant: str = "official",
    ids: Iterable[int] | None = None,
    seed: int | None = 0,
    body: bytes | Callable[[int], bytes] | None = None,
    extra: Sequence[tuple[tarfile.TarInfo, bytes | None]] = (),
    compression: str = "",
) -> Path:
    """A val tar holding ``ids`` (default: all of 1..len(labels)) in shuffled order (``seed=None``: sorted).

    Each image body is ``body`` (default: one tiny real JPEG); ``extra`` members are appended as given;
    ``variant="face-blurred"`` writes ``val_blurred/<wnid>/…jpg`` with folder members, as the real release.
    """
    ids = list(range(1, len(labels) + 1) if ids is None else ids)
    if seed is not None:
        random.Random(seed).shuffle(ids)
    data = tiny_jpeg() if body is None else body  # or a function of the image id
    with tarfile.open(path, f"w:{compression}" if compression else "w", format=tarfile.GNU_FORMAT) as tf:
        if variant != "official":
            for name in ["val_blurred", *(f"val_blurred/{w}" for w in sorted(set(labels)))]:
                ti = tarfile.TarInfo(name)
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
        for image_id in ids:
            ti = tarfile.TarInfo(member_name(image_id, labels[image_id - 1], variant))
            member = data(image_id) if callable(data) else data
            ti.size, ti.mode, ti.mtime = len(member), 0o644, 1_300_000_000
            tf.addfile(ti, io.BytesIO(member))
        for ti, content in extra:
            tf.addfile(ti, io.BytesIO(content) if content is not None else None)
    return path


def small_labels(n_classes: int = 4, per_class: int = 3, seed: int = 1) -> list[str]:
    """A synsets list (line i = wnid of image i) for a tiny val set, classes interleaved as in the real file."""
    wnids = [f"n{1440764 + 1000 * k:08d}" for k in range(n_classes)]
    labels = [w for w in wnids for _ in range(per_class)]
    random.Random(seed).shuffle(labels)
    return labels


def ctrl_c_at_write(write, n: int = 5):
    """``write`` (the reorganizer's ``_write_file``) that raises SIGINT as the ``n``-th image is written,
    as if the user pressed Ctrl-C mid-reorganize."""
    count = [0]

    def write_then_ctrl_c(path, data):
        count[0] += 1
        if count[0] == n:
            signal.raise_signal(signal.SIGINT)
        write(path, data)

    return write_then_ctrl_c
