"""`hwnas search --task forecast|rl`: the searches beyond image classifiers (recurrent cells for forecasting,
RL-DARTS encoders), each compared with its hand-designed baselines."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hwnas.commands.common import emit_json, reporter, results, table
from hwnas.errors import HwnasError

#: --task choices; "classify" is the image search of `search_device`
TASKS = ("classify", "forecast", "rl")
#: the space each task searches when --space is left at the image default
TASK_SPACES = {"forecast": "rnn-cell:H=16,nodes=3", "rl": "nb201:C=4,N=1"}


def run_task(task: str, space: str | None, strategy: str | None, env: str | None, steps: int, seeds: int,
             common: dict[str, Any], as_json: bool) -> None:
    """Run the forecast or rl task with the options `hwnas search` shares (`common`) and print the comparison."""
    if task == "forecast":
        result = _forecast(space, strategy, seeds, common, as_json)
    else:
        if strategy not in (None, "darts"):
            raise HwnasError(f"--task rl learns the architecture with the policy (DARTS relaxation); --strategy "
                             f"{strategy} is not accepted there")
        result = _rl(space, env, steps, seeds, common, as_json)
    if as_json:
        emit_json(result)
        return
    rows = [[name, *_figures(task, row)] for name, row in result["compared"].items()]
    rows += [[f"{name} (naive)", f"{mse:.4g}", "-", "0"] for name, mse in result.get("naive", {}).items()]
    metric = "test MSE (mean ± std)" if task == "forecast" else "return (mean ± std)"
    results.print(table(f"{task}: found cell against the baselines", ["model", metric, "latency ms", "params"], rows))
    results.print(f"found: {result['arch']}", markup=False, soft_wrap=True)
    results.print(f"result: {Path(common['run_dir']) / ('forecast.json' if task == 'forecast' else 'rl.json')}")


def _figures(task: str, row: dict[str, Any]) -> list[str]:
    key = "test_mse" if task == "forecast" else ""
    mean, std = (row[f"{key}_mean"], row[f"{key}_std"]) if key else (row["mean"], row["std"])
    latency = row.get("latency_ms")
    return [f"{mean:.4g} ± {std:.2g}", "-" if latency is None else f"{latency:.4g}", str(row.get("params", "-"))]


def _forecast(space, strategy, seeds, c, as_json) -> dict[str, Any]:
    from hwnas.search.forecast import ForecastOptions, search_forecast

    o = ForecastOptions(space=space or TASK_SPACES["forecast"], strategy=strategy or "growing",
                        epochs=c["epochs"], retrain_epochs=max(1, c["retrain_epochs"]), budget_ms=c["budget_ms"],
                        backend=c["backend"], threads=c["threads"], protocol=c["protocol"],
                        predictor=c["predictor"] or "lookup", seeds=tuple(range(seeds)), seed=c["seed"],
                        run_dir=c["run_dir"], store_url=c["store_url"])
    if o.strategy != "growing":
        o.strategy_options = {}
    return search_forecast(o, reporter(quiet=as_json))


def _rl(space, env, steps, seeds, c, as_json) -> dict[str, Any]:
    from hwnas.search.rl_darts import RLOptions, rl_search

    o = RLOptions(env=env or "MinAtar/Breakout-v1", space=space or TASK_SPACES["rl"], steps=steps,
                  seeds=tuple(range(seeds)), seed=c["seed"], budget_ms=c["budget_ms"], backend=c["backend"],
                  threads=c["threads"], protocol=c["protocol"], predictor=c["predictor"] or "lookup",
                  run_dir=c["run_dir"], store_url=c["store_url"])
    return rl_search(o, reporter(quiet=as_json))
