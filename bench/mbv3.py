"""Benchmark: the mbv3 (MobileNetV3 / Once-for-All) space on this CPU (ONNX Runtime, 1 thread).

Part 1, layer table vs whole networks: profile every distinct layer of the space (`layer-lut`), fit the per-network
correction on --fit-networks random subnets, then measure --networks other random subnets whole and compare:
within ±10%, within ±5%, Spearman, for the plain sum (table + one call overhead) and the corrected table.
Part 2, supernet vs from scratch: train the elastic supernet on digits (progressive shrinking, KD), take
--subnets random subnets, accuracy with the shared weights (BatchNorm recalibrated) against the same subnet
trained from scratch with as many epochs as the supernet had in all, on the same data.
Part 3, search: NAT (NSGA-II on a supernet-trained accuracy predictor, layer-table latency) under a budget against
random search with as many supernet evaluations; hypervolume of (test error, latency) fronts, both evaluated
with the supernet's accuracy and the table's latency.

    python bench/mbv3.py --quick        # smaller counts, minutes
    python bench/mbv3.py                # 100 networks, 20 subnets, JSON to bench/results/mbv3.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from hwnas.data import load_dataset
from hwnas.predictors.metrics import regression_metrics
from hwnas.profilers import TimingProtocol, get_backend, layer_lut_predictor, measure_arch
from hwnas.search.ofa import NATOptions, SupernetOptions, evaluate_subnet, nat_search, sample_subnet, train_supernet
from hwnas.search.pareto import hypervolume, nondominated
from hwnas.search.train import train_arch
from hwnas.spaces import get_space
from hwnas.store import Store

ROOT = Path(__file__).resolve().parents[1]


def _summary(y: np.ndarray, pred: np.ndarray) -> dict:
    m = regression_metrics(y, pred)
    return {k: m[k] for k in ("within_10", "within_5", "spearman", "mape")}


def layer_table_part(args, space, backend, store) -> dict:
    shape = tuple(args.shape)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    table = layer_lut_predictor(space, backend, shape, None)  # plain table: sum of layers plus one call overhead
    table_seconds = time.perf_counter() - started
    protocol = TimingProtocol()

    def measure(archs):
        return np.array([measure_arch(space, a, backend, shape, 1, protocol, store=store).latency_ms for a in archs])

    fit_archs = list(dict.fromkeys(space.sample(rng) for _ in range(args.fit_networks)))
    test_archs = [a for a in dict.fromkeys(space.sample(rng) for _ in range(args.networks * 2)) if a not in fit_archs]
    test_archs = test_archs[: args.networks]
    started = time.perf_counter()
    y_fit, y = measure(fit_archs), measure(test_archs)
    network_seconds = time.perf_counter() - started
    X, X_fit = space.encode_many(test_archs), space.encode_many(fit_archs)
    plain = _summary(y, table.predict(X))
    table.fit(X_fit, y_fit)
    corrected = _summary(y, table.predict(X))
    return {"space": space.spec, "input_shape": list(shape), "layers": len(table.keys), "networks": len(test_archs),
            "fit_networks": len(fit_archs), "plain_sum": plain, "corrected": corrected,
            "correction": table.coef.tolist(), "latency_ms_range": [float(y.min()), float(y.max())],
            "seconds": {"layer_table": round(table_seconds, 1), "networks": round(network_seconds, 1)}}


def supernet_part(args, space, data) -> tuple[dict, torch.nn.Module]:
    epochs = tuple(args.supernet_epochs)
    started = time.perf_counter()
    supernet, _ = train_supernet(space, data, SupernetOptions(epochs=epochs, seed=args.seed))
    train_seconds = time.perf_counter() - started
    rng = np.random.default_rng(args.seed + 1)
    archs = list(dict.fromkeys(sample_subnet(space, rng) for _ in range(args.subnets)))
    calib = data.x_train[:512]
    shared = [evaluate_subnet(space, supernet, a, data.x_test, data.y_test, calib) for a in archs]
    started = time.perf_counter()
    scratch = [np.nan if "scratch" in args.skip else train_arch(space, a, data, epochs=sum(epochs), seed=args.seed)[1]
               for a in archs]
    scratch_seconds = time.perf_counter() - started
    rows = [{"arch": space.to_string(a), "supernet": s, "scratch": t} for a, s, t in zip(archs, shared, scratch)]
    return {"subnets": len(archs), "epochs": list(epochs), "rows": rows,
            "mean_supernet": float(np.mean(shared)), "mean_scratch": float(np.mean(scratch)),
            "mean_gap": float(np.mean(np.subtract(scratch, shared))),
            "spearman": float(spearmanr(shared, scratch)[0]) if len(archs) > 2 and "scratch" not in args.skip else None,
            "seconds": {"supernet": round(train_seconds, 1), "scratch": round(scratch_seconds, 1)}}, supernet


def _front_hv(points: np.ndarray, reference: np.ndarray, budget: float) -> float:
    """Hypervolume of the feasible (error, latency) points, both minimised, scaled by the reference."""
    feasible = points[points[:, 1] <= budget]
    if not len(feasible):
        return 0.0
    front = feasible[nondominated(feasible, [False, False])]
    return hypervolume(front / reference, np.ones(2))


def search_part(args, space, data, supernet, backend) -> dict:
    latency = layer_lut_predictor(space, backend, tuple(args.shape), None)
    rng = np.random.default_rng(args.seed + 2)
    sample = [space.sample(rng) for _ in range(200)]
    budget = float(np.percentile(latency.predict(space.encode_many(sample)), 50))
    calib = data.x_train[:512]

    def points(archs):
        err = [1 - evaluate_subnet(space, supernet, a, data.x_test, data.y_test, calib) for a in archs]
        return np.column_stack([err, latency.predict(space.encode_many(archs))])

    started = time.perf_counter()
    nat = nat_search(space, supernet, data, latency, budget,
                     NATOptions(archive=args.archive, rounds=args.rounds, per_round=args.per_round,
                                trials=args.trials, seed=args.seed, margin=1.0))
    nat_seconds = time.perf_counter() - started
    nat_points = points([space.from_string(p["arch"]) for p in nat.front])
    random_archs = list(dict.fromkeys(space.sample(rng) for _ in range(nat.evaluations)))
    random_points = points(random_archs)
    reference = np.array([1.0, budget * 1.1])
    return {"budget_ms": budget, "evaluations": nat.evaluations, "nat_front": len(nat.front),
            "hv_nat": _front_hv(nat_points, reference, budget),
            "hv_random": _front_hv(random_points, reference, budget),
            "best_error_nat": float(nat_points[nat_points[:, 1] <= budget, 0].min(initial=1.0)),
            "best_error_random": float(random_points[random_points[:, 1] <= budget, 0].min(initial=1.0)),
            "seconds": {"nat": round(nat_seconds, 1)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--space", default="mbv3")
    parser.add_argument("--shape", type=int, nargs=3, default=[3, 32, 32], help="layer-table part's input")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], choices=["table", "supernet", "scratch", "search"])
    args = parser.parse_args()
    q = args.quick
    args.networks, args.fit_networks = (20, 10) if q else (100, 20)
    args.subnets, args.supernet_epochs = (5, (2, 1, 1, 1)) if q else (20, (4, 2, 2, 2))
    args.archive, args.rounds, args.per_round, args.trials = (12, 1, 4, 150) if q else (30, 2, 6, 300)
    torch.set_num_threads(1)
    backend = get_backend("onnxruntime-cpu", threads=1)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    store = Store(out_dir / "mbv3.db")
    results: dict = {"quick": q, "device": backend.device_name()}
    started = time.perf_counter()
    if "table" not in args.skip:
        results["layer_table"] = layer_table_part(args, get_space(args.space), backend, store)
        print(json.dumps(results["layer_table"], indent=1))
    data = load_dataset("digits", seed=args.seed)
    space = get_space(args.space, classes=data.num_classes)
    if "supernet" not in args.skip:
        results["supernet"], supernet = supernet_part(args, space, data)
        print(json.dumps({k: v for k, v in results["supernet"].items() if k != "rows"}, indent=1))
        if "search" not in args.skip:
            args.shape = list(data.input_shape)
            results["search"] = search_part(args, space, data, supernet, backend)
            print(json.dumps(results["search"], indent=1))
    results["seconds"] = round(time.perf_counter() - started, 1)
    name = "mbv3_quick.json" if q else "mbv3.json"
    (out_dir / name).write_text(json.dumps(results, indent=1))
    print(f"wrote bench/results/{name} ({results['seconds']} s)")


if __name__ == "__main__":
    main()
