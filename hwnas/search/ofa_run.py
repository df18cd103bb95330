"""`hwnas run --space mbv3` end to end (Once-for-All): train the elastic supernet by progressive shrinking,
profile whole subnets and every distinct layer on the device (the layer table, corrected per network), search
under the budget (NAT: NSGA-II with a supernet-trained accuracy predictor; or a differentiable strategy with the
layer table as its cost), measure-and-repair, take the chosen subnet out of the supernet (BatchNorm recalibrated,
briefly fine-tuned), export it and measure the exported file against the budget.

`run_ofa(options)` takes hwnas.pipeline's PipelineOptions: `search_epochs` sets the supernet's schedule
(largest network search_epochs // 5 epochs, each elastic phase search_epochs // 10, at least 1), `retrain_epochs
// 10` is the fine-tuning, `samples` (at most 30) the whole networks profiled for the table's correction;
`strategy` "darts" (the default) means NAT, any other registered strategy runs that differentiable search.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.data import load_dataset
from hwnas.errors import HwnasError
from hwnas.export import ExportOptions, export_bundle
from hwnas.export.network import calibrate_batchnorm
from hwnas.export.subnet import finetune
from hwnas.predictors import save_predictor
from hwnas.profilers import TimingProtocol, get_backend, layer_lut_predictor, profile_space
from hwnas.reporting import Reporter, reporter_or_null
from hwnas.search.budget import BudgetSearchOptions, search_under_budget
from hwnas.search.ofa import NATOptions, SupernetOptions, evaluate_subnet, measured_choice, nat_search, train_supernet
from hwnas.search.train import evaluate
from hwnas.spaces import get_space
from hwnas.store import open_store

#: whole networks profiled at most (they only fit the layer table's three correction coefficients)
MAX_NETWORKS = 30
#: the measurements that decide "within budget" (repair and the exported file): up to 10 s of runs, so that the
#: median of these sub-millisecond networks survives a busy machine
CHECK_PROTOCOL = TimingProtocol.thorough()
NAT_STRATEGY = "darts"  # the pipeline's default strategy name: on mbv3 it means NAT


def run_ofa(o, reporter: Reporter | None = None) -> dict[str, Any]:
    """See the module doc; returns the same report as hwnas.pipeline.run_pipeline, plus the supernet's file."""
    report = reporter_or_null(reporter)
    started, seconds = time.perf_counter(), {}
    run_dir = Path(o.run_dir)
    data = load_dataset(o.dataset, seed=o.seed)
    space = get_space(o.space, classes=data.num_classes)
    shape = space.check_input_shape(data.input_shape)
    device = get_backend(o.backend, threads=o.threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(o.store_url, run_dir)

    t = time.perf_counter()
    epochs = (max(1, o.search_epochs // 5),) + (max(1, o.search_epochs // 10),) * 3
    report.stage(f"1/5 train the elastic supernet of {space.spec} (progressive shrinking, epochs {epochs})")
    supernet, history = train_supernet(space, data, SupernetOptions(epochs=epochs, seed=o.seed), report)
    checkpoint = space.save_supernet(supernet, run_dir / "supernet.pt", shape,
                                     {"dataset": o.dataset, "epochs": list(epochs), "history": history})
    seconds["supernet"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    report.stage(f"2/5 profile subnets and the layer table on {device.name} ({device.device_name()})")
    summary = profile_space(space, device, store, min(o.samples, MAX_NETWORKS), "uniform", o.seed, shape, 1,
                            reporter=report)
    latency = layer_lut_predictor(space, device, shape, store, reporter=report)
    save_predictor(latency, run_dir / "predictor-layer-lut.npz", plot=False)
    budget = o.budget_ms if o.budget_ms is not None else _percentile_budget(o, store, space, device, shape)
    seconds["profile"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    report.stage(f"3/5 search ({'nat' if o.strategy == NAT_STRATEGY else o.strategy}) under latency_ms <= {budget:.4g}")
    chosen = _search(o, space, supernet, data, latency, budget, device, store, shape, report)
    seconds["search"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    report.stage(f"4/5 extract {chosen['arch']} from the supernet, recalibrate BatchNorm, fine-tune")
    arch = space.from_string(chosen["arch"])
    net = space.extract(supernet, arch, shape)
    calibrate_batchnorm(net, data.x_train[:512])
    supernet_accuracy = evaluate_subnet(space, supernet, arch, data.x_test, data.y_test, data.x_train[:512])
    if o.retrain_epochs // 10:
        finetune(net, data.x_train, data.y_train, o.retrain_epochs // 10, o.seed)
    accuracy = evaluate(net, data.x_test, data.y_test)
    seconds["extract"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    report.stage(f"5/5 export and check on {device.name}")
    budgets = {"latency_ms": float(budget)}
    options = ExportOptions(input_shape=shape, predicted={"latency_ms": chosen["predicted_latency_ms"]},
                            accuracy=accuracy, budgets=budgets, backend=device.name, threads=o.threads,
                            protocol=CHECK_PROTOCOL)
    manifest = export_bundle(space, arch, run_dir / "export", options, model=net, inputs=data.x_test,
                             labels=data.y_test, store=store, reporter=report)
    seconds["export"] = round(time.perf_counter() - t, 1)
    measured = manifest.get("measured") or {}
    return {
        "device": device.device_name(), "device_id": device.device_id(), "backend": device.name, "space": space.spec,
        "dataset": o.dataset, "architectures_profiled": summary.total_in_store, "predictor": "layer-lut",
        "predictor_holdout": latency.metadata.get("heldout_metrics", {}), "budgets": budgets, "arch": chosen["arch"],
        "predicted": {"latency_ms": chosen["predicted_latency_ms"]},
        "measured_in_search": {"latency_ms": chosen.get("measured_latency_ms")}, "measured_exported": measured,
        "within_budget": measured.get("latency_ms") is not None and measured["latency_ms"] <= budget,
        "test_accuracy": accuracy, "supernet_test_accuracy": supernet_accuracy,
        "onnx": str((run_dir / "export" / "model.onnx").resolve()), "bundle": str((run_dir / "export").resolve()),
        "supernet": str(checkpoint.resolve()), "layers_profiled": len(latency.keys),
        "table_vs_networks": latency.metadata.get("table_vs_networks"), "search_plot": None, "store": store.url,
        "seconds": round(time.perf_counter() - started, 1), "stage_seconds": seconds,
    }


def _search(o, space, supernet, data, latency, budget, device, store, shape, report) -> dict[str, Any]:
    if o.strategy == NAT_STRATEGY:
        nat = nat_search(space, supernet, data, latency, budget, NATOptions(seed=o.seed, archive=24, rounds=2,
                                                                            per_round=6, trials=300), report)
        if not nat.front:
            raise HwnasError(f"no subnet of {space.spec} is predicted within {budget:.4g} ms; raise the budget")
        return measured_choice(space, nat.front, latency, budget, device, store, shape, protocol=CHECK_PROTOCOL,
                               reporter=report, accuracy=nat.accuracy_predictor)
    search = BudgetSearchOptions(strategy=o.strategy, epochs=max(1, o.search_epochs // 5), seed=o.seed,
                                 budget_mode=o.budget_mode)
    result = search_under_budget(space, data, {"latency_ms": latency}, {"latency_ms": budget}, search,
                                 backend=device, store=store, input_shape=shape, out_dir=o.run_dir, reporter=report)
    if not result.within_budget:
        raise HwnasError(f"no architecture measured within {budget:.4g} ms after {result.measurements_used} "
                         "measurement(s); raise the budget")
    return {"arch": result.arch_string, "predicted_latency_ms": result.predicted["latency_ms"],
            "measured_latency_ms": result.measured["latency_ms"]}


def _percentile_budget(o, store, space, device, shape) -> float:
    latencies = [m.latency_ms for m in store.measurements(device=device.device_id(), backend=device.name,
                                                           space=space.spec, input_shape=shape, batch=1)]
    return float(np.percentile(latencies, o.budget_percentile))
