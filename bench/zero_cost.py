"""Zero-cost proxies on NAS-Bench-201's own networks (C=16, N=5, 32x32, default PyTorch init, seed 0).

Scores every registered proxy on random cells (a fixed seeded permutation of the 15,625 indices, so any prefix
is a uniform sample) with one batch of real CIFAR-10 training images (batch 8, seed 0; GeNAS uses one SGD step,
isometry the first 2 images). The costly proxies (grasp, zen, genas_flatness, isometry) are scored on the first
--extra-cells cells only (default 150), the others on all --cells. FLOPs and parameters are the space's exact counts. Scores and
seconds go to a CSV per worker (bench/results/zero_cost_scores.<w>.csv) appended cell by cell: a rerun resumes.

Then, against accuracy.csv: Spearman and Kendall per proxy for cifar10, cifar100 and imagenet16_120, beside the
published figure; seconds per cell per proxy; the hardware-aware case (per device column of latency_ms.csv, rho
among the scored cells under the median latency); the zero-shot votes and learned combinations from k = 20, 50,
100 labelled cells (10 draws each, tested on every other scored cell). Prints tables, writes
bench/results/zero_cost.json.

    python bench/zero_cost.py --cells 1000             # score (resumable) and analyse
    python bench/zero_cost.py --cells 1000 --workers 2 --worker 1   # a second scoring process
    python bench/zero_cost.py --analyse                # analyse what is scored so far
    python bench/zero_cost.py --quick                  # 12 cells at N=1, scored and analysed (about a minute)
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from hwnas.predictors import encode_archs, get_predictor
from hwnas.search.zero_cost import DEFAULT_PROXIES, LearnedCombination, cifar_batch, score, vote
from hwnas.spaces import get_space

RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = ("cifar10", "cifar100", "imagenet16_120")
MEASURED = tuple(p for p in DEFAULT_PROXIES if p not in ("flops", "params"))
#: the costly proxies (a double backward, extra forward passes or training steps): scored on the first
#: --extra-cells cells only, so that the others reach many cells on a shared CPU
EXTRA = ("grasp", "zen", "genas_flatness", "isometry")
CORE = tuple(p for p in MEASURED if p not in EXTRA)
#: published Spearman rho on NAS-Bench-201 cifar10 over all 15,625 cells, as quoted in the issue: SamsungLabs
#: zero-cost-nas (Abdelfattah et al. 2021), FLOPs/params (about 0.74-0.77) and AZ-NAS (Lee & Ham 2024)
PUBLISHED = {"synflow": 0.737, "jacob_cov": 0.731, "snip": 0.596, "grad_norm": 0.594, "grasp": 0.514,
             "fisher": 0.36, "flops": 0.74, "params": 0.75, "vote:az-nas": 0.913}
#: zero-shot votes, fixed before looking at any label: AZ-NAS's own four, SamsungLabs' three, and ours
VOTES = {
    "az-nas": ("az_expressivity", "az_progressivity", "az_trainability", "flops"),
    "zc-3": ("synflow", "jacob_cov", "snip"),
    "hwnas": ("az_expressivity", "az_progressivity", "az_trainability", "flops", "naswot", "synflow", "jacob_cov"),
}
KS = (20, 50, 100)
RENAS_DRAWS = 3
GOALS = {"vote_rho": 0.92, "learned_k": 50, "learned_rho": 0.95}


def shared_data() -> Path:
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("HWNAS_SHARED_DATA", default))


# --- scoring --------------------------------------------------------------------------------------------------
def cell_order(space, seed: int = 0) -> list[int]:
    return [int(i) for i in np.random.default_rng(seed).permutation(space.size())]


def csv_path(worker: int, quick: bool, tier: str) -> Path:
    stem = "zero_cost_quick" if quick else "zero_cost_scores" if tier == "core" else "zero_cost_extra"
    return RESULTS / f"{stem}.{worker}.csv"


def read_scores(quick: bool) -> dict[int, dict[str, float]]:
    """Every scored cell, the core and extra tiers' rows merged by index (NaN: not computed)."""
    rows: dict[int, dict[str, float]] = {}
    patterns = ("zero_cost_quick.*.csv",) if quick else ("zero_cost_scores.*.csv", "zero_cost_extra.*.csv")
    for path in sorted(p for pattern in patterns for p in RESULTS.glob(pattern)):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    values = {k: float(v) if v not in ("", None) else np.nan
                              for k, v in row.items() if k not in ("index", "arch")}
                    merged = rows.setdefault(int(row["index"]), {})
                    merged.update({k: v for k, v in values.items() if not np.isnan(v) or k not in merged})
                except (ValueError, TypeError):  # a line cut by an interruption: rescored on the next run
                    continue
    return rows


def score_cells(args) -> None:
    """One worker's share of one tier: "core" (every proxy but EXTRA, on --cells cells) or "extra" (EXTRA, on the
    first --extra-cells of them); --quick scores everything on every cell."""
    torch.set_num_threads(1)
    space = get_space("nb201", N=1 if args.quick else 5)
    batch = cifar_batch(shared_data() / "cifar10" / "cifar-10-batches-py", args.batch, seed=0)
    done = read_scores(args.quick)
    proxies = MEASURED if args.quick else CORE if args.tier == "core" else EXTRA
    order = cell_order(space)[:args.cells if args.tier == "core" else args.extra_cells]
    todo = [i for i in order if np.isnan(done.get(i, {}).get(proxies[0], np.nan))][args.worker::args.workers]
    path = csv_path(args.worker, args.quick, args.tier)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["index", "arch", *MEASURED, "flops", "params", *(f"s_{p}" for p in MEASURED),
              "s_shared_forward", "s_shared_backward", "s_total"]
    new = not path.exists()
    print(f"{args.tier} worker {args.worker}: {len(todo)} cells to do -> {path}", flush=True)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        if new:
            writer.writeheader()
        for n, index in enumerate(todo, start=1):
            arch = space.arch_at(index)
            torch.manual_seed(0)
            model = space.build(arch)
            timings: dict[str, float] = {}
            start = time.perf_counter()
            values = score(model, batch, proxies, seed=0, timings=timings)
            profile = space.profile(arch)
            row = {"index": index, "arch": space.to_string(arch), **values, "flops": profile.macs,
                   "params": profile.params, **{f"s_{k}": v for k, v in timings.items()},
                   "s_total" if args.tier == "core" else "s_extra_total": time.perf_counter() - start}
            writer.writerow({k: v for k, v in row.items() if k in fields})
            f.flush()
            if n % 10 == 0:
                print(f"{args.tier} worker {args.worker}: {n}/{len(todo)}", flush=True)


# --- analysis -------------------------------------------------------------------------------------------------
def read_reference(name: str) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    with open(shared_data() / "nb201" / name, newline="") as f:
        for row in csv.DictReader(f):
            out[int(row["index"])] = {k: float(v) for k, v in row.items() if k not in ("index", "arch")}
    return out


def correlations(values: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Over the cells where the proxy was computed (NaN: not computed; -inf is a score and ranks lowest)."""
    ok = np.isfinite(target) & ~np.isnan(values)
    if ok.sum() < 3:
        return {"spearman": float("nan"), "kendall": float("nan"), "n": int(ok.sum())}
    rho = spearmanr(values[ok], target[ok])[0]
    tau = kendalltau(values[ok], target[ok])[0]
    return {"spearman": float(np.nan_to_num(rho)), "kendall": float(np.nan_to_num(tau)), "n": int(ok.sum())}


def analyse(quick: bool) -> dict:
    scores = read_scores(quick)
    if len(scores) < 5:
        raise SystemExit(f"only {len(scores)} cells scored; run the scoring first")
    acc, lat = read_reference("accuracy.csv"), read_reference("latency_ms.csv")
    index = np.array(sorted(scores))
    table = {p: np.array([scores[i][p] for i in index]) for p in (*MEASURED, "flops", "params")}
    votes = {f"vote:{name}": vote(table, members) for name, members in VOTES.items()}
    columns = {**table, **votes}
    targets = {d: np.array([acc[i][d] for i in index]) for d in DATASETS}
    result: dict = {"cells": len(index), "quick": quick, "per_proxy": {}, "seconds": {}, "hardware_aware": {},
                    "learned": {}}
    for name, values in columns.items():
        result["per_proxy"][name] = {d: correlations(values, targets[d]) for d in DATASETS}
        result["per_proxy"][name]["published_cifar10"] = PUBLISHED.get(name)
    for key in (*MEASURED, "shared_forward", "shared_backward", "total"):
        secs = [scores[i].get(f"s_{key}", np.nan) for i in index]
        result["seconds"][key] = float(np.nanmean(secs))
    devices = list(next(iter(lat.values())))
    for device in devices:
        latency = np.array([lat[i][device] for i in index])
        under = latency <= np.median(latency)
        result["hardware_aware"][device] = {
            "budget_ms": float(np.median(latency)), "cells": int(under.sum()),
            **{name: correlations(values[under], targets["cifar10"][under])["spearman"]
               for name, values in columns.items()}}
    features = np.column_stack([table[p] for p in (*CORE, "flops", "params")])
    space = get_space("nb201")
    encodings = encode_archs(space, [space.arch_at(int(i)) for i in index], "onehot")
    for k in KS:
        if k + 10 > len(index):
            continue
        result["learned"][k] = learned_runs(features, targets["cifar10"], k, encodings)
    return result


def learned_runs(features: np.ndarray, target: np.ndarray, k: int, encodings: np.ndarray,
                 draws: int = 10) -> dict[str, float]:
    """Fit on k random labelled cells, test on all the others; mean rho over draws per method. "renas" is the
    ReNAS predictor (pairwise ranking loss) on the one-hot encoding plus the proxies' pool quantiles (the first
    RENAS_DRAWS draws)."""
    out: dict[str, list[float]] = {}
    quantiles = LearnedCombination().fit(features[:2], target[:2], pool=features)._features(features)
    for draw in range(draws):
        rng = np.random.default_rng(draw)
        labelled = rng.choice(len(target), size=k, replace=False)
        rest = np.setdiff1d(np.arange(len(target)), labelled)
        for method in LearnedCombination.METHODS:
            model = LearnedCombination(method=method, seed=draw).fit(features[labelled], target[labelled],
                                                                      pool=features)
            out.setdefault(method, []).append(spearmanr(model.predict(features[rest]), target[rest])[0])
        if draw < RENAS_DRAWS:  # a network per draw: fewer draws keep the analysis short on a shared CPU
            X = np.hstack([encodings, quantiles])
            renas = get_predictor("renas", seed=draw).fit(X[labelled], target[labelled])
            out.setdefault("renas", []).append(spearmanr(renas.predict(X[rest]), target[rest])[0])
    return {m: float(np.mean(v)) for m, v in out.items()}


def print_tables(r: dict) -> None:
    print(f"\nNAS-Bench-201, {r['cells']} random cells: Spearman rho (Kendall tau) vs test accuracy")
    print(f"{'proxy':22s} {'cells':>5s} {'cifar10':>16s} {'cifar100':>16s} {'imagenet16':>16s} {'published c10':>14s} "
          f"{'s/cell':>7s}")
    for name, row in r["per_proxy"].items():
        cells = " ".join(f"{row[d]['spearman']:7.3f} ({row[d]['kendall']:5.3f})" for d in DATASETS)
        pub = row["published_cifar10"]
        secs = r["seconds"].get(name)
        print(f"{name:22s} {row['cifar10']['n']:5d} {cells} {'' if pub is None else f'{pub:.3f}':>14s} "
              f"{'' if secs is None else f'{secs:.3f}':>7s}")
    print(f"shared passes: forward {r['seconds']['shared_forward']:.3f} s, backward "
          f"{r['seconds']['shared_backward']:.3f} s; whole cell {r['seconds']['total']:.2f} s")
    print("\nHardware-aware: cifar10 rho among cells under the median latency of each device")
    names = [n for n in r["per_proxy"]]
    devices = list(r["hardware_aware"])
    print(f"{'proxy':22s} " + " ".join(f"{d:>10s}" for d in devices))
    for name in names:
        print(f"{name:22s} " + " ".join(f"{r['hardware_aware'][d][name]:10.3f}" for d in devices))
    if r["learned"]:
        print("\nLearned combination (cifar10 rho on the unlabelled cells, mean of 10 draws)")
        for k, row in r["learned"].items():
            print(f"k={k:<4} " + "  ".join(f"{m}: {v:.3f}" for m, v in row.items()))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=8, help="CIFAR-10 images per proxy batch")
    ap.add_argument("--extra-cells", type=int, default=150, help=f"cells that also get {', '.join(EXTRA)}")
    ap.add_argument("--tier", choices=("core", "extra"), default="core",
                    help=f"core: every proxy but {', '.join(EXTRA)} on --cells; extra: those on --extra-cells")
    ap.add_argument("--workers", type=int, default=1, help="scoring processes in all (each its own CSV)")
    ap.add_argument("--worker", type=int, default=0, help="which of them this is (0-based)")
    ap.add_argument("--analyse", action="store_true", help="only analyse what is scored so far")
    ap.add_argument("--quick", action="store_true", help="12 cells of nb201:N=1")
    args = ap.parse_args()
    if args.quick:
        args.cells = min(args.cells, 12)
    return args


def main() -> None:
    args = parse_args()
    if not args.analyse:
        score_cells(args)
    if args.worker == 0 and args.tier == "core":
        result = analyse(args.quick)
        print_tables(result)
        out = RESULTS / ("zero_cost_quick.json" if args.quick else "zero_cost.json")
        out.write_text(json.dumps(result, indent=1))
        print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
