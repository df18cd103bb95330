"""The recurrent cell space (strings, encodings, build, supernet, graph, ONNX parity), growing by network morphism
(the function does not change when a node is added) and the macrodata forecasting split."""
import numpy as np
import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.search.growing import Growing
from hwnas.search.strategy import get_strategy
from hwnas.spaces import Arch, get_space

torch.set_num_threads(1)
LSTM_LIKE = "sigmoid(x,h)|tanh(x,h)|hadamard(n1,n2)"


@pytest.fixture(scope="module")
def space():
    return get_space("rnn-cell:H=8,nodes=3,classes=2")


def test_strings_round_trip_and_encodings_are_ragged_one_hots(space):
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(50)] + [space.from_string(LSTM_LIKE)]
    for arch in archs:
        assert space.from_string(space.to_string(arch)) == arch
        code = space.encode(arch)  # one-hot of the depth and of each node within it, zeros beyond
        assert code.shape == (space.code_length,) and code.sum() == 1 + 3 * (arch.choices[0] + 1)
    assert space.ragged and space.options_per_decision()[:4] == (3, 2, 2, 5)
    assert space.cell_count() == 20 + 20 * 45 + 20 * 45 * 80 and space.size() is None
    assert space.to_string(space.from_string(LSTM_LIKE)) == LSTM_LIKE
    # a derived architecture is canonical: the slots beyond its depth read option 0
    alpha = torch.randn(space.alpha_shape, generator=torch.Generator().manual_seed(1))
    alpha[0] = torch.tensor([5.0, 0.0, 0.0, 0.0, 0.0])
    derived = space.derive(alpha)
    assert derived.choices[4:] == (0,) * 6 and space.from_string(space.to_string(derived)) == derived
    # neighbours are distinct cells, none equal to the start
    neighbours = space.neighbours(space.from_string(LSTM_LIKE))
    strings = [space.to_string(a) for a in neighbours]
    assert len(set(strings)) == len(strings) and LSTM_LIKE not in strings


def test_relaxed_code_is_the_expected_code_of_a_sampled_cell(space):
    """An additive cost on the relaxed code is the exact expected cost: check against sampling from alpha."""
    g = torch.Generator().manual_seed(3)
    alpha = space.masked_logits(torch.randn(space.alpha_shape, generator=g))
    weights = space.mixing_weights(alpha)
    torch.manual_seed(0)
    draws = torch.stack([torch.multinomial(weights[d], 4000, replacement=True)
                         for d in range(len(space.options_per_decision()))], dim=1)
    codes = space.encode_many([Arch(space.name, tuple(map(int, row))) for row in draws])
    np.testing.assert_allclose(codes.mean(axis=0), space.relax(alpha).numpy(), atol=0.03)


@pytest.mark.parametrize("bad", ["", "tanh(x,h)|" * 4, "tanh(x,n1)", "conv(x,h)", "tanh(x h)", "tanh(x,h)|relu(n2,h)"])
def test_malformed_strings_are_refused_in_one_line(space, bad):
    with pytest.raises(HwnasError, match="malformed rnn-cell architecture") as e:
        space.from_string(bad)
    assert "\n" not in str(e.value)


def test_build_supernet_and_graph(space):
    arch = space.from_string(LSTM_LIKE)
    x = torch.randn(5, 6, 3)
    assert space.build(arch, (6, 3))(x).shape == (5, 2)
    supernet = space.supernet((6, 3))
    assert supernet(x, space.mixing_weights(torch.zeros(space.alpha_shape))).shape == (5, 2)
    g = space.graph(arch)
    assert g.ops == ("x", "h", "sigmoid", "tanh", "hadamard", "output")
    assert g.adjacency[2, 4] == g.adjacency[3, 4] == 1 and g.adjacency[:, -1].sum() == 3
    with pytest.raises(HwnasError, match="accepted: \\(steps, features\\)"):
        space.build(arch, (3, 8, 8))


def test_exported_cell_matches_torch_in_onnx_runtime(space, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime is a core dependency")
    from hwnas.conversion import export_onnx

    torch.manual_seed(0)
    model = space.build(space.from_string("relu(x,h)|hadamard(n1,h)|identity(n2,x)"), (12, 3)).eval()
    export_onnx(model, (12, 3), tmp_path / "cell.onnx", exporter="torchscript")
    session = ort.InferenceSession(str(tmp_path / "cell.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(4, 12, 3)
    out = session.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(out, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)


def _growing(space, **options):
    torch.manual_seed(0)
    supernet = space.supernet((6, 3))
    return get_strategy("growing")(space, supernet, [], seed=0, **options)


def test_growing_a_node_keeps_the_function_and_the_new_node_then_learns(space):
    strategy = _growing(space, start_nodes=1)
    assert isinstance(strategy, Growing) and strategy.supernet.active_nodes == 1
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 6, 3, generator=g), torch.randn(16, 2, generator=g)
    for _ in range(5):  # weights and alpha away from their initial values
        strategy.step((x, y), (x, y))
    for nodes in (2, 3):
        before = strategy.supernet(x, strategy.mixing()).detach()
        loss_before = float(strategy.task_loss((x, y), strategy.mixing())[0].detach())
        strategy.grow()
        assert strategy.supernet.active_nodes == nodes
        after = strategy.supernet(x, strategy.mixing()).detach()
        torch.testing.assert_close(after, before, rtol=1e-6, atol=1e-6)
        assert float(strategy.task_loss((x, y), strategy.mixing())[0].detach()) == pytest.approx(loss_before, rel=1e-6)
        assert strategy.mixing()[0, nodes - 1] > 0  # the deeper option is open, not dead
        strategy.step((x, y), (x, y))
        assert strategy.supernet.gain[nodes - 1].abs().sum() > 0  # the new node's gain gets a gradient
    with pytest.raises(HwnasError, match="already computes all 3 nodes"):
        strategy.grow()


@pytest.mark.parametrize("mode", ["grow-then-prune", "alternate"])
def test_growing_schedules_grow_to_the_space_and_prune(space, mode):
    strategy = _growing(space, start_nodes=1, mode=mode)
    for epoch in range(6):
        strategy.start_epoch(epoch, 6)
    assert strategy.supernet.active_nodes == 3
    kinds = [kind for _, kind, _ in strategy.events]
    assert kinds.count("grow") == 2 and "prune" in kinds
    open_counts = strategy.open.sum(dim=1)
    if mode == "grow-then-prune":  # pruned to one option per decision of the grown cell by the last epoch
        assert int(open_counts.max()) == 1
    assert space.from_string(space.to_string(space.derive(strategy.alpha))) == space.derive(strategy.alpha)
    with pytest.raises(HwnasError, match="accepted: grow-then-prune, alternate"):
        _growing(space, mode="shrink")
    with pytest.raises(HwnasError, match="does not declare 'grow'"):
        get_strategy("growing")(get_space("nb201:C=4,N=1"), get_space("nb201:C=4,N=1").supernet((3, 8, 8)), [])


def test_macrodata_is_split_by_time_and_standardised_on_train_only():
    pytest.importorskip("statsmodels", reason="the forecasting task needs statsmodels: install .[timeseries]")
    from hwnas.timeseries import load_forecast

    data = load_forecast("macrodata", window=8)
    sizes = data.sizes()
    assert data.input_shape == (8, 4) and data.num_classes == 4 and data.y_train.dtype == torch.float32
    assert sizes["train"] > sizes["val"] > 0 and sizes["test"] > 0
    # consecutive windows overlap: each test window starts one quarter after the previous one
    torch.testing.assert_close(data.x_test[1, :-1], data.x_test[0, 1:])
    # the last training window's target is the first validation window's last input (time order, no shuffle)
    torch.testing.assert_close(data.x_val[0, -1], data.y_train[-1])
    assert abs(float(data.x_train[:, -1].mean())) < 0.2  # standardised on the training period
    with pytest.raises(HwnasError, match="accepted: macrodata"):
        load_forecast("airline")
