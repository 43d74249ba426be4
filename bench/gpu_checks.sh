#!/usr/bin/env bash
# The per-GPU checks on a GPU machine (not run in CI; no GPU here). From the project root:
#   bash bench/gpu_checks.sh [OUT_DIR]
# Prints each visible GPU's facts and sub-row (kernel, free memory, bf16, ~1 s bf16 matmul TFLOP/s,
# NVML: ECC, remapped rows, clock-event reasons, other processes, PCIe), how long the survey took,
# and the gpu row of `pytest -m gpu` with its sub-rows; writes OUT_DIR/gpus.json and report.json.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/preflight-gpu-checks}}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

nvidia-smi -L || echo "nvidia-smi not found"
python - "$OUT" <<'EOF'
import json, sys, time
from dataclasses import asdict
from checks.gpus import classify_node, observe_all, sub_row_text

t0 = time.perf_counter()
facts = observe_all("cuda")
seconds = time.perf_counter() - t0
rows = classify_node(facts)
for f, r in zip(facts, rows):
    print(json.dumps(asdict(f), default=str))
    print("   ", sub_row_text(r.as_dict()))
print(f"{len(facts)} GPU(s) surveyed in {seconds:.1f} s")
json.dump({"seconds": seconds, "facts": [asdict(f) for f in facts], "rows": [r.as_dict() for r in rows]},
          open(f"{sys.argv[1]}/gpus.json", "w"), indent=1, default=str)
EOF
# The same through the checks: the gpu row and one sub-row per GPU (exit 1 is a finding, not an error here).
python -m pytest -m gpu -p no:cacheprovider --report-json="$OUT/report.json" || true
