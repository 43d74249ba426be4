"""Train the tiny world's four models so the golden check has something to reproduce.

    python scripts/train_tiny_models.py            # train, write checks/tiny_weights/*.safetensors.gz, measure
    python scripts/train_tiny_models.py --out DIR  # the same into DIR (the self-test compares DIR with the repo)

Deterministic: seeded, one thread, fixed data. Each tiny model (the architectures of
checks/tiny_models.py: SiglipModel from transformers, open_clip CLIPs from custom configs) learns the
tiny classes (checks/tiny.py: a red or blue circle or square) through its text tower: images through
the model's own preprocessing, prompts = the tiny world's templates × class names through the golden
recipe's tokenisation (SigLIP: canonicalised, padded to 64), sigmoid loss for SigLIP, softmax
contrastive loss (scale fixed at 100, as OpenAI's) for CLIP. Then it builds a tiny world from the
new weights and measures each model's top-1 on the whole tiny val tree with checks.golden: the
numbers to pin as TINY_TOP1 in checks/tiny.py.
"""

from __future__ import annotations

import argparse
import gzip
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from checks import golden, tiny, tiny_models  # noqa: E402
from checks.models import open_clip_configs  # noqa: E402
from preflight_core.registry import ASSETS  # noqa: E402

STEPS = 1000
BATCH = 64
POOL = 1024
LR = 1e-3


def render_pool(seed: int) -> tuple[list, list[int]]:
    """POOL training images like the val tree's: JPEG, some grayscale, a few CMYK; labels = class index."""
    import io

    from PIL import Image

    rng = random.Random(seed)
    wnids = sorted(tiny.TINY_SHAPES)
    images, labels = [], []
    for i in range(POOL):
        label = rng.randrange(len(wnids))
        mode = rng.choices(["RGB", "L", "CMYK"], weights=[75, 20, 5])[0]
        data = tiny.encode_jpeg(tiny.shape_image(wnids[label], seed=10_000 + seed * POOL + i), mode)
        with Image.open(io.BytesIO(data)) as im:
            images.append(im.convert("RGB"))
        labels.append(label)
    return images, labels


def loaded_for(name: str, tmp: Path):
    """The untrained model with its own preprocessing and tokenizer, as checks.models.load_model hands them out."""
    if name in tiny_models.TINY_SIGLIP:
        from transformers import AutoProcessor

        folder = tmp / name
        folder.mkdir()
        for fname, data in tiny_models.siglip_files(name, b"").items():
            if fname != "model.safetensors":
                (folder / fname).write_bytes(data)
        model = tiny_models.siglip_model(name)
        with __import__("torch").no_grad():  # SigLIP's init (t' = log 10; a bias for 4, not 32k, negatives)
            model.logit_scale.fill_(math.log(10))
            model.logit_bias.fill_(-2.0)
        return SimpleNamespace(model=model, processor=AutoProcessor.from_pretrained(folder), device="cpu")
    import open_clip

    configs = tmp / "open_clip_configs"
    tiny_models.write_open_clip_configs(configs)
    with open_clip_configs(configs):
        prompt_ids = open_clip.get_tokenizer(ASSETS[name].facts.open_clip_name)(recipe().prompts())
        model = tiny_models.clip_model(name, keep_token_rows={int(t) for t in prompt_ids.unique()})
        _, _, preprocess = open_clip.create_model_and_transforms(ASSETS[name].facts.open_clip_name, pretrained=None)
        tokenizer = open_clip.get_tokenizer(ASSETS[name].facts.open_clip_name)
    with __import__("torch").no_grad():
        model.logit_scale.fill_(math.log(100))  # OpenAI's CLIP: exp(logit_scale) = 100, kept fixed
    model.logit_scale.requires_grad_(False)
    model.token_embedding.weight.requires_grad_(False)  # fixed random rows: 49,408 rows of Adam state cost 4x the time
    return SimpleNamespace(model=model, preprocess=preprocess, tokenizer=tokenizer, device="cpu")


def recipe() -> golden.Recipe:
    return golden.Recipe(tiny.TINY_CLASSNAMES, tiny.TINY_TEMPLATES, "the tiny world's facts")


def train(name: str, tmp: Path, log=print) -> bytes:
    import torch
    import torch.nn.functional as F

    loaded = loaded_for(name, tmp)
    encoder = golden.encoder_for(loaded, ASSETS[name].facts)
    model = loaded.model
    images, labels = render_pool(tiny_models.SEEDS[name])
    pixels = torch.stack([encoder.pixels(im) for im in images])
    labels_t = torch.tensor(labels)
    rec = recipe()
    n_classes, n_templates = len(rec.classnames), len(rec.templates)
    ids = encoder.tokenize(rec.prompts()).view(n_classes, n_templates, -1)
    gen = torch.Generator().manual_seed(tiny_models.SEEDS[name])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)
    model.train()
    t0 = time.perf_counter()
    for step in range(STEPS):
        batch = torch.randint(0, POOL, (BATCH,), generator=gen)
        template = torch.randint(0, n_templates, (n_classes,), generator=gen)
        text = encoder.encode_text(ids[torch.arange(n_classes), template])
        image = encoder.encode_image(pixels[batch])
        target = labels_t[batch]
        if isinstance(encoder, golden.SiglipEncoder):
            logits = image @ text.T * model.logit_scale.exp() + model.logit_bias
            signs = 2 * F.one_hot(target, n_classes).float() - 1
            loss = -F.logsigmoid(signs * logits).sum(dim=-1).mean()
        else:
            loss = F.cross_entropy(image @ text.T * 100.0, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == STEPS - 1:
            log(f"  {name} step {step:4d} loss {loss.item():.4f}")
    log(f"  {name}: {STEPS} steps in {time.perf_counter() - t0:.1f} s")
    model.eval()
    return tiny_models.state_dict_bytes(model)


def write_weights(out: Path, name: str, weights: bytes) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.safetensors.gz"
    path.write_bytes(gzip.compress(weights, compresslevel=9, mtime=0))
    return path


def train_all(out: Path, log=print) -> dict[str, Path]:
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    written = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in (*tiny_models.TINY_SIGLIP, *tiny_models.TINY_CLIP):
            sub = Path(tmp) / name
            sub.mkdir()
            written[name] = write_weights(out, name, train(name, sub, log))
    return written


def measure(log=print) -> dict[str, float]:
    """Each committed model's top-1 on the whole tiny val tree, and its canonical prompt's token ids."""
    from checks.models import load_model

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        world = tiny.build_tiny_world(Path(tmp) / "w")
        val = world.facts["imagenet_val"]
        sample = golden.take_sample(world.path("imagenet_val"), sorted(tiny.TINY_SHAPES), val.per_class)
        for name in (*tiny_models.TINY_SIGLIP, *tiny_models.TINY_CLIP):
            facts = world.facts[name]
            loaded = load_model(facts, world.hf_cache, "cpu", world.open_clip_config_dir)
            encoder = golden.encoder_for(loaded, facts)
            result = golden.zero_shot(encoder, sample, golden.published_recipe(val), val, None, facts.weights_sha256)
            ids = [int(i) for i in encoder.tokenize([tiny.TINY_TOKEN_PROMPT])[0] if int(i) != 0]
            log(f"{name}: top-1 {result.top1:.2f}% on {result.n} images; token ids {ids}")
            out[name] = result.top1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=tiny_models.TINY_WEIGHTS_DIR)
    parser.add_argument("--measure-only", action="store_true", help="measure the committed weights, do not train")
    args = parser.parse_args(argv)
    if not args.measure_only:
        for path in train_all(args.out).values():
            print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    if args.out.resolve() == tiny_models.TINY_WEIGHTS_DIR.resolve():
        measure()
    return 0


if __name__ == "__main__":
    sys.exit(main())
