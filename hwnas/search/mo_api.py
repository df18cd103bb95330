"""Multi-objective search as one library call: what `hwnas search --strategy nsga2|evolution|random` runs.

    from hwnas.search.mo_api import MultiObjectiveOptions, search_multi_objective
    result = search_multi_objective(MultiObjectiveOptions(
        objectives=["accuracy", "latency_ms"], tabular=True, space="nb201",
        latency_csv="../shared/data/nb201/latency_ms.csv", latency_column="pixel3",
        accuracy_csv="../shared/data/nb201/accuracy.csv", budget_ms=20, trials=200, run_dir="runs/front"))

Where each objective's value comes from:
- tabular mode: accuracy = `accuracy_csv[accuracy_column]` (the oracle), latency_ms = `latency_csv[latency_column]`
  (the table plays the device); energy_mj and introspectability have no table and are refused.
- device mode: latency_ms / energy_mj = cost predictors of this device (`hwnas.search.api.resolve_cost_predictor`:
  a file from `hwnas fit`, or fitted now on the store's measurements and saved to RUN_DIR/predictors/); accuracy =
  `accuracy`: "train" (test accuracy after `epochs` epochs on `dataset`), "proxy:NAME[+NAME]" (zero-cost proxies
  of hwnas.search.zero_cost on a freshly built network; CIFAR-10 images when `dataset` is a folder), a .csv table (the oracle, for nb201
  spaces) or a predictor file (an accuracy predictor); introspectability = class separation after the same short
  training (hwnas.search.introspectability); when it is an objective and captum is installed, RUN_DIR/
  attributions.png shows Integrated Gradients maps of the front's two extremes.
The study lives in `storage` (default sqlite:///RUN_DIR/study.db, a file of its own beside the measurement store),
so a rerun with the same run folder resumes it and `workers` processes search it together.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.choices import OBJECTIVE_NAMES
from hwnas.data import load_dataset
from hwnas.errors import HwnasError, quote
from hwnas.files import atomic_write
from hwnas.measurement import budgets_from
from hwnas.predictors import save_predictor
from hwnas.profilers import get_backend
from hwnas.reporting import Reporter, reporter_or_null
from hwnas.search.api import DEFAULT_COST_PREDICTOR, default_energy_predictor, is_predictor_file, resolve_cost_predictor
from hwnas.search.multi_objective import (
    DIRECTIONS,
    MO_STRATEGIES,
    Constraint,
    Objective,
    StudySpec,
    run_multi_objective,
)
from hwnas.search.objectives import PredictorMetric, ShortTrainingMetric, TableMetric
from hwnas.search.pareto import ParetoResult
from hwnas.search.zero_cost import ProxyMetric, proxy_names
from hwnas.spaces import get_space
from hwnas.store import open_store

COST_TARGETS = ("latency_ms", "energy_mj")


@dataclass
class MultiObjectiveOptions:
    """Everything `hwnas search --strategy nsga2|evolution|random` takes; see the module docstring."""

    objectives: list[str] = field(default_factory=lambda: ["accuracy", "latency_ms"])
    strategy: str = "nsga2"
    trials: int = 100
    workers: int = 1
    executor: str | None = None
    population: int = 20
    budget_ms: float | None = None
    budget_mj: float | None = None
    space: str = "nb201:C=16,N=3"
    tabular: bool = False
    latency_csv: str | None = None
    latency_column: str | None = None
    accuracy_csv: str | None = None
    accuracy_column: str = "cifar10"
    accuracy: str = "train"
    dataset: str = "digits"
    limit: int | None = None
    epochs: int = 3
    backend: str = "onnxruntime-cpu"
    threads: int = 1
    predictor: str = DEFAULT_COST_PREDICTOR
    energy_predictor: str | None = None
    seed: int = 0
    run_dir: str | Path = "runs/default"
    store_url: str | None = None
    storage: str | None = None
    study_name: str = "search"
    attributions: bool = True

    def check(self) -> None:
        MO_STRATEGIES.get(self.strategy)
        unknown = [o for o in self.objectives if o not in OBJECTIVE_NAMES]
        if unknown or not self.objectives:
            raise HwnasError(f"--objectives {quote(','.join(self.objectives))} is not accepted; accepted: a comma list "
                             f"of {', '.join(OBJECTIVE_NAMES)}")
        if self.tabular:
            missing = [n for n, v in (("--latency-csv", self.latency_csv), ("--latency-column", self.latency_column),
                                      ("--accuracy-csv", self.accuracy_csv)) if v is None]
            if missing:
                raise HwnasError(f"--tabular needs {', '.join(missing)}")
            extra = [o for o in self.objectives if o not in ("accuracy", "latency_ms")]
            if extra or self.budget_mj is not None:
                raise HwnasError(f"tabular mode has accuracy and latency tables only; {', '.join(extra) or '--budget-mj'}"
                                 " is not accepted there")
        for name, value, least in (("trials", self.trials, 1), ("workers", self.workers, 1),
                                   ("population", self.population, 2), ("epochs", self.epochs, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise HwnasError(f"{name} {quote(value)} is not accepted; give a whole number >= {least}")
        budgets_from(self.budget_ms, self.budget_mj)

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(Path(self.run_dir) / 'study.db').resolve()}"


def _tabular_metrics(o: MultiObjectiveOptions) -> dict[str, Any]:
    return {"accuracy": TableMetric(str(o.accuracy_csv), o.accuracy_column, "nb201"),
            "latency_ms": TableMetric(str(o.latency_csv), str(o.latency_column), "nb201")}


def _accuracy_metric(o: MultiObjectiveOptions, space: str):
    if o.accuracy.startswith("proxy:"):  # i10a's zero-cost proxies: higher is better, no training
        names = tuple(n for n in o.accuracy[len("proxy:"):].split("+") if n)
        if not names:
            raise HwnasError(f"--accuracy {quote(o.accuracy)} names no proxy; accepted: proxy:NAME[+NAME...] with "
                             f"names from {', '.join(proxy_names())}")
        folder = Path(o.dataset)
        return ProxyMetric(space, names, data=str(folder) if folder.is_dir() else None, seed=o.seed)
    if o.accuracy == "train":
        return ShortTrainingMetric("accuracy", space, o.dataset, o.epochs, o.limit, o.seed)
    if o.accuracy.endswith(".csv"):
        if get_space(space).name != "nb201":
            raise HwnasError(f"an accuracy table indexes nb201 cells; the search space is {space}")
        return TableMetric(o.accuracy, o.accuracy_column, "nb201")
    if is_predictor_file(o.accuracy):
        return PredictorMetric(str(Path(o.accuracy).resolve()), space)
    raise HwnasError(f"--accuracy {quote(o.accuracy)} is not accepted; accepted: train (short training), "
                     "proxy:NAME[+NAME...] (zero-cost proxies), a .csv accuracy table (nb201) or an accuracy predictor "
                     "file (.npz)")


def _cost_metrics(o: MultiObjectiveOptions, space, shape, targets: list[str], report: Reporter
                  ) -> dict[str, PredictorMetric]:
    """A PredictorMetric per cost target: the given file, or a predictor fitted now and saved in the run folder
    (workers load files, never fitted objects)."""
    if not targets:
        return {}
    specs = {"latency_ms": o.predictor, "energy_mj": o.energy_predictor or default_energy_predictor(o.predictor)}
    out = {}
    fits = [t for t in targets if not is_predictor_file(specs[t])]
    store = open_store(o.store_url, o.run_dir, must_exist=True) if fits else None
    device = get_backend(o.backend, threads=o.threads)
    for t in targets:
        path = Path(specs[t])
        if t in fits:
            fitted = resolve_cost_predictor(specs[t], t, space, shape, device, store, o.seed)
            path = Path(o.run_dir) / "predictors" / f"{t}.npz"
            save_predictor(fitted, path, plot=False)
            report.message(f"{t}: {specs[t]} fitted on the store's measurements, saved to {path}")
        else:
            resolve_cost_predictor(specs[t], t, space, shape, device, None, o.seed)  # checks space and target
        out[t] = PredictorMetric(str(path.resolve()), space.spec)
    return out


def build_spec(o: MultiObjectiveOptions, report: Reporter | None = None) -> tuple[StudySpec, list[str]]:
    """The StudySpec of the options and the names of the metrics that are this device's predictions."""
    report = reporter_or_null(report)
    budgets = budgets_from(o.budget_ms, o.budget_mj)
    if o.tabular:
        metrics, device_metrics, space = _tabular_metrics(o), [], "nb201"
    else:
        data = load_dataset(o.dataset, seed=o.seed, limit=o.limit)
        sp = get_space(o.space, classes=data.num_classes)
        space = sp.spec
        targets = [t for t in COST_TARGETS if t in o.objectives or t in budgets]
        metrics = dict(_cost_metrics(o, sp, sp.check_input_shape(data.input_shape), targets, report))
        device_metrics = list(metrics)
        if "accuracy" in o.objectives:
            metrics["accuracy"] = _accuracy_metric(o, space)
        if "introspectability" in o.objectives:
            metrics["introspectability"] = ShortTrainingMetric("introspectability", space, o.dataset, o.epochs,
                                                               o.limit, o.seed)
    objectives = [Objective(n, metrics[n], DIRECTIONS[n]) for n in o.objectives]
    constraints = [Constraint(t, b, metrics[t]) for t, b in budgets.items()]
    spec = StudySpec(space=space, objectives=objectives, constraints=constraints, strategy=o.strategy,
                     storage=o.storage_url(), study_name=o.study_name, seed=o.seed, population=o.population)
    spec.check()
    return spec, device_metrics


def search_multi_objective(options: MultiObjectiveOptions, reporter: Reporter | None = None) -> dict[str, Any]:
    """Run (or resume) the search of `options`; saves RUN_DIR/front.json, front.csv, front.png, front/K.json
    (one exportable result per front point) and, with introspectability, attributions.png. Returns the result
    as a JSON-ready dict with the files under "files"."""
    o, report = options, reporter_or_null(reporter)
    o.check()
    if o.tabular and o.space.split(":")[0] != "nb201":
        raise HwnasError(f"tabular mode searches nb201 (the tables' space), not {quote(o.space)}")
    Path(o.run_dir).mkdir(parents=True, exist_ok=True)
    spec, device_metrics = build_spec(o, report)
    result = run_multi_objective(spec, o.trials, o.workers, o.executor, report)
    result.device_metrics = device_metrics
    files = result.save(o.run_dir)
    if "introspectability" in o.objectives and o.attributions and len(result.front) >= 1:
        files.update(_attributions(o, spec.space, result, report))
    out = {**result.to_dict(), "files": files}
    with atomic_write(Path(o.run_dir) / "search_front.json") as f:
        f.write(json.dumps(out, indent=2, default=str))
    return out


def _attributions(o: MultiObjectiveOptions, space: str, result: ParetoResult, report: Reporter) -> dict[str, str]:
    from hwnas.search.introspectability import attribution_maps

    k = result.objectives.index("introspectability")
    ranked = sorted(result.front, key=lambda p: p.values[result.objectives[k]])
    ends = [("least introspectable", ranked[0].arch)] + ([("most introspectable", ranked[-1].arch)]
                                                        if len(ranked) > 1 else [])
    try:
        png = attribution_maps(space, ends, Path(o.run_dir) / "attributions.png", o.dataset, o.epochs, o.limit,
                               seed=o.seed)
    except HwnasError as e:  # captum missing: the search result stands, the report says why there is no map
        report.warning(str(e))
        return {}
    return {"attributions": png}
