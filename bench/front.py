"""Benchmark: how close NSGA-II's accuracy x latency front comes to the true front on published NAS-Bench-201 data.

For each device column of latency_ms.csv (the table plays the device; cifar10 accuracy from accuracy.csv is the
oracle), NSGA-II (Optuna's NSGAIISampler through `hwnas.search.multi_objective.run_multi_objective`, no budget
constraint) runs for the largest query budget; the front found after the first B queries (B = 100, 300, 1,000;
one query = one trial = one table read, repeats included, as NSGA-II does not know B) is compared with the true
front of all 15,625 cells, against uniform random search with B queries, over several seeds.

Measures, in a normalised space: each objective scaled to [0, 1] by its min and max over the whole space and
flipped so that both are minimised; hypervolume (pymoo) with reference point (1.1, 1.1), reported as a share of
the true front's; IGD (pymoo): mean distance from each true-front point to the nearest found point.

    python bench/front.py            # 6 devices x 3 budgets x 5 seeds, JSON to bench/results/front.json
    python bench/front.py --quick    # 2 devices, budgets 100 and 300, 2 seeds
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from hwnas.search.multi_objective import Objective, StudySpec, run_multi_objective
from hwnas.search.objectives import TableMetric
from hwnas.search.pareto import hypervolume, igd, nondominated, to_minimised
from hwnas.search.tabular import load_table
from hwnas.spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HWNAS_SHARED_DATA", ROOT.parent / "shared" / "data")) / "nb201"
MAXIMIZE = [True, False]  # accuracy, latency
REFERENCE = np.array([1.1, 1.1])


def device_columns() -> list[str]:
    with open(DATA / "latency_ms.csv") as f:
        return [c for c in f.readline().strip().split(",") if c not in ("index", "arch")]


class Truth:
    """One device's normalisation, true front and true hypervolume."""

    def __init__(self, device: str):
        space = get_space("nb201")
        values = np.c_[load_table(DATA / "accuracy.csv", "cifar10", space),
                       load_table(DATA / "latency_ms.csv", device, space)]
        self.values = values
        self.low, self.high = values.min(0), values.max(0)
        scaled = self.scale(values)
        self.front = scaled[nondominated(scaled, [False, False])]
        self.hv = hypervolume(self.front, REFERENCE)

    def scale(self, values: np.ndarray) -> np.ndarray:
        return to_minimised(values, MAXIMIZE, self.low, self.high)

    def measure(self, values: np.ndarray) -> dict[str, float]:
        scaled = self.scale(values)
        found = scaled[nondominated(scaled, [False, False])]
        return {"hv_ratio": hypervolume(found, REFERENCE) / self.hv, "igd": igd(found, self.front)}


def nsga2_values(device: str, queries: int, seed: int, population: int) -> np.ndarray:
    """(accuracy, latency) of NSGA-II's trials in order, `queries` of them."""
    acc = TableMetric(str(DATA / "accuracy.csv"), "cifar10")
    lat = TableMetric(str(DATA / "latency_ms.csv"), device)
    spec = StudySpec("nb201", [Objective("accuracy", acc), Objective("latency_ms", lat)], seed=seed,
                     population=population, study_name=f"{device}-{seed}")
    result = run_multi_objective(spec, trials=queries)
    points = sorted(result.points, key=lambda p: p.trial)
    return np.array([[p.values["accuracy"], p.values["latency_ms"]] for p in points])


def device_runs(device: str, args) -> list[dict]:
    """Every (seed, budget, method) row of one device."""
    truth = Truth(device)
    budgets, rows = sorted(args.budgets), []
    for seed in range(args.seeds):
        started = time.perf_counter()
        found = nsga2_values(device, budgets[-1], seed, args.population)
        seconds = time.perf_counter() - started
        rng = np.random.default_rng(1000 + seed)
        uniform = truth.values[rng.integers(0, len(truth.values), size=budgets[-1])]
        for b in budgets:
            rows.append({"device": device, "seed": seed, "queries": b, "method": "nsga2",
                         "unique": len({tuple(v) for v in found[:b]}), **truth.measure(found[:b]),
                         "seconds": seconds})
            rows.append({"device": device, "seed": seed, "queries": b, "method": "random",
                         **truth.measure(uniform[:b])})
    print(f"{device}: true front {len(truth.front)} points", flush=True)
    return rows


def run(args) -> dict:
    """All devices; each device's rows are cached in bench/results/front_cache/ (keyed by the settings), so an
    interrupted run resumes and devices can run in separate processes (--devices)."""
    devices = args.devices or device_columns()
    budgets = sorted(args.budgets)
    cache = ROOT / "bench" / "results" / "front_cache"
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for device in devices:
        key = cache / f"{device}-s{args.seeds}-p{args.population}-b{'_'.join(map(str, budgets))}.json"
        if key.is_file():
            rows += json.loads(key.read_text())
            continue
        found = device_runs(device, args)
        key.write_text(json.dumps(found))
        rows += found
    return {"devices": devices, "budgets": budgets, "seeds": args.seeds, "population": args.population,
            "reference": REFERENCE.tolist(), "runs": rows, "summary": summarise(rows, devices, budgets)}


def summarise(rows, devices, budgets) -> list[dict]:
    out = []
    for device in devices:
        for b in budgets:
            entry = {"device": device, "queries": b}
            for method in ("nsga2", "random"):
                sel = [r for r in rows if r["device"] == device and r["queries"] == b and r["method"] == method]
                hv = np.array([r["hv_ratio"] for r in sel])
                entry[method] = {"hv_mean": float(hv.mean()), "hv_std": float(hv.std()), "hv_min": float(hv.min()),
                                 "igd_mean": float(np.mean([r["igd"] for r in sel]))}
            out.append(entry)
    return out


def print_table(result: dict) -> None:
    print(f"\nFound / true hypervolume (mean ± std, min over {result['seeds']} seeds) and IGD, NSGA-II (population "
          f"{result['population']}) vs random search")
    print(f"{'device':<12}{'queries':>8}  {'NSGA-II HV':>22} {'IGD':>7}   {'random HV':>22} {'IGD':>7}")
    for e in result["summary"]:
        n, r = e["nsga2"], e["random"]
        print(f"{e['device']:<12}{e['queries']:>8}  {n['hv_mean']:>8.2%} ± {n['hv_std']:.2%} (min {n['hv_min']:.2%})"
              f" {n['igd_mean']:>7.4f}   {r['hv_mean']:>8.2%} ± {r['hv_std']:.2%} (min {r['hv_min']:.2%})"
              f" {r['igd_mean']:>7.4f}")
    top = max(result["budgets"])
    worst = min(e["nsga2"]["hv_min"] for e in result["summary"] if e["queries"] == top)
    print(f"\nGoal: >= 99% of the true hypervolume at 1,000 queries on every device; lowest over devices and seeds at "
          f"{top} queries: {worst:.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 devices, budgets 100 and 300, 2 seeds")
    parser.add_argument("--devices", nargs="*", default=None)
    parser.add_argument("--budgets", nargs="*", type=int, default=[100, 300, 1000])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--population", type=int, default=50)
    args = parser.parse_args()
    if args.quick:
        args.devices = args.devices or ["pixel3", "1080ti_1"]
        args.budgets, args.seeds = [100, 300], 2
    started = time.perf_counter()
    result = run(args)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print_table(result)
    out = ROOT / "bench" / "results" / "front.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"saved {out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
