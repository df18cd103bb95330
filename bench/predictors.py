"""Latency predictors on NAS-Bench-201's published latencies (six devices, 15,625 cells).

The noise ceiling per device: gradient boosting on one-hot codes trained on 12,500 cells, tested on the other
3,125 (the published measurements are noisy; no predictor from a few samples should be expected to beat this).
The default predictor (`auto`: k-fold CV of the candidates, hwnas.predictors.auto) at n = 10, 20, 50, 100 as a
share of that ceiling (within ±10% share / ceiling's, Spearman - ceiling's). Transfer: mean Spearman at
k = 5, 10, 20 on each left-out device, with the pretraining time.

For every device column and n in {10, 20, 50, 100, 500}: train on n random architectures (5 seeds), evaluate on
all the others (MAPE, within ±5%/±10%, Spearman, Kendall; rows below 5% of the median latency are left out of the
relative metrics only, see hwnas.predictors.metrics). Then few-shot transfer: leave one device out, pretrain on
the other five, adapt with k=10 of its measurements (5 seeds), against `linear-cost` fitted from scratch on the
same k=10. Prints tables, writes bench/results/predictors.json and bench/results/predictors.png.

    python bench/predictors.py            # the full run (a few minutes on one core)
    python bench/predictors.py --quick    # fewer sizes, seeds and methods (about a minute)
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from hwnas.files import read_wide_csv
from hwnas.predictors import (
    encode_archs,
    get_predictor,
    pretrain_transfer,
    regression_metrics,
)
from hwnas.predictors.plots import plot_predicted_vs_measured
from hwnas.spaces import get_space

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (10, 20, 50, 100, 500)
#: method -> (registered predictor, settings); each reads its predictor's default encoding
METHODS = {
    "linear-cost": ("linear-cost", {}),
    "cost-gbt": ("cost-gbt", {}),
    "lookup": ("lookup", {}),
    "gbt": ("gbt", {}),
    "mlp": ("mlp", {}),
}
QUICK_METHODS = ("linear-cost", "cost-gbt")
GOALS = {"n": 100, "within_10": 0.99, "spearman": 0.99, "transfer_k": 10, "transfer_spearman": 0.95,
         "ceiling_share_within_10": 0.95, "ceiling_spearman_gap": 0.02, "transfer_min_spearman": 0.85,
         "pretrain_seconds": 60}
CEILING_TRAIN = 12_500
#: the device columns evaluated (--devices); every column still serves as a transfer source
SELECTED: set[str] = set()
AUTO_SIZES = (10, 20, 50, 100)
TRANSFER_KS = (5, 10, 20)
KEYS = ("mape", "within_5", "within_10", "spearman", "kendall")


def shared_data() -> Path:
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("HWNAS_SHARED_DATA", default)) / "nb201" / "latency_ms.csv"


def load(path: Path):
    """NAS-Bench-201's wide latency table through the library's one wide-CSV reader."""
    space = get_space("nb201")
    table = read_wide_csv(path, "arch", parse_arch=space.from_string)
    return space, table.archs, table.columns, np.array([table.values[d] for d in table.columns]).T


def mean_metrics(runs: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in runs])) for k in KEYS} | {"seeds": len(runs)}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="n in {10, 20, 100}, 2 seeds, linear-cost and cost-gbt only")
    ap.add_argument("--methods", default=None, help=f"comma-separated subset of {', '.join(METHODS)}")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--transfer-rows", type=int, default=None,
                    help="pretraining rows per source device (default: all; --quick: 3000)")
    ap.add_argument("--devices", default=None,
                    help="comma-separated device columns to evaluate (default: all; transfer still pretrains on all "
                    "the others)")
    ap.add_argument("--parts", default="fit,ceiling,auto,transfer",
                    help="comma-separated parts to run: fit (every method), ceiling, auto, transfer")
    return ap.parse_args()


def fit_all(progress, devices, sizes, methods, seeds, X, Y, results, plot_points) -> None:
    """Every method at every training size on every device, `seeds` random splits each."""
    task = progress.add_task("fitting", total=len(devices) * len(sizes) * seeds * len(methods))
    for j, device in enumerate(devices):
        for n in sizes:
            for method in methods:
                name, settings = METHODS[method]
                runs = []
                for seed in range(seeds):
                    order = np.random.default_rng(seed).permutation(len(Y))
                    train, test = order[:n], order[n:]
                    p = get_predictor(name, seed=seed, **settings)
                    pred = p.fit(X[p.encoding][train], Y[train, j]).predict(X[p.encoding][test])
                    runs.append(regression_metrics(Y[test, j], pred))
                    if seed == 0 and n == 100:
                        plot_points[(device, method)] = (Y[test, j], pred)
                    progress.advance(task)
                results["fit"].setdefault(device, {}).setdefault(str(n), {})[method] = mean_metrics(runs)


def transfer_all(progress, devices, seeds, transfer_rows, X, Y, results, plot_points) -> None:
    """Leave one device out, pretrain on the others, adapt with k shots; against linear-cost from scratch."""
    k = GOALS["transfer_k"]
    task = progress.add_task("transfer", total=len(devices))
    F = X["features"]
    for j, device in enumerate(devices):
        if device not in SELECTED:
            continue
        rows = np.random.default_rng(100).permutation(len(Y))[:transfer_rows]
        sources = {d: (F[rows], Y[rows, i]) for i, d in enumerate(devices) if i != j}
        started = time.perf_counter()
        body = pretrain_transfer(sources, seed=0)
        pretrain_seconds = time.perf_counter() - started
        by_k = {}
        for shots_k in TRANSFER_KS:
            adapted, scratch, adapt_seconds = [], [], []
            for seed in range(seeds):
                order = np.random.default_rng(seed).permutation(len(Y))
                shots, test = order[:shots_k], order[shots_k:]
                started = time.perf_counter()
                pred = body.fit(F[shots], Y[shots, j]).predict(F[test])
                adapt_seconds.append(time.perf_counter() - started)
                adapted.append(regression_metrics(Y[test, j], pred))
                if seed == 0 and shots_k == k:
                    plot_points[(device, "transfer")] = (Y[test, j], pred)
                lc = get_predictor("linear-cost", seed=seed)
                scratch.append(regression_metrics(Y[test, j], lc.fit(X["cost"][shots], Y[shots, j])
                                                  .predict(X["cost"][test])))
            by_k[str(shots_k)] = {"transfer": mean_metrics(adapted), "linear-cost-scratch": mean_metrics(scratch),
                                  "adapt_seconds": float(np.mean(adapt_seconds))}
        results["transfer"][device] = {**by_k[str(k)], "by_k": by_k, "pretrain_seconds": round(pretrain_seconds, 1)}
        progress.advance(task)


def ceiling_all(progress, devices, X, Y, results) -> None:
    """The noise ceiling: gbt on one-hot codes from CEILING_TRAIN cells, tested on the rest (one fixed split)."""
    task = progress.add_task("ceiling", total=len(devices))
    order = np.random.default_rng(0).permutation(len(Y))
    train, test = order[:CEILING_TRAIN], order[CEILING_TRAIN:]
    for j, device in enumerate(devices):
        if device not in SELECTED:
            continue
        p = get_predictor("gbt", seed=0)
        pred = p.fit(X["onehot"][train], Y[train, j]).predict(X["onehot"][test])
        results["ceiling"][device] = {k: float(v) for k, v in regression_metrics(Y[test, j], pred).items()
                                      if k in KEYS}
        progress.advance(task)


def auto_all(progress, space, archs, devices, sizes, seeds, Y, results) -> None:
    """The default predictor (auto) at each n: its CV choice fitted on n cells, tested on all the others."""
    from hwnas.predictors.auto import choose_predictor

    task = progress.add_task("auto", total=len(devices) * len(sizes) * seeds)
    codes: dict[str, np.ndarray] = {}
    for j, device in enumerate(devices):
        if device not in SELECTED:
            continue
        for n in sizes:
            runs, chosen = [], []
            for seed in range(seeds):
                order = np.random.default_rng(seed).permutation(len(Y))
                train, test = order[:n], order[n:]
                choice = choose_predictor(space, [archs[i] for i in train], Y[train, j], seed=seed)
                if choice.encoding not in codes:
                    codes[choice.encoding] = encode_archs(space, archs, choice.encoding)
                Xe = codes[choice.encoding]
                p = get_predictor(choice.predictor, encoding=choice.encoding, seed=seed)
                runs.append(regression_metrics(Y[test, j], p.fit(Xe[train], Y[train, j]).predict(Xe[test])))
                chosen.append(choice.predictor)
                progress.advance(task)
            cell = mean_metrics(runs) | {"chosen": chosen}
            ceiling = results["ceiling"].get(device)
            if ceiling:
                cell["share_within_10"] = cell["within_10"] / ceiling["within_10"]
                cell["spearman_gap"] = ceiling["spearman"] - cell["spearman"]
            results["auto"].setdefault(device, {})[str(n)] = cell


def print_ceiling(console, results, devices, sizes) -> None:
    from rich.table import Table

    t = Table(title=f"Noise ceiling (gbt on one-hot, {CEILING_TRAIN} cells) and the default predictor (auto) as a "
              "share of it: within ±10% share / Spearman gap (ceiling - auto); chosen predictors", title_justify="left")
    for c in ("device", "ceiling ±10% / ρ", *[f"auto n={n}" for n in sizes]):
        t.add_column(c)
    for device in devices:
        c = results["ceiling"].get(device)
        cells = []
        for n in sizes:
            a = results["auto"].get(device, {}).get(str(n))
            if a is None or c is None:
                cells.append("-")
                continue
            picks = ",".join(sorted(set(a["chosen"])))
            cells.append(f"{a['share_within_10']:.0%} / {a['spearman_gap']:+.3f}\n{picks}")
        t.add_row(device, "-" if c is None else f"{c['within_10']:.3f} / {c['spearman']:.4f}", *cells)
    console.print(t)


def print_transfer_ks(console, results, devices) -> None:
    from rich.table import Table

    t = Table(title="Transfer: Spearman on the left-out device at k shots (pretrained on the other 5)",
              title_justify="left")
    for c in ("left-out device", *[f"k={k}" for k in TRANSFER_KS], "pretrain s", "adapt s (k=10)"):
        t.add_column(c)
    for device in devices:
        r = results["transfer"][device]
        t.add_row(device, *[f"{r['by_k'][str(k)]['transfer']['spearman']:.4f}" for k in TRANSFER_KS],
                  f"{r['pretrain_seconds']:.1f}", f"{r['by_k']['10']['adapt_seconds']:.3f}")
    means = results["transfer_mean_spearman_by_k"]
    t.add_row("mean", *[f"{means[str(k)]:.4f}" for k in TRANSFER_KS], "", "")
    console.print(t)


def best_per_device(results, devices, sizes) -> dict:
    """Best method per device and n (highest mean within ±10%, ties by Spearman)."""
    best = {}
    for device in devices:
        for n in sizes:
            cells = results["fit"][device][str(n)]
            method = max(cells, key=lambda m: (cells[m]["within_10"], cells[m]["spearman"]))
            best.setdefault(device, {})[str(n)] = {"method": method, **cells[method]}
    return best


def print_tables(console, results, devices, sizes, methods, seeds) -> None:
    from rich.table import Table

    best = results["best"]
    t = Table(title=f"Best predictor per device and training size (mean of {seeds} seeds; within ±10% / Spearman)",
              title_justify="left")
    t.add_column("device")
    for n in sizes:
        t.add_column(f"n={n}")
    for device in devices:
        t.add_row(device, *[f"{b['method']}\n{b['within_10']:.3f} / {b['spearman']:.4f}"
                            for b in (best[device][str(n)] for n in sizes)])
    console.print(t)

    n_goal = str(GOALS["n"]) if str(GOALS["n"]) in results["fit"][devices[0]] else str(sizes[-1])
    t = Table(title=f"All methods at n={n_goal}: within ±10% / Spearman / MAPE %", title_justify="left")
    t.add_column("device")
    for m in methods:
        t.add_column(m)
    for device in devices:
        cells = results["fit"][device][n_goal]
        t.add_row(device, *[f"{c['within_10']:.3f} / {c['spearman']:.4f} / {c['mape']:.1f}"
                            for c in (cells[m] for m in methods)])
    console.print(t)

    if not results["transfer"]:
        return
    t = Table(title=f"Few-shot transfer, k={GOALS['transfer_k']} samples of the left-out device (within ±10% / "
              "Spearman / MAPE %)", title_justify="left")
    for c in ("left-out device", "transfer (pretrained on the other 5)", "linear-cost from scratch"):
        t.add_column(c)
    for device in devices:
        r = results["transfer"][device]
        t.add_row(device, *[f"{c['within_10']:.3f} / {c['spearman']:.4f} / {c['mape']:.1f}"
                            for c in (r["transfer"], r["linear-cost-scratch"])])
    mean = results["transfer_mean_spearman"]
    t.add_row("mean Spearman", f"{mean['transfer']:.4f}", f"{mean['linear-cost-scratch']:.4f}")
    console.print(t)


def plot(results, devices, sizes, plot_points) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best, k = results["best"], GOALS["transfer_k"]
    fig, axes = plt.subplots(2, len(devices), figsize=(3.2 * len(devices), 6.6))
    for j, device in enumerate(devices):
        method = best[device].get("100", best[device][str(sizes[-1])])["method"]
        for row, key in enumerate([(device, method), (device, "transfer")]):
            if key in plot_points:
                y, p = plot_points[key]
                m = regression_metrics(y, p)
                label = f"{method}, n=100" if row == 0 else f"transfer, k={k}"
                plot_predicted_vs_measured(y, p, None, f"{device}: {label}\n±10% {m['within_10']:.1%}, "
                                           f"ρ {m['spearman']:.3f}", "ms", ax=axes[row, j])
    fig.tight_layout()
    fig.savefig(RESULTS / "predictors.png", dpi=110)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    from rich.console import Console
    from rich.progress import Progress

    console = Console(width=150)
    path = shared_data()
    if not path.is_file():
        raise SystemExit(f"published NAS-Bench-201 latencies not found at {path} (set HWNAS_SHARED_DATA)")
    sizes = (10, 20, 100) if args.quick else SIZES
    seeds = args.seeds or (2 if args.quick else 5)
    methods = args.methods.split(",") if args.methods else (QUICK_METHODS if args.quick else tuple(METHODS))
    transfer_rows = args.transfer_rows or (3000 if args.quick else None)
    started = time.perf_counter()

    space, archs, devices, Y = load(path)
    SELECTED.update(args.devices.split(",") if args.devices else devices)
    encodings = {get_predictor(METHODS[m][0]).encoding for m in methods} | {"features", "cost", "onehot"}
    X = {e: encode_archs(space, archs, e) for e in encodings}
    results: dict = {"sizes": list(sizes), "seeds": seeds, "methods": list(methods), "devices": devices,
                     "goals": GOALS, "fit": {}, "transfer": {}, "ceiling": {}, "auto": {}}
    plot_points: dict = {}
    parts = set(args.parts.split(","))
    auto_sizes = (10, 100) if args.quick else AUTO_SIZES
    with Progress(console=console, transient=True) as progress:
        if "fit" in parts:
            fit_all(progress, devices, sizes, methods, seeds, X, Y, results, plot_points)
        if "ceiling" in parts:
            ceiling_all(progress, devices, X, Y, results)
        if "auto" in parts:
            auto_all(progress, space, archs, devices, auto_sizes, seeds, Y, results)
        if "transfer" in parts:
            transfer_all(progress, devices, seeds, transfer_rows, X, Y, results, plot_points)
    results["seconds"] = round(time.perf_counter() - started, 1)
    devices = results["devices"] = [d for d in devices if d in SELECTED]  # what was evaluated, for the tables
    if "transfer" in parts:
        results["transfer_mean_spearman"] = {
            m: float(np.mean([results["transfer"][d][m]["spearman"] for d in devices]))
            for m in ("transfer", "linear-cost-scratch")}
        results["transfer_mean_spearman_by_k"] = {
            str(k): float(np.mean([results["transfer"][d]["by_k"][str(k)]["transfer"]["spearman"] for d in devices]))
            for k in TRANSFER_KS}
    if "fit" in parts:
        results["best"] = best_per_device(results, devices, sizes)
        print_tables(console, results, devices, sizes, methods, seeds)
    if "transfer" in parts:
        print_transfer_ks(console, results, devices)
    if "auto" in parts or "ceiling" in parts:
        print_ceiling(console, results, devices, auto_sizes)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "predictors.json").write_text(json.dumps(results, indent=2))
    if "fit" in parts and "transfer" in parts:
        plot(results, devices, sizes, plot_points)
    console.print(f"wrote {RESULTS / 'predictors.json'} and {RESULTS / 'predictors.png'} "
                  f"({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
