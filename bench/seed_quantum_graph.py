"""DQAS on circuit tasks against hand-written circuits, and HGP-SL against the GCN and the best classical predictor.

Part 1: DQAS (`hwnas.search.quantum.search_circuit`) over several seeds per task, each under a routed-depth budget
on a line coupling map: success rate (score >= 0.99 within the budget), mean score, routed depth and two-qubit
gates, against the baselines (textbook GHZ; QAOA p=1 and p=2 with tuned angles). Tasks: GHZ on 3 qubits;
MaxCut on a random 4-node graph; a random 3-qubit state; GHZ under depolarising noise (1% per native gate).

Part 2: on NAS-Bench-201 (../shared/data/nb201), `hgp-sl`, `gcn` and `cost-gbt` (the best classical predictor of
bench/predictors.py) trained on n random architectures and tested on held-out ones: Spearman, and within ±10% for
latency; every device column of latency_ms.csv, and accuracy.csv's cifar10 column.

    python bench/seed_quantum_graph.py           # 5 seeds, n = 100 and 1,000, 2,000 test rows (long on 2 cores)
    python bench/seed_quantum_graph.py --quick   # 2 seeds, 3 tasks, n = 100, 2 devices + accuracy, 500 test rows
Writes bench/results/seed_quantum_graph.json.
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
from hwnas.predictors import encode_archs, get_predictor, regression_metrics
from hwnas.search.quantum import CircuitSearchOptions, baselines, get_task, search_circuit
from hwnas.spaces import get_space

RESULTS = Path(__file__).resolve().parent / "results"
#: task label -> (space spec, task, depth budget)
TASKS = {
    "ghz-3q": ("circuit:qubits=3,placeholders=4,coupling=line", "ghz", 4),
    "maxcut-4q": ("circuit:qubits=4,placeholders=6,coupling=line", "maxcut", 6),
    "random-3q": ("circuit:qubits=3,placeholders=8,coupling=line", "random-state", 10),
    "ghz-3q-noisy": ("circuit:qubits=3,placeholders=6,coupling=line,noise=0.01", "ghz", 8),
}
QUICK_TASKS = ("ghz-3q", "maxcut-4q", "ghz-3q-noisy")
PREDICTORS = {"hgp-sl": {"hidden": 32}, "gcn": {"hidden": 32}, "cost-gbt": {}}


def shared_nb201() -> Path:
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("HWNAS_SHARED_DATA", default)) / "nb201"


def run_dqas(labels, seeds: int, options: dict) -> dict:
    out = {}
    for label in labels:
        spec, task_name, budget = TASKS[label]
        space = get_space(spec)
        runs = []
        for seed in range(seeds):
            task = get_task(task_name, space.params["qubits"], 0)  # one task instance; the search seed varies
            r = search_circuit(space, task, {"depth": budget}, CircuitSearchOptions(seed=seed, **options))
            runs.append({k: r[k] for k in ("arch", "score", "depth", "two_qubit_gates", "within_budget", "success",
                                           "search_seconds")} | {"derived": r["history"][-1]["derived"]})
            print(f"  {label} seed {seed}: {r['arch']} score {r['score']:.4f} depth {r['depth']:g} "
                  f"2q {r['two_qubit_gates']:g} ({r['search_seconds']:.0f} s)", flush=True)
        task = get_task(task_name, space.params["qubits"], 0)
        out[label] = {"space": spec, "budget_depth": budget, "runs": runs,
                      "success_rate": float(np.mean([r["success"] for r in runs])),
                      "mean_score": float(np.mean([r["score"] for r in runs])),
                      "mean_depth": float(np.mean([r["depth"] for r in runs])),
                      "mean_two_qubit_gates": float(np.mean([r["two_qubit_gates"] for r in runs])),
                      "baselines": baselines(space, task)}
    return out


def run_predictors(sizes, test_rows: int, columns, epochs: int) -> dict:
    folder = shared_nb201()
    space = get_space("nb201")
    latency = read_wide_csv(folder / "latency_ms.csv", "arch", parse_arch=space.from_string)
    accuracy = read_wide_csv(folder / "accuracy.csv", "arch", columns=["cifar10"], parse_arch=space.from_string)
    targets = [("latency", d, latency) for d in (columns or latency.columns)] + [("accuracy", "cifar10", accuracy)]
    order = np.random.default_rng(0).permutation(len(latency.archs))
    rows = order[: max(sizes) + test_rows]
    archs = [latency.archs[i] for i in rows]
    codes = {}
    out: dict = {}
    for kind, column, table in targets:
        index = {a: i for i, a in enumerate(table.archs)}
        y = np.array([table.values[column][index[a]] for a in archs], np.float64)
        test = slice(max(sizes), max(sizes) + test_rows)
        for n in sizes:
            for name, settings in PREDICTORS.items():
                extra = {"epochs": epochs} if name != "cost-gbt" else {}
                p = get_predictor(name, space=space, seed=0, **settings, **extra)
                if kind == "accuracy":
                    p.log_target = False  # accuracies are not spread over orders of magnitude
                if p.encoding not in codes:
                    codes[p.encoding] = encode_archs(space, archs, p.encoding)
                X = codes[p.encoding]
                started = time.perf_counter()
                pred = p.fit(X[:n], y[:n]).predict(X[test])
                m = regression_metrics(y[test], pred)
                cell = {"spearman": m["spearman"], "seconds": time.perf_counter() - started}
                if kind == "latency":
                    cell["within_10"] = m["within_10"]
                out.setdefault(f"{kind}:{column}", {}).setdefault(str(n), {})[name] = cell
                print(f"  {kind}:{column} n={n} {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in cell.items()),
                      flush=True)
    return out


def print_tables(results) -> None:
    mode = "quick" if results.get("dqas_quick") else "full"
    print(f"\nDQAS ({mode}) vs hand-written circuits (routed on a line; success = score >= 0.99 within the depth "
          "budget; ≥base = score at least the best baseline's - 0.005)")
    print(f"{'task':14} {'budget':>6} {'success':>8} {'≥base':>6} {'score':>7} {'depth':>6} {'2q':>5} | baselines")
    for label, r in results["dqas"].items():
        best = max((b["score"] for b in r["baselines"]), default=None)
        # under noise no circuit reaches 0.99: there the question is whether DQAS matches the hand-written one
        matched = "-" if best is None else f"{np.mean([run['score'] >= best - 0.005 for run in r['runs']]):.0%}"
        base = "; ".join(f"{b['name']} {b['score']:.3f} d{b['depth']:g} 2q{b['two_qubit_gates']:g}"
                         for b in r["baselines"]) or "-"
        print(f"{label:14} {r['budget_depth']:>6} {r['success_rate']:>8.0%} {matched:>6} {r['mean_score']:>7.4f} "
              f"{r['mean_depth']:>6.2f} {r['mean_two_qubit_gates']:>5.2f} | {base}")
    print(f"\nNAS-Bench-201 predictors ({results.get('predictor_settings')}; Spearman / within ±10% for latency)")
    for target, by_n in results["predictors"].items():
        for n, cells in by_n.items():
            text = "  ".join(f"{name} {c['spearman']:.3f}" + (f"/{c['within_10']:.3f}" if "within_10" in c else "")
                             for name, c in cells.items())
            print(f"{target:20} n={n:>5}  {text}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-dqas", action="store_true")
    ap.add_argument("--skip-predictors", action="store_true")
    ap.add_argument("--tasks", default=None, help=f"comma-separated subset of {', '.join(TASKS)}")
    ap.add_argument("--seeds", type=int, default=None, help="DQAS seeds per task (default 5; quick 2)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of the graph predictors (default 200; quick 100)")
    ap.add_argument("--test-rows", type=int, default=None, help="held-out architectures (default 2000; quick 500)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    quick = args.quick
    results: dict = {"dqas": {}, "predictors": {}}
    started = time.perf_counter()
    if not args.skip_dqas:
        print("DQAS" + (" (quick: 2 seeds, 6 epochs)" if quick else " (5 seeds)"))
        options = {"epochs": 6, "finetune_steps": 60} if quick else {}
        labels = args.tasks.split(",") if args.tasks else (QUICK_TASKS if quick else tuple(TASKS))
        unknown = set(labels) - set(TASKS)
        if unknown:
            raise SystemExit(f"unknown task(s) {', '.join(sorted(unknown))}; known: {', '.join(TASKS)}")
        results["dqas"] = run_dqas(labels, args.seeds or (2 if quick else 5), options)
    if not args.skip_predictors:
        if not (shared_nb201() / "latency_ms.csv").is_file():
            raise SystemExit(f"NAS-Bench-201 tables not found in {shared_nb201()} (set HWNAS_SHARED_DATA)")
        print("predictors")
        results["predictors"] = run_predictors((100,) if quick else (100, 1000),
                                               args.test_rows or (500 if quick else 2000),
                                               ("pixel3", "raspi4") if quick else None,
                                               args.epochs or (100 if quick else 200))
        results["predictor_settings"] = {"epochs": args.epochs or (100 if quick else 200),
                                         "test_rows": args.test_rows or (500 if quick else 2000)}
    results["seconds"] = time.perf_counter() - started
    path = RESULTS / "seed_quantum_graph.json"
    for part in ("dqas", "predictors"):
        if results[part]:
            results[f"{part}_quick"] = quick
    if path.is_file():  # a part skipped now keeps its figures (and their mode) from the last run that made them
        previous = json.loads(path.read_text())
        for part in ("dqas", "predictors"):
            if not results[part] and previous.get(part):
                results[part] = previous[part]
                results[f"{part}_quick"] = previous.get(f"{part}_quick", previous.get("quick"))
                if part == "predictors" and "predictor_settings" in previous:
                    results["predictor_settings"] = previous["predictor_settings"]
    print_tables(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=float))
    print(f"\nwrote {path} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
