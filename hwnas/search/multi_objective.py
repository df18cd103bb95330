"""Multi-objective (NSGA-II) and single-objective (regularized evolution) search over any space, on Optuna.

    from hwnas.search.multi_objective import Constraint, Objective, StudySpec, run_multi_objective
    from hwnas.search.objectives import TableMetric
    acc = TableMetric("../shared/data/nb201/accuracy.csv", "cifar10", "nb201")
    lat = TableMetric("../shared/data/nb201/latency_ms.csv", "pixel3", "nb201")
    spec = StudySpec(space="nb201", objectives=[Objective("accuracy", acc), Objective("latency_ms", lat)],
                     constraints=[Constraint("latency_ms", 5.0)], strategy="nsga2",
                     storage="sqlite:///runs/x/study.db", study_name="x")
    result = run_multi_objective(spec, trials=300, workers=2)   # a ParetoResult
    result.save("runs/x")                                      # front.json, front.csv, front.png, front/K.json

The pieces, each usable alone:
- `Objective(name, fn, direction)`: a named metric to optimise; `fn` is a picklable callable Arch -> float
  (`hwnas.search.objectives` has table, predictor, proxy and short-training metrics). The direction defaults from
  `DIRECTIONS` (accuracy and introspectability are maximised, latency_ms, energy_mj, error minimised).
- `Constraint(name, limit, fn=None)`: feasible when the metric is <= limit (a budget). `fn` None: the objective of
  the same name. Constraints go to the sampler's `constraints_func`; their values (metric - limit) are kept on
  each trial (user attribute `constraints`, and the `constraints` system attribute Optuna's samplers read).
- `suggest_arch(trial, space)`: one Optuna categorical parameter per decision (`d0`, `d1`, ...; choices
  `range(options)`), so a ragged space is searched as it is; the architecture string is the `arch` user attribute.
- `StudySpec`: everything a worker needs, picklable: space spec, objectives, constraints, strategy (a name of
  `MO_STRATEGIES`), `storage` (an Optuna storage URL: `sqlite:///FILE` or `postgresql+psycopg://...`, or None for
  an in-memory study in one process), `study_name`, seed and sampler settings.
- `create_study(spec)` / `load_study(spec)`: the study (created if absent, else loaded; directions checked).
- `optimize_worker(spec, trials, worker)`: the worker entry point, picklable arguments only: loads the study
  from `spec.storage` and runs `trials` trials with its own sampler seeded `spec.seed + worker`. A process (the
  "process" executor), a Ray task (i11's "ray" executor) or a shell on another machine calls it.
- `EXECUTORS` / `register_executor(name)`: how `run_multi_objective` spreads workers: "inline" (this process, one
  worker at a time) and "process" (spawned processes, one per worker). An executor is
  `fn(spec, trials_per_worker: list[int]) -> None` and must return once every worker is done.
- `run_multi_objective(spec, trials, workers=1, executor=None, reporter=None) -> ParetoResult`.
- `ParetoResult` (hwnas.search.pareto): the front (feasible, non-dominated points, arch strings and values), all
  trials, `save(run_dir)`, `table()`, `plot(path)`.
"""
from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial

from hwnas.errors import HwnasError, quote
from hwnas.registries import MO_STRATEGIES
from hwnas.registries import WORKER_EXECUTORS as EXECUTORS
from hwnas.reporting import Reporter, reporter_or_null
from hwnas.search.evolution import RegularizedEvolutionSampler
from hwnas.search.pareto import ParetoResult, pareto_result
from hwnas.spaces import get_space
from hwnas.spaces.base import Arch, SearchSpace

#: default direction of the objectives `hwnas search --objectives` knows; any other name needs a direction
DIRECTIONS = {"accuracy": "maximize", "error": "minimize", "latency_ms": "minimize", "energy_mj": "minimize",
              "introspectability": "maximize", "params": "minimize", "flops": "minimize", "proxy": "maximize"}
#: the user attributes each trial carries
ARCH_ATTR, METRICS_ATTR, CONSTRAINTS_ATTR, WORKER_ATTR = "arch", "metrics", "constraints", "worker"

Metric = Callable[[Arch], float]


@dataclass(frozen=True)
class Objective:
    """A named metric to optimise. `fn` must be picklable for process or Ray workers (a module-level function, a
    `functools.partial`, or an object like `hwnas.search.objectives.TableMetric`)."""

    name: str
    fn: Metric
    direction: str | None = None  # "maximize" / "minimize"; None: DIRECTIONS[name]

    @property
    def resolved_direction(self) -> str:
        d = self.direction or DIRECTIONS.get(self.name)
        if d not in ("maximize", "minimize"):
            raise HwnasError(f"objective {quote(self.name)} has no direction; give direction='maximize' or "
                             f"'minimize' (known names: {', '.join(DIRECTIONS)})")
        return d


@dataclass(frozen=True)
class Constraint:
    """A budget: feasible when the metric is <= `limit`. `fn` None: the objective named `name`."""

    name: str
    limit: float
    fn: Metric | None = None


@dataclass
class StudySpec:
    """Everything a worker needs to join a search (picklable). See the module docstring.

    population: NSGA-II's population size / evolution's population; sample_size: evolution's tournament size."""

    space: str
    objectives: list[Objective]
    constraints: list[Constraint] = field(default_factory=list)
    strategy: str = "nsga2"
    storage: str | None = None
    study_name: str = "hwnas"
    seed: int = 0
    population: int = 50
    sample_size: int = 10

    def check(self) -> None:
        """One-line HwnasError for a bad spec, before any study is created."""
        MO_STRATEGIES.get(self.strategy)
        if not self.objectives:
            raise HwnasError("give at least one objective")
        names = [o.name for o in self.objectives]
        if len(set(names)) != len(names):
            raise HwnasError(f"objectives {quote(names)} repeat a name; give each once")
        for o in self.objectives:
            o.resolved_direction  # noqa: B018  (raises for an unknown direction)
        for c in self.constraints:
            if c.fn is None and c.name not in names:
                raise HwnasError(f"constraint {quote(c.name)} has no metric: it is not an objective "
                                 f"({', '.join(names)}); give fn=")
            if not (isinstance(c.limit, (int, float)) and math.isfinite(c.limit) and c.limit > 0):
                raise HwnasError(f"the {c.name} budget {quote(c.limit)} is not accepted; give a finite positive number")
        if self.strategy == "evolution" and len(self.objectives) != 1:
            raise HwnasError(f"--strategy evolution is single-objective but {len(names)} objectives were given "
                             f"({', '.join(names)}); give one (budgets are constraints) or use --strategy nsga2")
        if not (isinstance(self.population, int) and self.population >= 2):
            raise HwnasError(f"population {quote(self.population)} is not accepted; give a whole number >= 2")
        get_space(self.space)

    @property
    def directions(self) -> list[str]:
        return [o.resolved_direction for o in self.objectives]


# --- samplers ---------------------------------------------------------------------------------------------
register_mo_strategy = MO_STRATEGIES.register


#: Optuna 5 deprecates samplers' `constraints_func` for `Trial.set_constraint`; older Optuna (>= 3.5) has only
#: the former. Both are fed the same values (metric - limit) from the trial.
SET_CONSTRAINT = hasattr(Trial, "set_constraint")


def constraint_values(trial: FrozenTrial) -> list[float]:
    """`constraints_func` of every sampler here: the values stored by the objective (metric - limit)."""
    return list(trial.user_attrs.get(CONSTRAINTS_ATTR, ()))


def constraints_func(spec: StudySpec):
    """What a sampler's `constraints_func` gets: None on Optuna with `Trial.set_constraint` or without budgets."""
    return constraint_values if spec.constraints and not SET_CONSTRAINT else None


@register_mo_strategy("nsga2")
def nsga2_sampler(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    """Optuna's NSGA-II (Deb et al. 2002) with constrained domination (constraints_func)."""
    return optuna.samplers.NSGAIISampler(population_size=spec.population, seed=seed,
                                         constraints_func=constraints_func(spec))


@register_mo_strategy("evolution")
def evolution_sampler(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    """Regularized evolution (hwnas.search.evolution), single-objective."""
    return RegularizedEvolutionSampler(population_size=spec.population,
                                       sample_size=min(spec.sample_size, spec.population), seed=seed)


@register_mo_strategy("random")
def random_sampler(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    """Uniform random search: the baseline."""
    return optuna.samplers.RandomSampler(seed=seed)


# --- one trial ----------------------------------------------------------------------------------------------
def suggest_arch(trial: Trial, space: SearchSpace) -> Arch:
    """The trial's architecture: a categorical parameter `d{i}` with choices range(options) per decision."""
    choices = tuple(trial.suggest_categorical(f"d{i}", list(range(n)))
                    for i, n in enumerate(space.options_per_decision()))
    return Arch(space.name, tuple(int(c) for c in choices))


def arch_of(trial: FrozenTrial, space: SearchSpace) -> Arch:
    """The architecture a finished trial evaluated (from its parameters)."""
    return Arch(space.name, tuple(int(trial.params[f"d{i}"]) for i in range(len(space.options_per_decision()))))


class TrialObjective:
    """The function `study.optimize` calls: suggest an architecture, evaluate the objectives, store the
    constraint values (metric - limit), every metric and the worker's number on the trial."""

    def __init__(self, spec: StudySpec, worker: int = 0):
        self.spec, self.space, self.worker = spec, get_space(spec.space), worker

    def __call__(self, trial: Trial) -> list[float]:
        arch = suggest_arch(trial, self.space)
        trial.set_user_attr(ARCH_ATTR, self.space.to_string(arch))
        trial.set_user_attr(WORKER_ATTR, self.worker)
        metrics = {o.name: float(o.fn(arch)) for o in self.spec.objectives}
        for c in self.spec.constraints:
            if c.name not in metrics:
                metrics[c.name] = float(c.fn(arch))
        trial.set_user_attr(METRICS_ATTR, metrics)
        violations = [metrics[c.name] - float(c.limit) for c in self.spec.constraints]
        trial.set_user_attr(CONSTRAINTS_ATTR, violations)
        if SET_CONSTRAINT:
            for c, v in zip(self.spec.constraints, violations):
                trial.set_constraint(c.name, v)
        return [metrics[o.name] for o in self.spec.objectives]


# --- studies and workers ------------------------------------------------------------------------------------
def make_storage(url: str | None) -> optuna.storages.BaseStorage | None:
    """An Optuna storage for `url`. SQLite gets a long lock timeout (several worker processes write) and WAL with
    synchronous=NORMAL: Optuna commits about twenty times per trial, and with SQLite's default full sync each
    commit waits for the disk, which made a 100-trial study take a minute on a busy machine."""
    if url is None:
        return None
    sqlite = url.startswith("sqlite")
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 120}} if sqlite else {}
    if sqlite and url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)  # as the measurement store does
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=None)
    except Exception as e:  # noqa: BLE001 - a bad URL, a missing driver, an unreachable server: one line
        raise HwnasError(f"cannot open the study storage {quote(url)}: {str(e).splitlines()[0]}; accepted: "
                         "sqlite:///FILE or a PostgreSQL URL") from None
    if sqlite:
        from sqlalchemy import event

        event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()  # connections opened while creating the tables: reopened with the pragmas
    return storage


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_study(spec: StudySpec, storage=None) -> optuna.Study:
    """The study of `spec` in its storage, created when absent; an existing one must have the same directions."""
    spec.check()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage or make_storage(spec.storage), study_name=spec.study_name,
                                directions=spec.directions, load_if_exists=True)
    wanted = [optuna.study.StudyDirection.MAXIMIZE if d == "maximize" else optuna.study.StudyDirection.MINIMIZE
              for d in spec.directions]
    if list(study.directions) != wanted:
        raise HwnasError(f"study {quote(spec.study_name)} in {spec.storage} has other objectives' directions; give "
                         "another study name or run folder")
    study.set_user_attr("space", spec.space)
    study.set_user_attr("objectives", [o.name for o in spec.objectives])
    return study


def load_study(spec: StudySpec, sampler=None, storage=None) -> optuna.Study:
    return optuna.load_study(study_name=spec.study_name, storage=storage or make_storage(spec.storage),
                             sampler=sampler)


def optimize_worker(spec: StudySpec, trials: int, worker: int = 0, storage=None) -> int:
    """Worker entry point: run `trials` trials on the study of `spec` (created beforehand with `create_study`)
    with a sampler seeded `spec.seed + worker`. Returns the number of trials this worker ran. The arguments are
    picklable (a process or a Ray task can call it); `storage` (an Optuna storage object) is for in-process
    callers with an in-memory study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = MO_STRATEGIES.get(spec.strategy)(spec, spec.seed + worker)
    study = load_study(spec, sampler, storage)
    study.optimize(TrialObjective(spec, worker), n_trials=trials, catch=())
    return trials


register_executor = EXECUTORS.register


@register_executor("inline")
def inline_executor(spec: StudySpec, trials_per_worker: list[int], storage=None) -> None:
    """Every worker in this process, one after the other (also serves an in-memory study)."""
    for worker, n in enumerate(trials_per_worker):
        optimize_worker(spec, n, worker, storage)


@register_executor("process")
def process_executor(spec: StudySpec, trials_per_worker: list[int], storage=None) -> None:
    """One process per worker, started by a fork server that has imported hwnas once (Python 3.14's default on
    Linux; spawn where there is no fork server): not plain fork, as torch's thread pools and open database
    connections do not survive a fork, and not a spawn per worker, as each would import torch again. Needs a
    storage URL every process can open."""
    if spec.storage is None:
        raise HwnasError("several worker processes need a study storage URL (sqlite:///FILE or PostgreSQL)")
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
    else:
        context = multiprocessing.get_context("spawn")
    with context.Pool(len(trials_per_worker)) as pool:
        pool.starmap(optimize_worker, [(spec, n, w) for w, n in enumerate(trials_per_worker)])


def split_trials(trials: int, workers: int) -> list[int]:
    """`trials` spread over `workers` as evenly as possible (no worker gets 0)."""
    workers = max(1, min(workers, trials))
    return [trials // workers + (1 if w < trials % workers else 0) for w in range(workers)]


def run_multi_objective(spec: StudySpec, trials: int, workers: int = 1, executor: str | None = None,
                        reporter: Reporter | None = None) -> ParetoResult:
    """Create (or resume) the study of `spec`, run `trials` more trials over `workers` workers with `executor`
    (default: "inline" for one worker, "process" for more) and return the study's `ParetoResult` (all of its
    trials, those of earlier runs on the same study included)."""
    report = reporter_or_null(reporter)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise HwnasError(f"trials {quote(trials)} is not accepted; give a whole number >= 1")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise HwnasError(f"workers {quote(workers)} is not accepted; give a whole number >= 1")
    name = executor or ("inline" if workers == 1 else "process")
    run = EXECUTORS.get(name)
    storage = make_storage(spec.storage) or optuna.storages.InMemoryStorage()
    create_study(spec, storage)
    split = split_trials(trials, workers)
    report.message(f"{spec.strategy}: {trials} trials over {len(split)} worker(s) ({name}), study "
                   f"{spec.study_name!r} in {spec.storage or 'memory'}")
    if spec.storage is None:
        run(spec, split, storage=storage)
    else:
        run(spec, split)
    return pareto_result(load_study(spec, storage=storage), spec)


def study_spec_for(space: str, objectives: Sequence[Objective], constraints: Sequence[Constraint] = (),
                   **settings: Any) -> StudySpec:
    """A checked StudySpec (a short-hand for scripts)."""
    spec = StudySpec(space=space, objectives=list(objectives), constraints=list(constraints), **settings)
    spec.check()
    return spec
