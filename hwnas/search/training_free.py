"""Training-free search under a latency and/or energy budget: no supernet and no training. Candidates are
ranked by an accuracy proxy, here FLOPs (the spiking-NAS finding that, at equal budget, the larger network
is the more accurate one; AutoST uses FLOPs the same way), among those predicted within every budget; the
best are measured on the device until one is measured within budget. What `hwnas search --strategy
training-free` and `--strategy training-free-evolution` run; made for spaces without a supernet (snn-transformer)
but usable on any space.

- `training-free`: rank a seeded sample of `candidates` architectures (the whole space when it is smaller).
- `training-free-evolution`: regularized evolution (hwnas.search.multi_objective's Optuna "evolution" sampler)
  maximising the FLOPs proxy with the predicted costs as constraints, at most `EVOLUTION_TRIALS` trials; its
  feasible trials are then ranked the same way.

    from hwnas.search.api import SearchOptions
    from hwnas.search.training_free import search_training_free
    r = search_training_free(SearchOptions(budget_mj=2e-5, space=CPU_SMALL, backend="spiking",
                                           strategy="training-free", retrain_epochs=0))
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.choices import TRAINING_FREE_STRATEGIES
from hwnas.data import load_dataset
from hwnas.errors import HwnasError
from hwnas.files import atomic_write
from hwnas.predictors import predict_archs, save_predictor
from hwnas.profilers import TimingProtocol, get_backend, measure_arch
from hwnas.reporting import Reporter, reporter_or_null
from hwnas.search.api import SearchOptions, resolve_cost_predictor
from hwnas.search.multi_objective import Constraint, Objective, StudySpec, run_multi_objective
from hwnas.search.objectives import PredictorMetric
from hwnas.search.train import train_arch
from hwnas.spaces import Arch, SearchSpace, get_space
from hwnas.store import open_store

#: training-free strategies: name -> how candidates are proposed
#: candidates proposed (sample size, or evolution trials)
DEFAULT_CANDIDATES = 300
#: evolution trials at most (each builds a network for its FLOPs)
EVOLUTION_TRIALS = 100
#: most architectures measured on the device before giving up
MAX_MEASUREMENTS = 6


@dataclass
class FlopsProxy:
    """The accuracy proxy: FLOPs ("full" convention) of an architecture at `input_shape` (picklable, for workers)."""

    space: str
    input_shape: tuple[int, ...]

    def __call__(self, arch: Arch) -> float:
        return float(get_space(self.space).flops(arch, self.input_shape))


def sample_candidates(space: SearchSpace, count: int, seed: int) -> list[Arch]:
    """Every architecture when the space holds at most `count`, else `count` distinct ones sampled (seeded)."""
    size = space.size()
    if size is not None and size <= count:
        try:
            return list(space.all_archs())
        except HwnasError:
            pass
    rng, seen = np.random.default_rng(seed), {}
    for _ in range(count * 20):
        arch = space.sample(rng)
        seen.setdefault(space.to_string(arch), arch)
        if len(seen) >= count:
            break
    return list(seen.values())


def _evolution_candidates(space, predictors: dict[str, Any], budgets: dict[str, float], shape, trials: int, seed: int,
                          run_dir: Path, report: Reporter) -> list[Arch]:
    """Feasible architectures of a regularized-evolution study maximising FLOPs under the predicted budgets."""
    constraints = []
    for target, predictor in predictors.items():
        path = run_dir / "predictors" / f"{target}.npz"
        save_predictor(predictor, path, plot=False)  # workers load files, never fitted objects
        constraints.append(Constraint(target, budgets[target], PredictorMetric(str(path.resolve()), space.spec)))
    spec = StudySpec(space.spec, [Objective("proxy", FlopsProxy(space.spec, tuple(shape)), "maximize")], constraints,
                     strategy="evolution", study_name="training-free", seed=seed, population=min(20, trials))
    spec.check()
    result = run_multi_objective(spec, trials, reporter=report)
    unique = {p.arch: space.from_string(p.arch) for p in result.points if p.feasible}  # trials repeat architectures
    return list(unique.values())


def rank_candidates(space, archs: list[Arch], predictors: dict[str, Any], budgets: dict[str, float], shape
                    ) -> list[tuple[Arch, float, dict[str, float]]]:
    """(arch, FLOPs, predicted costs) of the architectures predicted within every budget, most FLOPs first."""
    if not archs:
        return []
    predicted = {t: predict_archs(p, space, archs) for t, p in predictors.items()}
    ok = [i for i in range(len(archs)) if all(predicted[t][i] <= budgets[t] for t in budgets)]
    proxy = FlopsProxy(space.spec, tuple(shape))
    ranked = [(archs[i], proxy(archs[i]), {t: float(predicted[t][i]) for t in budgets}) for i in ok]
    return sorted(ranked, key=lambda r: -r[1])


def _measure_best(space, ranked, budgets, backend, store, shape, protocol, report: Reporter) -> tuple[dict, list]:
    """Measure down the ranking until one is measured within every budget (at most MAX_MEASUREMENTS)."""
    attempts: list[dict[str, Any]] = []
    for arch, flops, pred in ranked[:MAX_MEASUREMENTS]:
        m = measure_arch(space, arch, backend, shape, 1, protocol, store)
        measured = {"latency_ms": m.latency_ms, "energy_mj": m.energy_mj}
        ok = all(measured.get(t) is not None and measured[t] <= b for t, b in budgets.items())
        attempts.append({"arch": space.to_string(arch), "flops": flops, "predicted": pred, "measured": measured,
                         "energy_method": m.energy_method, "within_budget": ok})
        report.message(f"measured {space.to_string(arch)[:60]}: " + ", ".join(
            f"{t} {measured[t]:.4g} (predicted {pred[t]:.4g}, budget {b:.4g})" for t, b in budgets.items())
            + (" within budget" if ok else " OVER"))
        if ok:
            return attempts[-1], attempts
    return {}, attempts


def search_training_free(options: SearchOptions, reporter: Reporter | None = None,
                         candidates: int = DEFAULT_CANDIDATES) -> dict[str, Any]:
    """Training-free search with the options of `hwnas search` (strategy: one of TRAINING_FREE_STRATEGIES; epochs
    and the cost form are not used). Writes RUN_DIR/search.json; only a measured result is within budget."""
    o, report = options, reporter_or_null(reporter)
    if o.strategy not in TRAINING_FREE_STRATEGIES:
        raise HwnasError(f"{o.strategy!r} is not a training-free strategy; accepted: {', '.join(TRAINING_FREE_STRATEGIES)}")
    o.check()
    budgets, specs = o.budgets(), o.predictor_specs()
    started = time.perf_counter()
    run_dir = Path(o.run_dir)
    data = load_dataset(o.dataset, seed=o.seed, limit=o.limit)
    space = get_space(o.space, classes=data.num_classes)
    shape = space.check_input_shape(data.input_shape)
    device = get_backend(o.backend, threads=o.threads)
    store = open_store(o.store_url, run_dir, must_exist=True, readonly=False)
    predictors = {t: resolve_cost_predictor(specs[t], t, space, shape, device, store, o.seed) for t in budgets}
    if o.strategy == "training-free":
        archs = sample_candidates(space, candidates, o.seed)
    else:
        archs = _evolution_candidates(space, predictors, budgets, shape, min(candidates, EVOLUTION_TRIALS), o.seed,
                                      run_dir, report)
    ranked = rank_candidates(space, archs, predictors, budgets, shape)
    report.message(f"{o.strategy}: {len(ranked)} of {len(archs)} candidates predicted within budget")
    if not ranked:
        raise HwnasError(f"none of {len(archs)} candidate architectures of {space.spec} is predicted within the "
                         f"budget ({', '.join(f'{t} <= {b:g}' for t, b in budgets.items())}); raise the budget")
    best, attempts = _measure_best(space, ranked, budgets, device, store, shape, TimingProtocol.named(o.protocol),
                                   report)
    chosen = best or attempts[0]
    out = {"arch": chosen["arch"], "space": space.spec, "strategy": o.strategy, "proxy": "flops", "budgets": budgets,
           "predicted": chosen["predicted"], "measured": chosen["measured"], "flops": chosen["flops"],
           "energy_method": chosen["energy_method"], "within_budget": bool(best), "candidates": len(archs),
           "predicted_within_budget": len(ranked), "measurements_used": len(attempts), "attempts": attempts,
           "history": [], "plot": None, "test_accuracy": None, "dataset": data.name,
           "device": device.device_name(), "device_id": device.device_id(), "backend": device.name,
           "retrain_epochs": o.retrain_epochs, "store": store.url, "weights": None,
           "note": "" if best else f"none of the {len(attempts)} best-ranked architectures was measured within budget"}
    out["budget_used"] = {t: out["measured"][t] / b for t, b in budgets.items() if out["measured"].get(t)}
    if o.retrain_epochs > 0:
        _, out["test_accuracy"] = train_arch(space, space.from_string(out["arch"]), data, epochs=o.retrain_epochs,
                                             seed=o.seed, reporter=report)
    out["search_seconds"] = round(time.perf_counter() - started, 2)
    with atomic_write(run_dir / "search.json") as f:
        f.write(json.dumps(out, indent=2, default=str))
    return out
