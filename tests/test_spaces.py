import csv

import numpy as np
import pytest
import torch

from hwnas import HwnasError, get_space
from hwnas.spaces.analysis import profile_model

ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
INDEX0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"


@pytest.fixture(scope="module")
def space():
    return get_space("nb201:C=4,N=1")


def test_index_zero_is_the_benchmarks(space):
    assert space.to_string(space.arch_at(0)) == INDEX0
    assert space.index(space.from_string(INDEX0)) == 0


def test_every_published_row_maps_to_its_index(space, nb201_data):
    with open(nb201_data / "accuracy.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15625
    for row in rows:
        arch = space.from_string(row["arch"])
        assert space.index(arch) == int(row["index"])
        assert space.to_string(arch) == row["arch"]


def test_round_trip_and_all_distinct(space):
    archs = space.all_archs()
    assert len(set(archs)) == space.size() == 15625
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = space.sample(rng)
        assert space.from_string(space.to_string(a)) == a
        assert space.arch_at(space.index(a)) == a


@pytest.mark.parametrize("bad, words", [
    ("", "node(s)"),
    ("|nor_conv_3x3~0|+|none~0|none~1|", "need 3"),
    ("|conv5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown operation 'conv5x5'"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "must read node 0"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "needs 2"),
    ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "wrapped"),
])
def test_malformed_strings_say_what_is_accepted(space, bad, words):
    with pytest.raises(HwnasError) as e:
        space.from_string(bad)
    assert words in str(e.value)
    assert "\n" not in str(e.value)


def test_encode_is_one_hot_and_relax_matches_layout(space):
    arch = space.from_string(INDEX0)
    code = space.encode(arch)
    assert code.shape == (30,) and code.sum() == 6
    alpha = torch.full(space.alpha_shape, -1e4)
    alpha[torch.arange(6), torch.tensor(arch.choices)] = 1e4
    assert np.allclose(space.relax(alpha).numpy(), code)
    assert space.derive(alpha) == arch
    soft = space.relax(torch.zeros(space.alpha_shape))
    assert torch.allclose(soft, torch.full((30,), 0.2))


def test_neighbours_differ_in_one_decision(space):
    arch = space.arch_at(5)
    nbrs = space.neighbours(arch)
    assert len(nbrs) == 6 * 4
    assert all(sum(a != b for a, b in zip(n.choices, arch.choices)) == 1 for n in nbrs)


@pytest.mark.parametrize("text", [ALL_NONE, INDEX0, "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|"])
def test_build_runs_any_cell_including_no_path(space, text):
    model = space.build(space.from_string(text), (3, 32, 32)).eval()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_input_shapes_the_space_cannot_build(space):
    arch = space.arch_at(0)
    for shape in [(3, 30, 30), (3, 32), (0, 32, 32), (3, 2, 2)]:
        with pytest.raises(HwnasError, match="cannot be built by nb201"):
            space.build(arch, shape)
    assert space.build(arch, (1, 8, 8))(torch.randn(1, 1, 8, 8)).shape == (1, 10)


def test_supernet_mixes_and_selects(space):
    net = space.supernet((1, 8, 8))
    x = torch.randn(3, 1, 8, 8)
    w = torch.softmax(torch.randn(6, 5, requires_grad=True), -1)
    out = net(x, w)
    out.sum().backward()
    assert out.shape == (3, 10)
    hard = torch.zeros(6, 5)
    hard[:, 3] = 1
    assert net(x, hard, active=[3] * 6).shape == (3, 10)


def test_profile_table_is_exact(space):
    rng = np.random.default_rng(1)
    for _ in range(3):
        arch = space.sample(rng)
        fast = space.profile(arch, (3, 32, 32))
        slow = profile_model(space.build(arch, (3, 32, 32)), (3, 32, 32))
        assert fast.macs == slow.macs and fast.params == slow.params
    assert space.flops(space.from_string(ALL_NONE)) < space.flops(space.arch_at(1))


def test_live_edges_prune_what_cannot_reach_the_output(space):
    # node 1 is fed but feeds only `none` edges: its edge is dead; the 0->2 and 2->3 path is live
    arch = space.from_string("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|avg_pool_3x3~2|")
    assert space.live_edges(arch) == [False, True, False, False, False, True]
    assert not any(space.live_edges(space.from_string(ALL_NONE)))


def test_graph_is_a_dag_with_op_labels(space):
    g = space.graph(space.from_string(INDEX0))
    assert g.adjacency.shape == (8, 8) and np.allclose(np.triu(g.adjacency, 1), g.adjacency)
    assert g.ops[0] == "input" and g.ops[-1] == "output"
    assert g.features().sum(axis=1).tolist() == [1.0] * 8


def test_space_settings_and_unknown_space():
    assert get_space("nb201:C=8,N=2,classes=3").spec == "nb201:C=8,N=2,classes=3"
    with pytest.raises(HwnasError, match="known: .*nb201"):
        get_space("darts")
    with pytest.raises(HwnasError, match="accepted: C, N, classes"):
        get_space("nb201:width=3")
    with pytest.raises(HwnasError, match=r"C=0 is not accepted; accepted: an integer 1\.\.4096"):
        get_space("nb201:C=0")


def test_none_edges_are_left_out_of_the_built_cell_not_multiplied_by_zero(tmp_path):
    """A deployed cell does not compute `none` (it adds exactly zero): same outputs as summing every edge's
    operation, and no Mul in the exported graph but one per cell whose node has only `none` edges in."""
    import onnx

    from hwnas.conversion import export_onnx
    from hwnas.spaces.nb201 import EDGES, Cell

    tiny = get_space("nb201:C=4,N=1")
    for text, muls in (("|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|none~0|skip_connect~1|none~2|", 0),
                       ("|none~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|", 1)):
        torch.manual_seed(0)
        model = tiny.build(tiny.from_string(text), (3, 8, 8)).eval()
        x = torch.randn(2, 3, 8, 8)
        cell = model.cells[0]

        def every_edge(h, cell=cell):  # the cell as the benchmark defines it: node j sums all its incoming edges
            nodes = [h]
            for j in (1, 2, 3):
                nodes.append(sum(cell.edges[k](nodes[i]) for k, (i, to) in enumerate(EDGES) if to == j))
            return nodes[3]

        with torch.no_grad():
            h = model.stem(x)
            torch.testing.assert_close(cell(h), every_edge(h), rtol=0, atol=0)
        path = export_onnx(model, (3, 8, 8), tmp_path / f"m{muls}.onnx").path
        ops = [n.op_type for n in onnx.load(str(path)).graph.node]
        cells = sum(isinstance(layer, Cell) for layer in model.cells)  # one per stage here
        assert ops.count("Mul") == muls * cells, ops
