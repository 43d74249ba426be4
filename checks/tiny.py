"""The tiny world: a small, consistent data root (and tiny models) with the facts that go with it.

Product code, not test code: ``pytest --tiny`` checks it, and the self-tests plant faults in it.
Deterministic, so two builds are byte-identical.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from dataclasses import replace
from pathlib import Path

from preflight_core.imagenet_files import derive_wnid_to_label, val_name
from preflight_core.registry import (
    ASSETS,
    CLASS_INDEX,
    SIMPLE_LABELS,
    VAL_SYNSETS,
    WNID_TO_LABEL_FILENAME,
    CocoFacts,
    ImageNetMetaFacts,
    ImageNetValFacts,
)
from preflight_core.world import World

# Real wnids; two share the label "crane" like the real class index (134 and 517).
TINY_CLASSES = (
    ("n01440764", "tench", "tench"),
    ("n01443537", "goldfish", "goldfish"),
    ("n02012849", "crane", "crane (bird)"),
    ("n03126707", "crane", "crane (machine)"),
)
TINY_PER_CLASS = 3
# The golden check's tiny world: each class is a visible (colour, shape), so trained tiny models can
# tell them apart. Red and blue trade places under a BGR swap; the shapes survive grayscale.
TINY_SHAPES = {  # wnid -> (colour, shape); sorted wnids = the class order
    "n01440764": ("red", "circle"),
    "n01443537": ("blue", "circle"),
    "n02012849": ("red", "square"),
    "n03126707": ("blue", "square"),
}
TINY_COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}
# The tiny world's stand-ins for open_clip's IMAGENET_CLASSNAMES and OPENAI_IMAGENET_TEMPLATES.
TINY_CLASSNAMES = tuple(f"{c} {s}" for _, (c, s) in sorted(TINY_SHAPES.items()))
TINY_TEMPLATES = ("a photo of a {}.", "a drawing of a {}.", "a {} shape.", "a picture of the {}.")
# The tiny models' "published" numbers: each trained model's top-1 on the whole tiny val tree through the
# golden recipe (scripts/train_tiny_models.py measures them), and the token ids of one canonical prompt.
TINY_SOURCE = "the tiny world (scripts/train_tiny_models.py, measured on the whole tiny val tree)"
TINY_TOKEN_PROMPT = "a photo of a red circle."
# Canonicalised ("a photo of a red circle"), no BOS, EOS (1), then pads to 64 (not shown).
_SIGLIP_PIN = (6, 5, 21, 13, 20, 25, 20, 5, 20, 11, 5, 6, 5, 23, 10, 9, 5, 8, 14, 23, 8, 17, 10, 1)
_CLIP_PIN = (49406, 320, 1125, 539, 320, 736, 7117, 269, 49407)  # <start_of_text> … <end_of_text>
TINY_TOP1 = {"siglip2_base": 100.0, "siglip2_so400m": 100.0, "clip_b32": 91.67, "clip_l14": 83.33}
TINY_GOLDEN = {name: {"zero_shot_top1": top1, "zero_shot_source": TINY_SOURCE, "token_pin_prompt": TINY_TOKEN_PROMPT,
                      "token_pin_ids": _SIGLIP_PIN if name.startswith("siglip") else _CLIP_PIN}
               for name, top1 in TINY_TOP1.items()}
TINY_COCO_IDS = (139, 285, 632, 724, 776)
WORLD_FILE = "preflight_world.json"


def jpeg_bytes(seed: int, mode: str = "RGB", size: tuple[int, int] = (40, 30), progressive: bool = False) -> bytes:
    """A small real JPEG with noisy content (so it does not compress to nothing)."""
    from PIL import Image

    rng = random.Random(seed)
    channels = {"L": 1, "RGB": 3, "CMYK": 4}[mode]
    im = Image.frombytes(mode, size, rng.randbytes(size[0] * size[1] * channels))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80, progressive=progressive)
    return buf.getvalue()


def shape_image(wnid: str, seed: int, size: tuple[int, int] = (40, 30)):
    """A PIL RGB image of ``wnid``'s coloured shape at a seeded place and size, on a noisy grey ground."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    w, h = size
    im = Image.frombytes("L", size, bytes(rng.randrange(120, 200) for _ in range(w * h))).convert("RGB")
    colour, shape = TINY_SHAPES[wnid]
    side = rng.randrange(min(w, h) // 2, min(w, h) - 4)
    x, y = rng.randrange(0, w - side), rng.randrange(0, h - side)
    draw = ImageDraw.Draw(im)
    (draw.ellipse if shape == "circle" else draw.rectangle)((x, y, x + side - 1, y + side - 1),
                                                            fill=TINY_COLOURS[colour])
    return im


def encode_jpeg(im, mode: str = "RGB", progressive: bool = False) -> bytes:
    buf = io.BytesIO()
    im.convert(mode).save(buf, "JPEG", quality=85, progressive=progressive)
    return buf.getvalue()


def tiny_labels() -> list[str]:
    """Synsets file lines for ids 1..N: a fixed shuffle, so folder order != id order (as in reality)."""
    lines = [wnid for wnid, _, _ in TINY_CLASSES for _ in range(TINY_PER_CLASS)]
    random.Random(0).shuffle(lines)
    return lines


def tiny_meta_files() -> dict[str, bytes]:
    class_index = {str(i): [wnid, label] for i, (wnid, label, _) in enumerate(sorted(TINY_CLASSES))}
    return {
        CLASS_INDEX: json.dumps(class_index).encode(),
        SIMPLE_LABELS: json.dumps([simple for _, _, simple in sorted(TINY_CLASSES)], indent=1).encode(),
        VAL_SYNSETS: "".join(w + "\n" for w in tiny_labels()).encode(),
        WNID_TO_LABEL_FILENAME: json.dumps(derive_wnid_to_label(class_index), indent=1).encode(),
    }


def tiny_image(image_id: int) -> bytes:
    """Its class's shape; mostly RGB, some grayscale, a CMYK one and a progressive one: legit oddities of the real set."""
    im = shape_image(tiny_labels()[image_id - 1], seed=image_id)
    mode = "CMYK" if image_id == 2 else "L" if image_id % 4 == 0 else "RGB"
    return encode_jpeg(im, mode, progressive=image_id == 5)


def tiny_facts() -> dict[str, object]:
    n = len(TINY_CLASSES)
    meta = tiny_meta_files()
    pinned = (CLASS_INDEX, SIMPLE_LABELS, VAL_SYNSETS)
    facts = {name: asset.facts for name, asset in ASSETS.items()}
    facts["imagenet_val"] = ImageNetValFacts(n_classes=n, per_class=TINY_PER_CLASS, n_images=n * TINY_PER_CLASS,
                                             golden_classnames=TINY_CLASSNAMES, golden_templates=TINY_TEMPLATES)
    facts["imagenet_meta"] = replace(
        ImageNetMetaFacts(), n_classes=n, n_val_images=n * TINY_PER_CLASS, per_class=TINY_PER_CLASS,
        pins={f: (len(meta[f]), hashlib.sha256(meta[f]).hexdigest()) for f in pinned})
    facts["coco_val2017"] = CocoFacts(n_images=len(TINY_COCO_IDS))
    return facts


def write_tiny_data(data_root: Path, kaggle_cache: Path) -> None:
    val = data_root / "imagenet_val"
    for image_id, wnid in enumerate(tiny_labels(), 1):
        (val / wnid).mkdir(parents=True, exist_ok=True)
        (val / wnid / val_name(image_id)).write_bytes(tiny_image(image_id))
    meta = data_root / "imagenet_meta"
    meta.mkdir(parents=True, exist_ok=True)
    for name, data in tiny_meta_files().items():
        (meta / name).write_bytes(data)
    # As after `python -m fetchers --coco`: the data root holds a symlink into the kagglehub cache.
    coco = kaggle_cache / "datasets" / "awsaf49" / "coco-2017-dataset" / "versions" / "2" / "coco2017" / "val2017"
    coco.mkdir(parents=True, exist_ok=True)
    for i, coco_id in enumerate(TINY_COCO_IDS):
        (coco / f"{coco_id:012d}.jpg").write_bytes(jpeg_bytes(1000 + coco_id, "L" if i == 1 else "RGB"))
    (data_root / "coco_val2017").symlink_to(coco, target_is_directory=True)


def build_tiny_world(root: Path, models: bool = True, random_weights: frozenset[str] = frozenset()) -> World:
    """Write the tiny world under ``root`` (which must not exist yet or be empty) and return it.

    ``random_weights``: models that get random instead of trained weights, pinned as they are (self-tests).
    """
    root.mkdir(parents=True, exist_ok=True)
    data_root = root / "data" / "raw"
    write_tiny_data(data_root, root / "kagglehub")
    facts = tiny_facts()
    hf_cache = root / "hf" / "hub"
    hf_cache.mkdir(parents=True, exist_ok=True)
    config_dir = None
    if models:
        from checks.tiny_models import write_tiny_models

        config_dir = root / "open_clip_configs"
        facts.update(write_tiny_models(hf_cache, config_dir, random_weights))
    world = World(data_root=data_root, hf_cache=hf_cache, facts=facts, tiny=True, open_clip_config_dir=config_dir)
    (root / WORLD_FILE).write_text(world.to_json())
    return world


def load_tiny_world(root: Path) -> World:
    return World.from_json((root / WORLD_FILE).read_text())
