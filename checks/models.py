"""The four models: are the blobs intact, does it load offline, does it run.

Plain Python, no pytest. ``verify_blobs`` hashes the Hugging Face cache's blobs and imports neither
torch nor transformers (the cache layout and the weights' identity live in ``preflight_core.hf_cache``).
Loading and the forward pass go through one adapter per model library (``ADAPTERS``, keyed by the
registry's ``library``): the real transformers / open_clip code paths, always offline.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preflight_core.findings import Finding, Fix, shown
from preflight_core.hashing import blob_digest
from preflight_core.hf_cache import BLOB_KIND, cache_report, fix_for, hub_offline
from preflight_core.registry import ModelFacts

__all__ = ["ModelLoadError", "Loaded", "ForwardResult", "load_model", "forward_check", "clear_loaded", "hub_offline",
           "verify_blobs", "blob_findings", "open_clip_configs", "ADAPTERS", "adapter_for"]

SIGLIP_TOKENIZERS = ("GemmaTokenizer", "GemmaTokenizerFast", "Siglip2Tokenizer")
SAMPLE_TEXTS = ("a photo of a cat", "A Diagram Of A Dog")


def verify_blobs(snapshot: Path, files: Iterable[str | tuple[str, ...]], cache: Path | None = None) -> list[str]:
    """``blob_findings`` as messages (what — where — fix)."""
    return [f.message() for f in blob_findings(snapshot, files, cache)]


def blob_findings(snapshot: Path, files: Iterable[str | tuple[str, ...]], cache: Path | None = None) -> list[Finding]:
    """Hash the blob behind each present file of ``files`` and compare it with the blob's name.

    LFS blobs are named by their sha256, other files by their git blob sha1. Blobs that passed are
    remembered in the verify cache folder ``cache`` (``preflight_core.verify_cache.VerifyCache``) by the identity of
    their content (path, size, mtime_ns, inode, ctime_ns), so an unchanged cache re-verifies without
    reading a byte and a changed blob is never vouched for. Absent files are ``cache_report``'s business.
    """
    from preflight_core.verify_cache import VerifyCache

    snapshot = Path(snapshot)
    repo_id = snapshot.parent.parent.name.removeprefix("models--").replace("--", "/", 1)
    fix = fix_for(repo_id)
    names = [n for e in files for n in ((e,) if isinstance(e, str) else e) if os.path.lexists(snapshot / n)]
    problems: list[Finding] = []
    todo: list[tuple[str, Path, tuple[str, int, int, int, int]]] = []
    for name in names:
        link = snapshot / name
        if not link.is_symlink():
            problems.append(Finding(f"{repo_id}: {name} cannot be verified: it is a plain file, not a symlink to a "
                                    "blob named by its hash (a cache written without symlinks)",
                                    where=str(snapshot), fix=fix_for(repo_id, remove=link)))
            continue
        if not link.exists():
            continue  # dangling: reported by cache_report
        blob = link.resolve()
        st = blob.stat()
        todo.append((name, blob, (str(blob), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)))
    vc = VerifyCache(Path(cache)) if cache else None
    known = vc.passed(BLOB_KIND, [k for _, _, k in todo]) if vc else set()
    good = []
    for name, blob, key in todo:
        if key[0] in known:
            continue
        try:
            got = blob_digest(blob)
        except OSError as e:  # a FIFO or device (refused at once by the safe-open rule), unreadable
            problems.append(Finding(f"{repo_id}: {name} cannot be verified: {shown(e)}",
                                    where=shown(str(blob)), fix=fix_for(repo_id, remove=blob)))
            continue
        if got is None:
            problems.append(Finding(f"{repo_id}: {name} cannot be verified: its blob name {shown(blob.name)!r} is "
                                    "not a sha256 or git-sha1 etag", where=str(blob), fix=fix))
        elif got[1] != blob.name:
            # Proven garbage, and a cache: it goes, and the fetch downloads it again. (The fetch alone would
            # judge a large blob by name, size and structure, which a same-size bit flip passes.)
            problems.append(Finding(f"{repo_id}: {name} is corrupt: {got[0]} of the blob is {got[1][:16]}… "
                                    f"but the Hub's etag is {blob.name[:16]}…",
                                    where=str(blob), fix=fix_for(repo_id, remove=blob)))
        else:
            good.append(key)
    if vc and good:
        vc.record(BLOB_KIND, good)
    return problems


# --------------------------------------------------------------------------- offline loading


class ModelLoadError(RuntimeError):
    """The model did not load, or loaded as the wrong thing: ``problem`` (what — where) and ``fix`` as data.

    ``str()`` is the whole message, what — where — fix.
    """

    def __init__(self, problem: Finding | str, fix: Fix | str = ""):
        finding = problem if isinstance(problem, Finding) else Finding(problem, fix=fix)
        self.problem, self.fix = finding.problem(), finding.the_fix
        super().__init__(finding.message())


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
    rep = cache_report(facts, hf_cache, check_files=False)  # where it is, not whether it is whole
    return str(rep.snapshot or rep.repo_dir)


def _first_line(e: BaseException, limit: int = 400) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:limit]}{'…' if len(text) > limit else ''}"


def _to_device(model: Any, facts: ModelFacts, device: str) -> Any:
    try:
        return model.to(device).eval()
    except Exception as e:  # CUDA out of memory, a broken device, …
        raise ModelLoadError(f"{facts.repo_id}: loaded, but moving it to {device} failed ({_first_line(e)})",
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


# --------------------------------------------------------------------------- one adapter per library


class SiglipAdapter:
    """transformers: ``AutoModel`` → ``SiglipModel``, ``AutoProcessor`` → ``SiglipProcessor``."""

    normalised_by_model = True  # SiglipModel returns L2-normalised image_embeds / text_embeds

    def load(self, facts: ModelFacts, hf_cache: Path, device: str, config_dir: Path | None) -> Loaded:
        from transformers import AutoModel, AutoProcessor

        where, fix = _where(facts, hf_cache), fix_for(facts.repo_id)
        try:
            with _no_progress_bars():
                model, info = AutoModel.from_pretrained(facts.repo_id, cache_dir=str(hf_cache),
                                                        local_files_only=True, output_loading_info=True)
        except Exception as e:
            raise ModelLoadError(Finding(f"{facts.repo_id}: AutoModel.from_pretrained failed offline "
                                         f"({_first_line(e)})", where=where, fix=fix)) from e
        # transformers only logs weights absent from the checkpoint and initialises them at random.
        missing = sorted(info.get("missing_keys") or ())
        if missing:
            blob = Path(where, "model.safetensors").resolve()
            raise ModelLoadError(Finding(f"{facts.repo_id}: model.safetensors lacks weights the model needs (they "
                                         "would be random)", missing, where=where,
                                         fix=fix_for(facts.repo_id, remove=blob)))
        try:
            processor = AutoProcessor.from_pretrained(facts.repo_id, cache_dir=str(hf_cache), local_files_only=True)
        except Exception as e:
            raise ModelLoadError(Finding(f"{facts.repo_id}: AutoProcessor.from_pretrained failed offline "
                                         f"({_first_line(e)})", where=where, fix=fix)) from e
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
                                         fix=fix))
        model = _to_device(model, facts, device)
        snapshot = cache_report(facts, hf_cache, check_files=False).snapshot
        weights = snapshot / "model.safetensors" if snapshot else None
        return Loaded(facts, device, model, processor=processor, tokenizer=tokenizer, weights_file=weights,
                      classes=classes)

    def forward(self, loaded: Loaded, facts: ModelFacts, images: list[Any], res: ForwardResult, where: str):
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
            res.findings.append(Finding(f"{facts.repo_id}: the tokenizer knows {n_tok:,} tokens but the text model "
                                        f"has {vocab:,}: tokenizer.json missing or wrong (transformers then silently "
                                        "builds a minimal vocabulary)", where=where,
                                        fix=fix_for(facts.repo_id)))
        inputs = {k: v.to(loaded.device) for k, v in inputs.items()}
        out = model(**inputs)
        if tuple(out.logits_per_image.shape) != (2, 2):
            res.findings.append(Finding(f"{facts.repo_id}: logits_per_image has shape "
                                        f"{tuple(out.logits_per_image.shape)}, expected (2, 2)", where=where,
                                        fix=fix_for(facts.repo_id)))
        return out.image_embeds, out.text_embeds

    def labels(self, facts: ModelFacts) -> tuple[str, object]:
        """(what a wrong image size or dim means, its fix): the snapshot's own config describes the model."""
        return ("the snapshot holds a different model (config.json / preprocessor_config.json)",
                fix_for(facts.repo_id))


class OpenClipAdapter:
    """open_clip: ``create_model_and_transforms(name, pretrained="openai")`` from the HF cache."""

    normalised_by_model = False  # encode_image / encode_text give raw features (callers normalise)

    def load(self, facts: ModelFacts, hf_cache: Path, device: str, config_dir: Path | None) -> Loaded:
        where, fix = _where(facts, hf_cache), fix_for(facts.repo_id)
        if not facts.open_clip_name:
            raise ModelLoadError(f"{facts.repo_id}: the registry gives no open_clip model name",
                                 "add open_clip_name to its ModelFacts in preflight_core/registry.py")
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
                                             f"({_first_line(e)})", where=where, fix=fix)) from e
        rep = cache_report(facts, hf_cache, check_files=False)  # where it is, not whether it is whole
        weights = rep.snapshot / rep.present[0] if rep.snapshot and rep.present else None
        classes = {"model": type(model).__name__, "tokenizer": type(tokenizer).__name__}
        return Loaded(facts, device, _to_device(model, facts, device), preprocess=preprocess, tokenizer=tokenizer,
                      weights_file=weights, classes=classes)

    def forward(self, loaded: Loaded, facts: ModelFacts, images: list[Any], res: ForwardResult, where: str):
        import torch

        pixels = torch.stack([loaded.preprocess(im) for im in images]).to(loaded.device)
        tokens = loaded.tokenizer(list(SAMPLE_TEXTS)).to(loaded.device)
        res.pixel_shape, res.token_shape = tuple(pixels.shape), tuple(tokens.shape)
        # Raw features, so that a zero or NaN output shows; callers use normalize=True / F.normalize.
        return loaded.model.encode_image(pixels), loaded.model.encode_text(tokens)

    def labels(self, facts: ModelFacts) -> tuple[str, object]:
        """open_clip builds the architecture from its model config; strict loading made the weights fit it."""
        return (f"open_clip's {facts.open_clip_name!r} config describes a different model",
                f"use the registry's open_clip name {facts.open_clip_name!r} with open_clip's own configs "
                "(no add_model_config override)")


ADAPTERS: dict[str, SiglipAdapter | OpenClipAdapter] = {"transformers": SiglipAdapter(), "open_clip": OpenClipAdapter()}


def adapter_for(facts: ModelFacts) -> SiglipAdapter | OpenClipAdapter:
    """The adapter of the library that loads ``facts`` (the registry's ``library``)."""
    try:
        return ADAPTERS[facts.library]
    except KeyError:
        raise ModelLoadError(f"{facts.repo_id}: unknown library {facts.library!r} in the registry",
                             f"use one of {', '.join(ADAPTERS)}, or add an adapter to checks/models.py") from None


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
        adapter = adapter_for(facts)
        with hub_offline():
            import torch

            cuda = device.startswith("cuda")
            if cuda:
                if not torch.cuda.is_available():
                    raise ModelLoadError(f"{facts.repo_id}: cannot load onto {device}: torch.cuda.is_available() is "
                                         "False", "see the gpu row (probe_gpu), or pass --device cpu")
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            loaded = adapter.load(facts, Path(hf_cache), device, open_clip_config_dir)
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
    findings: list[Finding] = field(default_factory=list)  # what broke, each with its fix
    notes: list[str] = field(default_factory=list)  # true and worth knowing, but not a failure

    @property
    def problems(self) -> list[str]:
        """The findings as messages (what — where — fix)."""
        return [f.message() for f in self.findings]


def sample_images() -> list[Any]:
    """An RGB image (non-square, so resize and crop both act) and a grayscale one."""
    from PIL import Image

    rgb = Image.new("RGB", (64, 48))
    rgb.putdata([((x * 4) % 256, (y * 5) % 256, ((x + y) * 3) % 256) for y in range(48) for x in range(64)])
    gray = Image.new("L", (40, 56))
    gray.putdata([(x * y) % 256 for y in range(56) for x in range(40)])
    return [rgb, gray]


def _embedding_problems(name: str, emb: Any, expected_dim: int, normalised_by_model: bool, where: str,
                        fix: Fix, other_model: str, dim_fix: Fix | str) -> tuple[list[Finding], list[float]]:
    import torch

    problems: list[Finding] = []
    if emb.ndim != 2 or emb.shape[0] != 2:
        return [Finding(f"{name} embeddings have shape {tuple(emb.shape)}, expected (2, {expected_dim})",
                        where=where, fix=fix)], []
    if emb.shape[1] != expected_dim:
        problems.append(Finding(f"{name} embedding dim is {emb.shape[1]}, expected {expected_dim}: {other_model}",
                                where=where, fix=dim_fix))
    bad = int((~torch.isfinite(emb)).sum())
    if bad:
        problems.append(Finding(f"{name} embeddings are not finite: {bad} of {emb.numel()} values NaN/Inf "
                                "(corrupt weights, or fp16 overflow)", where=where,
                                fix=Fix(f"run with --deep to hash the weights; re-fetch: {fix}", fix.commands)))
        return problems, []
    norms = emb.float().norm(dim=-1)
    if normalised_by_model and not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
        problems.append(Finding(f"{name} embeddings returned by the model are not L2-normalised: norms "
                                f"{[round(v, 4) for v in norms.tolist()]}", where=where, fix=fix))
    if not normalised_by_model and bool((norms < 1e-6).any()):
        problems.append(Finding(f"{name} embeddings are zero vectors (norms {norms.tolist()}): cannot be "
                                "normalised", where=where, fix=fix))
    if torch.allclose(emb[0].float(), emb[1].float(), atol=1e-6):
        problems.append(Finding(f"{name} embeddings are identical for two different inputs: the model "
                                "ignores its input (collapsed or zeroed weights)", where=where, fix=fix))
    return problems, norms.tolist()


def forward_check(loaded: Loaded, facts: ModelFacts) -> ForwardResult:
    """Two images and two texts through the real preprocessing and the model; problems say what broke."""
    import torch
    import torch.nn.functional as F

    res = ForwardResult(facts.repo_id, loaded.device)
    where = str(loaded.weights_file.parent if loaded.weights_file else facts.repo_id)
    fix = fix_for(facts.repo_id)
    adapter = adapter_for(facts)
    other_model, shape_fix = adapter.labels(facts)
    images = sample_images()
    cuda = loaded.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(loaded.device)
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            img, txt = adapter.forward(loaded, facts, images, res, where)
            if cuda:
                torch.cuda.synchronize(loaded.device)
    except Exception as e:
        res.findings.append(Finding(f"{facts.repo_id}: forward pass on {loaded.device} raised {_first_line(e)}",
                                    where=where, fix=fix))
        return res
    res.seconds = time.perf_counter() - t0
    if cuda:
        res.cuda_max_allocated = torch.cuda.max_memory_allocated(loaded.device)

    if res.pixel_shape[-2:] != (facts.image_size, facts.image_size):
        res.findings.append(Finding(f"{facts.repo_id}: preprocessing gives images of {res.pixel_shape[-2:]}, "
                                    f"expected ({facts.image_size}, {facts.image_size}): {other_model}", where=where,
                                    fix=shape_fix))
    if res.token_shape[-1:] != (facts.context_length,):
        res.findings.append(Finding(f"{facts.repo_id}: tokenizer gives {res.token_shape[-1]} tokens per text, "
                                    f"expected {facts.context_length}", where=where, fix=fix))
    for name, emb in (("image", img), ("text", txt)):
        probs, norms = _embedding_problems(f"{facts.repo_id}: {name}", emb, facts.embed_dim,
                                           adapter.normalised_by_model, where, fix, other_model, shape_fix)
        res.findings += probs
        setattr(res, f"{name}_norms", norms)
    res.image_embed_dim, res.text_embed_dim = int(img.shape[-1]), int(txt.shape[-1])
    if res.image_embed_dim == res.text_embed_dim:
        sim = F.normalize(img.float(), dim=-1) @ F.normalize(txt.float(), dim=-1).T
        res.similarity = sim.cpu().tolist()
        if tuple(sim.shape) != (2, 2):
            res.findings.append(Finding(f"{facts.repo_id}: image-text similarity is {tuple(sim.shape)}, "
                                        "expected (2, 2)", where=where, fix=fix))
    else:
        res.findings.append(Finding(f"{facts.repo_id}: image ({res.image_embed_dim}) and text "
                                    f"({res.text_embed_dim}) embeddings differ in size: no similarity",
                                    where=where, fix=fix))
    return res
