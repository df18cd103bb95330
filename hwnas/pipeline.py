"""`hwnas run` as a function: profile this device, fit a latency predictor, search under the budget, retrain,
export to ONNX and check the exported file on the device against the budget.

    from hwnas.pipeline import PipelineOptions, run_pipeline
    report = run_pipeline(PipelineOptions(space="nb201:C=4,N=1", samples=12, search_epochs=1, retrain_epochs=2))
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.choices import RUN_RETRAIN_EPOCHS, RUN_SAMPLES, RUN_SEARCH_EPOCHS, RUN_STRATEGY
from hwnas.data import load_dataset
from hwnas.errors import HwnasError, quote
from hwnas.export import ExportOptions, export_bundle
from hwnas.export.validate import onnx_backends
from hwnas.measurement import budgets_from
from hwnas.predictors import save_predictor
from hwnas.profilers import TimingProtocol, get_backend, profile_space
from hwnas.profilers.speed import profiling_reference, reference_near
from hwnas.reporting import Reporter, reporter_or_null
from hwnas.search.api import DEFAULT_COST_PREDICTOR, DEFAULT_SPACE, check_cost_predictor, resolve_cost_predictor
from hwnas.search.budget import BudgetSearchOptions, search_under_budget
from hwnas.search.ofa_run import run_ofa
from hwnas.search.train import train_arch
from hwnas.spaces import get_space
from hwnas.store import open_store

__all__ = ["DEFAULT_SPACE", "PipelineOptions", "run_pipeline"]


@dataclass
class PipelineOptions:
    """What `hwnas run` takes. budget_ms None: the `budget_percentile` of the profiled latencies; budget_mj adds an
    energy budget; predictor: a search cost predictor name (hwnas.search.api.cost_predictor_names)."""

    run_dir: str | Path = "runs/default"
    store_url: str | None = None
    space: str = DEFAULT_SPACE
    dataset: str = "digits"
    backend: str = "onnxruntime-cpu"
    threads: int = 1
    samples: int = RUN_SAMPLES
    budget_ms: float | None = None
    budget_percentile: float = 40.0
    budget_mj: float | None = None
    predictor: str = DEFAULT_COST_PREDICTOR
    strategy: str = RUN_STRATEGY
    budget_mode: str = "target"
    search_epochs: int = RUN_SEARCH_EPOCHS
    retrain_epochs: int = RUN_RETRAIN_EPOCHS
    seed: int = 0

    def check(self) -> None:
        """One-line HwnasError for a bad value, before anything is built or written."""
        budgets_from(self.budget_ms, self.budget_mj)
        if not (isinstance(self.budget_percentile, (int, float)) and math.isfinite(self.budget_percentile)
                and 0 < self.budget_percentile < 100):
            raise HwnasError(f"budget percentile {quote(self.budget_percentile)} is not accepted; give a number in "
                             "(0, 100)")
        check_cost_predictor(self.predictor)


class _Stages:
    def __init__(self, report: Reporter):
        self.report, self.seconds, self.started = report, {}, time.perf_counter()
        self._t0, self._name = 0.0, ""

    def start(self, name: str, title: str) -> None:
        self.report.stage(title)
        self._name, self._t0 = name, time.perf_counter()

    def done(self) -> None:
        self.seconds[self._name] = round(time.perf_counter() - self._t0, 1)


def run_pipeline(options: PipelineOptions | None = None, reporter: Reporter | None = None) -> dict[str, Any]:
    """Profile `options.samples` architectures on this device, fit the cost predictor(s), search under the budget,
    retrain, export a bundle to RUN_DIR/export and measure it; returns the report (a JSON-ready dict). Stages and
    progress go to `reporter` (default: silent)."""

    o = options or PipelineOptions()
    o.check()
    report = reporter_or_null(reporter)
    if get_space(o.space).has("elastic"):  # a Once-for-All space: supernet, layer table, NAT, extraction
        return run_ofa(o, report)
    stages = _Stages(report)
    run_dir = Path(o.run_dir)
    data = load_dataset(o.dataset, seed=o.seed)
    s = get_space(o.space, classes=data.num_classes)
    shape = s.check_input_shape(data.input_shape)
    device = get_backend(o.backend, threads=o.threads)
    if not device.runs_onnx:  # the run ends by timing the exported file: refuse before profiling, not after
        raise HwnasError(f"hwnas run measures the exported ONNX file on the device, and backend {device.name} cannot "
                         f"run ONNX files; use one of {', '.join(onnx_backends())}, or run profile/fit/search with "
                         f"{device.name}")
    run_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(o.store_url, run_dir)

    stages.start("profile", f"1/4 profile {o.samples} architectures of {s.spec} on {device.name} "
                            f"({device.device_name()})")
    # Each profiled network is timed alternately with one fixed network (hwnas.profilers.speed), so that what the
    # predictor learns is at one nominal speed: timed alone, minutes apart, the machine's drift made a 20% noise
    # that hid the differences between cells (cross-validated Spearman 0.70 against 0.85-0.91 for the same 80 cells)
    summary = profile_space(s, device, store, o.samples, "uniform", o.seed, shape, 1, reporter=report,
                            reference=profiling_reference(s, device, shape, 1, o.budget_percentile, o.seed))
    stages.done()

    stages.start("fit", f"2/4 fit a {o.predictor} latency predictor")
    budgets = {"latency_ms": o.budget_ms if o.budget_ms is not None else _percentile_budget(o, store, s, device, shape)}
    # Verdicts (the search's, the exported file's) are timed alternately with one reference network near the budget
    # (hwnas.profilers.speed), so that they agree however the machine's speed drifts. A percentile budget is that
    # network's own latency at its nominal speed: profiling's figures, taken at whatever speed the machine had
    # then, would put the budget on another scale than the verdicts.
    search = BudgetSearchOptions(strategy=o.strategy, epochs=o.search_epochs, seed=o.seed, budget_mode=o.budget_mode,
                                 protocol=TimingProtocol.thorough())
    reference = reference_near(s, device, store, shape, search.batch, budgets["latency_ms"], search.protocol)
    if reference is not None and o.budget_ms is None:
        budgets["latency_ms"] = reference.nominal_ms
        report.message(f"budget: {reference.nominal_ms:.4g} ms, the profiled architecture nearest the "
                       f"{o.budget_percentile:g}th percentile, {reference.arch}, at its nominal speed")
    if o.budget_mj is not None:
        budgets["energy_mj"] = float(o.budget_mj)
    budgets = budgets_from(budgets["latency_ms"], budgets.get("energy_mj"))
    predictors = {}
    for target in budgets:
        predictors[target] = resolve_cost_predictor(o.predictor, target, s, shape, device, store, o.seed,
                                                    budget=budgets[target])
        save_predictor(predictors[target], run_dir / f"predictor-{target}.npz", plot=False)
    stages.done()

    stages.start("search", f"3/4 search ({o.strategy}) under {', '.join(f'{k} <= {v:.4g}' for k, v in budgets.items())}")
    # Verdicts use the thorough protocol: profiling's quick one is several per cent noisy at 0.1 ms.
    result = search_under_budget(s, data, predictors, budgets, search, backend=device, store=store, input_shape=shape,
                                 out_dir=run_dir, reporter=report, reference=reference)
    stages.done()
    if not result.within_budget:
        raise HwnasError(f"no architecture measured within {budgets} after {result.measurements_used} measurement(s); "
                         "raise the budget or profile more architectures")

    stages.start("retrain+export", f"4/4 retrain {result.arch_string} for {o.retrain_epochs} epochs, export and check "
                                   f"on {device.name}")
    model, accuracy = train_arch(s, result.arch, data, epochs=o.retrain_epochs, seed=o.seed, reporter=report)
    options = ExportOptions(input_shape=shape, predicted=result.predicted, accuracy=accuracy, budgets=budgets,
                            backend=device, threads=o.threads, protocol=TimingProtocol.thorough(), reference=reference)
    manifest = export_bundle(s, result.arch, run_dir / "export", options, model=model, inputs=data.x_test,
                             labels=data.y_test, store=store, reporter=report)
    stages.done()

    measured = manifest.get("measured") or {}
    return {
        "device": device.device_name(), "device_id": device.device_id(), "backend": device.name, "space": s.spec,
        "dataset": o.dataset, "architectures_profiled": summary.total_in_store,
        "predictor": o.predictor, "predictor_holdout": predictors["latency_ms"].metadata.get("heldout_metrics", {}),
        "predictor_used": _predictor_used(predictors["latency_ms"]),
        "budgets": budgets, "arch": result.arch_string, "predicted": result.predicted,
        "measured_in_search": result.measured, "measured_exported": measured,
        "within_budget": all(measured.get(k) is not None and measured[k] <= v for k, v in budgets.items()),
        "speed_reference": result.speed_reference,
        "test_accuracy": accuracy, "onnx": manifest.get("files", {}).get("model.onnx", {}).get("path")
        or str((run_dir / "export" / "model.onnx").resolve()),
        "bundle": str((run_dir / "export").resolve()), "search_plot": result.plot, "store": store.url,
        "seconds": round(time.perf_counter() - stages.started, 1), "stage_seconds": stages.seconds,
    }


def _percentile_budget(o: PipelineOptions, store, space, device, shape) -> float:
    latencies = [m.learnt("latency_ms") for m in store.measurements(device=device.device_id(), backend=device.name,
                                                                      space=space.spec, input_shape=shape, batch=1)]
    return float(np.percentile(latencies, o.budget_percentile))


def _predictor_used(p) -> str:
    """What judged the architectures, and (with `auto` pairing) what drove the cost term."""
    cost = getattr(p, "cost", None)
    return p.name if cost is None else f"{p.name} (cost term: {cost.name})"
