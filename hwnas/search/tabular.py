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
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import HwnasError, quote
from hwnas.files import read_wide_csv
from hwnas.predictors import encode_archs, get_predictor
from hwnas.reporting import Reporter, reporter_or_null
from hwnas.spaces import get_space

SIGNALS = ("oracle", "surrogate")
#: settings used unless the caller gives others: the loop refits and predicts the whole space every round, and 30
#: trees of a random forest predict about as well there as 200 at a seventh of the time (bench/search_budget.py).
DEFAULT_SETTINGS = {"rf": {"n_estimators": 30}}


@functools.lru_cache(maxsize=8)
def _read_column(path: str, mtime: float, column: str, space_spec: str) -> tuple[np.ndarray, np.ndarray]:
    """(space indices, values) of one numeric column of a wide table keyed by an `arch` column."""
    space = get_space(space_spec)
    table = read_wide_csv(path, "arch", [column], parse_arch=lambda cell: space.index(space.from_string(cell)))
    return np.array(table.archs), np.array(table.values[column])


def load_table(path: str | Path, column: str, space) -> np.ndarray:
    """A full vector over the space's index order (NaN where the table has no row)."""
    p = Path(path)
    if not p.is_file():
        raise HwnasError(f"no such CSV file: {path}")
    index, values = _read_column(str(p.resolve()), os.path.getmtime(p), column, space.spec)
    out = np.full(space.size(), np.nan)
    out[index] = values
    return out


@dataclass
class TabularOptions:
    """What `tabular_search` takes (see the module docstring).

    latency_csv / latency_column: the table column that plays the device; accuracy_csv / accuracy_column: the
    accuracy table; budget_ms: the latency budget; measurements: the most device measurements (table reads)
    allowed; predictor / encoding / predictor_settings: the latency predictor refitted every round; initial: the
    uniform initial sample (default max(5, measurements // 4)); accuracy_signal: oracle or surrogate; trained:
    architectures whose accuracy the surrogate is fitted on; min_gain: stop when no expected gain reaches it
    (accuracy points); min_probability: give up finding a feasible one below this probability; space: a finite
    space the tables index."""

    latency_csv: str | Path
    latency_column: str
    accuracy_csv: str | Path
    accuracy_column: str = "cifar10"
    budget_ms: float = 1.0
    measurements: int = 50
    seed: int = 0
    predictor: str = "ridge"
    encoding: str | None = None
    initial: int | None = None
    accuracy_signal: str = "oracle"
    trained: int = 200
    min_gain: float = 0.001
    space: str = "nb201"
    min_probability: float = 1e-4
    predictor_settings: dict[str, Any] | None = None

    def check(self) -> None:
        if self.accuracy_signal not in SIGNALS:
            raise HwnasError(f"unknown accuracy signal {quote(self.accuracy_signal)}; accepted: {', '.join(SIGNALS)}")
        if not (isinstance(self.measurements, int) and self.measurements >= 2):
            raise HwnasError(f"--measurements must be an integer of at least 2 (got {quote(self.measurements)})")
        if not (isinstance(self.budget_ms, (int, float)) and math.isfinite(self.budget_ms) and self.budget_ms > 0):
            raise HwnasError(f"the latency_ms budget {quote(self.budget_ms)} is not accepted; give a finite positive "
                             "number")


class _Tables:
    """The known rows of both tables, their codes, and what the search has read so far."""

    def __init__(self, o: TabularOptions):

        sp = get_space(o.space)
        if sp.size() is None:
            raise HwnasError(f"tabular search needs a finite space; {sp.spec} is not")
        latency = load_table(o.latency_csv, o.latency_column, sp)
        accuracy = load_table(o.accuracy_csv, o.accuracy_column, sp)
        self.known = np.flatnonzero(~np.isnan(latency) & ~np.isnan(accuracy))
        if len(self.known) == 0:
            raise HwnasError(f"{o.latency_csv} and {o.accuracy_csv} share no architecture")
        self.o, self.space = o, sp
        self.settings = {"seed": o.seed, **DEFAULT_SETTINGS.get(o.predictor, {}), **(o.predictor_settings or {})}
        self.encoding = get_predictor(o.predictor, encoding=o.encoding, **self.settings).encoding
        self.archs = [sp.arch_at(int(i)) for i in self.known]
        self.codes = encode_archs(sp, self.archs, self.encoding)
        self.lat, self.acc = latency[self.known], accuracy[self.known]
        self.measured: dict[int, float] = {}  # position in `known` -> table latency (only these are ever read)
        self.trace: list[dict[str, Any]] = []
        self.read_accuracy: set[int] = set()

    def measure(self, i: int, predicted: float | None, reason: str) -> float:
        self.measured[i] = float(self.lat[i])
        self.trace.append({"arch": self.space.to_string(self.archs[i]), "predicted_ms": predicted,
                           "measured_ms": self.measured[i], "within_budget": bool(self.measured[i] <= self.o.budget_ms),
                           "reason": reason})
        return self.measured[i]

    def fit(self, rows) -> np.ndarray:
        """Predicted latency of every known architecture from a predictor fitted on `rows` (measured positions)."""

        rows = np.asarray(list(rows))
        # Cells with no path from input to output measure near zero on some devices (pixel3, raspi4: 1000x below
        # the median); in a log-space fit such outliers would bend every other prediction. Clip them for fitting.
        y = np.maximum(self.lat[rows], 0.1 * np.median(self.lat[rows]))
        model = get_predictor(self.o.predictor, encoding=self.encoding, **self.settings).fit(self.codes[rows], y)
        return np.maximum(np.asarray(model.predict(self.codes), np.float64), 1e-6)

    def feasible(self) -> list[int]:
        return [i for i, v in self.measured.items() if v <= self.o.budget_ms]

    def score(self, rng: np.random.Generator) -> np.ndarray:
        """The accuracy signal of every known architecture (see the module docstring)."""

        if self.o.accuracy_signal == "oracle":
            self.read_accuracy.update(range(len(self.known)))
            return self.acc
        sample = rng.choice(len(self.known), size=min(self.o.trained, len(self.known)), replace=False)
        self.read_accuracy.update(int(i) for i in sample)
        surrogate = get_predictor("mlp", log_target=False, seed=self.o.seed).fit(self.codes[sample], self.acc[sample])
        return np.asarray(surrogate.predict(self.codes), np.float64)

    def prior_sigma(self) -> float:
        """The error width before the loop has its own errors: fit on half the initial sample, predict the rest."""
        first = list(self.measured)
        half = len(first) // 2
        if half < 3:
            return 0.3
        pred = self.fit(first[:half])
        rest = np.array(first[half:])
        return float(np.sqrt(np.mean(np.log(np.maximum(self.lat[rest], 1e-6) / pred[rest]) ** 2)))


def _pick(t: _Tables, score: np.ndarray, p_within: np.ndarray, floor: float) -> tuple[int, str] | None:
    """The next architecture to measure and why, or None when nothing is worth measuring."""
    o = t.o
    feasible = t.feasible()
    if feasible:
        gain = np.maximum(score - max(t.acc[i] for i in feasible), 0.0) * p_within
        pick = int(np.argmax(gain))
        if gain[pick] < o.min_gain:
            return None
        return pick, f"expected gain {gain[pick]:.3g} (P within budget {p_within[pick]:.2f})"
    # Nothing measured within budget yet: first find something that is (constrained Bayesian optimisation,
    # Gelbart et al. 2014): the most probably feasible architecture, the accuracy signal breaking near-ties.
    # Ranking by expected gain instead never tries the cheapest cells, whose accuracy is often the floor.
    rank = p_within * (1.0 + 1e-3 * (score - floor) / max(1e-9, float(np.ptp(score))))
    pick = int(np.argmax(rank))
    if p_within[pick] < o.min_probability:
        return None
    return pick, f"nothing within budget yet: most probably within (P {p_within[pick]:.2g})"


def _search_loop(t: _Tables, score: np.ndarray, prior: float, report: Reporter) -> int:
    """Measure until the limit is spent or nothing is worth measuring; returns the rounds run."""
    from scipy.stats import norm

    o = t.o
    errors: list[float] = []  # log(measured / predicted) of the loop's picks, predicted before measuring
    floor = float(np.min(score))
    rounds = 0
    while len(t.measured) < o.measurements:
        rounds += 1
        pred = t.fit(t.measured)
        sigma = max(0.03, float(np.sqrt(np.mean(np.square(errors[-10:])))) if len(errors) >= 3 else prior)
        p_within = norm.cdf((np.log(o.budget_ms) - np.log(pred)) / sigma)
        if o.accuracy_signal == "surrogate":
            t.read_accuracy.update(t.feasible())  # a measured-feasible finalist is trained: its accuracy is read
        p_within[list(t.measured)] = 0.0
        picked = _pick(t, score, p_within, floor)
        if picked is None:
            break
        pick, reason = picked
        value = t.measure(pick, float(pred[pick]), reason)
        errors.append(float(np.log(max(value, 1e-6) / pred[pick])))
        report.message(f"tabular: measurement {len(t.measured)}/{o.measurements}: {t.space.to_string(t.archs[pick])} "
                       f"{value:.4g} ms (predicted {pred[pick]:.4g}, budget {o.budget_ms:.4g}); {reason}")
    return rounds


def _result(t: _Tables, rounds: int, initial: int, started: float) -> dict[str, Any]:
    o, sp, lat, acc, measured = t.o, t.space, t.lat, t.acc, t.measured
    feasible = t.feasible()
    if o.accuracy_signal == "surrogate":
        t.read_accuracy.update(feasible)
    incumbent = max(feasible, key=lambda i: acc[i]) if feasible else None
    truly_feasible = lat <= o.budget_ms
    best = int(np.flatnonzero(truly_feasible)[np.argmax(acc[truly_feasible])]) if truly_feasible.any() else None
    out: dict[str, Any] = {
        "device": o.latency_column, "budget_ms": float(o.budget_ms), "seed": o.seed,
        "accuracy_column": o.accuracy_column, "accuracy_signal": o.accuracy_signal, "predictor": o.predictor,
        "encoding": t.encoding, "measurements": len(measured), "measurement_limit": o.measurements,
        "initial_measurements": initial, "accuracy_queries": len(t.read_accuracy), "rounds": rounds,
        "seconds": round(time.perf_counter() - started, 3),
    }
    cheapest = min(measured, key=measured.get)
    out.update(cheapest_measured_arch=sp.to_string(t.archs[cheapest]), cheapest_measured_ms=measured[cheapest])
    if incumbent is None:
        stopped = ("the measurement limit was spent" if len(measured) >= o.measurements else
                   "no other architecture is predicted within it with probability >= "
                   f"{o.min_probability:g}")
        out.update(arch=None, latency_ms=None, accuracy=None, within_budget=False, budget_used=None, regret=None,
                   note=f"no measured architecture met the budget ({stopped}); the cheapest of the {len(measured)} "
                        f"measured is {measured[cheapest]:.4g} ms; raise the budget")
    else:
        out.update(arch=sp.to_string(t.archs[incumbent]), index=int(t.known[incumbent]),
                   latency_ms=float(lat[incumbent]), accuracy=float(acc[incumbent]),
                   within_budget=bool(lat[incumbent] <= o.budget_ms), budget_used=float(lat[incumbent] / o.budget_ms))
        out["regret"] = None if best is None else float(acc[best] - acc[incumbent])
    if best is not None:
        out.update(best_arch=sp.to_string(t.archs[best]), best_accuracy=float(acc[best]),
                   best_latency_ms=float(lat[best]), best_budget_used=float(lat[best] / o.budget_ms))
    out["trace"] = t.trace
    return out


def tabular_search(options: TabularOptions, reporter: Reporter | None = None) -> dict[str, Any]:
    """Budgeted search on published tables; see the module docstring. Returns a JSON-ready dict with the chosen
    `arch`, its true `latency_ms` and `accuracy`, `within_budget` (from its table latency, which was
    measured), `budget_used`, `regret` (true best accuracy under the budget minus the chosen one's, in
    accuracy points), `measurements` (device measurements used, <= the limit), `accuracy_queries`,
    `cheapest_measured_ms` / `cheapest_measured_arch` and the trace. With nothing measured within budget, `arch` is
    None and `note` says why (the CLI makes that exit 2). Each measurement is a line to `reporter`."""
    options.check()
    report = reporter_or_null(reporter)
    started = time.perf_counter()
    t = _Tables(options)
    rng = np.random.default_rng(options.seed)
    initial = min(options.measurements, options.initial or max(5, options.measurements // 4))
    for i in rng.choice(len(t.known), size=initial, replace=False):
        t.measure(int(i), None, "initial sample")
    score = t.score(rng)
    prior = t.prior_sigma()
    rounds = _search_loop(t, score, prior, report)
    return _result(t, rounds, initial, started)
