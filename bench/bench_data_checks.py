"""Benchmarks of the data checks, as ratios against a baseline run in the same script.

1. Quick checks of a 50,000-image tree vs torchvision ImageFolder indexing the same tree, each a
   whole process, in paired runs (medians of the per-pair ratios): the first run (an empty verify
   cache; target <= 0.5) and the second run on the unchanged tree (the quick verdicts come from
   the cache, no file is opened; target <= 0.3).
2. --deep decoding per core vs a plain `Image.open(p).convert("RGB")` loop over the same
   realistic 500x375 JPEGs (target: ours >= 1.0x the images/s of the loop).
3. --deep with -n 2 vs -n 1 (target: near-linear on this 2-core machine), and a second --deep
   run on the unchanged tree vs the first (target: <= 5%).

4. Hostile trees (tests/test_hostile_trees.py): how long a whole `pytest -m "imagenet or coco"`
   run takes on each, quick and --deep, and what its broken row says.

    python bench/bench_data_checks.py [--images 4000] [--repeat 3] [--only quick|deep|hostile]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from checks.imagenet import val_name  # noqa: E402
from checks.tiny import jpeg_bytes  # noqa: E402


def build_full_tree(root: Path) -> Path:
    """1000 folders x 50 tiny JPEGs under the real names (labels: a fixed synthetic assignment)."""
    val = root / "imagenet_val"
    body = jpeg_bytes(1, size=(8, 8))
    wnids = [f"n{10000000 + i:08d}" for i in range(1000)]
    for w in wnids:
        (val / w).mkdir(parents=True)
    for i in range(50_000):
        (val / wnids[i % 1000] / val_name(i + 1)).write_bytes(body)
    return root


def realistic_jpeg(seed: int) -> bytes:
    """500x375, smooth structure plus noise: ~60-120 KB at quality 90, like a val photo."""
    from PIL import Image, ImageFilter

    rng = random.Random(seed)
    small = Image.frombytes("RGB", (25, 19), rng.randbytes(25 * 19 * 3)).resize((500, 375), Image.BICUBIC)
    noise = Image.effect_noise((500, 375), 40).convert("RGB")
    im = Image.blend(small, noise, 0.25).filter(ImageFilter.SMOOTH)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def build_realistic_tree(root: Path, n: int) -> Path:
    val = root / "imagenet_val"
    bodies = [realistic_jpeg(s) for s in range(64)]
    for i in range(n):
        folder = val / f"n{10000000 + i % 100:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / val_name(i + 1)).write_bytes(bodies[i % len(bodies)])
    return root


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=PROJECT, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def median_of(repeat: int, fn) -> float:
    return statistics.median(fn() for _ in range(repeat))


def settle() -> None:
    """Files younger than the verify cache's racy window are not cached: let a fresh tree age past it."""
    from preflight_core.verify_cache import RACY_NS

    time.sleep(RACY_NS / 1e9 + 0.5)


def bench_quick_checks(root: Path, repeat: int) -> None:
    val = root / "imagenet_val"
    imagefolder = [sys.executable, "-c",
                   f"from torchvision.datasets import ImageFolder; ImageFolder({str(val)!r})"]
    quick = [sys.executable, "-m", "pytest", "checks", "-p", "no:cacheprovider", "-q", "-m", "imagenet",
             f"--data-root={root}"]
    settle()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as warm_up:
        env["PREFLIGHT_CACHE_DIR"] = warm_up
        timed(imagefolder), timed(quick, env)  # warm the page cache for both alike
    t_if, t_first, t_second = [], [], []
    for _ in range(repeat):  # paired: the machine's load drifts alike for all three
        with tempfile.TemporaryDirectory() as cache_dir:
            env["PREFLIGHT_CACHE_DIR"] = cache_dir
            t_if.append(timed(imagefolder))
            t_first.append(timed(quick, env))
            t_second.append(timed(quick, env))
    med = statistics.median
    r_first = med(f / i for f, i in zip(t_first, t_if))
    r_second = med(s / i for s, i in zip(t_second, t_if))
    print(f"[quick] ImageFolder index, whole process  : {med(t_if):6.2f} s (median of {repeat})")
    print(f"[quick] preflight -m imagenet, first run  : {med(t_first):6.2f} s  ratio {r_first:.2f} (target <= 0.5)")
    print(f"[quick] preflight -m imagenet, second run : {med(t_second):6.2f} s  ratio {r_second:.2f} (target <= 0.3)")


def bench_deep(root: Path, repeat: int) -> None:
    from PIL import Image

    from checks.deep import verify_images
    from checks.imagenet import scan_val
    from preflight_core.registry import IMAGENET_VAL_OFFICIAL
    from preflight_core.verify_cache import VerifyCache

    settle()
    tree = scan_val(root / "imagenet_val", IMAGENET_VAL_OFFICIAL)
    entries = [im.entry for im in tree.images]
    paths = [str(tree.root / e.rel) for e in entries]

    def plain_loop() -> float:
        start = time.perf_counter()
        for p in paths:
            Image.open(p).convert("RGB")
        return time.perf_counter() - start

    def ours() -> float:
        start = time.perf_counter()
        problems, _ = verify_images(tree.root, entries, None)
        assert not problems, problems[:3]
        return time.perf_counter() - start

    plain_loop(), ours()
    t_plain = median_of(repeat, plain_loop)
    t_ours = median_of(repeat, ours)
    n = len(paths)
    print(f"[deep] plain open().convert('RGB') loop   : {n / t_plain:8.0f} images/s ({1000 * t_plain / n:.2f} ms each)")
    print(f"[deep] preflight decode, one core          : {n / t_ours:8.0f} images/s ({1000 * t_ours / n:.2f} ms each)")
    print(f"[deep] per-core throughput ratio           : {t_plain / t_ours:8.2f}x (target >= 1.0)")

    with tempfile.TemporaryDirectory() as cache_dir:
        cache = VerifyCache(Path(cache_dir) / "verified")
        start = time.perf_counter()
        verify_images(tree.root, entries, cache)
        first = time.perf_counter() - start
        start = time.perf_counter()
        _, decoded = verify_images(tree.root, entries, cache)
        second = time.perf_counter() - start
        assert decoded == 0
    print(f"[deep] second run on unchanged tree        : {second:.3f} s vs first {first:.3f} s = "
          f"{100 * second / first:.1f}% (target <= 5%)")

    env = dict(os.environ)
    base = [sys.executable, "-m", "pytest", "checks", "-p", "no:cacheprovider", "-q", "-m", "imagenet",
            "-k", "test_images_decode", "--deep", f"--data-root={root}"]

    def run_with(workers: int) -> float:
        with tempfile.TemporaryDirectory() as cache_dir:
            env["PREFLIGHT_CACHE_DIR"] = cache_dir
            return timed(base + (["-n", str(workers)] if workers else []), env)

    t0, t1, t2 = (median_of(repeat, lambda w=w: run_with(w)) for w in (0, 1, 2))
    print(f"[deep] pytest --deep, no xdist             : {t0:6.2f} s (whole process)")
    print(f"[deep] pytest --deep -n 1 / -n 2            : {t1:6.2f} s / {t2:6.2f} s -> speed-up {t1 / t2:.2f}x "
          f"on {os.cpu_count()} cores (target: near-linear)")
    with tempfile.TemporaryDirectory() as cache_dir:
        env["PREFLIGHT_CACHE_DIR"] = cache_dir
        first = timed(base, env)
        second = timed(base, env)
    print(f"[deep] whole process, second run vs first  : {second:.2f} s vs {first:.2f} s = {100 * second / first:.0f}% "
          "(includes pytest start-up and the tree scan)")


def bench_hostile(tmp: Path) -> None:
    """Each hostile tree of the self-tests, planted in a tiny world: wall time of a whole run, and the row."""
    import json

    from checks.tiny import build_tiny_world
    from tests.test_hostile_trees import HOSTILE

    print(f"{'hostile tree':28} {'quick s':>7} {'deep s':>7}  broken row: first problem")
    for plant, _, _, row in HOSTILE:
        world = tmp / plant.__name__ / "world"
        build_tiny_world(world, models=False)
        plant(world)
        times, said = [], ""
        for deep in ((), ("--deep",)):
            report = world.parent / "report.json"
            cmd = [sys.executable, "-m", "pytest", "checks", "-p", "no:cacheprovider", "-q", "-m", "imagenet or coco",
                   f"--tiny-world={world}", f"--report-json={report}", *deep]
            start = time.perf_counter()
            try:
                subprocess.run(cmd, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
                times.append(f"{time.perf_counter() - start:7.2f}")
            except subprocess.TimeoutExpired:
                times.append("  >120 (hung)")
                continue
            if not deep and report.exists():
                asset = next((a for a in json.loads(report.read_text())["assets"] if a["name"] == row), {})
                said = f"{row} {asset.get('status')}: {(asset.get('problems') or [''])[0][:150]}"
        print(f"{plant.__name__:28} {times[0]:>7} {times[1]:>7}  {said}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000, help="realistic JPEGs for the --deep benchmarks")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("quick", "deep", "hostile"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="preflight-bench-") as tmp:
        if args.only == "hostile":
            bench_hostile(Path(tmp))
            return
        if args.only != "deep":
            start = time.perf_counter()
            full = build_full_tree(Path(tmp) / "full")
            print(f"built 50,000-image tree in {time.perf_counter() - start:.1f} s")
            bench_quick_checks(full, args.repeat)
        if args.only != "quick":
            start = time.perf_counter()
            real = build_realistic_tree(Path(tmp) / "real", args.images)
            print(f"built {args.images:,} realistic 500x375 JPEGs in {time.perf_counter() - start:.1f} s")
            bench_deep(real, args.repeat)


if __name__ == "__main__":
    main()
