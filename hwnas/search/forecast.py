"""The forecasting task: search a recurrent cell (rnn-cell space, `growing` strategy by default) on a real
multivariate series, optionally under a latency budget on this device, and compare the found cell with LSTM and
GRU baselines of the same hidden size, all trained the same way, by test MSE (standardised units).

    from hwnas.search.forecast import ForecastOptions, search_forecast
    result = search_forecast(ForecastOptions(budget_ms=0.2, epochs=10))

With a budget the space is first profiled on the device (`profile_samples` cells, exported to ONNX at the
window's fixed length and timed like any other space), a cost predictor is fitted on those measurements, and the
search and its measure-and-repair run as `search_under_budget` does for images.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import HwnasError, quote
from hwnas.files import atomic_write
from hwnas.profilers import TimingProtocol, get_backend, profile_space
from hwnas.reporting import Reporter, reporter_or_null
from hwnas.search.api import resolve_cost_predictor
from hwnas.search.budget import BudgetSearchOptions, search_under_budget
from hwnas.search.strategy import get_strategy, run_search
from hwnas.spaces import get_space
from hwnas.spaces.rnn_cell import baseline_model
from hwnas.store import open_store
from hwnas.timeseries import load_forecast

BASELINES = ("lstm", "gru")


@dataclass
class ForecastOptions:
    """What `hwnas search --task forecast` takes. budget_ms None: a search without a device (latencies only with
    measure_latency);
    seeds: the retraining seeds of the found cell and of each baseline (mean and std are reported)."""

    space: str = "rnn-cell:H=16,nodes=3"
    dataset: str = "macrodata"
    window: int = 8
    strategy: str = "growing"
    strategy_options: dict[str, Any] = field(default_factory=lambda: {"mode": "grow-then-prune", "start_nodes": 1})
    epochs: int = 20
    retrain_epochs: int = 60
    budget_ms: float | None = None
    backend: str = "onnxruntime-cpu"
    threads: int = 1
    protocol: str = "quick"
    profile_samples: int = 30
    predictor: str = "lookup"
    seeds: tuple[int, ...] = (0,)
    measure_latency: bool = False  # measure the found cell and the baselines even without a budget
    seed: int = 0
    run_dir: str | Path = "runs/forecast"
    store_url: str | None = None

    def check(self) -> None:
        for name, value, least in (("epochs", self.epochs, 1), ("retrain_epochs", self.retrain_epochs, 1),
                                   ("profile_samples", self.profile_samples, 2), ("threads", self.threads, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise HwnasError(f"{name} {quote(value)} is not accepted; give a whole number >= {least}")
        if self.budget_ms is not None and not (math.isfinite(self.budget_ms) and self.budget_ms > 0):
            raise HwnasError(f"budget {quote(self.budget_ms)} ms is not accepted; give a finite positive number")
        if not self.seeds:
            raise HwnasError("give at least one retraining seed")
        get_strategy(self.strategy)


def mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float(F.mse_loss(model(x), y))


def train_forecaster(model: nn.Module, data, epochs: int, seed: int, batch_size: int = 32,
                     lr: float = 3e-3) -> tuple[nn.Module, dict[str, float]]:
    """Train on the training split with Adam and MSE, keep the weights of the epoch with the lowest validation
    MSE, and report {"val_mse", "test_mse", "best_epoch"}. Every model (found cell and baselines) is trained so."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best, best_state, best_epoch = math.inf, copy.deepcopy(model.state_dict()), 0
    n = len(data.y_train)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            loss = F.mse_loss(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        val = mse(model, data.x_val, data.y_val)
        if val < best:
            best, best_state, best_epoch = val, copy.deepcopy(model.state_dict()), epoch + 1
    model.load_state_dict(best_state)
    model.eval()
    return model, {"val_mse": best, "test_mse": mse(model, data.x_test, data.y_test), "best_epoch": best_epoch}


def _search(o: ForecastOptions, space, data, report, run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """(found arch, search record); with a budget through `search_under_budget` (profiled, predicted, measured)."""
    search = BudgetSearchOptions(strategy=o.strategy, epochs=o.epochs, seed=o.seed, batch_size=32,
                                 weight_lr=0.05, arch_lr=0.05, protocol=TimingProtocol.named(o.protocol),
                                 strategy_options=dict(o.strategy_options))
    if o.budget_ms is None:
        torch.manual_seed(o.seed)
        strategy = get_strategy(o.strategy)(space, space.supernet(data.input_shape), [], seed=o.seed,
                                            **search.strategy_options)
        history = run_search(strategy, data, o.epochs, search.batch_size,
                             on_epoch=lambda r: report.message(f"{o.strategy}: epoch {r['epoch']:>3}/{o.epochs}  "
                                                               f"val-batch MSE {r['loss']:.3f}  {r['derived']}"))
        arch = space.derive(strategy.alpha)
        return arch, {"history": _slim(history), "events": getattr(strategy, "events", [])}
    backend = get_backend(o.backend, threads=o.threads)
    store = open_store(o.store_url, run_dir, readonly=False)
    shape = data.input_shape
    summary = profile_space(space, backend, store, o.profile_samples, seed=o.seed, input_shape=shape,
                            protocol=search.protocol, reporter=report)
    predictor = resolve_cost_predictor(o.predictor, "latency_ms", space, shape, backend, store, o.seed)
    result = search_under_budget(space, data, {"latency_ms": predictor}, {"latency_ms": o.budget_ms}, search,
                                 backend=backend, store=store, input_shape=shape, out_dir=run_dir, reporter=report)
    record = result.to_dict()
    record["history"] = _slim(record["history"])
    record.update(profiled=summary.total_in_store,
                  predictor_heldout=predictor.metadata.get("heldout_metrics"), store=store.url,
                  device=backend.device_name(), backend=backend.name)
    return result.arch, record


def _slim(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "steps"} for row in history]


def compare_forecasters(space, arch, data, epochs: int, seeds, backend=None, protocol=None,
                        reporter: Reporter | None = None) -> dict[str, dict[str, Any]]:
    """Test MSE (mean, std over `seeds`) of the found cell and of LSTM and GRU of the same hidden size, trained
    the same way; with a `backend`, each one's measured latency (ONNX at the window's length, batch 1)."""
    report = reporter_or_null(reporter)
    hidden, outputs, features = space.params["H"], data.num_classes, data.input_shape[1]
    makers = {"found": lambda: space.build(arch, data.input_shape)}
    makers.update({k: (lambda k=k: baseline_model(k, features, hidden, outputs)) for k in BASELINES})
    out: dict[str, dict[str, Any]] = {}
    for name, make in makers.items():
        scores = []
        for seed in seeds:
            torch.manual_seed(seed)
            model, score = train_forecaster(make(), data, epochs, seed)
            scores.append(score["test_mse"])
        row = {"test_mse_mean": float(np.mean(scores)), "test_mse_std": float(np.std(scores)),
               "test_mse": scores, "params": sum(p.numel() for p in model.parameters())}
        if backend is not None:
            row["latency_ms"] = backend.measure(model, data.input_shape, 1, protocol).latency_ms
        report.message(f"{name}: test MSE {row['test_mse_mean']:.4f} ± {row['test_mse_std']:.4f} "
                       f"({len(scores)} seed(s)), {row['params']} parameters"
                       + (f", {row['latency_ms']:.4g} ms" if "latency_ms" in row else ""))
        out[name] = row
    return out


def search_forecast(options: ForecastOptions, reporter: Reporter | None = None) -> dict[str, Any]:
    """Search a recurrent cell for forecasting, compare it with LSTM and GRU (test MSE, latency), and write
    RUN_DIR/forecast.json; returns the result as a JSON-ready dict."""
    o, report = options, reporter_or_null(reporter)
    o.check()
    data = load_forecast(o.dataset, o.window)
    space = get_space(o.space, classes=data.num_classes)
    run_dir = Path(o.run_dir)
    report.message(f"{data.name}: {data.sizes()} windows (split by time), {data.num_classes} series")
    arch, record = _search(o, space, data, report, run_dir)
    measure = o.budget_ms is not None or o.measure_latency
    backend = get_backend(o.backend, threads=o.threads) if measure else None
    compared = compare_forecasters(space, arch, data, o.retrain_epochs, o.seeds, backend,
                                   TimingProtocol.named(o.protocol), report)
    naive = {"persistence": float(F.mse_loss(data.x_test[:, -1], data.y_test)),  # next quarter = this one
             "train_mean": float(data.y_test.pow(2).mean())}  # standardised: the training mean is 0
    report.message(f"naive forecasts: test MSE {naive['persistence']:.4f} (persistence), "
                   f"{naive['train_mean']:.4f} (training mean)")
    out = {"task": "forecast", "dataset": data.name, "sizes": data.sizes(), "space": space.spec, "naive": naive,
           "strategy": o.strategy, "arch": space.to_string(arch), "budget_ms": o.budget_ms, "search": record,
           "compared": compared, "options": {k: v for k, v in asdict(o).items() if k != "run_dir"}}
    with atomic_write(run_dir / "forecast.json") as f:
        f.write(json.dumps(out, indent=2, default=str))
    return out
