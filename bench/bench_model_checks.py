"""Benchmark: the model checks vs the bare load + one forward pass a user would write by hand.

Both run on the tiny models of the tiny world, on the CPU, each in a fresh process (so imports and
first loads count alike), alternating, median of --repeat runs. Target: ours <= 1.10x the bare code.
Also times `pytest --tiny` end to end (target: under 30 s on this 2-core machine).

    python bench/bench_model_checks.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]

BARE = r"""
import sys, torch, open_clip
from pathlib import Path
from PIL import Image
from transformers import AutoModel, AutoProcessor
root = Path(sys.argv[1]); hub = root / "hf" / "hub"
open_clip.add_model_config(root / "open_clip_configs")
images = [Image.new("RGB", (64, 48), (120, 30, 200)), Image.new("RGB", (48, 64), (10, 200, 30))]
texts = ["a photo of a tench", "a photo of a goldfish"]
for repo in ("google/siglip2-base-patch16-224", "google/siglip2-so400m-patch14-384"):
    model = AutoModel.from_pretrained(repo, cache_dir=hub, local_files_only=True).eval()
    processor = AutoProcessor.from_pretrained(repo, cache_dir=hub, local_files_only=True)
    inputs = processor(text=texts, images=images, padding="max_length", max_length=64, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    assert out.image_embeds.shape[0] == 2
for name in ("ViT-B-32-quickgelu", "ViT-L-14-quickgelu"):
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained="openai", cache_dir=str(hub))
    tokenizer = open_clip.get_tokenizer(name)
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(i) for i in images]), normalize=True)
        txt = model.encode_text(tokenizer(texts), normalize=True)
    assert (img @ txt.T).shape == (2, 2)
"""

OURS = r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from checks import models
from preflight_core.hf_cache import cache_report
from checks.tiny import load_tiny_world
world = load_tiny_world(Path(sys.argv[1]))
for name in ("siglip2_base", "siglip2_so400m", "clip_b32", "clip_l14"):
    facts = world.facts_for(name)
    assert cache_report(facts, world.hf_cache).complete
    loaded = models.load_model(facts, world.hf_cache, "cpu", world.open_clip_config_dir)
    assert models.forward_check(loaded, facts).problems == []
"""


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"{cmd[:3]} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(PROJECT))
    import os

    from checks.tiny import build_tiny_world

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
    with tempfile.TemporaryDirectory(prefix="preflight-bench-") as tmp:
        root = Path(tmp) / "world"
        build_tiny_world(root)
        bare_cmd = [sys.executable, "-c", BARE, str(root)]
        ours_cmd = [sys.executable, "-c", OURS, str(root), str(PROJECT)]
        timed(bare_cmd, env), timed(ours_cmd, env)  # warm the page cache for both
        bare, ours = [], []
        for _ in range(args.repeat):
            bare.append(timed(bare_cmd, env))
            ours.append(timed(ours_cmd, env))
        b, o = statistics.median(bare), statistics.median(ours)
        print(f"[models] bare load + forward, 4 tiny models, whole process : {b:6.2f} s")
        print(f"[models] preflight cache + load + forward checks           : {o:6.2f} s")
        print(f"[models] ratio preflight / bare                             : {o / b:6.3f} (target <= 1.10)")
    tiny = [timed([sys.executable, "-m", "pytest", "--tiny", "-q", "-p", "no:cacheprovider"]) for _ in range(3)]
    print(f"[tiny]   pytest --tiny end to end (median of 3)               : {statistics.median(tiny):6.2f} s "
          "(target < 30 s)")


if __name__ == "__main__":
    main()
