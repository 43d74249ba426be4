"""Tiny random models of the real classes, under the real repo ids, in a real-looking HF cache.

``write_tiny_models`` builds, for the four registry models, what ``python -m fetchers`` would leave
in the Hugging Face cache, only tiny and random: a ``SiglipModel`` + ``SiglipProcessor`` (Gemma
tokenizer with a ~300-token vocabulary, SiglipImageProcessor) for each SigLIP2 repo, and an
``open_clip_model.safetensors`` of a tiny open_clip CLIP for each ``timm/…openai`` repo, plus
open_clip model configs that put the tiny ViTs under the real ``-quickgelu`` names. Loading then
goes through the real code paths: ``AutoModel/AutoProcessor.from_pretrained(repo_id,
local_files_only=True)`` and ``open_clip.create_model_and_transforms(name, pretrained="openai")``.

Cache layout as huggingface_hub writes it: ``models--org--name/blobs/<etag>``,
``snapshots/<commit>/<file> -> ../../blobs/<etag>``, ``refs/main`` = the commit. Etags as on the
Hub: sha256 for LFS files (weights, and anything over 10 MiB), the git blob sha1 otherwise. The
commit hash is derived from the file etags, so the build is deterministic (seeded weights too).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from checks.models import open_clip_configs
from preflight_core.hashing import git_blob_sha1_bytes
from preflight_core.hf_cache import repo_dir
from preflight_core.registry import ASSETS, OPEN_CLIP_FILES, SIGLIP2_FILES, Library, ModelFacts

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".model", ".msgpack", ".h5", ".onnx")
LFS_THRESHOLD = 10 << 20

# name -> (hidden = embed dim, image size, patch size). Patch 8 / 7 (16 patches): with 4 patches a
# tiny ViT cannot learn where a shape is (measured: patch 16 plateaued at 37 % on 16 classes).
TINY_SIGLIP = {"siglip2_base": (32, 32, 8), "siglip2_so400m": (48, 28, 7)}
# name -> (embed dim, vision width, image size, patch size, text width)
TINY_CLIP = {"clip_b32": (32, 32, 32, 8, 32), "clip_l14": (48, 48, 28, 7, 48)}
# The trained weights (scripts/train_tiny_models.py makes them), gzip'd safetensors: the tiny CLIPs'
# 49,408-row token tables are zero except the rows the tiny prompts use, so they compress to kilobytes.
TINY_WEIGHTS_DIR = Path(__file__).resolve().parent / "tiny_weights"
SEEDS = {name: seed for seed, name in enumerate([*TINY_SIGLIP, *TINY_CLIP])}
SIGLIP_CONTEXT = 64
CLIP_CONTEXT = 77
CLIP_VOCAB = 49408  # open_clip's SimpleTokenizer (the real one) emits ids up to 49407


def etag_for(name: str, data: bytes) -> str:
    """The Hub's etag of ``name`` holding ``data``: the sha256 of an LFS file, else the git blob sha1."""
    if name.endswith(LFS_SUFFIXES) or len(data) > LFS_THRESHOLD:
        return hashlib.sha256(data).hexdigest()
    return git_blob_sha1_bytes(data)


def write_hf_snapshot(hf_cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """Lay ``files`` out as a huggingface_hub cache entry of ``repo_id`` on ``main``; returns the snapshot dir."""
    rdir = repo_dir(hf_cache, repo_id)
    etags = {name: etag_for(name, data) for name, data in files.items()}
    commit = hashlib.sha1(json.dumps(sorted(etags.items())).encode()).hexdigest()
    snap = rdir / "snapshots" / commit
    (rdir / "blobs").mkdir(parents=True, exist_ok=True)
    (rdir / "refs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = rdir / "blobs" / etags[name]
        if not blob.exists():
            tmp = blob.with_name(blob.name + ".incomplete")
            tmp.write_bytes(data)
            tmp.replace(blob)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(link):
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (rdir / "refs" / "main").write_text(commit)
    return snap


def snapshot_dir(hf_cache: Path, repo_id: str) -> Path:
    """The snapshot folder that ``refs/main`` of ``repo_id`` names in ``hf_cache``."""
    rdir = repo_dir(hf_cache, repo_id)
    return rdir / "snapshots" / (rdir / "refs" / "main").read_text()


def relink_snapshot_file(hf_cache: Path, repo_id: str, name: str, data: bytes) -> None:
    """As if the cache held other bytes for ``name`` (a planted fault): a new blob named by its etag, relinked."""
    snap = snapshot_dir(hf_cache, repo_id)
    blob = snap.parent.parent / "blobs" / etag_for(name, data)
    blob.write_bytes(data)
    link = snap / name
    link.unlink()
    link.symlink_to(os.path.relpath(blob, link.parent))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """open_clip logs "No pretrained weights loaded … initialized randomly" at WARNING: true, and noise here."""
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(before)


def _gemma_vocab() -> dict[str, int]:
    """Gemma's special tokens at Gemma's ids, letters and digits, and the 256 byte-fallback tokens."""
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for piece in ["▁", *"abcdefghijklmnopqrstuvwxyz0123456789"]:  # no merges: pieces are single characters
        vocab[piece] = len(vocab)
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    return vocab


def state_dict_bytes(model) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().contiguous() for k, v in model.state_dict().items()}, metadata={"format": "pt"})


def siglip_model(name: str):
    """The tiny SigLIP ``name`` with its seeded random initial weights."""
    import torch
    from transformers import SiglipModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEEDS[name])
        return SiglipModel(_siglip_config(*TINY_SIGLIP[name]))


def _siglip_config(hidden: int, image: int, patch: int):
    from transformers import SiglipConfig, SiglipTextConfig, SiglipVisionConfig

    vocab = _gemma_vocab()
    heads, inter = 2, 2 * hidden
    config = SiglipConfig(
        text_config=SiglipTextConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=inter,
                                     num_hidden_layers=1, num_attention_heads=heads,
                                     max_position_embeddings=SIGLIP_CONTEXT, pad_token_id=0, eos_token_id=1,
                                     bos_token_id=2).to_dict(),
        vision_config=SiglipVisionConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=1,
                                         num_attention_heads=heads, image_size=image, patch_size=patch).to_dict())
    config.architectures = ["SiglipModel"]
    return config


def siglip_files(name: str, weights: bytes) -> dict[str, bytes]:
    """What the Hub repo of the tiny SigLIP ``name`` holds, with ``weights`` as model.safetensors."""
    from transformers import GemmaTokenizer

    hidden, image, patch = TINY_SIGLIP[name]
    vocab = _gemma_vocab()
    # use_diff=False: the diff against defaults makes transformers warn about its own default token ids
    files = {"config.json": _siglip_config(hidden, image, patch).to_json_string(use_diff=False).encode(),
             "model.safetensors": weights}
    with tempfile.TemporaryDirectory() as tmp:
        from tokenizers import processors

        tok = GemmaTokenizer(vocab=vocab, merges=[])
        # As SigLIP 2 was trained (big_vision): no BOS, an EOS after the text, pads on the right.
        tok._tokenizer.post_processor = processors.TemplateProcessing(
            single="$A <eos>", pair="$A <eos> $B <eos>", special_tokens=[("<eos>", 1)])
        tok.save_pretrained(tmp)
        for fname in ("tokenizer.json", "tokenizer_config.json"):
            files[fname] = Path(tmp, fname).read_bytes()
    tok_cfg = json.loads(files["tokenizer_config.json"])
    tok_cfg["processor_class"] = "SiglipProcessor"
    tok_cfg.update(padding_side="right", add_bos_token=False, add_eos_token=True)  # as google/siglip2-*
    files["tokenizer_config.json"] = json.dumps(tok_cfg, indent=2, sort_keys=True).encode()
    # transformers 5 no longer writes special_tokens_map.json; the google/siglip2 repos have one.
    files["special_tokens_map.json"] = json.dumps(tok.special_tokens_map, indent=2, sort_keys=True).encode()
    # As in google/siglip2-*: SigLIP normalisation, bilinear, and do_convert_rgb null (sic).
    files["preprocessor_config.json"] = json.dumps({
        "do_convert_rgb": None, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5],
        "processor_class": "SiglipProcessor", "resample": 2, "rescale_factor": 1 / 255,
        "size": {"height": image, "width": image},
    }, indent=2).encode()
    return files


def _open_clip_config(embed: int, width: int, image: int, patch: int, text_width: int) -> dict:
    return {
        "embed_dim": embed,
        "quick_gelu": True,
        "vision_cfg": {"image_size": image, "layers": 1, "width": width, "patch_size": patch, "head_width": 16},
        "text_cfg": {"context_length": CLIP_CONTEXT, "vocab_size": CLIP_VOCAB, "width": text_width, "heads": 2,
                     "layers": 1},
    }


def write_open_clip_configs(config_dir: Path) -> None:
    """open_clip model configs that put the tiny ViTs under the real ``-quickgelu`` names."""
    config_dir.mkdir(parents=True, exist_ok=True)
    for name, dims in TINY_CLIP.items():
        config = json.dumps(_open_clip_config(*dims), indent=1)
        (config_dir / f"{ASSETS[name].facts.open_clip_name}.json").write_text(config)


def clip_model(name: str, keep_token_rows: set[int] | None = None):
    """The tiny open_clip CLIP ``name``, seeded random; call inside ``open_clip_configs(dir)``.

    ``keep_token_rows``: zero every other row of the token table (rows no tiny prompt uses never train).
    """
    import open_clip
    import torch

    with torch.random.fork_rng(devices=[]), _quiet():
        torch.manual_seed(SEEDS[name])
        model = open_clip.create_model(ASSETS[name].facts.open_clip_name, pretrained=None)
    if keep_token_rows is not None:
        with torch.no_grad():
            table = model.token_embedding.weight
            keep = torch.zeros(table.shape[0], dtype=torch.bool)
            keep[sorted(keep_token_rows)] = True
            table[~keep] = 0
    return model


def trained_weights(name: str) -> bytes:
    """The committed trained weights of tiny model ``name`` (safetensors bytes)."""
    import gzip

    path = TINY_WEIGHTS_DIR / f"{name}.safetensors.gz"
    try:
        return gzip.decompress(path.read_bytes())
    except OSError as e:
        raise FileNotFoundError(f"the trained tiny weights {path} are missing or damaged ({e}): "
                                "run python scripts/train_tiny_models.py") from e


def _pins(snapshot: Path, weights_file: str, data: bytes) -> dict[str, object]:
    """The tiny model's own published weights, as the registry pins the real ones: the commit refs/main
    names, and the weight file's name, size and sha256 (the name of its blob)."""
    return {"revision": snapshot.name, "weights_file": weights_file, "weights_size": len(data),
            "weights_sha256": hashlib.sha256(data).hexdigest()}


def write_tiny_models(hf_cache: Path, open_clip_config_dir: Path,
                      random_weights: frozenset[str] = frozenset()) -> dict[str, ModelFacts]:
    """Write the four tiny models into ``hf_cache`` (+ open_clip configs); return their facts by asset name.

    The weights are the trained ones (``trained_weights``); models named in ``random_weights`` get their
    seeded random initial weights instead (an impostor whose pins still agree: the golden check's self-test).
    """
    from checks.tiny import TINY_GOLDEN

    hf_cache, open_clip_config_dir = Path(hf_cache), Path(open_clip_config_dir)
    write_open_clip_configs(open_clip_config_dir)
    out: dict[str, ModelFacts] = {}
    for name, (hidden, image, _) in TINY_SIGLIP.items():
        real: ModelFacts = ASSETS[name].facts
        weights = state_dict_bytes(siglip_model(name)) if name in random_weights else trained_weights(name)
        files = siglip_files(name, weights)
        snap = write_hf_snapshot(hf_cache, real.repo_id, files)
        out[name] = ModelFacts(Library.TRANSFORMERS, real.repo_id, hidden, image, SIGLIP_CONTEXT, SIGLIP2_FILES,
                               approx_weight_bytes=len(weights), **TINY_GOLDEN[name],
                               **_pins(snap, "model.safetensors", weights))
    for name, (embed, _, image, _, _) in TINY_CLIP.items():
        real = ASSETS[name].facts
        if name in random_weights:
            with open_clip_configs(open_clip_config_dir):
                weights = state_dict_bytes(clip_model(name))
        else:
            weights = trained_weights(name)
        snap = write_hf_snapshot(hf_cache, real.repo_id, {"open_clip_model.safetensors": weights})
        out[name] = ModelFacts(Library.OPEN_CLIP, real.repo_id, embed, image, CLIP_CONTEXT, OPEN_CLIP_FILES,
                               open_clip_name=real.open_clip_name, approx_weight_bytes=len(weights),
                               **TINY_GOLDEN[name], **_pins(snap, "open_clip_model.safetensors", weights))
    return out
