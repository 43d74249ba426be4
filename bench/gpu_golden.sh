#!/usr/bin/env bash
# The golden check on a GPU machine: the real check on the real assets, then the bench on the GPU.
# Run from the project root, after `python -m fetchers --all` (or with the assets already in place):
#     bash bench/gpu_golden.sh [extra pytest args, e.g. --data-root=/data/raw]
# Writes gpu_golden/*.json and *.log. Targets (issue 13): all four models at k=5 ≤ 60 s cold, ≤ 30 s cached.
set -uo pipefail
out=${GOLDEN_OUT:-gpu_golden}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
# A fresh, private verify cache: the first run builds every text classifier, the second reuses them.
PREFLIGHT_CACHE_DIR=$(mktemp -d "$out/cache.XXXXXX")
export PREFLIGHT_CACHE_DIR
for run in cold cached; do
    start=$EPOCHREALTIME
    python -m pytest -m golden --device cuda -p no:cacheprovider --report-json="$out/golden-$run.json" "$@" \
        2>&1 | tee "$out/golden-$run.log"
    status=${PIPESTATUS[0]}
    echo "golden $run: $(python -c "print(round($EPOCHREALTIME - $start, 1))") s (exit $status)" | tee -a "$out/summary.txt"
done
python bench/bench_golden.py --device cuda --images 256 --prompts 2048 --skip-tiny 2>&1 | tee "$out/bench-cuda.log"
python bench/bench_golden.py --images 16 --prompts 64 --models clip_b32,siglip2_base 2>&1 | tee "$out/bench-cpu.log"
