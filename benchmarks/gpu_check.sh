#!/usr/bin/env bash
# The prepared device check (issues 11 and 13): one call of the `device` tool when a session is lent a GPU, e.g.
#   run(command="bash benchmarks/gpu_check.sh", timeout_s=540): ≤ 8 min of steps
# The device image holds torch (CUDA), numpy, scipy, pandas and scikit-learn; s3r runs from src/ without installing
# (these steps import nothing else). Everything is logged to $OUT/gpu_check.log (the reply's tail holds the end).
# Steps, cheapest and most telling first, each bounded so the call ends inside its limit:
#   1. CUDA against CPU on small fits: S3R (tv, the solver's objective) and one batched tuning fold of 6 targets
#      (held-out losses); the CUDA paths had never run on a GPU before this script.
#   2. Issue 13: the workflow's round-0 `tune_fold` job for a 67-target chunk (200 targets / 3 chunks) on CUDA.
#   3. Issue 11: 10⁵ and 10⁶ spots × 100 features, medium penalties, float32 (target: 10⁶ < 60 s on one H200).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$OUT/gpu_check.log"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python3 - <<'EOF'
import numpy as np, torch
from s3r import S3R
from s3r.simulate import simulate
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
sim = simulate("three_regions", geometry="uniform", n_spots=600, seed=3, design="expression", sigma=0.5)
gpu = "cuda" if torch.cuda.is_available() else "cpu"  # without a GPU: a dry run of the script
fits = {d: S3R("tv", 2.0, 0.1, 0.1, device=d, tol=1e-6).fit(sim.X, sim.y, sim.coords) for d in ("cpu", gpu)}
a, b = (fits[d].report_["objective"] for d in ("cpu", gpu))
print(f"S3R 600 x 100 tv: objective cpu {a:.10g} {gpu} {b:.10g} (relative {abs(a - b) / abs(a):.1e}); device {fits[gpu].report_['device']}; "
      f"coef max |diff| {np.abs(fits['cpu'].coef_ - fits[gpu].coef_).max():.2e}")
EOF
  timeout 120 python3 benchmarks/gpu_fold.py --targets 6 --devices cuda cpu
  timeout 120 python3 benchmarks/gpu_fold.py --targets 67 --devices cuda
  timeout 220 python3 benchmarks/gpu.py --sizes 100000 1000000 --dtypes float32 --timeout 100
  cp benchmarks/out/gpu.jsonl "$OUT"/ 2>/dev/null
  date -u
} 2>&1 | tee "$log"
