"""Multi-objective search with its workers as Ray tasks on one study (the "ray" worker executor)."""
import pytest

from hwnas.errors import HwnasError
from hwnas.search.multi_objective import Objective, StudySpec, run_multi_objective
from hwnas.search.objectives import TableMetric
from hwnas.spaces import get_space


def spec(nb201_data, storage):
    acc = TableMetric(str(nb201_data / "accuracy.csv"), "cifar10")
    lat = TableMetric(str(nb201_data / "latency_ms.csv"), "pixel3")
    return StudySpec("nb201", [Objective("accuracy", acc), Objective("latency_ms", lat)], storage=storage,
                     study_name="ray", population=4)


def test_ray_workers_search_one_study_together(nb201_data, tmp_path, ray_local):
    s = spec(nb201_data, f"sqlite:///{tmp_path / 'study.db'}")
    result = run_multi_objective(s, trials=6, workers=2, executor="ray")
    assert len(result.points) == 6 and result.front  # both tasks' trials are in the one study
    lat = TableMetric(str(nb201_data / "latency_ms.csv"), "pixel3")
    space = get_space("nb201")
    for point in result.points:  # each value is the table's, computed in a Ray worker
        assert point.values["latency_ms"] == pytest.approx(lat(space.from_string(point.arch)))
    again = run_multi_objective(s, trials=2, workers=2, executor="ray")  # resumed, not restarted
    assert len(again.points) == 8


def test_ray_workers_refuse_an_in_memory_study(nb201_data):
    pytest.importorskip("ray", reason="needs Ray: install .[distributed]")
    with pytest.raises(HwnasError, match="storage URL"):
        run_multi_objective(spec(nb201_data, None), trials=2, workers=2, executor="ray")
