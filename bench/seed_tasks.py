"""Benchmark: search beyond image classifiers, on this CPU.

Forecasting: a recurrent cell grown by network morphism (`growing`, rnn-cell space) on statsmodels' macrodata
(split by time, standardised on train), against LSTM and GRU of the same hidden size trained the same way: test
MSE (standardised units), mean and std over the retraining seeds, and each model's latency (ONNX Runtime, one
thread, batch 1, the window's fixed length). The cell is searched once (seed 0); the seeds are retraining seeds.

RL-DARTS: PPO with an nb201 supernet encoder on MinAtar (architecture parameters learned with the policy), the
derived cell retrained from scratch against MinAtar's baseline encoder, same seeds and steps: mean evaluation
return over the seeds, and each encoder's latency.

    python bench/seed_tasks.py --quick     # about a minute or two on an idle 2-core machine
    python bench/seed_tasks.py             # minutes; JSON to bench/results/seed_tasks.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from hwnas.commands.common import reporter, results, table

ROOT = Path(__file__).resolve().parents[1]


def forecast_part(args, work: Path) -> dict:
    from hwnas.search.forecast import ForecastOptions, search_forecast

    o = ForecastOptions(space=args.forecast_space, epochs=args.forecast_epochs, retrain_epochs=args.retrain_epochs,
                        seeds=tuple(range(args.seeds)), measure_latency=True, protocol=args.protocol,
                        run_dir=work / "forecast")
    started = time.perf_counter()
    out = search_forecast(o, reporter(quiet=False))
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def rl_part(args, work: Path) -> dict:
    from hwnas.search.rl_darts import RLOptions, rl_search

    o = RLOptions(env=args.env, space=args.rl_space, steps=args.steps, seeds=tuple(range(args.seeds)),
                  eval_episodes=args.eval_episodes, protocol=args.protocol, run_dir=work / "rl")
    started = time.perf_counter()
    out = rl_search(o, reporter(quiet=False))
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def print_tables(report: dict) -> None:
    if "forecast" in report:
        f = report["forecast"]
        rows = [[name, f"{r['test_mse_mean']:.4f}", f"{r['test_mse_std']:.4f}", f"{r['latency_ms']:.4g}",
                 str(r["params"])] for name, r in f["compared"].items()]
        rows += [[f"{name} (naive)", f"{mse:.4f}", "-", "-", "0"] for name, mse in f.get("naive", {}).items()]
        results.print(table(f"forecast ({f['dataset']}, {len(f['options']['seeds'])} seeds): found {f['arch']}",
                            ["model", "test MSE mean", "std", "latency ms", "params"], rows))
    if "rl" in report:
        r = report["rl"]
        rows = [[name, f"{row['mean']:.3f}", f"{row['std']:.3f}", ", ".join(f"{v:.2f}" for v in row["returns"]),
                 f"{row['latency_ms']:.4g}", str(row["params"])] for name, row in r["compared"].items()]
        results.print(table(f"RL-DARTS ({r['env']}, {r['options']['steps']} steps): derived {r['arch']}",
                            ["encoder", "return mean", "std", "per seed", "latency ms", "params"], rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few epochs and steps: checks that it runs")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--skip-forecast", action="store_true")
    p.add_argument("--skip-rl", action="store_true")
    p.add_argument("--forecast-space", default="rnn-cell:H=16,nodes=3")
    p.add_argument("--forecast-epochs", type=int, default=20)
    p.add_argument("--retrain-epochs", type=int, default=60)
    p.add_argument("--env", default="MinAtar/Breakout-v1")
    p.add_argument("--rl-space", default="nb201:C=4,N=1")
    p.add_argument("--steps", type=int, default=10_000, help="PPO steps of the search and of each retraining")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--protocol", default="quick", choices=["quick", "default", "thorough"])
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "seed_tasks.json"))
    args = p.parse_args()
    if args.quick:
        args.forecast_epochs, args.retrain_epochs, args.steps, args.eval_episodes = 4, 10, 2048, 3
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(tempfile.mkdtemp(prefix="hwnas-seed-tasks-"))
    report: dict = {"args": vars(args)}
    try:
        if not args.skip_forecast:
            report["forecast"] = forecast_part(args, work)
        if not args.skip_rl:
            report["rl"] = rl_part(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_tables(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    results.print(f"wrote {out}")


if __name__ == "__main__":
    main()
