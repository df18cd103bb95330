#!/usr/bin/env bash
# Issue 16, deliverable 5: the CUDA paths on a real GPU. Run from the repository root on a machine with an NVIDIA
# GPU, with the project installed (.venv or `pip install -e .[energy]`); written on a CPU-only machine, not run yet.
#
#   N=100 REPEAT=20 bash bench/gpu_check.sh            # the issue's sizes (~10 min on an H200; N=30 for a short try)
#   BACKEND=torch-cpu SPACE=nb201:C=4,N=1 N=8 REPEAT=3 LIMIT=200 EPOCHS=1 bash bench/gpu_check.sh   # CPU dry run
#
# Writes bench/results/gpu_check/: devices.json, profile-b1.json, profile-b32.json, repeat.json, fit-*.json,
# spearman.json, search.json, export.json and summary.json (every figure the note needs), and prints the summary.
set -euo pipefail
N=${N:-100}; REPEAT=${REPEAT:-20}; BUDGET_FRACTION=${BUDGET_FRACTION:-0.5}
HWNAS=${HWNAS:-$( [ -x .venv/bin/hwnas ] && echo .venv/bin/hwnas || echo hwnas )}
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
DATA=${HWNAS_SHARED_DATA:-../shared/data}
OUT=bench/results/gpu_check; RUN=$OUT/run; mkdir -p "$OUT" "$RUN"
SPACE=${SPACE:-nb201:C=16,N=5}; BACKEND=${BACKEND:-torch-cuda}; LIMIT=${LIMIT:-1000}; EPOCHS=${EPOCHS:-5}
STORE="sqlite:///$PWD/$RUN/measurements.db"; REPEAT_STORE="sqlite:///$PWD/$RUN/repeat.db"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

echo "== 1. devices"; $HWNAS devices; $HWNAS devices --json > "$OUT/devices.json"

echo "== 2. profile $N cells on $BACKEND, batch 1 and 32 (NVML energy on a GPU)"
for B in 1 32; do
  $HWNAS profile --backend "$BACKEND" --space "$SPACE" --input-shape 3x32x32 --batch $B --samples "$N" \
    --store "$STORE" --json > "$OUT/profile-b$B.json"
done

echo "== 3. repeat $REPEAT of them into a second store (repeatability)"
ARCHS=$($PY - "$RUN/measurements.db" "$REPEAT" <<'PY'
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute("select distinct arch from measurements where batch = 1 order by arch").fetchall()
print(" ".join(f"--arch '{a}'" for (a,) in rows[: int(sys.argv[2])]))
PY
)
eval $HWNAS profile --backend "$BACKEND" --space "'$SPACE'" --input-shape 3x32x32 --batch 1 $ARCHS \
  --store "'$REPEAT_STORE'" --json > "$OUT/repeat-profile.json"

echo "== 4. fit latency and energy (held-out error)"
for T in latency energy; do for B in 1 32; do
  $HWNAS fit --space "$SPACE" --input-shape 3x32x32 --batch $B --target $T --predictor mlp --store "$STORE" \
    --out "$RUN/predictor-$T-b$B.npz" --json > "$OUT/fit-$T-b$B.json"
done; done

echo "== 5. Spearman against the published columns, repeatability; 6. search under a latency budget"
$PY - "$RUN" "$DATA/nb201/latency_ms.csv" "$OUT" "$BUDGET_FRACTION" <<'PY'
import csv, json, sqlite3, sys
from pathlib import Path
import numpy as np
from scipy.stats import spearmanr
run, table, out, fraction = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
def rows(db, batch):
    q = "select arch, latency_ms, energy_mj, energy_method from measurements where batch = ?"
    return {a: (lat, e, m) for a, lat, e, m in sqlite3.connect(db).execute(q, (batch,))}
b1, b32 = rows(run / "measurements.db", 1), rows(run / "measurements.db", 32)
again = rows(run / "repeat.db", 1)
published = {r["arch"]: r for r in csv.DictReader(open(table))}
def rho(mine, column):
    common = [a for a in mine if a in published]
    return {"n": len(common), "spearman": float(spearmanr([mine[a][0] for a in common],
                                                          [float(published[a][column]) for a in common]).statistic)}
both = [a for a in again if a in b1]
delta = [abs(again[a][0] - b1[a][0]) / b1[a][0] for a in both]
delta_e = [abs(again[a][1] - b1[a][1]) / b1[a][1] for a in both if again[a][1] and b1[a][1]]
summary = {"batch1_vs_1080ti_1": rho(b1, "1080ti_1"), "batch32_vs_titanxp_32": rho(b32, "titanxp_32"),
           "repeat_n": len(both), "repeat_median_abs_delta_latency_pct": 100 * float(np.median(delta)),
           "repeat_median_abs_delta_energy_pct": 100 * float(np.median(delta_e)) if delta_e else None,
           "energy_methods": sorted({m for _, _, m in b1.values()}),
           "latency_ms_b1_median": float(np.median([v[0] for v in b1.values()])),
           "search_budget_ms": fraction * float(np.median([v[0] for v in b1.values()]))}
for t in ("latency", "energy"):
    for b in (1, 32):
        summary[f"fit_{t}_b{b}"] = json.load(open(out / f"fit-{t}-b{b}.json"))["metrics"]
json.dump(summary, open(out / "spearman.json", "w"), indent=2)
print(json.dumps(summary, indent=2))
PY
BUDGET=$($PY -c "import json; print(round(json.load(open('$OUT/spearman.json'))['search_budget_ms'], 4))")
# CIFAR-10 images (3x32x32, the profiled shape: the cost predictor is fitted on those measurements). The shared
# data holds a 1,000-image subset (data_batch_1, test_batch) that the CIFAR folder loader refuses, so it becomes
# an .npz first; a full cifar-10-batches-py folder is used as it is.
CIFAR="$DATA/cifar10/cifar-10-batches-py"
if [ ! -f "$CIFAR/data_batch_5" ]; then
  $PY - "$CIFAR" "$RUN/cifar.npz" <<'PY'
import pickle, sys
import numpy as np
def load(name):
    d = pickle.load(open(f"{sys.argv[1]}/{name}", "rb"), encoding="bytes")
    return d[b"data"].reshape(-1, 3, 32, 32).astype(np.float32) / 255, np.array(d[b"labels"], np.int64)
(x, y), (xt, yt) = load("data_batch_1"), load("test_batch")
np.savez(sys.argv[2], x=x, y=y, x_test=xt, y_test=yt)
PY
  CIFAR="$RUN/cifar.npz"
fi
$HWNAS search --backend "$BACKEND" --space "$SPACE" --dataset "$CIFAR" --limit "$LIMIT" \
  --budget-ms "$BUDGET" --epochs "$EPOCHS" --retrain-epochs "$EPOCHS" --store "$STORE" --run-dir "$RUN/search" --json \
  > "$OUT/search.json" || true

echo "== 7. export the searched architecture, measured on the GPU where an ONNX GPU backend exists"
EXPORT_BACKEND=$($PY -c "
import json; ok={b['backend'] for b in json.load(open('$OUT/devices.json'))['backends'] if b['available']}
print(next((b for b in ('tensorrt', 'onnxruntime-cuda') if b in ok), 'onnxruntime-cpu'))")
echo "export measured on $EXPORT_BACKEND (torch-cuda runs PyTorch modules, not ONNX files)"
$HWNAS export --from-search "$RUN/search/search.json" --input-shape 3x32x32 --backend "$EXPORT_BACKEND" \
  --out "$RUN/bundle" --json > "$OUT/export.json" || true
$PY - "$OUT" "$EXPORT_BACKEND" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1]); s = json.load(open(out / "spearman.json"))
for name in ("search", "export"):
    try:
        d = json.load(open(out / f"{name}.json"))
    except (OSError, ValueError):
        d = {}
    s[name] = {k: d.get(k) for k in ("arch", "within_budget", "measured", "predicted", "budgets", "prediction_error",
                                     "budget_check", "passed")}
s["export_backend"] = sys.argv[2]
json.dump(s, open(out / "summary.json", "w"), indent=2)
print(json.dumps(s, indent=2))
PY
