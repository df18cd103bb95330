"""`--predictor auto`: k-fold cross-validation of the candidates on the user's own (here: published NAS-Bench-201)
measurements, the choice and every candidate's scores recorded, and the search's pair of predictors."""
import numpy as np
import pytest
import torch

from hwnas.predictors import AUTO, PredictorPair, fit_from_store, get_predictor, load_predictor
from hwnas.predictors.auto import CANDIDATES, best_differentiable, choose_predictor, fold_indices
from hwnas.predictors.encodings import encode_archs
from hwnas.search.api import resolve_cost_predictor
from hwnas.search.cost import HardwareCost
from hwnas.spaces import get_space

torch.set_num_threads(1)
SPACE = get_space("nb201")


@pytest.fixture(scope="module")
def store60(nb201_data, tmp_path_factory):
    """60 published pixel3 measurements imported into a real SQLite store."""
    from hwnas.store import Store

    folder = tmp_path_factory.mktemp("auto")
    with open(nb201_data / "latency_ms.csv", newline="") as f:
        lines = f.readlines()[:61]
    (folder / "subset.csv").write_text("".join(lines))
    store = Store(folder / "m.db")
    store.import_table(folder / "subset.csv", SPACE.spec, columns=["pixel3"])
    return store


def test_folds_cover_every_row_once():
    parts = fold_indices(23, 5, seed=1)
    assert len(parts) == 5 and sorted(np.concatenate(parts).tolist()) == list(range(23))
    assert len(fold_indices(3, 5, seed=1)) == 3  # leave-one-out when there are fewer rows than folds


def test_auto_picks_a_fitted_candidate_and_records_scores(store60, tmp_path):
    predictor, metrics = fit_from_store(store60, "nb201", "pixel3", "imported", (3, 32, 32), target="latency_ms",
                                        seed=0)  # the default is auto
    auto = predictor.metadata["auto"]
    tried = [s["predictor"] for s in auto["scores"]]
    assert tried == [n for n, least in CANDIDATES.items() if least <= 60]  # what suits 60 rows, in order
    assert auto["chosen"] == predictor.name and predictor.encoding == auto["encoding"]
    best = max(s["score"] for s in auto["scores"])
    chosen = next(s for s in auto["scores"] if s["predictor"] == auto["chosen"])
    assert chosen["score"] >= best - 0.005  # the best, or one within the tie margin tried before it
    assert all(0 <= s["score"] <= 1 and s["spearman"] > 0.5 for s in auto["scores"])
    assert metrics["spearman"] > 0.5  # the chosen predictor, fitted, is held out as any other
    loaded = load_predictor(predictor.save(tmp_path / "p.npz"))
    assert loaded.metadata["auto"] == auto and loaded.name == auto["chosen"]


def test_auto_scores_near_the_budget_and_takes_the_given_candidates(store60):
    rows = store60.measurements(device="imported:pixel3")
    archs = [SPACE.from_string(m.arch) for m in rows]
    y = np.array([m.latency_ms for m in rows])
    budget = float(np.median(y))
    choice = choose_predictor(SPACE, archs, y, budget=budget, candidates=["lookup", "linear-cost"], seed=0)
    assert [s.predictor for s in choice.scores] == ["lookup", "linear-cost"]
    near = int((np.abs(y / budget - 1) <= 0.3).sum())
    assert all(s.near_rows == near for s in choice.scores)
    assert best_differentiable(choice.to_dict()) == "lookup"


def test_search_pairs_the_most_accurate_with_a_differentiable_cost(store60):
    class Imported:  # the store's imported pixel3 rows, addressed as a backend names its own
        name = "imported"

        @staticmethod
        def device_id():
            return "imported:pixel3"

    pair = resolve_cost_predictor(AUTO, "latency_ms", SPACE, (3, 32, 32), Imported, store60, seed=0, budget=10.0)
    exact = pair.exact if isinstance(pair, PredictorPair) else pair
    assert exact.name == exact.metadata["auto"]["chosen"]
    if not isinstance(pair, PredictorPair):  # the winner itself drives the search
        assert pair.additive or pair.differentiable
        return
    assert pair.cost.additive or pair.cost.differentiable
    cost = HardwareCost(SPACE, "latency_ms", 10.0, predictor=pair)
    archs = [SPACE.sample(np.random.default_rng(i)) for i in range(4)]
    expected = exact.predict(encode_archs(SPACE, archs, exact.encoding, (3, 32, 32)))
    np.testing.assert_allclose(cost.predict_arch(archs), expected, rtol=1e-6)  # discrete: the most accurate
    alpha = torch.zeros(SPACE.alpha_shape, requires_grad=True)
    cost.value(alpha).backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0  # relaxed: differentiable


def test_a_pair_of_two_fitted_predictors_judges_archs_with_the_exact_one(store60):
    rows = store60.measurements(device="imported:pixel3")
    archs = [SPACE.from_string(m.arch) for m in rows]
    y = np.array([m.latency_ms for m in rows])
    exact = get_predictor("linear-cost", space=SPACE)
    exact.fit(encode_archs(SPACE, archs, exact.encoding), y)
    lookup = get_predictor("lookup").fit(encode_archs(SPACE, archs, "onehot"), y)
    cost = HardwareCost(SPACE, "latency_ms", float(np.median(y)), predictor=PredictorPair(cost=lookup, exact=exact))
    assert cost.predictor is lookup and cost.exact is exact
    np.testing.assert_allclose(cost.predict_arch(archs[:3]), exact.predict(encode_archs(SPACE, archs[:3], exact.encoding)))
    np.testing.assert_allclose(cost.predict_arch(archs[:3], exact=False), lookup.predict(SPACE.encode_many(archs[:3])),
                               rtol=1e-5)


def test_a_flat_exact_predictor_that_finds_nothing_hands_discretisation_to_the_cost_term():
    from hwnas.predictors import LookupTablePredictor
    from hwnas.search.budget import discretise_and_verify

    space = get_space("nb201:C=4,N=1")
    per_op = np.tile(np.array([0.0, 0.05, 0.6, 1.5, 0.3]), space.alpha_shape[0])
    cost = LookupTablePredictor.from_table(0.0, per_op)
    flat = LookupTablePredictor.from_table(100.0, np.zeros_like(per_op))  # predicts 100 for every architecture
    c = HardwareCost(space, "latency_ms", 3.0, predictor=PredictorPair(cost=cost, exact=flat))
    r = discretise_and_verify(space, torch.zeros(space.alpha_shape), [c])
    assert c.exact is None and r.predicted["latency_ms"] <= 3.0  # judged by the cost term instead
