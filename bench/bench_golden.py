"""Benchmark: the golden check, on the tiny world and on real-size random-weight models on the CPU.

1. Tiny world, end to end through pytest: `pytest --tiny -m golden` (cold: every text classifier is
   built), the same world again (the classifiers come from the verify cache), and `pytest --tiny`
   with and without the golden checks (the CI smoke budget is 30 s).
2. Real-size architectures with random weights (no checkpoint is needed, and no GPU): per model,
   images/s through the golden path (parallel decode + the model's preprocessing + batched
   encode) against a bare sequential loop (decode, preprocess, encode one image at a time) in the
   same process, prompts/s of the text tower, and the estimate of a cold k=5 run (5,000 images,
   80,000 prompts) on this CPU. The JPEGs are 500x375 noise, ImageNet's typical size.

    python bench/bench_golden.py [--images 16] [--prompts 64] [--models clip_b32,siglip2_base,...] [--device cuda]

GPU figures come from bench/gpu_golden.sh on a GPU machine (--device cuda).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from checks import golden  # noqa: E402
from preflight_core.registry import ASSETS  # noqa: E402

# Real-size SigLIP 2 towers (google/siglip2-*/config.json dims); text vocab 256k as Gemma's.
SIGLIP_DIMS = {"siglip2_base": dict(hidden=768, inter=3072, layers=12, heads=12, image=224, patch=16),
               "siglip2_so400m": dict(hidden=1152, inter=4304, layers=27, heads=16, image=384, patch=14)}


def pytest_seconds(*args: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=PROJECT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT)})
    return time.perf_counter() - t0, proc.returncode


def tiny_section() -> dict:
    from checks.tiny import build_tiny_world

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "w"
        build_tiny_world(world)
        report = Path(tmp) / "r.json"
        for label in ("cold", "cached"):
            seconds, rc = pytest_seconds("-m", "golden", f"--tiny-world={world}", f"--report-json={report}")
            rows = json.loads(report.read_text())["assets"]
            out[f"golden_{label}_s"] = round(seconds, 2)
            out[f"golden_{label}_rc"] = rc
            out[f"golden_{label}_check_s"] = {r["name"]: r["zero_shot"]["seconds"] for r in rows}
    for label, args in (("tiny_all_s", ()), ("tiny_without_golden_s", ("-m", "not golden"))):
        out[label] = round(pytest_seconds("--tiny", *args)[0], 2)
    out["golden_share_of_tiny"] = round(out["tiny_all_s"] / out["tiny_without_golden_s"], 2)
    return out


def jpegs(folder: Path, n: int) -> list[Path]:
    from PIL import Image

    rng = random.Random(0)
    paths = []
    for i in range(n):
        im = Image.frombytes("RGB", (500, 375), rng.randbytes(500 * 375 * 3))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        path = folder / f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        path.write_bytes(buf.getvalue())
        paths.append(path)
    return paths


def real_size(name: str):
    """(loaded, facts) of a real-size architecture with random weights, on the CPU."""
    import torch

    facts = ASSETS[name].facts
    torch.manual_seed(0)
    if facts.library == "open_clip":
        import open_clip

        model, _, preprocess = open_clip.create_model_and_transforms(facts.open_clip_name, pretrained=None)
        return SimpleNamespace(model=model.eval(), preprocess=preprocess, device="cpu",
                               tokenizer=open_clip.get_tokenizer(facts.open_clip_name)), facts
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    d = SIGLIP_DIMS[name]
    tower = dict(hidden_size=d["hidden"], intermediate_size=d["inter"], num_hidden_layers=d["layers"],
                 num_attention_heads=d["heads"])
    config = SiglipConfig(text_config=dict(vocab_size=256_000, max_position_embeddings=64, **tower),
                          vision_config=dict(image_size=d["image"], patch_size=d["patch"], **tower))
    model = SiglipModel(config).eval()
    processor = SimpleNamespace(image_processor=SiglipImageProcessor(
        size={"height": d["image"], "width": d["image"]}, resample=2, image_mean=[0.5] * 3, image_std=[0.5] * 3))
    return SimpleNamespace(model=model, processor=processor, device="cpu"), facts


def model_section(name: str, paths: list[Path], n_prompts: int, device: str = "cpu") -> dict:
    import torch
    from PIL import Image

    loaded, facts = real_size(name)
    loaded.model.to(device)
    loaded.device = device
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    encoder = golden.encoder_for(loaded, facts)
    golden._PIXELS.clear()
    with torch.inference_mode():
        with Image.open(paths[0]) as im:  # warm-up: the first call of a model pays for kernels and allocations
            encoder.encode_image(encoder.pixels(im.convert("RGB"))[None])
        t0 = time.perf_counter()  # the bare loop: one image at a time, decode → preprocess → encode
        for path in paths:
            with Image.open(path) as im:
                encoder.encode_image(encoder.pixels(im.convert("RGB"))[None])
        sync()
        bare = time.perf_counter() - t0
        t0 = time.perf_counter()  # ours: parallel decode + preprocess, one batched encode
        decode, batches = 0.0, golden.pixel_batches(encoder, paths)
        while True:
            t1 = time.perf_counter()
            pixels = next(batches, None)
            decode += time.perf_counter() - t1
            if pixels is None:
                break
            encoder.encode_image(pixels)
        sync()
        ours = time.perf_counter() - t0
        if isinstance(encoder, golden.SiglipEncoder):
            ids = torch.randint(5, 250_000, (n_prompts, 64))
        else:
            ids = loaded.tokenizer(["a photo of a tench."] * n_prompts)
        t0 = time.perf_counter()
        for start in range(0, n_prompts, 64):
            encoder.encode_text(ids[start:start + 64])
        sync()
        text = time.perf_counter() - t0
    n = len(paths)
    image_rate, prompt_rate = n / ours, n_prompts / text
    del loaded
    return {"images": n, "bare_images_per_s": round(n / bare, 2), "golden_images_per_s": round(image_rate, 2),
            "speedup_vs_bare": round(bare / ours, 2), "decode_share": round(decode / ours, 2),
            "prompts_per_s": round(prompt_rate, 1),
            "estimated_cold_k5_s": round(5000 / image_rate + 80_000 / prompt_rate),
            "estimated_cached_k5_s": round(5000 / image_rate)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--models", default="clip_b32,siglip2_base,clip_l14,siglip2_so400m")
    parser.add_argument("--skip-tiny", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: where the real-size models run")
    args = parser.parse_args()
    import torch

    gpu = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "no GPU figures"
    print(f"CPU: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads; {gpu}")
    if not args.skip_tiny:
        print("tiny world:", json.dumps(tiny_section()))
    with tempfile.TemporaryDirectory() as tmp:
        paths = jpegs(Path(tmp), args.images)
        for name in args.models.split(","):
            result = model_section(name, paths, args.prompts, args.device)
            print(f"{name} (real size, random weights, {args.device}):", json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
