"""Benchmark: search under a latency budget.

Part 1, tabular (published NAS-Bench-201 data, ../shared/data/nb201): for each device column of latency_ms.csv,
budgets at the 10/25/50/75th percentile of its latencies, several seeds; `tabular_search` with at most
--measurements device measurements (latency reads). Reports per device (a) share of runs whose chosen
architecture's true latency is within budget, (b) share of the budget used (and that of the true best), (c)
cifar10 accuracy regret vs the true best under the budget, (d) device measurements used.

Part 2, real (this CPU, ONNX Runtime, digits): profile `hwnas run`'s space, fit a latency predictor (auto by default:
the most accurate judges discrete architectures, the best differentiable one drives the cost term), then run the
differentiable strategies under budgets at percentiles of the profiled latencies (one run with a latency and an
energy budget together); the chosen architecture is measured (and repaired if over), retrained from scratch,
and its test accuracy reported; per strategy: budget used, measured violations, test accuracy.

Part 3, the cost term's overhead in one search step: the forward and backward of the cost (the predictor on the
relaxed architecture) against a whole DARTS step (goal: under 3%).

    python bench/search_budget.py                      # both parts, JSON to bench/results/search_budget.json
    python bench/search_budget.py --skip-real --seeds 5
    python bench/search_budget.py --quick              # 2 seeds, darts at p50 only, short schedules
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from hwnas.commands.common import reporter  # a bench shows the CLI's progress bars
from hwnas.search.api import DEFAULT_SPACE  # the real part searches the space `hwnas run` does

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HWNAS_SHARED_DATA", ROOT.parent / "shared" / "data")) / "nb201"
PERCENTILES = (10, 25, 50, 75)


def tabular_part(args, console) -> dict:
    from rich.progress import Progress

    from hwnas.commands.common import table
    from hwnas.search import TabularOptions, tabular_search

    with open(DATA / "latency_ms.csv") as f:
        rows = list(csv.DictReader(f))
    devices = args.devices or [c for c in rows[0] if c not in ("index", "arch")]
    runs = []
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("tabular search", total=len(devices) * len(PERCENTILES) * args.seeds)
        for device in devices:
            latency = np.array([float(r[device]) for r in rows])
            for q in PERCENTILES:
                budget = float(np.percentile(latency, q))
                for seed in range(args.seeds):
                    r = tabular_search(TabularOptions(DATA / "latency_ms.csv", device, DATA / "accuracy.csv", "cifar10",
                                                      budget_ms=budget, measurements=args.measurements, seed=seed,
                                                      predictor=args.predictor, min_gain=args.min_gain,
                                                      accuracy_signal=args.accuracy_signal))
                    r.pop("trace")
                    r["percentile"] = q
                    runs.append(r)
                    bar.advance(task)
    per_device = {}
    for device in devices:
        rs = [r for r in runs if r["device"] == device]
        found = [r for r in rs if r["arch"] is not None]
        regret = np.array([r["regret"] for r in found])
        per_device[device] = {
            "runs": len(rs),
            "within_budget_share": float(np.mean([bool(r["within_budget"]) for r in rs])),
            "budget_used_mean": float(np.mean([r["budget_used"] for r in found])) if found else None,
            "best_budget_used_mean": float(np.mean([r["best_budget_used"] for r in rs])),
            "regret_mean": float(regret.mean()) if found else None,
            "regret_max": float(regret.max()) if found else None,
            "regret_le_0.3_share": float(np.mean(regret <= 0.3)) if found else 0.0,
            "measurements_mean": float(np.mean([r["measurements"] for r in rs])),
            "measurements_max": int(max(r["measurements"] for r in rs)),
            "per_percentile_regret": {q: float(np.mean([r["regret"] for r in found if r["percentile"] == q]))
                                      for q in PERCENTILES},
            "seconds_mean": float(np.mean([r["seconds"] for r in rs])),
        }
    allr = np.array([r["regret"] for r in runs if r["regret"] is not None])
    overall = {
        "runs": len(runs), "within_budget_share": float(np.mean([bool(r["within_budget"]) for r in runs])),
        "budget_used_mean": float(np.mean([r["budget_used"] for r in runs if r["budget_used"] is not None])),
        "best_budget_used_mean": float(np.mean([r["best_budget_used"] for r in runs])),
        "regret_mean": float(allr.mean()), "regret_median": float(np.median(allr)), "regret_max": float(allr.max()),
        "regret_le_0.3_share": float(np.mean(allr <= 0.3)),
        "measurements_mean": float(np.mean([r["measurements"] for r in runs])),
        "measurements_max": int(max(r["measurements"] for r in runs)),
    }
    console.print(table(
        f"Tabular search on NAS-Bench-201 (budgets at p{'/'.join(map(str, PERCENTILES))}, {args.seeds} seeds, "
        f"<= {args.measurements} measurements, predictor {args.predictor}, accuracy signal: {args.accuracy_signal})",
        ["device", "within budget", "budget used", "true best uses", "regret mean", "regret max", "regret<=0.3",
         "measurements mean/max"],
        [[d, f"{v['within_budget_share']:.0%}", f"{v['budget_used_mean']:.1%}", f"{v['best_budget_used_mean']:.1%}",
          f"{v['regret_mean']:.3f}", f"{v['regret_max']:.2f}", f"{v['regret_le_0.3_share']:.0%}",
          f"{v['measurements_mean']:.1f}/{v['measurements_max']}"] for d, v in per_device.items()]
        + [["ALL", f"{overall['within_budget_share']:.0%}", f"{overall['budget_used_mean']:.1%}",
            f"{overall['best_budget_used_mean']:.1%}", f"{overall['regret_mean']:.3f}", f"{overall['regret_max']:.2f}",
            f"{overall['regret_le_0.3_share']:.0%}", f"{overall['measurements_mean']:.1f}/{overall['measurements_max']}"]]))
    return {"settings": {"measurements": args.measurements, "seeds": args.seeds, "percentiles": PERCENTILES,
                         "predictor": args.predictor, "min_gain": args.min_gain,
                         "accuracy_signal": args.accuracy_signal},
            "per_device": per_device, "overall": overall, "runs": runs}


def real_part(args, console) -> dict:
    from hwnas.commands.common import RichReporter, table
    from hwnas.data import load_dataset
    from hwnas.profilers import TimingProtocol, get_backend, profile_space
    from hwnas.search import BudgetSearchOptions, search_under_budget, train_arch
    from hwnas.search.api import resolve_cost_predictor
    from hwnas.spaces import get_space
    from hwnas.store import Store

    run_dir = ROOT / "bench" / "results" / "search_budget_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    data = load_dataset("digits", seed=0)
    space = get_space(args.real_space, classes=data.num_classes)
    shape = data.input_shape
    backend = get_backend("onnxruntime-cpu", threads=1)
    store = Store(run_dir / "measurements.db")
    t0 = time.perf_counter()
    profile_space(space, backend, store, args.profile, "uniform", 0, shape, 1, TimingProtocol(),
                  reporter=reporter(quiet=False))
    profile_seconds = time.perf_counter() - t0
    key = {"device": backend.device_id(), "backend": backend.name, "space": space.spec, "input_shape": shape, "batch": 1}
    stored = store.measurements(**key)
    latencies = np.array([m.latency_ms for m in stored])
    energies = np.array([m.energy_mj for m in stored])
    def fit_costs() -> dict:
        return {t: resolve_cost_predictor(args.real_predictor, t, space, shape, backend, store, seed=0,
                                          budget=float(np.percentile(latencies if t == "latency_ms" else energies, 50)))
                for t in ("latency_ms", "energy_mj")}

    predictors = fit_costs()
    runs = []
    plans = [(s, {"latency_ms": float(np.percentile(latencies, q))}, q) for q in args.real_percentiles
             for s in args.strategies]
    plans.append(("darts", {"latency_ms": float(np.percentile(latencies, 50)),
                            "energy_mj": float(np.percentile(energies, 30))}, "p50 + energy p30"))
    for strategy, budgets, label in plans:
        console.rule(f"{strategy} under {budgets}")
        before = len(store.measurements(**key))
        options = BudgetSearchOptions(strategy=strategy, epochs=args.real_epochs, seed=0, budget_mode=args.budget_mode,
                                      protocol=TimingProtocol.thorough())  # verdicts timed as `hwnas run` times them
        r = search_under_budget(space, data, {t: predictors[t] for t in budgets}, budgets, options, backend=backend,
                                store=store, input_shape=shape, out_dir=run_dir / f"{strategy}-{len(runs)}",
                                reporter=RichReporter())
        _, accuracy = train_arch(space, r.arch, data, epochs=args.retrain_epochs, seed=0)
        measured_ok = r.within_budget and all(r.measured[t] <= b for t, b in budgets.items())
        runs.append({"strategy": strategy, "budget_label": f"p{label}" if isinstance(label, int) else label,
                     "budgets": budgets, "arch": r.arch_string, "predicted": r.predicted, "measured": r.measured,
                     "within_budget": r.within_budget, "measured_within_budget": measured_ok,
                     "violation_reported": bool(r.within_budget and not measured_ok),
                     "budget_used": r.budget_used(), "measurements": r.measurements_used, "attempts": len(r.attempts),
                     "test_accuracy": accuracy, "search_seconds": r.search_seconds,
                     "new_store_rows": len(store.measurements(**key)) - before, "plot": r.plot})
        # the repair loop refits predictors on what it measured: start the next run from the profiled fit
        predictors = fit_costs()
    console.print(table(
        f"Real searches on this CPU ({backend.device_name()}, onnxruntime, {space.spec}, digits, "
        f"{args.real_epochs} search epochs, {args.retrain_epochs} retrain epochs, {args.real_predictor} cost, "
        f"budget mode {args.budget_mode})",
        ["strategy", "budget", "measured", "within (measured)", "budget used", "measurements", "test acc"],
        [[x["strategy"], f"{x['budget_label']}: " + ", ".join(f"{t} {b:.4g}" for t, b in x["budgets"].items()),
          ", ".join(f"{t} {_num((x['measured'] or {}).get(t))}" for t in x["budgets"]),
          x["within_budget"], ", ".join(f"{v:.1%}" for v in x["budget_used"].values()), x["measurements"],
          f"{x['test_accuracy']:.3f}"] for x in runs]))
    per_strategy = {}
    for name in dict.fromkeys(x["strategy"] for x in runs):
        mine = [x for x in runs if x["strategy"] == name]
        per_strategy[name] = {
            "runs": len(mine), "measured_within_budget": int(sum(x["measured_within_budget"] for x in mine)),
            "measured_violations": int(sum(not x["measured_within_budget"] for x in mine)),
            "latency_budget_used_mean": float(np.mean([x["budget_used"].get("latency_ms", np.nan) for x in mine])),
            "test_accuracy_mean": float(np.mean([x["test_accuracy"] for x in mine]))}
    console.print(table("Per strategy (real searches): budget used, measured violations, test accuracy",
                        ["strategy", "runs", "latency budget used (mean)", "measured over budget", "test acc (mean)"],
                        [[k, v["runs"], f"{v['latency_budget_used_mean']:.1%}", v["measured_violations"],
                          f"{v['test_accuracy_mean']:.3f}"] for k, v in per_strategy.items()]))
    return {"space": space.spec, "device": backend.device_name(), "device_id": backend.device_id(),
            "per_strategy": per_strategy,
            "profiled": len(stored), "profile_seconds": round(profile_seconds, 1),
            "latency_ms_range": [float(latencies.min()), float(np.median(latencies)), float(latencies.max())],
            "epochs": args.real_epochs, "retrain_epochs": args.retrain_epochs, "predictor": args.real_predictor,
            "budget_mode": args.budget_mode, "runs": runs,
            "summary": {"runs": len(runs), "reported_within_budget": int(sum(x["within_budget"] for x in runs)),
                        "measured_violations_reported": int(sum(x["violation_reported"] for x in runs)),
                        "latency_budget_used_mean": float(np.mean([x["budget_used"]["latency_ms"] for x in runs
                                                                   if x["within_budget"]])) if any(x["within_budget"] for x in runs) else None,
                        "test_accuracy_mean": float(np.mean([x["test_accuracy"] for x in runs]))}}


def overhead_part(args, console) -> dict:
    """Seconds of the cost term's forward and backward on the relaxed architecture, against a whole DARTS step
    (task loss on a training and a validation batch, supernet and alpha updates, cost term included)."""
    from hwnas.commands.common import table
    from hwnas.data import load_dataset
    from hwnas.predictors import get_predictor
    from hwnas.search.cost import HardwareCost
    from hwnas.search.strategy import batches, get_strategy
    from hwnas.spaces import get_space

    data = load_dataset("digits", seed=0)
    space = get_space(args.real_space, classes=data.num_classes)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(60)]
    macs = np.array([space.profile(a, data.input_shape).macs for a in archs]) / 1e6
    rows, out = [], {}
    for name in ("lookup", "mlp"):
        predictor = get_predictor(name, seed=0, **({"epochs": 50} if name == "mlp" else {}))
        predictor.fit(space.encode_many(archs), macs)
        cost = HardwareCost(space, "latency_ms", float(np.median(macs)), predictor=predictor)
        strategy = get_strategy("darts")(space, space.supernet(data.input_shape), [cost], seed=0)
        g = torch.Generator().manual_seed(0)
        train = list(batches(data.x_train, data.y_train, 64, g))[:args.overhead_steps]
        val = list(batches(data.x_val, data.y_val, 64, g))
        strategy.step(train[0], val[0])  # warm up
        started = time.perf_counter()
        for i, batch in enumerate(train):
            strategy.step(batch, val[i % len(val)])
        step = (time.perf_counter() - started) / len(train)
        reps = 20 * len(train)
        started = time.perf_counter()
        for _ in range(reps):
            alpha = strategy.alpha.detach().clone().requires_grad_(True)
            cost.value(alpha).backward()
        term = (time.perf_counter() - started) / reps
        out[name] = {"step_ms": 1e3 * step, "cost_term_ms": 1e3 * term, "overhead": term / step}
        rows.append([name, f"{1e3 * step:.2f}", f"{1e3 * term:.3f}", f"{term / step:.2%}"])
    console.print(table(f"Cost-term overhead in one DARTS step ({space.spec}, digits, batch 64; goal < 3%; timings "
                        "on a shared machine are noisy)", ["cost predictor", "step ms", "cost term ms", "overhead"], rows))
    return out


def _num(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def main() -> None:
    from rich.console import Console

    console = Console(stderr=True, width=170)  # wide enough for the tables when not on a terminal

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--measurements", type=int, default=50)
    p.add_argument("--predictor", default="ridge", help="latency predictor of the tabular part")
    p.add_argument("--min-gain", type=float, default=0.001, help="tabular: stop when no expected gain reaches this")
    p.add_argument("--accuracy-signal", choices=["oracle", "surrogate"], default="oracle",
                   help="tabular: the accuracy table ranks every arch (oracle), or an MLP fitted on 200 of them does")
    p.add_argument("--devices", nargs="*", default=None)
    p.add_argument("--skip-tabular", action="store_true")
    p.add_argument("--skip-real", action="store_true")
    p.add_argument("--real-space", default=DEFAULT_SPACE)
    p.add_argument("--real-predictor", default="auto", help="latency/energy predictor of the real part")
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--overhead-steps", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="2 seeds, darts at p50 only, 4 search and 5 retrain epochs")
    p.add_argument("--budget-mode", default="target", choices=["target", "cap"])
    p.add_argument("--profile", type=int, default=40, help="architectures profiled for the real part")
    p.add_argument("--real-percentiles", type=int, nargs="*", default=[25, 50, 75])
    p.add_argument("--strategies", nargs="*", default=["darts", "darts-2nd", "single-level", "mean-shift", "gumbel"])
    p.add_argument("--real-epochs", type=int, default=6)
    p.add_argument("--retrain-epochs", type=int, default=15)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "search_budget.json"))
    args = p.parse_args()
    if args.quick:
        args.seeds, args.strategies, args.real_percentiles = 2, ["darts"], [50]
        args.real_epochs, args.retrain_epochs, args.profile = 4, 5, 30
    torch.set_num_threads(1)
    out: dict = {"command": "python bench/search_budget.py " + " ".join(os.sys.argv[1:])}
    if not args.skip_tabular:
        if not (DATA / "latency_ms.csv").is_file():
            console.print(f"skipping the tabular part: no NAS-Bench-201 data at {DATA} (set HWNAS_SHARED_DATA)")
        else:
            out["tabular"] = tabular_part(args, console)
    if not args.skip_real:
        out["real"] = real_part(args, console)
    if not args.skip_overhead:
        out["cost_overhead"] = overhead_part(args, console)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str))
    console.print(f"saved {path}")


if __name__ == "__main__":
    main()
