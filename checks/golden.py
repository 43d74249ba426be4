"""The golden check: does this stack reproduce the published zero-shot top-1 on a sample of ImageNet val?

Plain Python, no pytest. The recipe comes from the libraries themselves: open_clip's
``zero_shot_metadata`` (the curated class names and the 80 OpenAI templates, duplicates kept) and
``build_zero_shot_classifier``; images go through each model's own preprocessing (open_clip's
``preprocess``; the checkpoint's ``AutoProcessor`` for SigLIP 2); SigLIP 2 prompts are canonicalised
as big_vision does and padded to 64 tokens. A world may bring its own class names and templates
(the tiny world does, through ``ImageNetValFacts``).

Pass rule: top-1 ≥ published − (0.5 + 3·SE), SE = sqrt(p(1−p)/n · (N−k)/(N−1)), with n = classes·k
images drawn without replacement from N per class (N = 50 for ImageNet).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import string
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preflight_core.registry import ImageNetValFacts, Library, ModelFacts

VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.(?:JPEG|jpg)")
BATCH = 256
CLASSIFIER_DIR = "zero-shot-classifiers"

# What usually costs accuracy, per library (known costs of recipe faults: docs/design.md, the golden check).
LIKELY_CAUSES: dict[Library, tuple[str, ...]] = {
    Library.TRANSFORMERS: (
        "SigLIP prompts not lower-cased / canonicalised (≈ −4 points: a tokenizer that does not lowercase)",
        "text padding other than padding=\"max_length\", max_length=64 (the pooler reads the last position)",
        "images not through the checkpoint's SiglipImageProcessor (size, resample, mean/std 0.5), or BGR/RGB swapped",
        "val labels: folders consistent with a wrong synsets file, or class names not in sorted-wnid order",
        "numerics on this device (bf16/fp16 overflow, a faulty GPU)",
    ),
    Library.OPEN_CLIP: (
        "images not through open_clip's preprocess (squash instead of resize + centre crop ≈ −1.2; BGR/RGB swapped)",
        "the model built without quick_gelu (use the -quickgelu name with openai weights)",
        "val labels: folders consistent with a wrong synsets file, or class names not in sorted-wnid order",
        "templates or class names other than open_clip's zero_shot_metadata",
        "numerics on this device (bf16/fp16 overflow, a faulty GPU)",
    ),
}


# --------------------------------------------------------------------------- the sample


@dataclass(frozen=True)
class Sample:
    """The first ``per_class`` images (by val id) of each class folder, classes in sorted-wnid order."""

    wnids: tuple[str, ...]
    paths: tuple[Path, ...]
    labels: tuple[int, ...]
    per_class: int
    short: tuple[str, ...] = ()  # wnids with fewer images than per_class: "wnid (n)"

    @property
    def n(self) -> int:
        return len(self.paths)


def val_id(name: str) -> int | None:
    m = VAL_NAME.fullmatch(name)
    return int(m.group(1)) if m else None


def take_sample(val_root: Path, wnids: Sequence[str], per_class: int) -> Sample:
    """Within each folder of ``wnids`` (sorted), the first ``per_class`` images by val id: ``ls | sort | head``."""
    paths, labels, short = [], [], []
    for label, wnid in enumerate(sorted(wnids)):
        folder = Path(val_root) / wnid
        try:
            names = [n for n in os.listdir(folder) if val_id(n) is not None]
        except OSError:
            names = []
        names.sort(key=val_id)
        if len(names) < per_class:
            short.append(f"{wnid} ({len(names)})")
        for name in names[:per_class]:
            paths.append(folder / name)
            labels.append(label)
    return Sample(tuple(sorted(wnids)), tuple(paths), tuple(labels), per_class, tuple(short))


# --------------------------------------------------------------------------- the recipe


@dataclass(frozen=True)
class Recipe:
    classnames: tuple[str, ...]
    templates: tuple[str | Callable[[str], str], ...]
    source: str

    def prompts(self) -> list[str]:
        """Class-major: every template for class 0, then class 1, … (as build_zero_shot_classifier)."""
        return [t.format(c) if isinstance(t, str) else t(c) for c in self.classnames for t in self.templates]


def published_recipe(val_facts: ImageNetValFacts) -> Recipe:
    """The world's class names and templates; the real world's come from open_clip itself."""
    if val_facts.golden_classnames:
        return Recipe(tuple(val_facts.golden_classnames), tuple(val_facts.golden_templates), "the tiny world's facts")
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    return Recipe(tuple(IMAGENET_CLASSNAMES), tuple(OPENAI_IMAGENET_TEMPLATES), "open_clip.zero_shot_metadata")


def project_recipe(wnid_to_label: dict[str, str], wnids: Sequence[str]) -> Recipe:
    """What research code is likely to use: the project's own labels and one template (information only)."""
    return Recipe(tuple(wnid_to_label.get(w, w) for w in sorted(wnids)), ("a photo of a {}.",),
                  "wnid_to_label.json, 'a photo of a {}.'")


_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def canonicalize_siglip(text: str) -> str:
    """big_vision's text canonicalisation for SigLIP: ``_`` to space, lowercase, punctuation out, one space."""
    text = _PUNCT.sub("", text.replace("_", " ").lower())
    return " ".join(text.split())


# --------------------------------------------------------------------------- the model side


class Encoder:
    """One model's tokenisation, image and text encoding, behind the calls open_clip's classifier builder
    makes; one subclass per model library (``encoder_for`` picks it), so nothing here asks which library."""

    default_canonicalize: Callable[[str], str] = staticmethod(lambda t: t)

    def __init__(self, loaded: Any, facts: ModelFacts, canonicalize: Callable[[str], str] | None = None,
                 padding: str = "max_length"):
        self.loaded, self.facts = loaded, facts
        self.canonicalize = canonicalize if canonicalize is not None else self.default_canonicalize
        self.padding = padding

    def tokenize(self, texts: Sequence[str]):
        raise NotImplementedError

    def _text_features(self, ids):
        raise NotImplementedError

    def _image_features(self, pixels):
        raise NotImplementedError

    def encode_text(self, ids, normalize: bool = True):
        import torch.nn.functional as F

        out = self._text_features(ids.to(self.loaded.device))
        return F.normalize(out.float(), dim=-1) if normalize else out

    def encode_image(self, pixels):
        import torch.nn.functional as F

        return F.normalize(self._image_features(pixels.to(self.loaded.device)).float(), dim=-1)

    # ---------------------------------------------------------------- images

    def preprocessing_key(self) -> str:
        """Two models with the same key see the same pixels: their images are decoded once."""
        raise NotImplementedError

    def pixels(self, image):
        """One PIL image (already RGB) through the model's own preprocessing: a CHW tensor."""
        raise NotImplementedError

    # ---------------------------------------------------------------- what top-1 cannot see

    def scale_problems(self) -> list[str]:
        raise NotImplementedError

    def _special_token_problems(self, text: list[int]) -> list[str]:
        return []

    def token_problems(self) -> list[str]:
        """The canonical prompt's token ids against the registry's pin, and their shape."""
        facts = self.facts
        if not facts.token_pin_prompt:
            return []
        ids = [int(i) for i in self.tokenize([facts.token_pin_prompt])[0]]
        out = []
        if len(ids) != facts.context_length:
            out.append(f"{len(ids)} token ids, expected {facts.context_length} (padding=\"max_length\", "
                       f"max_length={facts.context_length})")
        pad = 0
        text = ids[:len(ids) - next((i for i, t in enumerate(reversed(ids)) if t != pad), len(ids))]
        out += self._special_token_problems(text)
        if facts.token_pin_ids and tuple(text) != tuple(facts.token_pin_ids):
            out.append(f"ids {_short(text)} differ from the pin {_short(facts.token_pin_ids)} (a tokenizer or "
                       "canonicalisation change)")
        return [f"token ids of {facts.token_pin_prompt!r}: {p}" for p in out]


class SiglipEncoder(Encoder):
    """transformers' SiglipModel with the checkpoint's processor; prompts canonicalised as big_vision does."""

    default_canonicalize = staticmethod(canonicalize_siglip)

    def tokenize(self, texts: Sequence[str]):
        texts = [self.canonicalize(t) for t in texts]
        return self.loaded.processor.tokenizer(texts, padding=self.padding, max_length=self.facts.context_length,
                                               truncation=True, return_tensors="pt")["input_ids"]

    def _text_features(self, ids):
        out = self.loaded.model.get_text_features(input_ids=ids)
        return getattr(out, "pooler_output", out)  # transformers 5 returns an output object

    def _image_features(self, pixels):
        out = self.loaded.model.get_image_features(pixel_values=pixels)
        return getattr(out, "pooler_output", out)

    def preprocessing_key(self) -> str:
        return "siglip:" + self.loaded.processor.image_processor.to_json_string()

    def pixels(self, image):
        return self.loaded.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"][0]

    def scale_problems(self) -> list[str]:
        import torch

        out = []
        for name in ("logit_scale", "logit_bias"):
            value = getattr(self.loaded.model, name, None)
            if value is None or not bool(torch.isfinite(value).all()):
                out.append(f"SigLIP {name} is {value if value is None else value.tolist()}: expected finite")
        return out

    def _special_token_problems(self, text: list[int]) -> list[str]:
        tok, out = self.loaded.processor.tokenizer, []
        if text and text[0] == tok.bos_token_id:
            out.append("starts with BOS (SigLIP 2 was trained without one)")
        if not text or text[-1] != tok.eos_token_id:
            out.append("does not end with EOS before the padding")
        return out


class OpenClipEncoder(Encoder):
    """open_clip's model, tokenizer and preprocess, as its own zero-shot evaluation uses them."""

    def tokenize(self, texts: Sequence[str]):
        return self.loaded.tokenizer([self.canonicalize(t) for t in texts])

    def _text_features(self, ids):
        return self.loaded.model.encode_text(ids)

    def _image_features(self, pixels):
        return self.loaded.model.encode_image(pixels)

    def preprocessing_key(self) -> str:
        return "open_clip:" + repr(self.loaded.preprocess)

    def pixels(self, image):
        return self.loaded.preprocess(image)

    def scale_problems(self) -> list[str]:
        scale = float(self.loaded.model.logit_scale.detach().exp())
        if not math.isfinite(scale) or abs(scale - 100.0) > 0.01:
            return [f"CLIP exp(logit_scale) is {scale:.4g}, expected 100 (OpenAI's clamp): not the published model"]
        return []


ENCODERS: dict[Library, type[Encoder]] = {Library.TRANSFORMERS: SiglipEncoder, Library.OPEN_CLIP: OpenClipEncoder}


def encoder_for(loaded: Any, facts: ModelFacts, **kw: Any) -> Encoder:
    """The encoder of the library that loads ``facts``."""
    return ENCODERS[facts.library](loaded, facts, **kw)


def _short(ids: Sequence[int], limit: int = 24) -> str:
    ids = list(ids)
    return "[" + ", ".join(map(str, ids[:limit])) + (", …]" if len(ids) > limit else "]")


# --------------------------------------------------------------------------- decoding, once per preprocessing

_PIXELS: dict[tuple, Any] = {}  # (preprocessing key, paths, transform) -> stacked pixel tensor, per process
KEEP_PIXELS_BYTES = 4 << 30  # CLIP's 224² at k = 5 is 3 GB and is kept for the next CLIP; So400m's 384² (8.8 GB) is not


def _decode(path: Path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def pixel_batches(encoder: Encoder, paths: Sequence[Path], workers: int | None = None,
                  transform: Callable[[Any], Any] | None = None) -> Iterator[Any]:
    """The sample's images through ``encoder``'s preprocessing, BATCH at a time, decoded in parallel.

    Each image is decoded once per distinct preprocessing: the pixels are kept (up to
    KEEP_PIXELS_BYTES) for the next model that preprocesses the same way. ``transform``: applied to
    each decoded RGB image first (self-tests plant a BGR swap with it).
    """
    import torch

    key = (encoder.preprocessing_key(), tuple(map(str, paths)), transform)
    if key in _PIXELS:
        kept = _PIXELS[key]
        for start in range(0, len(kept), BATCH):
            yield kept[start:start + BATCH]
        return
    _PIXELS.clear()

    def one(path: Path):
        image = _decode(path)
        return encoder.pixels(transform(image) if transform else image)

    chunks, keep = [], True
    with ThreadPoolExecutor(max_workers=workers or min(16, (os.cpu_count() or 2))) as pool:
        for start in range(0, len(paths), BATCH):
            chunk = torch.stack(list(pool.map(one, paths[start:start + BATCH])))
            keep = keep and chunk.element_size() * chunk[0].numel() * len(paths) <= KEEP_PIXELS_BYTES
            if keep:
                chunks.append(chunk)
            yield chunk
    if keep and chunks:
        _PIXELS[key] = torch.cat(chunks)


def bgr(image):
    """An RGB image with red and blue swapped (what cv2.imread hands a pipeline that expects RGB)."""
    from PIL import Image

    r, g, b = image.split()
    return Image.merge("RGB", (b, g, r))


# --------------------------------------------------------------------------- the text classifier, cached


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for dist in ("torch", "transformers", "open_clip_torch", "tokenizers"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "absent"
    return out


def classifier_key(weights_sha256: str, token_ids, dtype: str, device_type: str,
                   versions: dict[str, str] | None = None) -> str:
    """What the classifier depends on: the weights, every prompt's token ids, dtype, device kind, libraries."""
    import numpy as np

    ids = np.ascontiguousarray(token_ids.cpu().numpy().astype(np.int64))
    tokens = hashlib.sha256(str(ids.shape).encode() + ids.tobytes()).hexdigest()
    body = json.dumps({"weights": weights_sha256, "tokens": tokens, "dtype": dtype, "device": device_type,
                       "versions": versions if versions is not None else library_versions()}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def build_classifier(encoder: Encoder, recipe: Recipe, cache_dir: Path | None, weights_sha256: str,
                     dtype: str = "float32"):
    """(classifier [dim, classes], cached?) through ``open_clip.build_zero_shot_classifier``; kept on disk."""
    import open_clip
    import torch
    from safetensors.torch import load_file, save_file

    prompts = recipe.prompts()
    ids = encoder.tokenize(prompts)
    rows = {p: i for i, p in enumerate(prompts)}  # the classifier builder asks again, prompt by prompt
    key = classifier_key(weights_sha256, ids, dtype, torch.device(encoder.loaded.device).type)
    path = Path(cache_dir) / CLASSIFIER_DIR / f"{key}.safetensors" if cache_dir else None
    if path is not None and path.is_file():
        try:
            return load_file(str(path))["classifier"].to(encoder.loaded.device), True
        except Exception:  # a damaged cache file: build it again (and replace it below)
            pass
    with torch.inference_mode():
        classifier = open_clip.build_zero_shot_classifier(
            encoder, lambda texts: ids[[rows[t] for t in texts]], recipe.classnames, recipe.templates,
            num_classes_per_batch=max(1, 4096 // len(recipe.templates)), device=encoder.loaded.device)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            save_file({"classifier": classifier.detach().float().cpu().contiguous()}, str(tmp))
            os.replace(tmp, path)
        except OSError:
            pass  # an unwritable cache costs time next run, nothing else
    return classifier, False


# --------------------------------------------------------------------------- the verdict


def standard_error(published_pct: float, n: int, per_class: int, per_class_total: int) -> float:
    """SE of top-1 (a fraction) of n images drawn without replacement, per_class of per_class_total per class."""
    p = published_pct / 100
    fpc = (per_class_total - per_class) / (per_class_total - 1) if per_class_total > 1 else 0.0
    return math.sqrt(max(p * (1 - p), 0.0) / max(n, 1) * max(fpc, 0.0))


def allowed_drop(published_pct: float, n: int, per_class: int, per_class_total: int = 50) -> float:
    """Points below published that still pass: 0.5 + 3·SE."""
    return 0.5 + 3 * 100 * standard_error(published_pct, n, per_class, per_class_total)


@dataclass
class ZeroShot:
    top1: float
    n: int
    per_class: int
    published: float
    source: str
    allowed_drop: float
    seconds: float
    classifier_cached: bool
    top1_project_labels: float | None = None
    n_classes: int = 0
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.top1 >= self.published - self.allowed_drop

    @property
    def suspiciously_high(self) -> bool:
        return self.top1 > self.published + self.allowed_drop

    def as_json(self) -> dict:
        return {"top1": round(self.top1, 2), "n": self.n, "per_class": self.per_class, "published": self.published,
                "source": self.source, "allowed_drop": round(self.allowed_drop, 2), "seconds": round(self.seconds, 2),
                "classifier_cached": self.classifier_cached,
                "top1_project_labels": None if self.top1_project_labels is None else round(self.top1_project_labels, 2)}

    def line(self) -> str:
        cached = ", classifier cached" if self.classifier_cached else ""
        return (f"zero-shot {self.top1:.1f}% on {self.n:,} ({self.per_class}/class), published {self.published:.1f}% "
                f"({re.split(r'[,(:]', self.source)[0].strip() or '?'}), −{self.allowed_drop:.1f} allowed, "
                f"{self.seconds:.1f} s on {self.device}{cached}")

    def failure(self, library: Library) -> str:
        chance = 100 / self.n_classes if self.n_classes else 0
        near_chance = f"; near chance ({chance:.1f}%): labels, class order, or not the published model" \
            if self.top1 < 3 * chance else ""
        causes = "; ".join(LIKELY_CAUSES.get(library, ()))
        return (f"zero-shot top-1 {self.top1:.1f}% on {self.n:,} images ({self.per_class}/class) is "
                f"{self.published - self.top1:.1f} points below the published {self.published:.1f}% "
                f"({self.source}); {self.allowed_drop:.1f} allowed{near_chance}. Likely causes: {causes}")

    def warning(self) -> str:
        return (f"zero-shot top-1 {self.top1:.1f}% is {self.top1 - self.published:.1f} points above the published "
                f"{self.published:.1f}%: a val tree that is not ImageNet val (a train split?) or another model")


def top1(encoder: Encoder, classifiers: Sequence[Any], batches: Iterator[Any], labels: Sequence[int],
         progress: Callable[[int], None] | None = None) -> list[float]:
    """Top-1 (percent) of each classifier: every image encoded once, batch by batch, on the model's device."""
    import torch

    correct, seen = [0] * len(classifiers), 0
    target = torch.as_tensor(labels)
    with torch.inference_mode():
        for pixels in batches:
            feats = encoder.encode_image(pixels)
            truth = target[seen:seen + len(pixels)]
            for i, classifier in enumerate(classifiers):
                correct[i] += int(((feats @ classifier.float()).argmax(dim=-1).cpu() == truth).sum())
            seen += len(pixels)
            if progress:
                progress(len(pixels))
    return [100 * c / max(len(labels), 1) for c in correct]


def zero_shot(encoder: Encoder, sample: Sample, recipe: Recipe, val_facts: ImageNetValFacts, cache_dir: Path | None,
              weights_sha256: str, project: Recipe | None = None, transform: Callable | None = None,
              progress: Callable[[int], None] | None = None) -> ZeroShot:
    """The golden measurement: the classifier (cached), the sample's images, top-1 and the allowed drop."""
    t0 = time.perf_counter()
    facts = encoder.facts
    classifier, cached = build_classifier(encoder, recipe, cache_dir, weights_sha256)
    classifiers = [classifier]
    if project is not None:
        classifiers.append(build_classifier(encoder, project, cache_dir, weights_sha256)[0])
    accs = top1(encoder, classifiers, pixel_batches(encoder, sample.paths, transform=transform), sample.labels,
                progress)
    acc, project_acc = accs[0], (accs[1] if project is not None else None)
    drop = allowed_drop(facts.zero_shot_top1, sample.n, sample.per_class, val_facts.per_class)
    return ZeroShot(acc, sample.n, sample.per_class, facts.zero_shot_top1, facts.zero_shot_source, drop,
                    time.perf_counter() - t0, cached, project_acc, len(sample.wnids), str(encoder.loaded.device))
