"""Benchmark: our one-pass tar reorganizer vs extract-all-then-move (torchvision's parse_val_archive).

    python bench/bench_reorganize.py [--images 50000] [--body-bytes 0] [--reps 3] [--dir /tmp]

Both approaches run on the same synthetic flat val tar (shuffled member order, tiny JPEG bodies
unless --body-bytes), alternately, each run in a fresh child process that times only the work
itself (imports excluded). Peak memory = ru_maxrss of that child, read with os.wait4 (the same
number resource.getrusage(RUSAGE_CHILDREN) reports; it includes the interpreter and imports).
torchvision's md5 check of the archive is switched off (the tar is synthetic; we do not hash it either).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakes.imagenet_tar import small_labels, tiny_jpeg, write_val_tar  # noqa: E402

REFERENCE_SYNSETS = REPO.parent / "shared" / "reference" / "imagenet" / "ILSVRC2012_val_synsets.txt"
TAR_NAME = "ILSVRC2012_img_val.tar"

CHILD = {
    "ours": """
import sys, time, json
sys.path.insert(0, sys.argv[1])
from fetchers.imagenet_tar import reorganize_imagenet_tar
work = sys.argv[2]
t = time.perf_counter()
r = reorganize_imagenet_tar(f"{work}/%s", f"{work}/ours", f"{work}/synsets.txt", progress=None)
print(json.dumps({"seconds": time.perf_counter() - t, "images": r.n_images}))
""" % TAR_NAME,
    "torchvision": """
import sys, time, json
import torchvision.datasets.imagenet as tvi
tvi._verify_archive = lambda *a, **k: None  # md5 of the real tar; ours does not hash it either
work = sys.argv[2]
wnids = open(f"{work}/synsets.txt").read().split()  # line i = wnid of image i, as parse_val_archive expects
t = time.perf_counter()
tvi.parse_val_archive(work, file="%s", wnids=wnids, folder="tv")
print(json.dumps({"seconds": time.perf_counter() - t}))
""" % TAR_NAME,
}
OUTPUT = {"ours": "ours", "torchvision": "tv"}
CPU: dict[str, list[tuple[float, float]]] = {}  # kind -> [(user s, system s)] per run, imports included


def run_child(kind: str, work: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one run in a fresh process; CPU times go to ``CPU``."""
    shutil.rmtree(work / OUTPUT[kind], ignore_errors=True)
    os.sync()  # start each run with no dirty pages of the previous one
    proc = subprocess.Popen([sys.executable, "-c", CHILD[kind], str(REPO), str(work)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{kind} failed:\n{err}")
    seconds = json.loads(out.strip().splitlines()[-1])["seconds"]
    CPU.setdefault(kind, []).append((usage.ru_utime, usage.ru_stime))
    shutil.rmtree(work / OUTPUT[kind], ignore_errors=True)
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--body-bytes", type=int, default=0, help="size of each image body (0: one tiny real JPEG)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="where to put the tar and outputs (default: system temp)")
    args = ap.parse_args()

    if args.images == 50_000 and REFERENCE_SYNSETS.is_file():
        labels, label_src = REFERENCE_SYNSETS.read_text().split(), "real ILSVRC2012_val_synsets.txt"
    else:
        labels, label_src = small_labels(n_classes=max(1, args.images // 50), per_class=50)[: args.images], "synthetic"
    work = Path(tempfile.mkdtemp(prefix="bench_reorganize_", dir=args.dir))
    try:
        (work / "synsets.txt").write_text("\n".join(labels) + "\n")
        body = os.urandom(args.body_bytes) if args.body_bytes else tiny_jpeg()
        tar = write_val_tar(work / TAR_NAME, labels, body=body)
        print(f"tar: {len(labels):,} members ({label_src} labels, shuffled), {tar.stat().st_size / 2**20:,.0f} MiB, "
              f"in {work}")
        times: dict[str, list[float]] = {"torchvision": [], "ours": []}
        rss: dict[str, list[float]] = {"torchvision": [], "ours": []}
        for rep in range(args.reps):
            for kind in (("torchvision", "ours") if rep % 2 == 0 else ("ours", "torchvision")):
                s, m = run_child(kind, work)
                times[kind].append(s)
                rss[kind].append(m)
        print(f"\n{'approach':44} {'median s':>9} {'runs (s)':>30} {'peak RSS':>10} {'user+sys s (median)':>20}")
        names = {"torchvision": "extract-all-then-move (torchvision)", "ours": "one pass (fetchers.imagenet_tar)"}
        for kind in ("torchvision", "ours"):
            runs = " ".join(f"{t:.2f}" for t in times[kind])
            user = statistics.median(u for u, _ in CPU[kind])
            system = statistics.median(s for _, s in CPU[kind])
            print(f"{names[kind]:44} {statistics.median(times[kind]):9.2f} {runs:>30} {max(rss[kind]):7.0f} MiB "
                  f"{user:9.1f} + {system:.1f}")
        ratio = statistics.median(times["ours"]) / statistics.median(times["torchvision"])
        print(f"\nratio ours / torchvision (median time): {ratio:.2f}x  (target <= 0.70x)")
        print(f"peak RSS ours: {max(rss['ours']):.0f} MiB  (target < 300 MiB; ru_maxrss of the child via os.wait4, "
              f"interpreter and imports included; torchvision's includes importing torch)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
