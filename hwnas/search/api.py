"""The device search as one library call: what `hwnas search` does, for a notebook as for the CLI.

    from hwnas.search.api import SearchOptions, search_device
    result = search_device(SearchOptions(budget_ms=0.5, space="nb201:C=8,N=1", epochs=5))

`search_device` loads the data, gets one cost predictor per budget (`resolve_cost_predictor`: a saved predictor
file, or one of `cost_predictor_names()` fitted now on the store's measurements of this device), searches under
the budget, verifies on the device, retrains the chosen architecture and writes RUN_DIR/search.json.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hwnas.choices import DEFAULT_COST_PREDICTOR, DEFAULT_SPACE, cost_predictor_names
from hwnas.data import load_dataset
from hwnas.errors import HwnasError, quote
from hwnas.files import atomic_write
from hwnas.measurement import budgets_from
from hwnas.predictors import AUTO, PredictorPair, fit_from_store, load_predictor
from hwnas.predictors.auto import best_differentiable
from hwnas.profilers import TimingProtocol, get_backend, layer_lut_predictor
from hwnas.reporting import Reporter, reporter_or_null
from hwnas.search.budget import BudgetSearchOptions, search_under_budget
from hwnas.search.train import train_arch
from hwnas.spaces import get_space
from hwnas.store import open_store


def is_predictor_file(spec: str | Path) -> bool:
    return Path(spec).suffix == ".npz" or Path(spec).is_file()


def default_energy_predictor(latency_predictor: str) -> str:
    """The energy cost predictor when none is named: the latency one's kind, or auto when that is a file."""
    return DEFAULT_COST_PREDICTOR if is_predictor_file(latency_predictor) else latency_predictor


def check_cost_predictor(spec: str, option: str = "--predictor") -> None:
    """Raise HwnasError unless `spec` is a predictor file or a cost predictor name."""
    if is_predictor_file(spec) or spec in cost_predictor_names():
        return
    raise HwnasError(f"{option} {quote(spec)} is neither a predictor file nor a search cost predictor name; "
                     f"accepted: a .npz from `hwnas fit`, or one of {', '.join(cost_predictor_names())}")


def resolve_cost_predictor(spec: str | Path, target: str, space, input_shape, backend, store, seed: int = 0,
                           batch: int = 1, budget: float | None = None):
    """The cost predictor of `target` for a search: a saved predictor file (checked against the space and target),
    or a predictor of one of `cost_predictor_names()` fitted now (one-hot encoding) on the store's measurements of
    `backend`'s device. The fitted predictor's held-out metrics are in `.metadata["heldout_metrics"]`.

    "auto" cross-validates the candidates near `budget` (hwnas.predictors.auto): when the most accurate cannot
    drive a differentiable cost term it comes back as a `PredictorPair` with the best differentiable candidate
    (the cost term) beside it (discretisation and repair); a saved predictor file that is not differentiable is
    paired in the same way."""

    spec = str(spec)
    check_cost_predictor(spec)
    if is_predictor_file(spec):
        p = load_predictor(spec)
        meta = p.metadata
        if meta.get("space") and meta["space"] != space.spec:
            raise HwnasError(f"{spec} was fitted on space {meta['space']}, but the search runs on {space.spec}")
        if meta.get("target") and meta["target"] != target:
            raise HwnasError(f"{spec} predicts {meta['target']}, but the {target} budget needs a {target} predictor")
        return p if _drives_search(p) else _pair(p, space, input_shape, backend, store, seed, batch, budget)
    if spec == AUTO:
        exact, _ = fit_from_store(store, space, backend.device_id(), backend.name, input_shape=input_shape,
                                  batch=batch, target=target, predictor=AUTO, seed=seed, budget=budget)
        return exact if _drives_search(exact) else _pair(exact, space, input_shape, backend, store, seed, batch, budget)
    if spec == "layer-lut":  # measured layer by layer on the device, corrected on the store's networks
        if batch != 1:
            raise HwnasError("the layer-lut predictor is measured at batch 1; search at batch 1 or use another predictor")
        return layer_lut_predictor(space, backend, input_shape, store)
    fitted, _ = fit_from_store(store, space, backend.device_id(), backend.name, input_shape=input_shape, batch=batch,
                               target=target, predictor=spec, encoding="onehot", seed=seed)
    return fitted


def _drives_search(p) -> bool:
    return p.additive or (p.differentiable and p.encoding == "onehot")


def _pair(exact, space, input_shape, backend, store, seed: int, batch: int, budget: float | None) -> PredictorPair:
    """`exact` beside the best differentiable auto candidate (on one-hot codes) fitted on the same measurements."""
    name = best_differentiable(exact.metadata.get("auto") or {})
    cost, _ = fit_from_store(store, space, backend.device_id(), backend.name, input_shape=input_shape, batch=batch,
                             target=exact.metadata.get("target", "latency_ms"), predictor=name, encoding="onehot",
                             seed=seed, holdout=0.0)
    return PredictorPair(cost=cost, exact=exact)


@dataclass
class SearchOptions:
    """Everything `hwnas search` (device mode) takes; see `search_device`.

    predictor / energy_predictor: a predictor file from `hwnas fit` or a name of `cost_predictor_names()` (energy
    default: `default_energy_predictor(predictor)`); retrain_epochs 0 skips retraining (no test accuracy);
    store_url None means RUN_DIR/measurements.db."""

    budget_ms: float | None = None
    budget_mj: float | None = None
    space: str = DEFAULT_SPACE
    dataset: str = "digits"
    limit: int | None = None
    strategy: str = "darts"
    epochs: int = 10
    retrain_epochs: int = 20
    backend: str = "onnxruntime-cpu"
    threads: int = 1
    protocol: str = "default"
    predictor: str = DEFAULT_COST_PREDICTOR
    energy_predictor: str | None = None
    cost_form: str = "dual"
    budget_mode: str = "target"
    seed: int = 0
    run_dir: str | Path = "runs/default"
    store_url: str | None = None

    def check(self) -> None:
        """One-line HwnasError for a bad value (budgets, predictors, counts), before anything is loaded or written."""
        self.predictor_specs()
        for name, value, least in (("epochs", self.epochs, 1), ("retrain_epochs", self.retrain_epochs, 0),
                                   ("threads", self.threads, 1), ("limit", 10 if self.limit is None else self.limit, 10)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise HwnasError(f"{name} {quote(value)} is not accepted; give a whole number >= {least}")

    def budgets(self) -> dict[str, float]:
        """{target: budget}; HwnasError when none is given or one is not a finite positive number."""
        budgets = budgets_from(self.budget_ms, self.budget_mj)
        if not budgets:
            raise HwnasError("give a budget: --budget-ms and/or --budget-mj")
        return budgets

    def predictor_specs(self) -> dict[str, str]:
        """{target: predictor file or name} for every budget given, each checked."""
        energy = self.energy_predictor or default_energy_predictor(self.predictor)
        check_cost_predictor(self.predictor)
        check_cost_predictor(energy, "--energy-predictor")
        kinds = {"latency_ms": self.predictor, "energy_mj": energy}
        return {t: kinds[t] for t in self.budgets()}


def search_device(options: SearchOptions, reporter: Reporter | None = None) -> dict[str, Any]:
    """Search on this device under the budget(s) of `options`, verify the result by measuring it, retrain it and
    report its test accuracy. Writes RUN_DIR/search.json and RUN_DIR/search_cost.png; returns the result as a
    JSON-ready dict. Bad options are a one-line HwnasError raised before anything is written; a store is only
    created when every predictor is a file (fitting needs stored measurements)."""

    o, report = options, reporter_or_null(reporter)
    o.check()
    budgets, specs = o.budgets(), o.predictor_specs()
    protocol = TimingProtocol.named(o.protocol)
    run_dir = Path(o.run_dir)
    data = load_dataset(o.dataset, seed=o.seed, limit=o.limit)
    space = get_space(o.space, classes=data.num_classes)
    shape = space.check_input_shape(data.input_shape)
    device = get_backend(o.backend, threads=o.threads)
    fits = any(not is_predictor_file(s) for s in specs.values())
    # nothing profiled: refuse and leave no empty store behind; the search itself writes (repairs are measured)
    store = open_store(o.store_url, run_dir, must_exist=fits, readonly=False)
    predictors = {t: resolve_cost_predictor(specs[t], t, space, shape, device, store, o.seed, budget=budgets[t])
                  for t in budgets}
    search = BudgetSearchOptions(strategy=o.strategy, epochs=o.epochs, seed=o.seed, cost_form=o.cost_form,
                                 budget_mode=o.budget_mode, protocol=protocol)
    result = search_under_budget(space, data, predictors, budgets, search, backend=device, store=store,
                                 input_shape=shape, out_dir=run_dir, reporter=report)
    weights = None
    if o.retrain_epochs > 0:  # the trained weights go with the result: `hwnas export --from-search` deploys them
        model, result.test_accuracy = train_arch(space, result.arch, data, epochs=o.retrain_epochs, seed=o.seed,
                                                 reporter=report)
        weights = (run_dir / "weights.pt").resolve()
        with atomic_write(weights, "wb") as f:
            torch.save(model.state_dict(), f)
    out = result.to_dict()
    out.update(dataset=data.name, device=device.device_name(), device_id=device.device_id(), backend=device.name,
               retrain_epochs=o.retrain_epochs, store=store.url, weights=None if weights is None else str(weights))
    with atomic_write(run_dir / "search.json") as f:
        f.write(json.dumps(out, indent=2, default=str))
    return out
