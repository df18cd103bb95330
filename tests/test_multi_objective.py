"""Multi-objective search on Optuna (hwnas.search.multi_objective): NSGA-II fronts are feasible and non-dominated
on a ragged space and on the published NAS-Bench-201 tables, budgets are respected, two worker processes share one
SQLite study without losing trials, regularized evolution improves on its initial population, and the command
saves an exportable front."""
import json

import numpy as np
import optuna
import pytest
from click.testing import CliRunner
from ragged_space import EXAMPLE  # noqa: F401  (registers the toy-ragged space, here and in spawned workers)

from hwnas.cli import cli
from hwnas.errors import HwnasError
from hwnas.search.multi_objective import (
    Constraint,
    Objective,
    StudySpec,
    create_study,
    load_study,
    run_multi_objective,
    split_trials,
)
from hwnas.search.objectives import TableMetric
from hwnas.search.pareto import nondominated
from hwnas.spaces import get_space
from hwnas.spaces.base import Arch
from hwnas.spaces.registry import SPACES

RAGGED = "toy-ragged"
# a fixed random table over the 72 architectures of the ragged space: two conflicting objectives
_RNG = np.random.default_rng(7)
_SCORE = _RNG.uniform(0, 1, size=(2, 3, 4, 3))
_COST = 0.5 * _SCORE + _RNG.uniform(0, 1, size=(2, 3, 4, 3))  # better score tends to cost more


def score(arch: Arch) -> float:  # module-level: picklable for worker processes
    return float(_SCORE[arch.choices])


def cost(arch: Arch) -> float:
    return float(_COST[arch.choices])


def ragged_spec(**settings) -> StudySpec:
    return StudySpec(space=RAGGED, objectives=[Objective("accuracy", score), Objective("latency_ms", cost)],
                     **settings)


def assert_front_is_pareto(result, budget=None):
    """Every front point is feasible (under `budget`) and no feasible evaluated point dominates it."""
    feasible = [p for p in result.points if p.feasible]
    values = np.array([[p.values["accuracy"], p.values["latency_ms"]] for p in feasible])
    for p in result.front:
        assert p.feasible
        if budget is not None:
            assert p.values["latency_ms"] <= budget
        a, lat = p.values["accuracy"], p.values["latency_ms"]
        dominates = (values[:, 0] >= a) & (values[:, 1] <= lat) & ((values[:, 0] > a) | (values[:, 1] < lat))
        assert not dominates.any(), p
    # and every non-dominated feasible point is on the front (as one point per architecture)
    on_front = {p.arch for p in result.front}
    mask = nondominated(values, [True, False])
    assert {p.arch for p, keep in zip(feasible, mask) if keep} <= on_front


def test_nsga2_on_a_ragged_space_gives_a_feasible_nondominated_front():
    budget = 0.9
    result = run_multi_objective(ragged_spec(constraints=[Constraint("latency_ms", budget)], population=8, seed=1),
                                 trials=60)
    space = get_space(RAGGED)
    assert len(result.points) == 60 and result.front
    for p in result.front:
        space.check_choices(space.from_string(p.arch))  # a valid ragged architecture
    assert_front_is_pareto(result, budget)
    # over budget points were evaluated and kept off the front: the budget was a constraint, not a filter
    assert any(not p.feasible for p in result.points)
    assert all(p.metrics["latency_ms"] - budget == pytest.approx(p.constraints[0]) for p in result.points)


def test_nsga2_on_the_published_tables_finds_most_of_the_true_front(nb201_data):
    from hwnas.search.pareto import hypervolume, to_minimised
    from hwnas.search.tabular import load_table

    acc = TableMetric(str(nb201_data / "accuracy.csv"), "cifar10")
    lat = TableMetric(str(nb201_data / "latency_ms.csv"), "pixel3")
    budget = 10.0
    spec = StudySpec("nb201", [Objective("accuracy", acc), Objective("latency_ms", lat)],
                     [Constraint("latency_ms", budget)], population=20)
    nsga = run_multi_objective(spec, trials=200)
    assert_front_is_pareto(nsga, budget)
    # hypervolume against the true front of the feasible cells (normalised as bench/front.py does)
    space = get_space("nb201")
    table = np.c_[load_table(nb201_data / "accuracy.csv", "cifar10", space),
                  load_table(nb201_data / "latency_ms.csv", "pixel3", space)]
    table = table[table[:, 1] <= budget]
    low, high = table.min(0), table.max(0)
    reference = np.array([1.1, 1.1])
    true_hv = hypervolume(to_minimised(table, [True, False], low, high), reference)
    found_hv = hypervolume(to_minimised(nsga.front_values(), [True, False], low, high), reference)
    assert 0.9 * true_hv <= found_hv <= true_hv + 1e-9


def test_two_worker_processes_share_one_sqlite_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    spec = ragged_spec(storage=url, study_name="shared", population=4, seed=3)
    result = run_multi_objective(spec, trials=24, workers=2)
    study = load_study(spec)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 24 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(24))  # no lost or duplicated trial numbers
    assert {t.user_attrs["worker"] for t in trials} == {0, 1}
    assert sum(t.user_attrs["worker"] == 1 for t in trials) == split_trials(24, 2)[1]
    assert len(result.points) == 24
    # the same study resumes: more trials join it, nothing is recreated
    run_multi_objective(spec, trials=3)
    assert len(load_study(spec).get_trials()) == 27


def test_regularized_evolution_improves_on_its_initial_population(nb201_data):
    acc = TableMetric(str(nb201_data / "accuracy.csv"), "cifar10")
    lat = TableMetric(str(nb201_data / "latency_ms.csv"), "pixel3")
    spec = StudySpec("nb201", [Objective("accuracy", acc)], [Constraint("latency_ms", 8.0, lat)],
                     strategy="evolution", population=20, sample_size=5, seed=0)
    result = run_multi_objective(spec, trials=160)
    ordered = sorted(result.points, key=lambda p: p.trial)

    def quality(points):  # infeasible members count as the worst accuracy
        return np.mean([p.values["accuracy"] if p.feasible else 0.0 for p in points])

    assert quality(ordered[-20:]) > quality(ordered[:20]) + 5
    assert result.front and all(p.metrics["latency_ms"] <= 8.0 for p in result.front)
    assert result.front[0].values["accuracy"] >= max(p.values["accuracy"] for p in ordered[:20] if p.feasible)


def test_bad_specs_are_one_line_errors(tmp_path):
    with pytest.raises(HwnasError, match="single-objective"):
        ragged_spec(strategy="evolution").check()
    with pytest.raises(HwnasError, match="no direction"):
        StudySpec(RAGGED, [Objective("mystery", score)]).check()
    with pytest.raises(HwnasError, match="budget"):
        ragged_spec(constraints=[Constraint("latency_ms", -1.0)]).check()
    with pytest.raises(HwnasError, match="unknown multi-objective search strategy"):
        ragged_spec(strategy="nope").check()
    spec = ragged_spec(storage=f"sqlite:///{tmp_path / 's.db'}")
    create_study(spec)
    other = StudySpec(RAGGED, [Objective("latency_ms", cost), Objective("accuracy", score)],
                      storage=spec.storage)
    with pytest.raises(HwnasError, match="directions"):
        create_study(other)
    assert RAGGED in SPACES


def test_the_command_saves_an_exportable_front(nb201_data, tmp_path):
    from hwnas.export.sources import read_search_result

    run = tmp_path / "run"
    args = ["search", "--strategy", "nsga2", "--tabular", "--latency-csv", nb201_data / "latency_ms.csv",
            "--latency-column", "raspi4", "--accuracy-csv", nb201_data / "accuracy.csv", "--budget-ms", 40,
            "--trials", 16, "--population", 6, "--run-dir", run, "--json"]
    r = CliRunner().invoke(cli, list(map(str, args)))
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{"):])
    assert out["front"] and all(p["values"]["latency_ms"] <= 40 for p in out["front"])
    for name in ("front.json", "front.csv", "front.png", "study.db", "front/0.json"):
        assert (run / name).is_file(), name
    point = read_search_result(run / "front" / "0.json")
    assert point["arch"] == out["front"][0]["arch"] and point["space"] == "nb201"
    assert point["budgets"] == {}  # a table's latency is another device's: never carried into a bundle
    bad = CliRunner().invoke(cli, list(map(str, [*args[:-1], "--objectives", "accuracy,speed"])))
    assert bad.exit_code == 2 and "accuracy, latency_ms, energy_mj, introspectability" in bad.output
    evo = CliRunner().invoke(cli, list(map(str, [*args[:-1], "--strategy", "evolution"])))
    assert evo.exit_code == 2 and "single-objective" in evo.output
