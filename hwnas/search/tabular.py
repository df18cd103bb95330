"""Tabular budgeted search, for benchmarking the hardware side on published measurements (NAS-Bench-201).

A latency table column plays the device: "measuring" an architecture reads its latency from the table and
counts as one device measurement; the latency of an architecture that was not measured is never read. The
loop is the one a user runs on a real device with a latency predictor:

1. measure `initial` architectures (uniform sample) and fit the latency predictor on what is measured;
2. predict every architecture of the (finite) space and turn the prediction into a probability of meeting
   the budget, P(latency <= budget) under a log-normal error whose width is the root-mean-square of the
   predictor's own errors on the architectures it picked, predicted before they were measured (held-out
   errors, near the budget where it matters);
3. measure the architecture with the largest expected gain, (accuracy signal - best measured-feasible
   accuracy)+ x P(within budget) (constrained expected improvement); within budget -> it may become the
   incumbent; over budget -> it joins the training data and the predictor is refitted (the repair).
   While nothing measured is within budget, it measures the architecture most probably within budget instead
   (feasibility first), and gives up once that probability is below `min_probability`;
4. stop when no architecture's expected gain reaches `min_gain` accuracy points or `measurements` is spent.
Only architectures measured within budget can be returned, so a returned result never violates the budget.
Every measurement (initial sample, candidates, verification of borderline ones) counts in `measurements`.

What the accuracy table is used for depends on `accuracy_signal`:
- `oracle` (default; the usual setting of HW-NAS-Bench / HELP benchmarks, which isolates the hardware side):
  the table accuracy is the search's accuracy signal for every architecture (the accuracy side of the
  search is solved, standing in for a differentiable search's accuracy), and the answer is the most
  accurate architecture measured within budget. `accuracy_queries` counts the architectures it ranked.
- `surrogate`: an accuracy predictor (an MLP) is fitted on `trained` random architectures whose table
  accuracy is read (the cost of training them) and is the signal; the table accuracy of the other
  architectures is read only once they are measured within budget (training the finalists).
Regret is always computed from the table (true best accuracy within the budget minus the chosen one's).
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import HwnasError

SIGNALS = ("oracle", "surrogate")
#: settings used unless the caller gives others: the loop refits and predicts the whole space every round, and 30
#: trees of a random forest predict about as well there as 200 at a seventh of the time (bench/search_budget.py).
DEFAULT_SETTINGS = {"rf": {"n_estimators": 30}}


@functools.lru_cache(maxsize=8)
def _read_column(path: str, mtime: float, column: str, space_spec: str) -> tuple[np.ndarray, np.ndarray]:
    """(space indices, values) of one numeric column of a wide table keyed by an `arch` column."""
    from hwnas.spaces import get_space
    from hwnas.files import read_csv_rows

    space = get_space(space_spec)
    rows = read_csv_rows(path)
    header = list(rows[0])
    if "arch" not in header:
        raise HwnasError(f"{path}: no 'arch' column; columns: {', '.join(header)}")
    if column not in header:
        numeric = [c for c in header if c not in ("arch", "index")]
        raise HwnasError(f"{path}: no column {column!r}; columns: {', '.join(numeric)}")
    index, values = [], []
    for line, row in enumerate(rows, start=2):
        try:
            index.append(space.index(space.from_string(row["arch"])))
            values.append(float(row[column]))
        except HwnasError as e:
            raise HwnasError(f"{path}, line {line}: {e}") from None
        except ValueError:
            raise HwnasError(f"{path}, line {line}: column {column!r} holds {row[column]!r}, not a number") from None
    return np.array(index), np.array(values)


def load_table(path: str | Path, column: str, space) -> np.ndarray:
    """A full vector over the space's index order (NaN where the table has no row)."""
    p = Path(path)
    if not p.is_file():
        raise HwnasError(f"no such CSV file: {path}")
    index, values = _read_column(str(p.resolve()), os.path.getmtime(p), column, space.spec)
    out = np.full(space.size(), np.nan)
    out[index] = values
    return out


def tabular_search(latency_csv: str | Path, latency_column: str, accuracy_csv: str | Path, accuracy_column: str = "cifar10",  # noqa: C901 - being split (issue 8)
                   budget_ms: float = 1.0, measurements: int = 50, seed: int = 0, predictor: str = "ridge",
                   encoding: str | None = None, initial: int | None = None, accuracy_signal: str = "oracle",
                   trained: int = 200, min_gain: float = 0.001, space: str = "nb201", min_probability: float = 1e-4,
                   predictor_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Budgeted search on published tables; see the module docstring. Returns a JSON-ready dict with the chosen
    `arch`, its true `latency_ms` and `accuracy`, `within_budget` (from its table latency, which was
    measured), `budget_used`, `regret` (true best accuracy under the budget minus the chosen one's, in
    accuracy points), `measurements` (device measurements used, <= the limit), `accuracy_queries`,
    `cheapest_measured_ms` / `cheapest_measured_arch` and the trace. With nothing measured within budget, `arch` is
    None and `note` says why (the CLI makes that exit 2)."""
    from scipy.stats import norm

    from hwnas.predictors import encode_archs, get_predictor
    from hwnas.spaces import get_space

    if accuracy_signal not in SIGNALS:
        raise HwnasError(f"unknown accuracy signal {accuracy_signal!r}; accepted: {', '.join(SIGNALS)}")
    if measurements < 2:
        raise HwnasError(f"--measurements must be at least 2 (got {measurements})")
    if not budget_ms > 0:
        raise HwnasError(f"--budget-ms must be positive (got {budget_ms})")
    started = time.perf_counter()
    sp = get_space(space)
    if sp.size() is None:
        raise HwnasError(f"tabular search needs a finite space; {sp.spec} is not")
    latency = load_table(latency_csv, latency_column, sp)
    accuracy = load_table(accuracy_csv, accuracy_column, sp)
    known = np.flatnonzero(~np.isnan(latency) & ~np.isnan(accuracy))
    if len(known) == 0:
        raise HwnasError(f"{latency_csv} and {accuracy_csv} share no architecture")
    settings = {"seed": seed, **DEFAULT_SETTINGS.get(predictor, {}), **(predictor_settings or {})}
    probe = get_predictor(predictor, encoding=encoding, **settings)
    archs = [sp.arch_at(int(i)) for i in known]
    codes = encode_archs(sp, archs, probe.encoding)
    lat, acc = latency[known], accuracy[known]
    rng = np.random.default_rng(seed)
    initial = min(measurements, initial or max(5, measurements // 4))

    measured: dict[int, float] = {}  # position in `known` -> table latency (only these are ever read)
    trace: list[dict[str, Any]] = []
    read_accuracy: set[int] = set()

    def measure(i: int, predicted: float | None, reason: str) -> float:
        measured[i] = float(lat[i])
        trace.append({"arch": sp.to_string(archs[i]), "predicted_ms": predicted, "measured_ms": measured[i],
                      "within_budget": bool(measured[i] <= budget_ms), "reason": reason})
        return measured[i]

    def fit(rows) -> np.ndarray:
        rows = np.asarray(list(rows))
        # Cells with no path from input to output measure near zero on some devices (pixel3, raspi4: 1000x below
        # the median); in a log-space fit such outliers would bend every other prediction. Clip them for fitting.
        y = np.maximum(lat[rows], 0.1 * np.median(lat[rows]))
        model = get_predictor(predictor, encoding=probe.encoding, **settings).fit(codes[rows], y)
        return np.maximum(np.asarray(model.predict(codes), np.float64), 1e-6)

    for i in rng.choice(len(known), size=initial, replace=False):
        measure(int(i), None, "initial sample")

    if accuracy_signal == "oracle":
        score = acc
        read_accuracy.update(range(len(known)))
    else:
        sample = rng.choice(len(known), size=min(trained, len(known)), replace=False)
        read_accuracy.update(int(i) for i in sample)
        surrogate = get_predictor("mlp", log_target=False, seed=seed).fit(codes[sample], acc[sample])
        score = np.asarray(surrogate.predict(codes), np.float64)

    # The error width before the loop has its own errors: fit on half the initial sample, predict the rest.
    first = list(measured)
    half = len(first) // 2
    prior = 0.3
    if half >= 3:
        pred = fit(first[:half])
        rest = np.array(first[half:])
        prior = float(np.sqrt(np.mean(np.log(np.maximum(lat[rest], 1e-6) / pred[rest]) ** 2)))
    errors: list[float] = []  # log(measured / predicted) of the loop's picks, predicted before measuring
    floor = float(np.min(score))
    rounds = 0
    while len(measured) < measurements:
        rounds += 1
        pred = fit(measured)
        sigma = max(0.03, float(np.sqrt(np.mean(np.square(errors[-10:])))) if len(errors) >= 3 else prior)
        p_within = norm.cdf((np.log(budget_ms) - np.log(pred)) / sigma)
        feasible = [i for i, v in measured.items() if v <= budget_ms]
        if accuracy_signal == "surrogate":
            read_accuracy.update(feasible)  # a measured-feasible finalist is trained: its accuracy is read
        p_within[list(measured)] = 0.0
        if feasible:
            gain = np.maximum(score - max(acc[i] for i in feasible), 0.0) * p_within
            pick = int(np.argmax(gain))
            if gain[pick] < min_gain:
                break
            reason = f"expected gain {gain[pick]:.3g} (P within budget {p_within[pick]:.2f})"
        else:
            # Nothing measured within budget yet: first find something that is (constrained Bayesian optimisation,
            # Gelbart et al. 2014): the most probably feasible architecture, the accuracy signal breaking near-ties.
            # Ranking by expected gain instead never tries the cheapest cells, whose accuracy is often the floor.
            rank = p_within * (1.0 + 1e-3 * (score - floor) / max(1e-9, float(np.ptp(score))))
            pick = int(np.argmax(rank))
            if p_within[pick] < min_probability:
                break
            reason = f"nothing within budget yet: most probably within (P {p_within[pick]:.2g})"
        value = measure(pick, float(pred[pick]), reason)
        errors.append(float(np.log(max(value, 1e-6) / pred[pick])))

    # The answer: the most accurate architecture measured within budget.
    feasible = [i for i, v in measured.items() if v <= budget_ms]
    if accuracy_signal == "surrogate":
        read_accuracy.update(feasible)
    incumbent = max(feasible, key=lambda i: acc[i]) if feasible else None
    truly_feasible = lat <= budget_ms
    best = int(np.flatnonzero(truly_feasible)[np.argmax(acc[truly_feasible])]) if truly_feasible.any() else None
    out: dict[str, Any] = {
        "device": latency_column, "budget_ms": float(budget_ms), "seed": seed, "accuracy_column": accuracy_column,
        "accuracy_signal": accuracy_signal, "predictor": predictor, "encoding": probe.encoding,
        "measurements": len(measured), "measurement_limit": measurements, "initial_measurements": initial,
        "accuracy_queries": len(read_accuracy), "rounds": rounds, "seconds": round(time.perf_counter() - started, 3),
    }
    cheapest = min(measured, key=measured.get)
    out.update(cheapest_measured_arch=sp.to_string(archs[cheapest]), cheapest_measured_ms=measured[cheapest])
    if incumbent is None:
        stopped = ("the measurement limit was spent" if len(measured) >= measurements else
                   "no other architecture is predicted within it with probability >= "
                   f"{min_probability:g}")
        out.update(arch=None, latency_ms=None, accuracy=None, within_budget=False, budget_used=None, regret=None,
                   note=f"no measured architecture met the budget ({stopped}); the cheapest of the {len(measured)} "
                        f"measured is {measured[cheapest]:.4g} ms; raise the budget")
    else:
        out.update(arch=sp.to_string(archs[incumbent]), index=int(known[incumbent]),
                   latency_ms=float(lat[incumbent]), accuracy=float(acc[incumbent]),
                   within_budget=bool(lat[incumbent] <= budget_ms), budget_used=float(lat[incumbent] / budget_ms))
        out["regret"] = None if best is None else float(acc[best] - acc[incumbent])
    if best is not None:
        out.update(best_arch=sp.to_string(archs[best]), best_accuracy=float(acc[best]),
                   best_latency_ms=float(lat[best]), best_budget_used=float(lat[best] / budget_ms))
    out["trace"] = trace
    return out
