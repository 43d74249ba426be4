"""Benchmark: fetch_file vs a bare requests streaming copy, same file, loopback server.

    python bench/bench_download.py [--mb 300] [--reps 5] [--dir /tmp] [--rate-mbps 250]

The server (tests/fakes/http_server.py, sendfile) runs in a child process; both clients run in this
process, alternately, into the same folder; outputs are deleted between runs (outside the timing).
fetch_file does everything it always does: lock, re-check, free-space check, sha256 while streaming
(in a helper thread), atomic rename. The bare copy only streams into a file (1 MiB chunks).
``--rate-mbps`` adds a second round against a server throttled to a realistic link speed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from core.registry import RemoteFile  # noqa: E402
from fetchers.download import CHUNK_SIZE, fetch_file  # noqa: E402

URL = "https://bench.example.org/data/blob.bin"
NAMES = {"bare": "bare requests streaming copy (no hash)",
         "ours": "fetch_file (lock, re-check, sha256, atomic rename)"}


def bare_copy(url: str, out: Path) -> None:
    with requests.get(url, stream=True, timeout=60) as r, open(out, "wb") as f:
        r.raise_for_status()
        for chunk in r.iter_content(CHUNK_SIZE):
            f.write(chunk)


def measure(work: Path, remote: RemoteFile, reps: int, rate_mbps: float) -> dict[str, list[float]]:
    cmd = [sys.executable, str(REPO / "tests" / "fakes" / "http_server.py"), "--root", str(work / "srv")]
    server = subprocess.Popen(cmd + (["--rate-mbps", str(rate_mbps)] if rate_mbps else []),
                              stdout=subprocess.PIPE, text=True)
    try:
        base = server.stdout.readline().strip()
        os.environ["PREFLIGHT_MIRROR"] = base
        out_dir = work / "out"
        runners = {"bare": lambda: bare_copy(f"{base}/bench.example.org/data/blob.bin", out_dir / "blob.bin"),
                   "ours": lambda: fetch_file(remote, out_dir, progress=None)}
        times: dict[str, list[float]] = {"bare": [], "ours": []}
        for rep in range(reps):
            for kind in (("bare", "ours") if rep % 2 == 0 else ("ours", "bare")):
                shutil.rmtree(out_dir, ignore_errors=True)
                out_dir.mkdir()
                os.sync()
                t = time.perf_counter()
                runners[kind]()
                times[kind].append(time.perf_counter() - t)
        with open(out_dir / "blob.bin", "rb") as f:
            assert hashlib.file_digest(f, "sha256").hexdigest() == remote.sha256
        return times
    finally:
        server.terminate()
        server.wait(10)


def report(title: str, size: int, times: dict[str, list[float]], sha_rate: float) -> None:
    print(f"\n{title}\n{'client':52} {'median s':>9} {'MB/s':>8} {'runs (s)':>30}")
    rate = {}
    for kind in ("bare", "ours"):
        med = statistics.median(times[kind])
        rate[kind] = size / 1e6 / med
        print(f"{NAMES[kind]:52} {med:9.2f} {rate[kind]:8.0f} {' '.join(f'{t:.2f}' for t in times[kind]):>30}")
    print(f"throughput ratio fetch_file / bare: {rate['ours'] / rate['bare']:.2f}  (target >= 0.80; "
          f"hashing while streaming caps it near {min(1.0, sha_rate / rate['bare']):.2f} here)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=300, help="file size in MiB")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None, help="where the served file and the downloads go")
    ap.add_argument("--rate-mbps", type=float, default=0,
                    help="also run against a server throttled to about this many MB/s (a real link), e.g. 250")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_download_", dir=args.dir))
    try:
        src = work / "srv" / "bench.example.org" / "data" / "blob.bin"
        src.parent.mkdir(parents=True)
        h = hashlib.sha256()
        block = os.urandom(1 << 20)
        with open(src, "wb") as f:
            for i in range(args.mb):
                chunk = block[i:] + block[:i]  # distinct MiBs, cheaply
                f.write(chunk)
                h.update(chunk)
        size = src.stat().st_size
        remote = RemoteFile("blob.bin", (URL,), size, h.hexdigest())
        big = block * 64
        t = time.perf_counter()
        hashlib.sha256(big)
        sha_rate = len(big) / 1e6 / (time.perf_counter() - t)
        print(f"file: {size / 1e6:,.0f} MB in {work}; {args.reps} runs each, alternating; "
              f"sha256 on this CPU: {sha_rate:,.0f} MB/s (one stream)")
        report("loopback, unthrottled", size, measure(work, remote, args.reps, 0), sha_rate)
        if args.rate_mbps:
            report(f"loopback, server throttled to ~{args.rate_mbps:g} MB/s", size,
                   measure(work, remote, args.reps, args.rate_mbps), sha_rate)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
