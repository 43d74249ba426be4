"""The four models: is the cache complete, are the blobs intact, does it load offline, does it run.

Plain Python, no pytest. ``cache_report`` and ``verify_blobs`` read the Hugging Face cache layout
themselves (``models--org--name/{refs/main, snapshots/<rev>/<file> -> ../../blobs/<etag>}``) and
import neither torch nor transformers; ``load_model`` and ``forward_check`` use the real libraries,
always offline.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.findings import Finding
from core.hashing import blob_digest
from core.hf_cache import cache_report, fix_for
from core.registry import ModelFacts

SIGLIP_TOKENIZERS = ("GemmaTokenizer", "GemmaTokenizerFast", "Siglip2Tokenizer")
SAMPLE_TEXTS = ("a photo of a cat", "A Diagram Of A Dog")

def verify_blobs(snapshot: Path, files: Iterable[str | tuple[str, ...]], cache: Path | None = None) -> list[str]:
    """Hash the blob behind each present file of ``files`` and compare it with the blob's name.

    LFS blobs are named by their sha256, other files by their git blob sha1. Blobs that passed are
    remembered in the sqlite file ``cache`` by (path, size, mtime_ns), so an unchanged cache
    re-verifies without reading a byte. Absent files are ``cache_report``'s business and skipped.
    """
    from checks.deep import VerifyCache

    snapshot = Path(snapshot)
    repo_id = snapshot.parent.parent.name.removeprefix("models--").replace("--", "/", 1)
    fix = fix_for(repo_id)
    names = [n for e in files for n in ((e,) if isinstance(e, str) else e) if os.path.lexists(snapshot / n)]
    problems: list[str] = []
    todo: list[tuple[str, Path, tuple[str, int, int]]] = []
    for name in names:
        link = snapshot / name
        if not link.is_symlink():
            problems.append(Finding(f"{repo_id}: {name} cannot be verified: it is a plain file, not a symlink to a "
                                    "blob named by its hash (a cache written without symlinks)",
                                    where=str(snapshot), fix=f"delete it and re-fetch: {fix}").message())
            continue
        if not link.exists():
            continue  # dangling: reported by cache_report
        blob = link.resolve()
        st = blob.stat()
        todo.append((name, blob, (str(blob), st.st_size, st.st_mtime_ns)))
    vc = VerifyCache(Path(cache)) if cache else None
    try:
        known = vc.passed("hf-blob", [k for _, _, k in todo]) if vc else set()
        good = []
        for name, blob, key in todo:
            if key[0] in known:
                continue
            got = blob_digest(blob)
            if got is None:
                problems.append(Finding(f"{repo_id}: {name} cannot be verified: its blob name {blob.name!r} is "
                                        "not a sha256 or git-sha1 etag", where=str(blob), fix=fix).message())
            elif got[1] != blob.name:
                problems.append(Finding(f"{repo_id}: {name} is corrupt: {got[0]} of the blob is {got[1][:16]}… "
                                        f"but the Hub's etag is {blob.name[:16]}…",
                                        where=str(blob), fix=f"delete the blob and re-fetch: {fix}").message())
            else:
                good.append(key)
        if vc and good:
            vc.record("hf-blob", good)
    finally:
        if vc:
            vc.close()
    return problems


# --------------------------------------------------------------------------- offline loading


class ModelLoadError(RuntimeError):
    """The model did not load, or loaded as the wrong thing. The message says where and how to fix it."""


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """No network for the duration, whoever imported huggingface_hub first.

    huggingface_hub reads HF_HUB_OFFLINE once, at the first import of ``huggingface_hub.constants``,
    and transformers and open_clip ask ``constants.is_offline_mode()`` at call time. Setting the
    env var alone is not enough when a fetcher imported the hub earlier in this process, and
    leaving offline mode on for good would break ``--fetch-missing`` later in the same process;
    so the flag is switched on here and put back afterwards.
    """
    env_before = os.environ.get("HF_HUB_OFFLINE")
    imported_before = "huggingface_hub.constants" in sys.modules
    os.environ["HF_HUB_OFFLINE"] = "1"
    from huggingface_hub import constants

    if imported_before:
        flag_before = constants.HF_HUB_OFFLINE
    else:  # it has just read our "1"; afterwards it must say what the user's environment said
        flag_before = (env_before or os.environ.get("TRANSFORMERS_OFFLINE") or "").upper() in {"1", "ON", "YES", "TRUE"}
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = flag_before
        if env_before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = env_before


@contextlib.contextmanager
def open_clip_configs(config_dir: Path | None) -> Iterator[None]:
    """open_clip's model-config registry with ``config_dir`` added, restored afterwards.

    ``open_clip.add_model_config`` is process-global and has no undo: after it, the tiny ViTs would
    shadow the real ``ViT-B-32-quickgelu`` for every later load in the process.
    """
    import open_clip
    from open_clip import factory

    paths, configs = list(factory._MODEL_CONFIG_PATHS), dict(factory._MODEL_CONFIGS)  # rescans mutate in place
    if config_dir is not None:
        open_clip.add_model_config(Path(config_dir))
    try:
        yield
    finally:
        factory._MODEL_CONFIG_PATHS[:] = paths
        factory._MODEL_CONFIGS = configs


@dataclass
class Loaded:
    facts: ModelFacts
    device: str
    model: Any
    processor: Any = None  # SiglipProcessor (transformers)
    preprocess: Any = None  # eval image transform (open_clip)
    tokenizer: Any = None
    weights_file: Path | None = None
    load_seconds: float = 0.0
    param_bytes: int = 0
    cuda_max_allocated: int | None = None
    classes: dict[str, str] = field(default_factory=dict)


_LOADED: dict[tuple[str, str, str, str], Loaded | ModelLoadError] = {}


def clear_loaded() -> None:
    """Forget every model loaded in this process (frees them once nothing else holds them)."""
    _LOADED.clear()


def _where(facts: ModelFacts, hf_cache: Path) -> str:
    rep = cache_report(facts, hf_cache)
    return str(rep.snapshot or rep.repo_dir)


def _first_line(e: BaseException, limit: int = 400) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:limit]}{'…' if len(text) > limit else ''}"


def _to_device(model: Any, facts: ModelFacts, device: str) -> Any:
    try:
        return model.to(device).eval()
    except Exception as e:  # CUDA out of memory, a broken device, …
        raise ModelLoadError(f"{facts.repo_id}: loaded, but moving it to {device} failed ({_first_line(e)}) — fix: "
                             "free GPU memory (nvidia-smi) or select fewer models; see the gpu check") from e


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers draws a "Loading weights" bar per model: noise in a checklist."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _load_siglip(facts: ModelFacts, hf_cache: Path, device: str) -> Loaded:
    from transformers import AutoModel, AutoProcessor

    where, fix = _where(facts, hf_cache), fix_for(facts.repo_id)
    try:
        with _no_progress_bars():
            model, info = AutoModel.from_pretrained(facts.repo_id, cache_dir=str(hf_cache), local_files_only=True,
                                                    output_loading_info=True)
    except Exception as e:
        raise ModelLoadError(Finding(f"{facts.repo_id}: AutoModel.from_pretrained failed offline ({_first_line(e)})",
                                     where=where, fix=fix).message()) from e
    # transformers only logs weights absent from the checkpoint and initialises them at random.
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        blob = Path(where, "model.safetensors").resolve()
        raise ModelLoadError(Finding(f"{facts.repo_id}: model.safetensors lacks weights the model needs (they would "
                                     "be random)", missing, where=where, fix=f"rm {blob} && {fix}").message())
    try:
        processor = AutoProcessor.from_pretrained(facts.repo_id, cache_dir=str(hf_cache), local_files_only=True)
    except Exception as e:
        raise ModelLoadError(Finding(f"{facts.repo_id}: AutoProcessor.from_pretrained failed offline "
                                     f"({_first_line(e)})", where=where, fix=fix).message()) from e
    tokenizer = getattr(processor, "tokenizer", None)
    image_processor = getattr(processor, "image_processor", None)
    classes = {"model": type(model).__name__, "processor": type(processor).__name__,
               "tokenizer": type(tokenizer).__name__, "image_processor": type(image_processor).__name__}
    wrong = []
    if classes["model"] != "SiglipModel":
        model_type = getattr(model.config, "model_type", "?")
        wrong.append(f"AutoModel gave {classes['model']} (config.json model_type {model_type!r}), expected "
                     "SiglipModel: not a SigLIP2 FixRes checkpoint")
    if classes["processor"] != "SiglipProcessor":
        wrong.append(f"AutoProcessor gave {classes['processor']}, expected SiglipProcessor "
                     "(preprocessor_config.json or its processor_class missing)")
    else:
        if classes["tokenizer"] not in SIGLIP_TOKENIZERS:
            wrong.append(f"tokenizer is {classes['tokenizer']}, expected GemmaTokenizer "
                         "(tokenizer_config.json missing or names another tokenizer_class)")
        if not classes["image_processor"].startswith("SiglipImageProcessor"):
            wrong.append(f"image processor is {classes['image_processor']}, expected SiglipImageProcessor")
    if wrong:
        raise ModelLoadError(Finding(f"{facts.repo_id}: loaded as the wrong classes", wrong, where=where,
                                     fix=fix).message())
    model = _to_device(model, facts, device)
    snapshot = cache_report(facts, hf_cache).snapshot
    weights = snapshot / "model.safetensors" if snapshot else None
    return Loaded(facts, device, model, processor=processor, tokenizer=tokenizer, weights_file=weights,
                  classes=classes)


def _load_open_clip(facts: ModelFacts, hf_cache: Path, device: str, config_dir: Path | None) -> Loaded:
    where, fix = _where(facts, hf_cache), fix_for(facts.repo_id)
    if not facts.open_clip_name:
        raise ModelLoadError(f"{facts.repo_id}: the registry gives no open_clip model name — fix: add open_clip_name")
    with open_clip_configs(config_dir):
        import open_clip

        try:
            # pretrained="openai" resolves, via open_clip's pretrained table, to hf_hub
            # "timm/vit_*_clip_224.openai/" and hf_hub_download(open_clip_model.safetensors, else
            # open_clip_pytorch_model.bin, cache_dir=...); it raises if neither is there.
            model, _, preprocess = open_clip.create_model_and_transforms(
                facts.open_clip_name, pretrained="openai", cache_dir=str(hf_cache), device="cpu",
                force_quick_gelu=True)
            tokenizer = open_clip.get_tokenizer(facts.open_clip_name)
        except Exception as e:
            raise ModelLoadError(Finding(f"{facts.repo_id}: open_clip.create_model_and_transforms("
                                         f"{facts.open_clip_name!r}, pretrained='openai') failed offline "
                                         f"({_first_line(e)})", where=where, fix=fix).message()) from e
    rep = cache_report(facts, hf_cache)
    weights = rep.snapshot / rep.present[0] if rep.snapshot and rep.present else None
    classes = {"model": type(model).__name__, "tokenizer": type(tokenizer).__name__}
    return Loaded(facts, device, _to_device(model, facts, device), preprocess=preprocess, tokenizer=tokenizer,
                  weights_file=weights, classes=classes)


def load_model(facts: ModelFacts, hf_cache: Path, device: str = "cuda",
               open_clip_config_dir: Path | None = None) -> Loaded:
    """Load the model offline from ``hf_cache`` onto ``device``, once per process; raises ModelLoadError.

    A failure is remembered too, so many checks on one broken model do not reload it each time.
    """
    key = (facts.repo_id, str(Path(hf_cache).resolve()), device, str(open_clip_config_dir or ""))
    if key in _LOADED:
        hit = _LOADED[key]
        if isinstance(hit, ModelLoadError):
            raise hit
        return hit
    try:
        with hub_offline():
            import torch

            cuda = device.startswith("cuda")
            if cuda:
                if not torch.cuda.is_available():
                    raise ModelLoadError(f"{facts.repo_id}: cannot load onto {device}: torch.cuda.is_available() is "
                                         "False — fix: see the gpu check (probe_gpu), or pass --device cpu")
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            if facts.library == "transformers":
                loaded = _load_siglip(facts, Path(hf_cache), device)
            elif facts.library == "open_clip":
                loaded = _load_open_clip(facts, Path(hf_cache), device, open_clip_config_dir)
            else:
                raise ModelLoadError(f"{facts.repo_id}: unknown library {facts.library!r} in the registry")
            if cuda:
                torch.cuda.synchronize(device)
                loaded.cuda_max_allocated = torch.cuda.max_memory_allocated(device)
            loaded.load_seconds = time.perf_counter() - t0
            loaded.param_bytes = sum(t.numel() * t.element_size()
                                     for t in (*loaded.model.parameters(), *loaded.model.buffers()))
    except ModelLoadError as e:
        _LOADED[key] = e
        raise
    _LOADED[key] = loaded
    return loaded


# --------------------------------------------------------------------------- forward pass


@dataclass
class ForwardResult:
    repo_id: str
    device: str
    pixel_shape: tuple[int, ...] = ()
    token_shape: tuple[int, ...] = ()
    image_embed_dim: int | None = None
    text_embed_dim: int | None = None
    image_norms: list[float] = field(default_factory=list)  # of the embeddings the model returns
    text_norms: list[float] = field(default_factory=list)
    similarity: list[list[float]] = field(default_factory=list)  # cosine, images x texts
    seconds: float = 0.0
    cuda_max_allocated: int | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # true and worth knowing, but not a failure

    @property
    def ok(self) -> bool:
        return not self.problems


def sample_images() -> list[Any]:
    """An RGB image (non-square, so resize and crop both act) and a grayscale one."""
    from PIL import Image

    rgb = Image.new("RGB", (64, 48))
    rgb.putdata([((x * 4) % 256, (y * 5) % 256, ((x + y) * 3) % 256) for y in range(48) for x in range(64)])
    gray = Image.new("L", (40, 56))
    gray.putdata([(x * y) % 256 for y in range(56) for x in range(40)])
    return [rgb, gray]


def _embedding_problems(name: str, emb: Any, expected_dim: int, normalised_by_model: bool, where: str,
                        fix: str, other_model: str, dim_fix: str) -> tuple[list[str], list[float]]:
    import torch

    problems: list[str] = []
    if emb.ndim != 2 or emb.shape[0] != 2:
        return [Finding(f"{name} embeddings have shape {tuple(emb.shape)}, expected (2, {expected_dim})",
                        where=where, fix=fix).message()], []
    if emb.shape[1] != expected_dim:
        problems.append(Finding(f"{name} embedding dim is {emb.shape[1]}, expected {expected_dim}: {other_model}",
                                where=where, fix=dim_fix).message())
    bad = int((~torch.isfinite(emb)).sum())
    if bad:
        problems.append(Finding(f"{name} embeddings are not finite: {bad} of {emb.numel()} values NaN/Inf "
                                "(corrupt weights, or fp16 overflow)", where=where,
                                fix=f"run with --deep to hash the weights; re-fetch: {fix}").message())
        return problems, []
    norms = emb.float().norm(dim=-1)
    if normalised_by_model and not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
        problems.append(Finding(f"{name} embeddings returned by the model are not L2-normalised: norms "
                                f"{[round(v, 4) for v in norms.tolist()]}", where=where, fix=fix).message())
    if not normalised_by_model and bool((norms < 1e-6).any()):
        problems.append(Finding(f"{name} embeddings are zero vectors (norms {norms.tolist()}): cannot be "
                                "normalised", where=where, fix=fix).message())
    if torch.allclose(emb[0].float(), emb[1].float(), atol=1e-6):
        problems.append(Finding(f"{name} embeddings are identical for two different inputs: the model "
                                "ignores its input (collapsed or zeroed weights)", where=where, fix=fix).message())
    return problems, norms.tolist()


def forward_check(loaded: Loaded, facts: ModelFacts) -> ForwardResult:
    """Two images and two texts through the real preprocessing and the model; problems say what broke."""
    import torch
    import torch.nn.functional as F

    res = ForwardResult(facts.repo_id, loaded.device)
    where = str(loaded.weights_file.parent if loaded.weights_file else facts.repo_id)
    fix = fix_for(facts.repo_id)
    if facts.library == "transformers":
        other_model = "the snapshot holds a different model (config.json / preprocessor_config.json)"
        shape_fix = fix
    else:  # open_clip builds the architecture from its model config; strict loading made the weights fit it
        other_model = f"open_clip's {facts.open_clip_name!r} config describes a different model"
        shape_fix = (f"use the registry's open_clip name {facts.open_clip_name!r} with open_clip's own configs "
                     "(no add_model_config override)")
    images = sample_images()
    cuda = loaded.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(loaded.device)
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            if facts.library == "transformers":
                img, txt = _siglip_forward(loaded, facts, images, res, where)
            else:
                img, txt = _open_clip_forward(loaded, images, res)
            if cuda:
                torch.cuda.synchronize(loaded.device)
    except Exception as e:
        res.problems.append(Finding(f"{facts.repo_id}: forward pass on {loaded.device} raised {_first_line(e)}",
                                    where=where, fix=fix).message())
        return res
    res.seconds = time.perf_counter() - t0
    if cuda:
        res.cuda_max_allocated = torch.cuda.max_memory_allocated(loaded.device)

    if res.pixel_shape[-2:] != (facts.image_size, facts.image_size):
        res.problems.append(Finding(f"{facts.repo_id}: preprocessing gives images of {res.pixel_shape[-2:]}, "
                                    f"expected ({facts.image_size}, {facts.image_size}): {other_model}", where=where,
                                    fix=shape_fix).message())
    if res.token_shape[-1:] != (facts.context_length,):
        res.problems.append(Finding(f"{facts.repo_id}: tokenizer gives {res.token_shape[-1]} tokens per text, "
                                    f"expected {facts.context_length}", where=where, fix=fix).message())
    by_model = facts.library == "transformers"  # SigLIP returns normalised embeds; open_clip raw features
    for name, emb in (("image", img), ("text", txt)):
        probs, norms = _embedding_problems(f"{facts.repo_id}: {name}", emb, facts.embed_dim, by_model, where, fix,
                                           other_model, shape_fix)
        res.problems += probs
        setattr(res, f"{name}_norms", norms)
    res.image_embed_dim, res.text_embed_dim = int(img.shape[-1]), int(txt.shape[-1])
    if res.image_embed_dim == res.text_embed_dim:
        sim = F.normalize(img.float(), dim=-1) @ F.normalize(txt.float(), dim=-1).T
        res.similarity = sim.cpu().tolist()
        if tuple(sim.shape) != (2, 2):
            res.problems.append(Finding(f"{facts.repo_id}: image-text similarity is {tuple(sim.shape)}, "
                                        "expected (2, 2)", where=where, fix=fix).message())
    else:
        res.problems.append(Finding(f"{facts.repo_id}: image ({res.image_embed_dim}) and text "
                                    f"({res.text_embed_dim}) embeddings differ in size: no similarity",
                                    where=where, fix=fix).message())
    return res


def _siglip_forward(loaded: Loaded, facts: ModelFacts, images: list[Any], res: ForwardResult, where: str):

    processor, model = loaded.processor, loaded.model
    texts = [t.lower() for t in SAMPLE_TEXTS]  # SigLIP2 was trained on lower-cased text
    try:
        inputs = processor(text=texts, images=images, padding="max_length", max_length=facts.context_length,
                           return_tensors="pt")
    except Exception as e:
        # The real google/siglip2 preprocessor_config.json has "do_convert_rgb": null, which
        # transformers 5 reads as "do not convert": a grayscale PIL image then fails to normalise.
        convert = getattr(processor.image_processor, "do_convert_rgb", "?")
        res.notes.append(f"{facts.repo_id}: the processor does not handle a grayscale PIL image "
                         f"({_first_line(e, 160)}); convert images with .convert('RGB') before the processor "
                         f"(preprocessor_config.json do_convert_rgb={convert})")
        inputs = processor(text=texts, images=[im.convert("RGB") for im in images], padding="max_length",
                           max_length=facts.context_length, return_tensors="pt")
    res.pixel_shape = tuple(inputs["pixel_values"].shape)
    res.token_shape = tuple(inputs["input_ids"].shape)
    vocab = getattr(model.config.text_config, "vocab_size", None)
    n_tok = len(processor.tokenizer)
    if vocab and n_tok < vocab // 2:
        res.problems.append(Finding(f"{facts.repo_id}: the tokenizer knows {n_tok:,} tokens but the text model has "
                                    f"{vocab:,}: tokenizer.json missing or wrong (transformers then silently builds "
                                    "a minimal vocabulary)", where=where, fix=fix_for(facts.repo_id)).message())
    inputs = {k: v.to(loaded.device) for k, v in inputs.items()}
    out = model(**inputs)
    if tuple(out.logits_per_image.shape) != (2, 2):
        res.problems.append(f"{facts.repo_id}: logits_per_image has shape {tuple(out.logits_per_image.shape)}, "
                            "expected (2, 2)")
    return out.image_embeds, out.text_embeds


def _open_clip_forward(loaded: Loaded, images: list[Any], res: ForwardResult):
    import torch

    pixels = torch.stack([loaded.preprocess(im) for im in images]).to(loaded.device)
    tokens = loaded.tokenizer(list(SAMPLE_TEXTS)).to(loaded.device)
    res.pixel_shape, res.token_shape = tuple(pixels.shape), tuple(tokens.shape)
    # Raw features, so that a zero or NaN output shows; callers use normalize=True / F.normalize.
    return loaded.model.encode_image(pixels), loaded.model.encode_text(tokens)
