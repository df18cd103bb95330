"""Zero-cost proxies, their combinations, the ReNAS ranking predictor and the training-free search: real networks
(nb201:C=8,N=1), real CIFAR-10 images where a proxy reads data (skipped without the shared folder), real ONNX
Runtime measurements for the search."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import spearmanr

from hwnas.errors import HwnasError
from hwnas.predictors import encode_archs, get_predictor, load_predictor
from hwnas.search.zero_cost import (
    DEFAULT_PROXIES,
    PROXIES,
    LearnedCombination,
    ProxyMetric,
    cifar_batch,
    proxy_names,
    score,
    vote,
)
from hwnas.spaces import get_space
from hwnas.spaces.nb201 import EXAMPLE

torch.set_num_threads(1)
SPEC = "nb201:C=8,N=1"


@pytest.fixture(scope="module")
def cifar():
    shared = Path(os.environ.get("HWNAS_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    folder = shared / "cifar10" / "cifar-10-batches-py"
    if not (folder / "data_batch_1").is_file():
        pytest.skip(f"CIFAR-10 subset not found at {folder} (set HWNAS_SHARED_DATA)")
    return folder


@pytest.fixture(scope="module")
def tiny_scores(cifar):
    space = get_space(SPEC)
    x, y = cifar_batch(cifar, batch_size=4, seed=0)
    batch = (x[:, :, 8:24, 8:24].contiguous(), y)  # the central 16x16: real images, a quarter of the work
    torch.manual_seed(0)
    model = space.build(space.from_string(EXAMPLE))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    timings: dict[str, float] = {}
    first = score(model, batch, seed=0, timings=timings)
    second = score(model, batch, seed=0)
    unchanged = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    return first, second, timings, unchanged


def test_every_proxy_is_finite_deterministic_and_leaves_the_model_alone(tiny_scores):
    first, second, timings, unchanged = tiny_scores
    assert set(first) == set(DEFAULT_PROXIES) == set(proxy_names())
    assert all(np.isfinite(v) for v in first.values()), first
    assert first == second  # same seed, same batch: the same figures
    assert unchanged  # proxies work on copies (synflow's |W|, GeNAS's SGD step, zen's Gaussian init)
    assert set(timings) >= set(DEFAULT_PROXIES) | {"shared_forward", "shared_backward"}
    assert first["params"] == sum(p.numel() for p in get_space(SPEC).build(get_space(SPEC).from_string(EXAMPLE)).parameters())
    assert all(PROXIES.get(n).citation for n in proxy_names())


def test_proxies_see_the_architecture(cifar):
    """A cell of convolutions and one of pooling and skips differ on every proxy that reads weights or data."""
    space = get_space(SPEC)
    x, y = cifar_batch(cifar, batch_size=4, seed=1)
    batch = (x[:, :, 8:24, 8:24].contiguous(), y)
    names = ["naswot", "synflow", "snip", "az_expressivity", "flops", "params"]
    out = []
    for text in (EXAMPLE, "|avg_pool_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"):
        torch.manual_seed(0)
        out.append(score(space.build(space.from_string(text)), batch, names, seed=0))
    assert all(out[0][n] != out[1][n] for n in names)
    assert out[0]["flops"] > out[1]["flops"] and out[0]["synflow"] > out[1]["synflow"]


def test_unknown_proxy_and_missing_data_are_one_line_errors(tmp_path):
    space = get_space(SPEC)
    with pytest.raises(HwnasError, match="unknown zero-cost proxy 'bogus'; known: .*naswot"):
        score(space.build(space.sample(np.random.default_rng(0))), (torch.zeros(2, 3, 8, 8), torch.zeros(2).long()),
              ["bogus"])
    with pytest.raises(HwnasError, match="no CIFAR-10 batch at"):
        cifar_batch(tmp_path)


def test_vote_ranks_by_agreement_and_a_low_rank_pulls_down():
    scores = {"a": [1.0, 2.0, 3.0, 4.0], "b": [10.0, 20.0, 30.0, 40.0], "c": [0.1, 0.3, 0.2, 0.4]}
    assert list(np.argsort(-vote(scores))) == [3, 2, 1, 0]
    # arch 1 is best on two proxies but worst on the third: log-ranks punish the weak spot
    lopsided = {"a": [3.0, 4.0, 2.0, 1.0], "b": [3.0, 4.0, 2.0, 1.0], "c": [3.0, 0.0, 2.0, 1.0]}
    assert np.argmax(vote(lopsided)) == 0
    assert list(np.argsort(-vote(scores, ["c"]))) == [3, 1, 2, 0]
    assert vote({"a": [1.0, float("nan"), 2.0]})[1] == vote({"a": [1.0, float("nan"), 2.0]}).min()


@pytest.mark.parametrize("method", LearnedCombination.METHODS)
def test_learned_combination_fits_from_20_labels(method):
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(300, 4))
    pool[:, 2] = np.exp(3 * pool[:, 2])  # wild scales do not matter: features are quantiles in the pool
    accuracy = 2.0 * pool[:, 0] + np.log(pool[:, 2]) + 0.3 * rng.normal(size=300)
    labelled = rng.choice(300, size=20, replace=False)
    rest = np.setdiff1d(np.arange(300), labelled)
    model = LearnedCombination(method, seed=0).fit(pool[labelled], accuracy[labelled], pool=pool)
    assert spearmanr(model.predict(pool[rest]), accuracy[rest])[0] > 0.8
    with pytest.raises(HwnasError, match="accepted: ridge"):
        LearnedCombination("magic")


def test_renas_ranks_saves_as_data_and_loads(tmp_path):
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(90)))
    enc = encode_archs(space, archs, "onehot")
    proxy = np.array([[space.flops(a) / 1e7] for a in archs])  # a stand-in proxy column
    accuracy = 80 + 2 * np.log1p(proxy[:, 0]) + enc[:, 3::5].sum(1)  # convolutions help, more FLOPs help
    X = np.hstack([enc, proxy])
    p = get_predictor("renas", encoding="onehot", epochs=80).fit(X[:40], accuracy[:40])
    assert spearmanr(p.predict(X[40:]), accuracy[40:])[0] > 0.7
    path = p.save(tmp_path / "renas.npz", {"space": "nb201", "target": "accuracy"})
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    q = load_predictor(path)  # checked on encodings alone: the proxy column is filled with its training mean
    np.testing.assert_allclose(q.predict(X[40:]), p.predict(X[40:]), rtol=1e-6)
    assert np.all(np.isfinite(q.predict(enc[40:])))


@pytest.fixture(scope="module")
def profiled_run(tmp_path_factory):
    """8 real ONNX Runtime measurements of nb201:C=4,N=1 at digits' shape in a run folder's store."""
    from hwnas.profilers import TimingProtocol, get_backend, profile_space
    from hwnas.store import Store

    run_dir = tmp_path_factory.mktemp("zc-run")
    space = get_space("nb201:C=4,N=1", classes=10)
    store = Store(run_dir / "measurements.db")
    profile_space(space, get_backend("onnxruntime-cpu", threads=1), store, 8, "uniform", 0, (1, 8, 8), 1,
                  TimingProtocol.quick())
    latencies = [m.latency_ms for m in store.measurements(space=space.spec)]
    return run_dir, float(np.percentile(latencies, 60))


def test_zero_cost_search_end_to_end_measures_within_budget(profiled_run):
    from hwnas.cli import cli

    run_dir, budget = profiled_run
    r = CliRunner().invoke(cli, ["search", "--strategy", "zero-cost", "--budget-ms", str(budget), "--space",
                                 "nb201:C=4,N=1", "--limit", "120", "--epochs", "1", "--retrain-epochs", "0",
                                 "--protocol", "quick", "--run-dir", str(run_dir), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{"):])
    assert out["strategy"] == "zero-cost" and out["arch"].startswith("|")
    # ranked only among architectures predicted within budget (the first try: a repair refits the predictor on what
    # it measured, after which the reported prediction may exceed the budget)
    assert out["attempts"][0]["predicted"]["latency_ms"] <= budget
    if out["within_budget"]:  # only ever claimed when measured so
        assert out["measured"]["latency_ms"] <= budget
    assert out["measurements_used"] >= 1 or out["attempts"]


def test_proxy_metric_is_a_picklable_objective():
    import pickle

    metric = ProxyMetric("nb201:C=4,N=1", ("synflow", "params"), data=None, batch_size=4)
    value = metric(EXAMPLE)
    clone = pickle.loads(pickle.dumps(metric))
    assert np.isfinite(value) and clone(EXAMPLE) == value
    with pytest.raises(HwnasError, match="unknown zero-cost proxy"):
        ProxyMetric("nb201", ("nope",))
