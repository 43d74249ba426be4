"""The ImageNet file formats, one parser each: val image names, wnids, the val synsets file.

The checks and the reorganizer read the same bytes with these functions, so they cannot disagree.
"""

from __future__ import annotations

import re

# No ImageNet or COCO val JPEG comes near this (6.3 GiB / 50,000 and 778 MiB / 5,000: 130-160 KiB on
# average): a bigger file named like an image is something else (a disk image, a tar, zeros). The checks
# flag such a file and the reorganizer refuses such a tar member, by this one bound.
MAX_IMAGE_BYTES = 64 * 2**20

WNID = re.compile(r"n\d{8}")
# ILSVRC2012_val_00000001.JPEG (official tar) or .jpg (face-blurred release)
VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.(JPEG|jpg)")


def val_name(image_id: int, extension: str = ".JPEG") -> str:
    return f"ILSVRC2012_val_{image_id:08d}{extension}"


def parse_synsets(text: str) -> list[str]:
    """Line i of the val synsets file = the wnid of val image i (surrounding blanks ignored)."""
    return [line.strip() for line in text.strip().splitlines()]


def bad_synset_lines(lines: list[str]) -> list[tuple[int, str]]:
    """(line number, text) of every line that is not a wnid."""
    return [(i, w) for i, w in enumerate(lines, 1) if not WNID.fullmatch(w)]


def derive_wnid_to_label(class_index: dict) -> dict[str, str]:
    """``wnid_to_label.json`` from the class index, in class-id order."""
    return {wnid: label for _, (wnid, label) in sorted(class_index.items(), key=lambda kv: int(kv[0]))}
