"""Benchmarks of the fleet verdict.

1. The merge of 1,000 synthetic node reports (8 GPUs each, the real writer and the real
   ``python -m checks.fleet`` in-process), against reading the same 1,000 files with json.load
   (the baseline: what any merge must do). Target: the merge <= 1 s.
2. A 3-node ``salloc -N3 pytest -m "phase1 and not gpu" --fleet`` on the tiny world against the same
   pytest run on one node alone (``salloc -N1 srun -N1 pytest …``): what the fleet adds. Target: <= 3 s.
   Needs the one-host test Slurm (``scripts/slurm-test-cluster.sh start``; SLURM_CONF set).
   On this 2-core machine the three "nodes" share the cores, so part of the difference is contention.

    python bench/bench_fleet.py [--reports 1000] [--repeat 3] [--only merge|fleet]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from checks.fleet import main as merge_main  # noqa: E402
from checks.fleet import write_node_report  # noqa: E402
from checks.tiny import build_tiny_world  # noqa: E402


def synthetic_report(i: int) -> dict:
    gpus = [{"index": g, "uuid": f"GPU-{i:08d}-{g:04d}", "pci_bus_id": f"00000000:{0x18 + g:02X}:00.0",
             "name": "H100", "status": "ready", "problems": [], "warnings": [], "not_checked": [],
             "tflops": 600.0 + (i * 7 + g) % 40} for g in range(8)]
    bad = i % 50 == 0
    assets = [{"name": n, "status": "missing" if bad and n == "clip_l14" else "ready", "required": True,
               "path": f"/data/{n}", "problems": ["absent"] if bad and n == "clip_l14" else [],
               "fix": "fetch it" if bad and n == "clip_l14" else "",
               "fix_commands": ["python -m fetchers --clip"] if bad and n == "clip_l14" else []}
              for n in ("imagenet_val", "imagenet_meta", "siglip2_base", "siglip2_so400m", "clip_b32", "clip_l14",
                        "python_env")]
    assets.append({"name": "gpu", "status": "ready", "problems": [], "fix": "", "fix_commands": [], "gpus": gpus})
    return {"ok": not bad, "complete": True, "selection": "-m 'phase1'", "problems": [],
            "verdict": "READY" if not bad else "NOT READY", "assets": assets}


def bench_merge(n: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        folder = Path(tmp)
        for i in range(n):
            write_node_report(folder, synthetic_report(i), {"SLURMD_NODENAME": f"node{i + 1:04d}", "SLURM_JOB_ID": "1"})
        expect = f"node[0001-{n:04d}]"
        merges, loads = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            for p in sorted(folder.glob("*.json")):
                json.loads(p.read_text())
            loads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()) as out:
                code = merge_main([str(folder), "--expect", expect, "--json", str(folder / ".merged")], {})
            merges.append(time.perf_counter() - t0)
        m, b = statistics.median(merges), statistics.median(loads)
        tail = out.getvalue().strip().splitlines()[-1]
        print(f"merge of {n:,} node reports (8 GPUs each): {m:.3f} s (target <= 1 s); json.load of the same files "
              f"{b:.3f} s; ratio {m / b:.1f}x; exit {code}; last line: {tail[:100]}")


def bench_fleet(repeat: int) -> None:
    if not os.environ.get("SLURM_CONF"):
        print("fleet: skipped (no SLURM_CONF: bash scripts/slurm-test-cluster.sh start, then "
              "SLURM_CONF=/tmp/preflight-slurm/slurm.conf)")
        return
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        world = Path(tmp) / "world"
        build_tiny_world(world)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFLIGHT_", "SLURM_"))}
        env.update(SLURM_CONF=os.environ["SLURM_CONF"], PYTHONPATH=str(PROJECT), PREFLIGHT_TINY_WORLD=str(world),
                   PREFLIGHT_DEVICE="cpu")
        pytest_args = [sys.executable, "-m", "pytest", str(PROJECT / "checks"), "-m", "phase1 and not gpu", "-q",
                       "-p", "no:cacheprovider", "-p", "no:randomly"]
        single, fleet1, fleet3, slowest = [], [], [], []
        for r in range(repeat):
            for label, argv, out in (
                    ("one node", ["salloc", "-N1", "srun", "-N1", *pytest_args], single),
                    ("1-node fleet", ["salloc", "-N1", *pytest_args, "--fleet", f"--fleet-dir={tmp}/a{r}"], fleet1),
                    ("3-node fleet", ["salloc", "-N3", *pytest_args, "--fleet", f"--fleet-dir={tmp}/b{r}"], fleet3)):
                t0 = time.perf_counter()
                run = subprocess.run(argv, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600)
                out.append(time.perf_counter() - t0)
                if run.returncode:
                    print(f"{label}: exit {run.returncode}\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
            records = [json.loads(p.read_text()) for p in Path(f"{tmp}/b{r}").glob("*.exit.json")]
            slowest.append(max(rec["seconds"] for rec in records))
        s, f1, f3 = statistics.median(single), statistics.median(fleet1), statistics.median(fleet3)
        own = statistics.median(f3_ - n for f3_, n in zip(fleet3, slowest))
        print(f"tiny world, -m 'phase1 and not gpu' (medians of {repeat}): one node alone {s:.1f} s; "
              f"--fleet on 1 node {f1:.1f} s (adds {f1 - s:+.1f} s, target <= 3 s); --fleet on 3 nodes {f3:.1f} s "
              f"(adds {f3 - s:+.1f} s: the three share 2 cores here); 3-node wall minus its slowest node's own "
              f"pytest time: {own:.1f} s (srun + wrapper + merge)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("merge", "fleet"))
    args = parser.parse_args()
    if args.only in (None, "merge"):
        bench_merge(args.reports, args.repeat)
    if args.only in (None, "fleet"):
        bench_fleet(args.repeat)


if __name__ == "__main__":
    main()
