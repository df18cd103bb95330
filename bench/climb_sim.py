"""Benchmark: the climb (hwnas.search.climb) replayed on published NAS-Bench-201 measurements.

For each device column of ../shared/data/nb201/latency_ms.csv and --trials seeds: a predictor (--predictor) is fitted
on --profiled random cells, the budget is their --percentile-th latency (as `hwnas run` sets it), and the climb starts
from a random cell whose latency is --start-from to --start-to of the budget (where relaxed searches land). A
measurement is the published latency times log-normal noise of --noise (a verdict's spread); the one-shot accuracy
is the published CIFAR-10 accuracy plus normal noise of --score-noise points. The real `climb` runs with each
number of rounds of --rounds (the search's `climb` option), and once at the default with its local calibration off
("no calibration"). Reported: the budget the end uses by its published latency, runs ending at 90% or more, over
100% (a violation by the published figure), measurements made, and accuracy gained over the start. Each run also
records why it ended short of 90%: its measurements spent, no candidate predicted costlier and within budget, or
none as accurate one-shot.

    python bench/climb_sim.py                   # JSON to bench/results/climb_sim.json
    python bench/climb_sim.py --trials 10 --predictor cost-gbt --score-noise 3
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

import hwnas.search.climb as climb_module
from hwnas.commands.common import table
from hwnas.predictors.base import get_predictor
from hwnas.predictors.encodings import encode_archs
from hwnas.search.budget import BudgetSearchOptions
from hwnas.spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nb201"


plain_candidates = climb_module.costlier_feasible_neighbours


class TableCost:
    """The climb's view of a latency predictor (target, budget, predict_arch), from predictions made once."""

    target = "latency_ms"

    def __init__(self, space, predicted: dict[str, float], budget: float):
        self.space, self.predicted, self.budget = space, predicted, budget

    def predict_arch(self, archs, exact: bool = True) -> np.ndarray:
        return np.array([self.predicted[self.space.to_string(a)] for a in archs])


def one_climb(space, cost: TableCost, latency: pd.Series, accuracy: pd.Series, start: str, rng, noise: float,
              score_noise: float, rounds: int) -> dict:
    def measure(arch):
        return {"latency_ms": float(latency[space.to_string(arch)] * rng.lognormal(0.0, noise))}, True

    def score(archs):
        return np.array([accuracy[space.to_string(a)] for a in archs]) + rng.normal(0.0, score_noise, len(archs))

    found = []  # how many candidates each round found: the last is 0 when the climb ended with none predicted

    def candidates(*a, **k):
        out = plain_candidates(*a, **k)
        found.append(len(out))
        return out

    first = space.from_string(start)
    climb_module.costlier_feasible_neighbours = candidates
    try:
        end, _, attempts = climb_module.climb(space, [cost], score, first, measure(first)[0], measure, rounds=rounds)
    finally:
        climb_module.costlier_feasible_neighbours = plain_candidates
    name = space.to_string(end)
    return {"share": float(latency[name] / cost.budget), "start_share": float(latency[start] / cost.budget),
            "measurements": len(attempts), "spent": len(attempts) == 3 * rounds,
            "none_predicted": not attempts or (bool(found) and found[-1] == 0),
            "gain": float(accuracy[name] - accuracy[start])}


def main() -> None:
    from rich.console import Console

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=20, help="seeds per device")
    p.add_argument("--profiled", type=int, default=80)
    p.add_argument("--percentile", type=float, default=40.0)
    p.add_argument("--predictor", default="linear-cost")
    p.add_argument("--start-from", type=float, default=0.45)
    p.add_argument("--start-to", type=float, default=0.75)
    p.add_argument("--noise", type=float, default=0.03)
    p.add_argument("--score-noise", type=float, default=1.0)
    p.add_argument("--rounds", default="1,2,3,4", help="the climb's rounds to compare (3 measurements each)")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "climb_sim.json"))
    args = p.parse_args()
    console = Console()
    accuracy = pd.read_csv(Path(args.data) / "accuracy.csv").set_index("arch")["cifar10"]
    latency = pd.read_csv(Path(args.data) / "latency_ms.csv").set_index("arch")
    devices = [c for c in latency.columns if c != "index"]
    space = get_space("nb201:C=8,N=1")
    names = list(latency.index)
    archs = [space.from_string(a) for a in names]
    encoding = get_predictor(args.predictor, space=space).encoding
    codes = encode_archs(space, archs, encoding)
    default_rounds = BudgetSearchOptions().climb
    variants = [f"{r} rounds" for r in args.rounds.split(",")] + ["no calibration"]
    plain_scale = climb_module._local_scale
    results: dict[str, list[dict]] = {v: [] for v in variants}
    with console.status("replaying climbs") as status:
        for device in devices:
            for trial in range(args.trials):
                rng = np.random.default_rng(trial)
                train = rng.choice(len(names), args.profiled, replace=False)
                y = latency[device].to_numpy()
                model = get_predictor(args.predictor, encoding=encoding, seed=trial).fit(codes[train], y[train])
                budget = float(np.percentile(y[train], args.percentile))
                cost = TableCost(space, dict(zip(names, model.predict(codes).astype(float))), budget)
                starts = [n for n in names if args.start_from <= latency.at[n, device] / budget <= args.start_to]
                start = starts[rng.integers(len(starts))]
                for v in variants:
                    status.update(f"{device} trial {trial + 1}/{args.trials}, {v}")
                    plain = v != "no calibration"
                    climb_module._local_scale = plain_scale if plain else (
                        lambda costs, observed: {c.target: 1.0 for c in costs})
                    rounds = int(v.split()[0]) if plain else default_rounds
                    results[v].append({"device": device, "trial": trial, **one_climb(
                        space, cost, latency[device], accuracy, start, np.random.default_rng(1000 + trial),
                        args.noise, args.score_noise, rounds)})
    climb_module._local_scale = plain_scale
    rows = []
    for v, runs in results.items():
        share = np.array([r["share"] for r in runs])
        short = [r for r in runs if r["share"] < 0.9]
        rows.append({"variant": v, "runs": len(runs), "start_share": float(np.mean([r["start_share"] for r in runs])),
                     "share_mean": float(share.mean()), "at_least_90": float((share >= 0.9).mean()),
                     "short_spent": sum(r["spent"] for r in short),
                     "short_none_predicted": sum(not r["spent"] and r["none_predicted"] for r in short),
                     "short_none_as_accurate": sum(not r["spent"] and not r["none_predicted"] for r in short),
                     "over": float((share > 1.0).mean()),
                     "measurements": float(np.mean([r["measurements"] for r in runs])),
                     "gain": float(np.mean([r["gain"] for r in runs]))})
    console.print(table(f"The climb on published NAS-Bench-201 figures ({len(devices)} devices x {args.trials} seeds, "
                        f"{args.predictor} on {args.profiled} cells, budget at their p{args.percentile:g}, noise "
                        f"{args.noise:.0%}, one-shot noise {args.score_noise:g} points)",
                        ["climb", "start (budget used)", "end (budget used)", "ends >= 90%",
                         "short of 90%: measurements spent / none predicted / none as accurate", "ends over 100%",
                         "measurements",
                         "accuracy gain (points)"],
                        [[r["variant"], f"{r['start_share']:.1%}", f"{r['share_mean']:.1%}", f"{r['at_least_90']:.0%}",
                          f"{r['short_spent']} / {r['short_none_predicted']} / {r['short_none_as_accurate']}",
                          f"{r['over']:.0%}",
                          f"{r['measurements']:.1f}", f"{r['gain']:+.2f}"] for r in rows]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": "python bench/climb_sim.py", **vars(args), "rows": rows,
                                          "runs": results}, indent=1))


if __name__ == "__main__":
    main()
