"""`hwnas run` as a function: profile this device, fit a latency predictor, search under the budget, retrain,
export to ONNX and check the exported file on the device against the budget."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import HwnasError

DEFAULT_SPACE = "nb201:C=16,N=3"  # big enough that latency differences stand out of timing noise


def run_pipeline(
    run_dir: str | Path = "runs/default",
    store_url: str | None = None,
    space: str = DEFAULT_SPACE,
    dataset: str = "digits",
    backend: str = "onnxruntime-cpu",
    threads: int = 1,
    samples: int = 100,
    budget_ms: float | None = None,
    budget_percentile: float = 40.0,
    budget_mj: float | None = None,
    predictor: str = "lookup",
    strategy: str = "darts",
    budget_mode: str = "target",
    search_epochs: int = 15,
    retrain_epochs: int = 30,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    from hwnas.commands.common import console
    from hwnas.data import load_dataset
    from hwnas.export import ExportOptions, export_bundle
    from hwnas.predictors import fit_from_store
    from hwnas.profilers import get_backend, profile_space
    from hwnas.search import search_under_budget, train_arch
    from hwnas.spaces import get_space
    from hwnas.store import open_store

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stages: dict[str, float] = {}

    def stage(title: str) -> None:
        if progress:
            console.rule(f"[bold]{title}")

    def done(name: str, t0: float) -> None:
        stages[name] = round(time.perf_counter() - t0, 1)

    data = load_dataset(dataset, seed=seed)
    s = get_space(space, classes=data.num_classes)
    shape = s.check_input_shape(data.input_shape)
    device = get_backend(backend, threads=threads)
    store = open_store(store_url, run_dir)

    stage(f"1/4 profile {samples} architectures of {s.spec} on {device.name} ({device.device_name()})")
    t0 = time.perf_counter()
    summary = profile_space(s, device, store, samples, "uniform", seed, shape, 1, progress=progress)
    done("profile", t0)

    stage(f"2/4 fit a {predictor} latency predictor")
    t0 = time.perf_counter()
    key = {"store": store, "space": s, "device": device.device_id(), "backend": device.name, "input_shape": shape, "batch": 1}
    predictors, fit_metrics = {}, {}
    predictors["latency_ms"], fit_metrics["latency_ms"] = fit_from_store(**key, target="latency_ms", predictor=predictor, seed=seed)
    predictors["latency_ms"].save(run_dir / "predictor-latency.npz")
    budgets: dict[str, float] = {}
    if budget_ms is None:
        latencies = [m.latency_ms for m in store.measurements(device=device.device_id(), backend=device.name,
                                                               space=s.spec, input_shape=shape, batch=1)]
        budget_ms = float(np.percentile(latencies, budget_percentile))
    budgets["latency_ms"] = float(budget_ms)
    if budget_mj is not None:
        predictors["energy_mj"], fit_metrics["energy_mj"] = fit_from_store(**key, target="energy_mj", predictor=predictor, seed=seed)
        predictors["energy_mj"].save(run_dir / "predictor-energy.npz")
        budgets["energy_mj"] = float(budget_mj)
    done("fit", t0)

    stage(f"3/4 search ({strategy}) under {', '.join(f'{k} <= {v:.4g}' for k, v in budgets.items())}")
    t0 = time.perf_counter()
    result = search_under_budget(s, data, predictors, budgets, strategy=strategy, epochs=search_epochs,
                                 backend=device, store=store, input_shape=shape, seed=seed, progress=progress,
                                 out_dir=run_dir, budget_mode=budget_mode)
    done("search", t0)
    if not result.within_budget:
        raise HwnasError(f"no architecture measured within {budgets} after {result.measurements_used} measurement(s); "
                         "raise the budget or profile more architectures")

    stage(f"4/4 retrain {result.arch_string} for {retrain_epochs} epochs, export and check on {device.name}")
    t0 = time.perf_counter()
    model, accuracy = train_arch(s, result.arch, data, epochs=retrain_epochs, seed=seed, progress=progress)
    options = ExportOptions(input_shape=shape, predicted=result.predicted, accuracy=accuracy, budgets=budgets,
                            backend=device.name, threads=threads)
    manifest = export_bundle(s, result.arch, run_dir / "export", options, model=model, inputs=data.x_test,
                             labels=data.y_test, store=store)
    done("retrain+export", t0)

    measured = manifest.get("measured") or {}
    report = {
        "device": device.device_name(), "device_id": device.device_id(), "backend": device.name, "space": s.spec,
        "dataset": dataset, "architectures_profiled": summary.total_in_store,
        "predictor": predictor, "predictor_holdout": fit_metrics["latency_ms"],
        "budgets": budgets, "arch": result.arch_string, "predicted": result.predicted,
        "measured_in_search": result.measured, "measured_exported": measured,
        "within_budget": all(measured.get(k) is not None and measured[k] <= v for k, v in budgets.items()),
        "test_accuracy": accuracy, "onnx": manifest.get("files", {}).get("model.onnx", {}).get("path")
        or str((run_dir / "export" / "model.onnx").resolve()),
        "bundle": str((run_dir / "export").resolve()), "search_plot": result.plot, "store": store.url,
        "seconds": round(time.perf_counter() - started, 1), "stage_seconds": stages,
    }
    return report
