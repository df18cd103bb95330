"""Search under a latency and/or energy budget, end to end: supernet search with the differentiable cost
term, budget-respecting discretisation, measurement on the device, and refit-and-repair until a measured
architecture meets every budget. Nothing is reported within budget unless it was measured so.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwnas.errors import HwnasError, quote
from hwnas.measurement import TARGETS
from hwnas.predictors.api import refit_predictor
from hwnas.predictors.encodings import encode_archs
from hwnas.profilers import TimingProtocol, measure_arch
from hwnas.profilers.profile import store_measurement
from hwnas.profilers.speed import SpeedReference, reference_near, verdict_figures
from hwnas.profilers.timing import settle_near_budget
from hwnas.reporting import Reporter, reporter_or_null
from hwnas.search.climb import CLIMB_CEILING, budget_share, climb, one_shot_accuracy
from hwnas.search.cost import FORMS, MODES, HardwareCost
from hwnas.search.discretise import derive_within_budget, predicted, worst_ratio
from hwnas.search.strategy import get_strategy, run_search, steps_per_epoch
from hwnas.spaces.base import Arch
from hwnas.threads import training_threads_context


@dataclass
class SearchResult:
    arch: Any  # hwnas.spaces.Arch
    arch_string: str
    space: str
    strategy: str
    budgets: dict[str, float]
    predicted: dict[str, float]
    measured: dict[str, float | None] | None
    within_budget: bool  # True only when measured within every budget
    history: list[dict[str, Any]]
    measurements_used: int  # new device measurements made by the discretisation and repair loop
    attempts: list[dict[str, Any]] = field(default_factory=list)  # every architecture measured, in order
    search_seconds: float = 0.0
    plot: str | None = None
    test_accuracy: float | None = None
    note: str = ""
    #: the network the verdicts were timed against (hwnas.profilers.speed): arch, space, nominal_ms; None: alone
    speed_reference: dict[str, Any] | None = None

    def budget_used(self) -> dict[str, float]:
        if not self.measured:
            return {}
        return {t: self.measured[t] / b for t, b in self.budgets.items() if self.measured.get(t) is not None}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("arch")
        d["arch"] = self.arch_string
        d["budget_used"] = self.budget_used()
        return d


@dataclass
class BudgetSearchOptions:
    """How `search_under_budget` searches: the strategy and its schedule, the cost term, the repair loop.

    strategy: a registered strategy (hwnas.search.STRATEGIES); epochs: search epochs; batch: the batch size the
    device measures (the store key), batch_size: the training minibatch; cost_form / budget_mode /
    multiplier_lr: the cost term (hwnas.search.cost); max_repairs: measure-refit-repair rounds after the search;
    protocol: the TimingProtocol of those measurements (default: TimingProtocol()); strategy_options: extra
    keyword arguments of the strategy."""

    strategy: str = "darts"
    epochs: int = 20
    seed: int = 0
    batch: int = 1
    batch_size: int = 64
    weight_lr: float = 0.05
    arch_lr: float = 0.05
    multiplier_lr: float = 0.05
    cost_form: str = "dual"
    budget_mode: str = "target"
    max_repairs: int = 5
    protocol: Any = None
    #: a derived architecture predicted under this share of its tightest budget gives way to the most probable one
    #: predicted within it and 97.5% (finite spaces; hwnas.search.discretise); 0: off
    fill: float = 0.9
    climb: int = 3  # rounds of climbing to costlier, predicted more accurate neighbours (hwnas.search.climb); 0: off
    #: time each verdict alternately with a stored network near the latency budget, so that the machine's speed
    #: drift cancels (hwnas.profilers.speed); only where the backend can (`times_against_reference`)
    speed_reference: bool = True
    strategy_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """One-line HwnasError for a value no search can run with, before any work."""
        whole = {"epochs": (self.epochs, 1), "batch": (self.batch, 1), "batch_size": (self.batch_size, 1),
                 "max_repairs": (self.max_repairs, 0), "climb": (self.climb, 0)}
        for name, (value, least) in whole.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise HwnasError(f"{name} {quote(value)} is not accepted; give a whole number >= {least}")
        if isinstance(self.fill, bool) or not isinstance(self.fill, (int, float)) or not 0 <= self.fill < 0.975:
            raise HwnasError(f"fill {quote(self.fill)} is not accepted; give a share of the budget from 0 (off) to "
                             "below 0.975")
        for name in ("weight_lr", "arch_lr", "multiplier_lr"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise HwnasError(f"{name} {quote(value)} is not accepted; give a finite positive number")
        for name, value, accepted in (("cost form", self.cost_form, FORMS), ("budget mode", self.budget_mode, MODES)):
            if value not in accepted:
                raise HwnasError(f"unknown {name} {quote(value)}; accepted: {', '.join(accepted)}")
        get_strategy(self.strategy)  # an unknown one names the known ones


def check_budgets(budgets: dict[str, float], predictors: dict[str, Any]) -> None:
    """Raise HwnasError unless every budget is a known target with a finite positive value and a predictor."""
    unknown = set(budgets) - set(TARGETS)
    if unknown:
        raise HwnasError(f"unknown budget target(s) {', '.join(sorted(unknown))}; accepted: {', '.join(TARGETS)}")
    if not budgets:
        raise HwnasError("give at least one budget (latency_ms or energy_mj)")
    for target, value in budgets.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise HwnasError(f"the {target} budget {quote(value)} is not accepted; give a finite positive number")
    missing = [t for t in budgets if t not in predictors]
    if missing:
        raise HwnasError(f"no predictor for the {', '.join(missing)} budget; fit one with "
                         f"`hwnas fit --target {missing[0].split('_')[0]}`")


def epoch_line(strategy: str, row: dict[str, Any], epochs: int, costs: list[HardwareCost] | None = None) -> str:
    """One readable line per search epoch: per budgeted target the relaxed expected cost (of the mixture), the
    derived architecture's predicted cost and its share of the budget, and the multiplier with the cost it follows
    and what it does (a positive multiplier pushes the cost down; under budget a separate pull lifts it towards the
    budget, since budget left unused is accuracy left on the table)."""
    parts = []
    for t, relaxed in row["cost"].items():
        budget, multiplier = row["budget"][t], row["multiplier"][t]
        tracks = row.get("tracks")
        tracks = tracks.get(t) if isinstance(tracks, dict) else tracks
        if tracks is None:
            tracks = next((getattr(c, "track", None) for c in costs or () if c.target == t), None)
        derived = row.get("derived_cost", {}).get(t)
        derived_text = "-" if derived is None else f"{derived:.4g} ({derived / budget:.0%} of budget {budget:.4g})"
        pull = (row.get("pull") or {}).get(t) or 0.0  # the separate term that uses slack left under the budget
        action = "pushes down" if multiplier > 0 else f"pulls up {pull:.3f}" if pull > 0 else "idle"
        follows = f"on {tracks} cost, " if tracks else ""
        parts.append(f"{t}: relaxed {relaxed:.4g}, derived {derived_text}, λ {multiplier:.3f} ({follows}{action})")
    return (f"{strategy}: epoch {row['epoch']:>3}/{epochs}  loss {row['loss']:.3f}  acc {row['accuracy']:.3f}  "
            + "; ".join(parts))


def search_under_budget(space, dataset, predictors: dict[str, Any], budgets: dict[str, float],
                        options: BudgetSearchOptions | None = None, *, backend=None, store=None, input_shape=None,
                        out_dir: str | Path | None = None, reporter: Reporter | None = None,
                        reference: SpeedReference | None = None) -> SearchResult:
    """Search `space` on `dataset` for the most accurate architecture within `budgets` ({"latency_ms": 1.2,
    "energy_mj": 0.5}), with one differentiable predictor per budgeted target; `options` (BudgetSearchOptions)
    says how.

    With a `backend` (hwnas.profilers) the discretised architecture is measured (and stored in `store`); if it
    is over any budget the measurement joins the predictor's data, the predictor is refitted (or, without
    enough data, rescaled) and discretisation runs again excluding what was measured over, up to
    `options.max_repairs` times. Without a backend `measured` is None and `within_budget` is False.
    `budget_mode` "target" lands the search at the budget, "cap" only keeps it under (see hwnas.search.cost).
    Each epoch's figures (`epoch_line`) and each measurement go to `reporter` (default: silent).
    With `options.speed_reference` the latency verdicts are timed alternately with `reference` (default: the
    stored architecture measured nearest the latency budget, hwnas.profilers.speed.reference_near), and their
    figures are latencies at its nominal speed.
    """
    o = options or BudgetSearchOptions()
    o.check()
    report = reporter_or_null(reporter)
    check_budgets(budgets, predictors)
    shape = tuple(input_shape or dataset.input_shape)
    space.check_input_shape(shape)
    if tuple(dataset.input_shape) != shape:
        raise HwnasError(f"the dataset's input shape {dataset.input_shape} differs from the search's {shape}")
    torch.manual_seed(o.seed)
    started = time.perf_counter()
    costs = [HardwareCost(space, t, b, predictor=predictors[t], form=o.cost_form, multiplier_lr=o.multiplier_lr,
                          mode=o.budget_mode)
             for t, b in budgets.items()]
    if not (o.speed_reference and "latency_ms" in budgets and getattr(backend, "times_against_reference", False)):
        reference = None  # only latency is timed against it, and only where the backend can
    elif reference is None:
        reference = reference_near(space, backend, store, shape, o.batch, budgets["latency_ms"], o.protocol)
    if reference is not None:
        report.message(f"verdicts timed alternately with {reference.arch} (nominal {reference.nominal_ms:.4g} ms): "
                       "the machine's speed drift cancels")
        calibrate_to_reference(space, costs, reference, report)
    check_budget_reachable(space, costs)  # before any training
    supernet = space.supernet(shape)
    strat = get_strategy(o.strategy)(space, supernet, costs, weight_lr=o.weight_lr, arch_lr=o.arch_lr, seed=o.seed,
                                     **(o.strategy_options or {}))
    with training_threads_context(), report.progress(f"search ({o.strategy})",
                                                     total=o.epochs * steps_per_epoch(dataset, o.batch_size)) as task:
        history = run_search(strat, dataset, o.epochs, o.batch_size,
                             on_epoch=lambda row: report.message(epoch_line(o.strategy, row, o.epochs, costs)),
                             on_step=task.advance)
    recent = list(strat.recent_archs)
    result = discretise_and_verify(space, strat.alpha, costs, backend=backend, store=store, input_shape=shape,
                                   batch=o.batch, max_repairs=o.max_repairs, protocol=o.protocol, recent=recent,
                                   reporter=report, reference=reference, fill=o.fill)
    if o.climb and result.within_budget and backend is not None:
        _climb(result, space, costs, supernet, dataset, o, backend, store, shape, report, reference)
    result.speed_reference = reference.describe() if reference is not None else None
    result.strategy, result.history = o.strategy, history
    result.search_seconds = round(time.perf_counter() - started, 2)
    if out_dir is not None and history:
        result.plot = str(save_search_plot(history, Path(out_dir) / "search_cost.png",
                                           title=f"{o.strategy} on {dataset.name}", measured=result.measured))
    return result


#: bounds of the factor that puts latency predictions on a speed reference's nominal scale
REFERENCE_SCALE = (0.5, 2.0)


def calibrate_to_reference(space, costs: list[HardwareCost], reference: SpeedReference,
                           reporter: Reporter | None = None) -> None:
    """Scale latency predictions so that the reference architecture is predicted at its nominal latency.

    The predictor learnt from profiling's figures, timed at whatever speed the machine had then (here up to 1.5x
    apart between minutes); the verdicts are at the reference's nominal speed. Without this a search aims at a
    budget on one scale and is judged on the other, and lands short of it or over. The reference was measured near
    the budget, where the calibration matters."""
    arch = space.from_string(reference.arch)
    for c in costs:
        if c.target != "latency_ms":
            continue
        predicted = float(c.predict_arch([arch])[0])
        if predicted > 0:
            factor = float(np.clip(reference.nominal_ms / predicted, *REFERENCE_SCALE))
            c.scale *= factor
            reporter_or_null(reporter).message(f"latency predictions scaled by {factor:.3f}: the reference, predicted "
                                               f"{predicted:.4g} ms, is {reference.nominal_ms:.4g} ms at its nominal")


def _climb(result: SearchResult, space, costs: list[HardwareCost], supernet, dataset, o: BudgetSearchOptions,
           backend, store, shape, report: Reporter, reference: SpeedReference | None = None) -> None:
    """Climb from the measured result towards the budget (hwnas.search.climb); `result` takes the climb's end."""
    over = {space.from_string(a["arch"]) for a in result.attempts if not a["within_budget"]}

    def measure(arch):
        return _measure(space, arch, backend, store, shape, o.batch, o.protocol, result.budgets, reference)

    start, start_share = result.arch_string, budget_share(result.measured or {}, result.budgets)
    def score(archs):
        return one_shot_accuracy(space, supernet, archs, dataset.x_val, dataset.y_val)

    arch, measured, attempts = climb(space, costs, score, result.arch, result.measured or {}, measure,
                                     rounds=o.climb, exclude=over)
    for a in attempts:
        report.message(_measured_line(a["arch"], a["measured"], a["predicted"], result.budgets, a["within_budget"],
                                      climbing=True))
    result.attempts += attempts
    result.measurements_used += sum(int(a.pop("new")) for a in attempts)
    if arch != result.arch:
        result.arch, result.arch_string, result.measured = arch, space.to_string(arch), measured
        result.predicted = predicted(costs, arch)
        share = budget_share(measured, result.budgets)
        result.note = (result.note + "; " if result.note else "") + (
            f"climbed from {start} ({start_share:.0%} of the budget) to {share:.0%}, measured")


def check_budget_reachable(space, costs: list[HardwareCost], max_size: int = 200_000) -> None:
    """Raise HwnasError, naming the cheapest predicted cost per target, when no architecture of a finite space is
    predicted within every budget (a larger or infinite space is left to the discretisation)."""
    size = space.size()
    if not costs or size is None or size > max_size:
        return
    archs = list(space.all_archs())
    values = {c.target: np.asarray(c.predict_arch(archs, exact=False), np.float64) for c in costs}  # fast: one-hot
    if np.max([values[c.target] / c.budget for c in costs], axis=0).min() <= 1.0:
        return
    budgets = ", ".join(f"{c.target} <= {c.budget:g}" for c in costs)
    cheapest = ", ".join(f"{t} {v.min():.4g}" for t, v in values.items())
    alone = all((values[c.target] <= c.budget).any() for c in costs)
    together = " (each budget alone is met by some architecture, but none meets all at once)" if alone else ""
    raise HwnasError(f"no architecture of {space.spec} is predicted within the budget ({budgets}); the cheapest "
                     f"predicted is {cheapest}{together}; raise the budget")


def discretise_and_verify(space, alpha: torch.Tensor, costs: list[HardwareCost], backend=None, store=None,
                          input_shape=None, batch: int = 1, max_repairs: int = 5, protocol=None,
                          recent=(), reporter: Reporter | None = None, reference: SpeedReference | None = None,
                          fill: float = 0.0) -> SearchResult:
    """Budget-respecting discretisation, then measure -> (over budget: store, refit, repair) until a measured
    architecture is within every budget or `max_repairs` repairs are spent. `reference`: latency verdicts timed
    alternately with it (hwnas.profilers.speed). `fill`: as in derive_within_budget."""
    report = reporter_or_null(reporter)
    shape = tuple(input_shape or space.default_input_shape)
    budgets = {c.target: c.budget for c in costs}
    over: set[Arch] = set()
    attempts: list[dict[str, Any]] = []
    extra: dict[str, list[tuple[Arch, float]]] = {c.target: [] for c in costs}  # measured here, for refits
    used = 0
    arch = None
    for _ in range(max_repairs + 1):
        try:
            arch, moves = _derive(space, alpha, costs, over, recent, report, fill)
        except HwnasError as e:  # nothing left that is predicted within budget: report what was measured, not a pass
            if not attempts:
                raise
            last = attempts[-1]  # the last repair's, before the fallback adds its own tries
            fallback = _measured_fallback(space, alpha, costs, backend, store, shape, batch, attempts, used,
                                          reference, protocol)
            if fallback is not None:
                return fallback
            return SearchResult(arch, last["arch"], space.spec, "", budgets, last["predicted"], last["measured"], False,
                                [], used, attempts, note=f"{e} (after {len(attempts)} measured over budget)")
        pred = predicted(costs, arch)
        if backend is None:
            return SearchResult(arch, space.to_string(arch), space.spec, "", budgets, pred, None, False, [], used,
                                attempts, note="not measured (no backend): not reported as within budget")
        measured, new = _measure(space, arch, backend, store, shape, batch, protocol, budgets, reference)
        used += int(new)
        ok = all(measured.get(t) is not None and measured[t] <= b for t, b in budgets.items())
        attempts.append({"arch": space.to_string(arch), "predicted": pred, "measured": measured, "within_budget": ok,
                         "moves": len(moves) - 1})
        report.message(_measured_line(space.to_string(arch), measured, pred, budgets, ok))
        if ok:
            return SearchResult(arch, space.to_string(arch), space.spec, "", budgets, pred, measured, True, [], used, attempts)
        over.add(arch)
        for c in costs:
            if measured.get(c.target) is not None:
                extra[c.target].append((arch, measured[c.target]))
        refit_costs(space, costs, extra, backend=backend, store=store, input_shape=shape, batch=batch)
    last_measured = attempts[-1]["measured"]  # `arch`'s, before the fallback adds its own tries
    fallback = _measured_fallback(space, alpha, costs, backend, store, shape, batch, attempts, used, reference,
                                  protocol)
    if fallback is not None:
        return fallback
    return SearchResult(arch, space.to_string(arch), space.spec, "", budgets, predicted(costs, arch), last_measured,
                        False, [], used, attempts, note=f"no measured architecture met the budget after {max_repairs} repairs")


def _derive(space, alpha, costs: list[HardwareCost], over, recent, report: Reporter, fill: float = 0.0):
    """derive_within_budget; when an `exact` predictor (auto's most accurate) finds nothing within budget (a fit on
    few rows can be flat), the cost term's own predictor judges instead, which the search itself steered by."""
    try:
        arch, moves = derive_within_budget(space, alpha, costs, exclude=over, recent=recent, fill=fill)
    except HwnasError:
        if not any(c.exact is not None for c in costs):
            raise
        report.warning("the most accurate predictor finds no architecture within the budget; discretising with the "
                       "cost term's predictor instead")
        for c in costs:
            c.set_exact(None)
        arch, moves = derive_within_budget(space, alpha, costs, exclude=over, recent=recent, fill=fill)
    if len(moves) > 1 and moves[1] != moves[0] and moves[1] == space.without_idle_operations(moves[0]):
        report.message(f"derived {space.to_string(moves[0])}; without its operations that reach nothing: "
                       f"{space.to_string(moves[1])}")
    if fill and len(moves) > 1:
        before, after = worst_ratio(costs, moves[-2:])
        if before < fill <= after:  # the fill's move: from under `fill` to within the band
            report.message(f"derived {space.to_string(moves[-2])}, predicted at {before:.0%} of the budget; filled "
                           f"to the most probable architecture predicted at {after:.0%}")
    return arch, moves


#: with a speed reference and nothing timed against it within budget, stored architectures timed against it now
FALLBACK_TRIES = 3


def _measured_fallback(space, alpha: torch.Tensor, costs: list[HardwareCost], backend, store, shape, batch: int,
                       attempts: list[dict[str, Any]], used: int, reference: SpeedReference | None = None,
                       protocol=None) -> SearchResult | None:
    """When repairs are spent (timing noise near the budget can defeat any predictor): the most probable
    architecture under `alpha` among those this device has already measured within every budget, or None.
    Its figures are the stored measurement; the note says it is a fallback. With a `reference` only measurements
    timed against it count, and when none is within budget the most probable stored architectures whose own
    figures are (at most FALLBACK_TRIES) are timed against it now."""
    if store is None or backend is None:
        return None
    budgets = {c.target: c.budget for c in costs}
    log_weights = torch.log(space.mixing_weights(alpha.detach()).clamp_min(1e-12))

    def probability(a: Arch) -> float:
        return float(sum(log_weights[d, c] for d, c in enumerate(a.choices)))

    def fits(values) -> bool:
        return values is not None and all(values.get(t) is not None and values[t] <= b for t, b in budgets.items())

    rows = store.measurements(device=backend.device_id(), backend=backend.name, space=space.spec, input_shape=shape,
                              batch=batch)
    within = {}
    for m in rows:
        values = {"latency_ms": m.latency_ms, "energy_mj": m.energy_mj} if reference is None else reference.figures(m)
        if fits(values):
            within[space.from_string(m.arch)] = values
    if not within and reference is not None:
        tried = {a["arch"] for a in attempts}
        stored_fit = sorted({space.from_string(m.arch) for m in rows if m.arch not in tried
                             and reference.figures(m) is None  # those timed against it are over, seen above
                             and fits({"latency_ms": m.latency_ms, "energy_mj": m.energy_mj})}, key=probability,
                            reverse=True)
        for arch in stored_fit[:FALLBACK_TRIES]:
            values, _ = _measure(space, arch, backend, store, shape, batch, protocol, budgets, reference)
            attempts.append({"arch": space.to_string(arch), "predicted": predicted(costs, arch), "measured": values,
                             "within_budget": fits(values), "moves": 0, "fallback": True})
            if fits(values):
                within[arch] = values
                break
    if not within:
        return None
    best = max(within, key=probability)
    arch_string = space.to_string(best)
    if not attempts or attempts[-1]["arch"] != arch_string:
        attempts.append({"arch": arch_string, "predicted": predicted(costs, best), "measured": within[best],
                         "within_budget": True, "moves": 0, "fallback": True})
    return SearchResult(best, arch_string, space.spec, "", budgets, predicted(costs, best), within[best], True, [], used,
                        attempts, note=f"repairs spent: the most probable of {len(within)} architecture(s) already "
                                       "measured within budget on this device")


def _measured_line(arch: str, measured: dict[str, float | None], pred: dict[str, float], budgets: dict[str, float],
                   ok: bool, climbing: bool = False) -> str:
    verdict = "within budget" if ok else "OVER budget: store, refit and repair"
    if climbing:
        verdict = "climb: within budget" if ok else f"climb: over {CLIMB_CEILING:.1%} of the budget, not kept"
    figures = ", ".join(f"{t} {'-' if measured.get(t) is None else f'{measured[t]:.4g}'} (predicted {pred[t]:.4g}, "
                        f"budget {b:g})" for t, b in budgets.items())
    return f"measured {arch}: {figures} -> {verdict}"


def _measure(space, arch, backend, store, shape, batch, protocol, budgets=None, reference=None
             ) -> tuple[dict[str, float | None], bool]:
    """(figures, whether the store had no row for `arch` before). A stored measurement is reused when it was timed
    at least as carefully as `protocol` asks (profiling's quick protocol is not, for a verdict under the thorough
    one) and, with a `reference`, against that reference. Otherwise `arch` is timed afresh: alternately with the
    `reference` (its figure: the latency at the reference's nominal speed), or alone and again when close to a
    budget (profilers.timing.settle_near_budget); the new measurement replaces the stored row."""
    protocol = protocol or TimingProtocol()
    key = {"device": backend.device_id(), "backend": backend.name, "space": space.spec, "input_shape": shape,
           "batch": batch, "arch": space.to_string(arch)}
    stored = store.measurements(**key) if store is not None else []
    if stored and protocol.satisfied_by(stored[0].extra.get("protocol")):
        if reference is None:
            return {"latency_ms": stored[0].latency_ms, "energy_mj": stored[0].energy_mj}, False
        reused = reference.figures(stored[0])
        if reused is not None:
            return reused, False
    if reference is not None:  # alternate timing cancels the drift that repeated sessions only dodge
        m = measure_arch(space, arch, backend, shape, batch, protocol, reference=reference)
    else:
        m, _ = settle_near_budget(lambda: measure_arch(space, arch, backend, shape, batch, protocol), budgets)
    if store is not None:
        store_measurement(store, backend, m, replace=True)
    return verdict_figures(m), not stored


def refit_costs(space, costs: list[HardwareCost], extra: dict[str, list[tuple[Arch, float]]], backend=None, store=None,
                input_shape=None, batch: int = 1, min_rows: int = 8) -> None:
    """After an over-budget measurement: refit each cost's predictor on the store's measurements for this key
    plus those made here; without enough data, scale its predictions so that no architecture measured here
    is predicted below its measurement."""
    rows: dict[str, float] = {}
    for c in costs:
        data: dict[Arch, float] = {}
        if store is not None and backend is not None:
            for m in store.measurements(device=backend.device_id(), backend=backend.name, space=space.spec,
                                        input_shape=input_shape, batch=batch):
                value = m.learnt(c.target)  # what the predictor was fitted on (hwnas.predictors.api)
                if value is not None:
                    data[space.from_string(m.arch)] = float(value)  # read once, at the store's edge
        # measured here: on the predictions' scale (`c.scale`, e.g. a speed reference's nominal), so to the
        # predictor's own scale (that of the store's rows) by dividing it out
        data.update({a: v / c.scale for a, v in extra.get(c.target, [])})
        rows[c.target] = len(data)
        if len(data) >= min_rows and c.predictor is not None:  # a bare table (no predictor) can only be rescaled
            X = encode_archs(space, list(data), c.predictor.encoding, input_shape)
            c.set_predictor(refit_predictor(c.predictor, X, np.array(list(data.values()))))
            if c.exact is not None:  # `auto`'s most accurate predictor learns from the measurement too
                codes = encode_archs(space, list(data), c.exact.encoding, input_shape)
                c.set_exact(refit_predictor(c.exact, codes, np.array(list(data.values()))))
        elif extra.get(c.target):
            archs = [a for a, _ in extra[c.target]]
            ratio = np.array([v for _, v in extra[c.target]]) / c.predict_arch(archs)
            c.scale *= float(max(1.0, ratio.max()) * 1.01)


def save_search_plot(history: list[dict[str, Any]], path: str | Path, title: str = "",
                     measured: dict[str, float | None] | None = None) -> Path:
    """Relaxed predicted cost against its budget, and the multiplier, per epoch and target; `measured` (the
    final architecture's measured figures) is marked at the last epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    targets = list(history[0]["cost"])
    epochs = [r["epoch"] for r in history]
    # per-step series at fractional epochs (epoch e's steps lie in (e - 1, e]), when the history has them
    xs = [r["epoch"] - 1 + (k + 1) / len(r.get("steps") or [0]) for r in history for k in range(len(r.get("steps") or []))]
    steps = [s for r in history for s in (r.get("steps") or [])]
    fig, axes = plt.subplots(len(targets), 2, figsize=(10, 3.2 * len(targets)), squeeze=False)
    for i, t in enumerate(targets):
        ax = axes[i][0]
        if steps:
            ax.plot(xs, [s["cost"][t] for s in steps], lw=0.8, alpha=0.6, label="relaxed, per step")
            if "derived_cost" in steps[0]:
                ax.plot(xs, [s["derived_cost"][t] for s in steps], lw=0.8, alpha=0.6, label="derived arch, per step")
        ax.plot(epochs, [r["cost"][t] for r in history], "o-", label="relaxed (predicted)")
        ax.plot(epochs, [r["derived_cost"][t] for r in history], "s--", label="derived arch (predicted)")
        ax.axhline(history[0]["budget"][t], color="red", lw=1, label="budget")
        if (measured or {}).get(t) is not None:
            ax.plot([epochs[-1]], [measured[t]], "*", color="green", ms=14, label=f"final, measured {measured[t]:.4g}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(t)
        ax.legend(fontsize=8)
        ax = axes[i][1]
        if steps:
            ax.plot(xs, [s["multiplier"][t] for s in steps], color="purple", lw=0.8, label="multiplier, per step")
        ax.plot(epochs, [r["multiplier"][t] for r in history], "o", color="purple")
        if "dual" in history[0]:
            ax.plot(epochs, [r["dual"][t] for r in history], "--", color="gray", label="dual variable")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"multiplier ({t})")
        ax.legend(fontsize=8)
    fig.suptitle(title or "search: cost and multiplier")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
