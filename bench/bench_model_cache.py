"""The HF cache check's small-file hashing, as ratios against a baseline in the same script.

A SigLIP2-shaped snapshot with real file sizes (configs of ~1 KiB, a 34 MB tokenizer.json, weights
judged by name, size and structure only): ``cache_report`` on a first run (every small file hashed)
and on a re-run with the verify cache (a ``stat`` per file), against the baseline of reading the
same files' bytes once (``Path.read_bytes``, what any loader does). Target: the re-run <= 50 ms per model.

    python bench/bench_model_cache.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from checks.tiny_models import etag_for  # noqa: E402
from preflight_core.hf_cache import cache_report  # noqa: E402
from preflight_core.registry import SIGLIP2_FILES, Library, ModelFacts  # noqa: E402
from preflight_core.verify_cache import RACY_NS, VerifyCache  # noqa: E402

REPO = "google/siglip2-base-patch16-224"


def safetensors(n: int) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [n // 4], "data_offsets": [0, n // 4 * 4]}}).encode()
    return len(header).to_bytes(8, "little") + header + bytes(n // 4 * 4)


def build(cache: Path) -> ModelFacts:
    rdir = cache / ("models--" + REPO.replace("/", "--"))
    commit = "0" * 40
    snap, blobs = rdir / "snapshots" / commit, rdir / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    (rdir / "refs").mkdir()
    (rdir / "refs" / "main").write_text(commit)
    tokenizer = json.dumps({"model": {"vocab": {f"tok{i}": i for i in range(1_500_000)}}}).encode()
    files = {"config.json": b'{"model_type": "siglip"}' + b" " * 1000,
             "preprocessor_config.json": b'{"do_resize": true}' + b" " * 400,
             "tokenizer.json": tokenizer,
             "tokenizer_config.json": b'{"tokenizer_class": "GemmaTokenizer"}' + b" " * 800,
             "model.safetensors": safetensors(80 << 20)}  # over the hashing bound: judged by structure
    for name, data in files.items():
        blob = blobs / etag_for(name, data)
        blob.write_bytes(data)
        (snap / name).symlink_to(os.path.relpath(blob, snap))
    old = time.time() - 3600
    for blob in blobs.iterdir():
        os.utime(blob, (old, old))
    print(f"snapshot: {', '.join(f'{n} {len(d) / 2**20:.1f} MiB' for n, d in files.items())}")
    return ModelFacts(Library.TRANSFORMERS, REPO, 768, 224, 64, SIGLIP2_FILES)


def read_small_files(cache: Path) -> None:
    snap = next((cache / ("models--" + REPO.replace("/", "--")) / "snapshots").iterdir())
    for link in snap.iterdir():
        if not link.name.endswith(".safetensors"):
            link.read_bytes()


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "hub"
        facts = build(cache)
        time.sleep(RACY_NS / 1e9 + 0.1)  # the verify cache trusts no identity younger than this (ctime)
        first, rerun, baseline = [], [], []
        for i in range(args.repeat):
            verified = VerifyCache(Path(tmp) / f"verified-{i}")
            baseline.append(timed(read_small_files, cache))
            first.append(timed(cache_report, facts, cache, verified))
            rerun.append(timed(cache_report, facts, cache, verified))
        assert cache_report(facts, cache, verified).complete
        b, f, r = (statistics.median(x) for x in (baseline, first, rerun))
        print(f"baseline (read the small files once): {b * 1000:.1f} ms")
        print(f"first run (hash every small file):    {f * 1000:.1f} ms  ({f / b:.2f}x the baseline)")
        print(f"re-run (verify cache, a stat each):   {r * 1000:.1f} ms  ({r / b:.2f}x the baseline; "
              f"target <= 50 ms per model: {'met' if r <= 0.05 else 'NOT met'})")


if __name__ == "__main__":
    main()
