"""Energy of the spiking space (snn-transformer, CPU-sized) on the `spiking` backend (method spike-ops).

Measures architectures sampled uniformly (seed 0) into a fresh store, then reports:
- Spearman between FLOPs and the spike-energy estimate (how far FLOPs alone rank energy);
- energy-predictor accuracy at n = 20 and 100 training measurements (within ±10%, Spearman; held-out rows are
  every measured architecture not trained on; 5 seeds, median);
- seconds per spiking measurement (spike counting on a real batch + latency timing, quick protocol).
Prints a table, writes bench/results/energy.json.

    nice -n 10 python bench/energy.py            # 140 architectures (about 5 minutes on one idle core)
    nice -n 10 python bench/energy.py --quick    # 40 architectures, n = 20 only
The measurements are kept in bench/results/energy.db, so a rerun only measures what is missing (--fresh: all).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from hwnas.predictors import encode_archs, get_predictor, regression_metrics
from hwnas.profilers import TimingProtocol, get_backend, profile_space
from hwnas.spaces import get_space
from hwnas.store import Store

RESULTS = Path(__file__).resolve().parent / "results"
SPACE = "snn-transformer:depth=4,embed_min=16,embed_max=48,embed_step=8,T=2"
SHAPE = (1, 8, 8)  # scikit-learn digits
PREDICTORS = ("lookup", "linear-cost", "gbt", "mlp")
SEEDS = 5


def measure(samples: int, fresh: bool):
    """Profile into bench/results/energy.db (a rerun measures only what is missing; --fresh starts over)."""
    space = get_space(SPACE)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "energy.db"
    if fresh and path.exists():
        path.unlink()
    store = Store(f"sqlite:///{path}")
    started = time.perf_counter()
    summary = profile_space(space, get_backend("spiking"), store, samples, input_shape=SHAPE,
                            protocol=TimingProtocol.quick())
    seconds = time.perf_counter() - started
    rows = store.measurements(space=space.spec)[:samples]
    archs = [space.from_string(m.arch) for m in rows]
    energy = np.array([m.energy_mj for m in rows])
    flops = np.array([space.flops(a, SHAPE) for a in archs])
    if summary.measured_now:
        per = seconds / summary.measured_now
    else:  # all reused: the median gap between consecutive stored measurements (wall-clock, this machine)
        stamps = sorted(m.created_at.timestamp() for m in rows)
        per = float(np.median(np.diff(stamps))) if len(stamps) > 1 else None
    return space, archs, energy, flops, per, rows


def predictor_accuracy(space, archs, energy, n: int) -> dict[str, dict[str, float]]:
    out = {}
    for name in PREDICTORS:
        scores = []
        for seed in range(SEEDS):
            order = np.random.default_rng(seed).permutation(len(archs))
            train, test = order[:n], order[n:]
            p = get_predictor(name, encoding="onehot", seed=seed)  # the space declares no analytic capabilities
            X = encode_archs(space, archs, p.encoding, SHAPE)
            p.fit(X[train], energy[train])
            m = regression_metrics(energy[test], p.predict(X[test]))
            scores.append((m["within_10"], m["spearman"]))
        within, rho = np.median(np.array(scores, dtype=float), axis=0)
        out[name] = {"within_10": float(within), "spearman": float(rho), "test_rows": len(archs) - n}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 architectures, n = 20 only")
    parser.add_argument("--samples", type=int, default=None, help="architectures (default 140; --quick 40)")
    parser.add_argument("--fresh", action="store_true", help="measure again instead of reusing bench/results/energy.db")
    args = parser.parse_args()
    torch.set_num_threads(1)
    samples = args.samples or (40 if args.quick else 140)
    sizes = tuple(n for n in ((20,) if args.quick else (20, 100)) if n + 10 <= samples)  # keep >= 10 held out
    space, archs, energy, flops, per_measurement, rows = measure(samples, args.fresh)
    rho_flops = float(spearmanr(flops, energy).statistic)
    rates = [m.extra["mean_firing_rate"] for m in rows]
    result = {"space": space.spec, "input_shape": list(SHAPE), "architectures": len(archs),
              "spearman_flops_vs_spike_energy": rho_flops, "seconds_per_measurement": per_measurement,
              "mean_firing_rate_median": float(np.median(rates)),
              "energy_mj_range": [float(energy.min()), float(energy.max())],
              "predictors": {n: predictor_accuracy(space, archs, energy, n) for n in sizes},
              "note": "timed on a machine shared by 8 helpers on 2 cores: seconds per measurement are noisy and high"}
    print(f"{space.spec}, input {'x'.join(map(str, SHAPE))}, {len(archs)} architectures on backend spiking (spike-ops)")
    per = "-" if per_measurement is None else f"{per_measurement:.2f}"
    print(f"Spearman(FLOPs, spike energy) = {rho_flops:.3f}; seconds per spiking measurement = {per}; "
          f"median mean firing rate {result['mean_firing_rate_median']:.3f}")
    print(f"{'n':>4} {'predictor':<12} {'within ±10%':>12} {'Spearman':>9} {'test rows':>9}")
    for n, table in result["predictors"].items():
        for name, m in table.items():
            print(f"{n:>4} {name:<12} {m['within_10']:>12.1%} {m['spearman']:>9.3f} {m['test_rows']:>9}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "energy.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
