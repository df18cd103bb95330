"""Regularized evolution (Real et al., "Regularized Evolution for Image Classifier Architecture Search", AAAI 2019,
Algorithm 1) as an Optuna sampler, the single-objective option of `hwnas.search.multi_objective`.

Optuna has no built-in regularized evolution. It is written as a sampler rather than as a loop of its own so that
it shares everything else with NSGA-II: the study in Optuna storage (SQLite file or PostgreSQL URL), several
worker processes on one study, resuming, constraints and the front/result code. The population is not held in
memory: it is read from the study each time (the last `population_size` finished trials by trial number), so
every worker sees the others' children and a resumed study continues where it stopped.

Per trial: while fewer than `population_size` trials have finished, sample uniformly (the initial population);
then draw `sample_size` members of the population at random, take the best (feasible before infeasible, then by
the objective, then by total constraint violation) as the parent, and mutate exactly one of its decisions to
another option. Ageing (the oldest member leaves the population as a child joins) is the "regularization".
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

#: the user attribute holding a trial's constraint values (metric - limit; <= 0 is feasible), which
#: hwnas.search.multi_objective's trial objective writes
CONSTRAINTS_KEY = "constraints"


class RegularizedEvolutionSampler(BaseSampler):
    """Single-objective regularized evolution over categorical parameters (see the module docstring).

    Feasibility is read from each trial's `constraints` user attribute (values <= 0: feasible), or from
    `constraints_func(frozen_trial)` when one is given."""

    def __init__(self, population_size: int = 50, sample_size: int = 10, seed: int | None = None,
                 constraints_func: Callable[[FrozenTrial], Sequence[float]] | None = None):
        if population_size < 2 or not 1 <= sample_size <= population_size:
            raise ValueError(f"need population_size >= 2 and 1 <= sample_size <= population_size (got "
                             f"{population_size}, {sample_size})")
        self.population_size, self.sample_size = population_size, sample_size
        self.constraints_func = constraints_func
        self._rng = np.random.default_rng(seed)
        self._random = RandomSampler(seed=seed)
        self._search_space = IntersectionSearchSpace()

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if len(study.directions) != 1:
            raise ValueError("regularized evolution is single-objective; use NSGA-II for several objectives")
        space = self._search_space.calculate(study)
        return {k: d for k, d in space.items() if isinstance(d, CategoricalDistribution)}

    def population(self, study: optuna.Study) -> list[FrozenTrial]:
        """The current population: the last `population_size` finished trials, by trial number (oldest first)."""
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return sorted(done, key=lambda t: t.number)[-self.population_size:]

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        population = self.population(study)
        if len(population) < self.population_size:
            return {}  # initial population: every parameter is drawn by sample_independent (uniform)
        picks = self._rng.choice(len(population), size=self.sample_size, replace=False)
        parent = min((population[i] for i in picks), key=lambda t: self._rank_key(study, t))
        child = {k: parent.params[k] for k in search_space if k in parent.params}
        mutable = [k for k, d in search_space.items() if len(d.choices) > 1]
        if mutable:
            name = mutable[int(self._rng.integers(len(mutable)))]
            choices = [c for c in search_space[name].choices if c != child.get(name)]
            child[name] = choices[int(self._rng.integers(len(choices)))]
        return child

    def _rank_key(self, study: optuna.Study, t: FrozenTrial) -> tuple[float, float, float]:
        """Smaller is better: (infeasible?, objective as minimised, total violation)."""
        values = self.constraints_func(t) if self.constraints_func else t.user_attrs.get(CONSTRAINTS_KEY, ())
        violation = sum(max(0.0, float(c)) for c in values)
        value = float(t.values[0])
        signed = -value if study.directions[0] == StudyDirection.MAXIMIZE else value
        return (float(violation > 0), signed, violation)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)
