"""A ragged space (decisions with 2, 3, 4 and 3 options) through the whole contract: encode, relax, derive,
neighbours, sample, every predictor (library and `hwnas fit`), every strategy, discretisation and the cost term;
and a space that declares only the minimum is refused, in one line, what it lacks."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from ragged_space import RaggedToySpace

from hwnas.errors import HwnasError
from hwnas.predictors import PREDICTORS, get_predictor, load_predictor
from hwnas.predictors.api import fit_predictor
from hwnas.predictors.encodings import ENCODINGS, encode_archs, encoding_needs
from hwnas.search.cost import HardwareCost, op_table_from_measurements, total_loss
from hwnas.search.discretise import arch_log_prob, derive_within_budget
from hwnas.search.strategy import STRATEGIES, get_strategy
from hwnas.spaces import Arch, get_space

torch.set_num_threads(1)
COUNTS = (2, 3, 4, 3)
#: a synthetic per-option cost (ms): wider, bigger kernels and convolutions cost more
PER_OPTION = [[0.1, 0.3], [0.2, 0.5, 0.9], [0.0, 0.05, 0.8, 0.2], [0.02, 0.05, 0.0]]


@pytest.fixture(scope="module")
def space():
    return get_space("toy-ragged")


def synthetic_cost(archs) -> np.ndarray:
    base = 0.5 + np.array([sum(PER_OPTION[d][c] for d, c in enumerate(a.choices)) for a in archs])
    width = np.array([(1, 2, 3)[a.choices[1]] for a in archs])
    conv = np.array([a.choices[2] == 2 for a in archs])
    return base + 0.1 * width * conv  # a little interaction: a convolution costs more on wider layers


def all_archs(space) -> list[Arch]:
    import itertools

    return [Arch(space.name, c) for c in itertools.product(*(range(n) for n in COUNTS))]


def test_the_ragged_shape_mask_and_codes(space):
    assert isinstance(space, RaggedToySpace) and space.ragged
    assert space.options_per_decision() == COUNTS and space.alpha_shape == (4, 4)
    assert space.alpha_mask.sum() == 12 and not space.alpha_mask[0, 2] and space.alpha_mask[2, 3]
    assert list(space.code_offsets) == [0, 2, 5, 9, 12]
    arch = space.from_string("k3-w12-avgpool-tanh")
    assert arch.choices == (1, 2, 3, 1) and space.to_string(arch) == "k3-w12-avgpool-tanh"
    code = space.encode(arch)
    assert code.shape == (12,) and code.sum() == 4 and list(np.flatnonzero(code)) == [1, 4, 8, 10]
    assert np.array_equal(space.table_from_code(code)[space.alpha_mask], code)
    rng = np.random.default_rng(0)
    samples = [space.sample(rng) for _ in range(300)]
    assert all(0 <= c < n for a in samples for c, n in zip(a.choices, COUNTS))
    assert {a.choices[2] for a in samples} == {0, 1, 2, 3}
    assert len(space.neighbours(arch)) == sum(n - 1 for n in COUNTS)
    assert all(sum(x != y for x, y in zip(n.choices, arch.choices)) == 1 for n in space.neighbours(arch))
    with pytest.raises(HwnasError, match="expected e.g."):
        space.parse("k5-w8-none-relu")
    with pytest.raises(HwnasError, match="counts"):
        space.parse(Arch(space.name, (2, 0, 0, 0)))  # decision 0 has only 2 options


def test_relax_and_derive_never_use_an_option_that_does_not_exist(space):
    alpha = torch.zeros(space.alpha_shape)
    weights = space.mixing_weights(alpha)
    assert torch.allclose(weights.sum(-1), torch.ones(4))
    assert torch.all(weights[~torch.as_tensor(space.alpha_mask)] == 0)
    assert weights[0, 0] == pytest.approx(0.5) and weights[1, 0] == pytest.approx(1 / 3)
    relaxed = space.relax(alpha)
    assert relaxed.shape == (12,) and float(relaxed.sum()) == pytest.approx(4.0)
    assert space.relax(torch.zeros(5, *space.alpha_shape)).shape == (5, 12)
    alpha[0, 3] = alpha[1, 3] = alpha[3, 3] = 100.0  # the padding is strongest, but does not exist
    alpha[2, 2] = 1.0
    assert space.derive(alpha).choices[2] == 2 and all(0 <= c < n for c, n in zip(space.derive(alpha).choices, COUNTS))
    # one-hot alpha reproduces encode: a predictor fitted on codes reads relaxed codes in the same layout
    arch = Arch(space.name, (1, 0, 3, 2))
    sharp = torch.full(space.alpha_shape, -50.0)
    sharp[range(4), list(arch.choices)] = 50.0
    assert np.allclose(space.relax(sharp).numpy(), space.encode(arch), atol=1e-6)
    logp = arch_log_prob(space, torch.zeros(space.alpha_shape), [arch])
    assert logp[0] == pytest.approx(np.log(1 / 2 * 1 / 3 * 1 / 4 * 1 / 3), rel=1e-5)


def test_a_minimal_space_is_refused_what_it_does_not_declare_in_one_line(space):
    archs = all_archs(space)[:3]
    for encoding in ENCODINGS.names():
        if encoding_needs(encoding) - space.capabilities:
            with pytest.raises(HwnasError) as e:
                encode_archs(space, archs, encoding)
            message = str(e.value)
            assert "\n" not in message and "toy-ragged" in message and "does not declare" in message
            assert "accepted spaces: nb201" in message
        else:
            assert len(encode_archs(space, archs, encoding)) == 3
    with pytest.raises(HwnasError, match="does not declare 'profile'"):
        space.profile(archs[0])
    with pytest.raises(HwnasError, match="does not declare 'live_edges'"):
        get_predictor("ridge", encoding="features", space=space)
    # a predictor whose default the space cannot give falls back to its minimal encoding
    assert get_predictor("ridge", space=space).encoding == "onehot"
    assert get_predictor("gcn", space=space).encoding == "graph"
    assert get_predictor("ridge", space=get_space("nb201")).encoding == "features"
    assert space.none_options() == {(2, 0)} and get_space("nb201").none_options() == {(k, 0) for k in range(6)}


@pytest.mark.parametrize("name", PREDICTORS.names())
def test_every_predictor_fits_a_ragged_space(name, space):
    archs = all_archs(space)  # 72 architectures
    y = synthetic_cost(archs)
    probe = get_predictor(name, space=space)
    X = encode_archs(space, archs, probe.encoding)
    settings = {"epochs": 30} if name in ("mlp", "gcn", "transfer") else {}
    if name == "ensemble":
        settings = {"members": ["ridge", "gbt"]}
    sources = None
    if name == "transfer":  # pretrained on two other "devices" of the same space
        sources = {"a": (X, 2.0 * y), "b": (X, y + 0.3 * X[:, 0])}
    predictor, metrics = fit_predictor(X, y, name, probe.encoding, holdout=0.2, seed=0, settings=settings,
                                       sources=sources)
    pred = predictor.predict(X)
    assert pred.shape == (72,) and np.all(np.isfinite(pred))
    assert metrics["spearman"] > 0.5, metrics  # it learnt something: cost ranks follow


def test_lookup_table_and_cost_term_on_a_ragged_space(space):
    archs = all_archs(space)
    y = 0.5 + np.array([sum(PER_OPTION[d][c] for d, c in enumerate(a.choices)) for a in archs])  # exactly additive
    lookup = get_predictor("lookup", space=space).fit(space.encode_many(archs), y)
    base, table = lookup.table_for(space)
    assert table.shape == (4, 4) and np.all(table[~space.alpha_mask] == 0)
    cost = HardwareCost(space, "latency_ms", 1.5, predictor=lookup)
    assert np.allclose(cost.predict_arch(archs), y, atol=1e-2)
    alpha = torch.zeros(space.alpha_shape, requires_grad=True)
    # uniform over the existing options only: the expected cost is the mean over all architectures
    assert float(cost.value(alpha.detach())) == pytest.approx(y.mean(), abs=2e-2)
    loss, _ = total_loss(torch.tensor(0.0), alpha, [cost])
    loss.backward()
    assert alpha.grad[~torch.as_tensor(space.alpha_mask)].abs().sum() == 0  # padding gets no gradient
    fitted_table, _ = op_table_from_measurements(space, archs, y)
    assert fitted_table.shape == (4, 4) and np.all(fitted_table[~space.alpha_mask] == 0)
    # a differentiable predictor (MLP on one-hot codes) and a plain cost function work the same way
    mlp = get_predictor("mlp", space=space, epochs=50).fit(space.encode_many(archs), y)
    assert float(HardwareCost(space, "latency_ms", 1.5, predictor=mlp).value(alpha.detach())) > 0
    fn = HardwareCost(space, "latency_ms", 1.5, cost_fn=lambda w: (w * torch.as_tensor(table, dtype=w.dtype)).sum())
    assert np.allclose(fn.predict_arch(archs[:5]), y[:5] - 0.5 - (base - 0.5), atol=1e-2)


def test_discretise_on_a_ragged_space_stays_within_budget(space):
    archs = all_archs(space)
    y = synthetic_cost(archs)
    lookup = get_predictor("lookup", space=space).fit(space.encode_many(archs), y)
    cost = HardwareCost(space, "latency_ms", 1.2, predictor=lookup)
    alpha = torch.zeros(space.alpha_shape)
    alpha[0, 1] = alpha[1, 2] = alpha[2, 2] = 3.0  # the search wants the dearest
    arch, moves = derive_within_budget(space, alpha, [cost])
    assert cost.predict_arch([arch])[0] <= 1.2 and moves[0] == space.derive(alpha) and isinstance(arch, Arch)
    assert all(0 <= c < n for c, n in zip(arch.choices, COUNTS))


@pytest.fixture(scope="module")
def digits():
    from hwnas.data import load_dataset

    return load_dataset("digits", seed=0, limit=96)


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_steps_on_a_ragged_supernet(name, space, digits):
    archs = all_archs(space)
    lookup = get_predictor("lookup", space=space).fit(space.encode_many(archs), synthetic_cost(archs))
    cost = HardwareCost(space, "latency_ms", 1.2, predictor=lookup)
    if not get_strategy(name).requires <= space.capabilities:  # e.g. growing needs "grow": refused in one line
        with pytest.raises(HwnasError, match="does not declare"):
            get_strategy(name)(space, space.supernet(digits.input_shape), [cost], seed=0)
        return
    strat = get_strategy(name)(space, space.supernet(digits.input_shape), [cost], seed=0)
    before = strat.alpha.detach().clone()
    out = strat.step((digits.x_train[:16], digits.y_train[:16]), (digits.x_val[:16], digits.y_val[:16]))
    assert np.isfinite(out["loss"]) and out["costs"]["latency_ms"] > 0
    mask = torch.as_tensor(space.alpha_mask)
    assert (strat.alpha.detach() - before)[mask].abs().max() > 1e-5
    assert all(0 <= c < n for c, n in zip(space.derive(strat.alpha).choices, COUNTS))


def test_a_budgeted_differentiable_search_on_a_ragged_space(space, digits):
    from hwnas.search import BudgetSearchOptions, search_under_budget

    archs = all_archs(space)
    mlp = get_predictor("mlp", space=space, epochs=80).fit(space.encode_many(archs), synthetic_cost(archs))
    budget = float(np.percentile(synthetic_cost(archs), 30))
    r = search_under_budget(space, digits, {"latency_ms": mlp}, {"latency_ms": budget},
                            BudgetSearchOptions(strategy="darts", epochs=3, seed=0, batch_size=32))
    assert r.arch.space == "toy-ragged" and all(0 <= c < n for c, n in zip(r.arch.choices, COUNTS))
    assert r.predicted["latency_ms"] <= budget and r.measured is None and not r.within_budget
    row = r.history[-1]
    assert row["tracks"] == {"latency_ms": "relaxed"} and row["multiplier"]["latency_ms"] >= 0
    assert set(row) >= {"cost", "derived_cost", "multiplier", "pull", "derived"}


@pytest.mark.parametrize("name", [n for n in PREDICTORS.names() if n != "transfer"])
def test_hwnas_fit_from_csv_on_a_ragged_space(name, space, tmp_path):
    """`hwnas fit --space toy-ragged --from-csv` for every predictor (transfer needs other devices' measurements,
    which a CSV does not give: it is covered through the library above)."""
    from hwnas.cli import cli

    archs = all_archs(space)
    path = tmp_path / "ragged.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "board"])
        w.writerows([space.to_string(a), f"{v:.6f}"] for a, v in zip(archs, synthetic_cost(archs)))
    out = tmp_path / f"{name}.npz"
    r = CliRunner().invoke(cli, ["fit", "--space", "toy-ragged", "--from-csv", str(path), "--target", "board",
                                  "--predictor", name, "--out", str(out), "--no-plot", "--json"])
    assert r.exit_code == 0, r.output
    assert out.is_file()
    report = json.loads(r.output[r.output.index("{"):])
    assert report["encoding"] in ("onehot", "graph")
    assert report["encoding"] == get_predictor(name, space=space).encoding
    loaded = load_predictor(out)  # the file names its space; loading re-encodes two of its architectures
    assert loaded.encoding == report["encoding"] and loaded.metadata["space"] == space.spec
    assert np.all(np.isfinite(loaded.predict(encode_archs(space, archs[:4], loaded.encoding))))
