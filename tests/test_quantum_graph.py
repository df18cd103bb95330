"""Issue 14: the circuit space and its processor model (routing, costs), DQAS on circuit tasks, and the HGP-SL
predictor. Simulation needs PennyLane (the `quantum` extra); routing, costs and HGP-SL do not."""
import numpy as np
import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.predictors import encode_archs, get_predictor, load_predictor
from hwnas.predictors.hgp_sl import sparsemax
from hwnas.search.cost import HardwareCost
from hwnas.search.dqas import SampledCost
from hwnas.spaces import get_space
from hwnas.spaces.circuit import NATIVE_SETS, CircuitModel, Gate

torch.set_num_threads(1)


def _pennylane():
    return pytest.importorskip("pennylane", reason="simulating circuits needs PennyLane: install .[quantum]")


@pytest.mark.parametrize("coupling", ["line", "ring", "heavy-hex"])
def test_routed_depth_is_what_the_cost_term_says(coupling):
    qml = _pennylane()
    space = get_space(f"circuit:qubits=5,placeholders=8,coupling={coupling}")
    processor = space.processor
    rng = np.random.default_rng(1)
    archs = [space.sample(rng) for _ in range(12)]
    cost = HardwareCost(space, "depth", 10.0, cost_fn=SampledCost(space, lambda a: space.cost(a, "depth")), mode="cap")
    predicted = cost.predict_arch(archs)
    coupled = {frozenset(e) for e in processor.edges}
    for arch, value in zip(archs, predicted):
        routed, _ = processor.route(space.gates(arch))
        natives = processor.natives(routed)
        assert all(frozenset(w) in coupled for _, w in natives if len(w) == 2)  # every two-qubit gate is coupled
        # PennyLane's own depth of the routed native circuit (stand-in gates on the same wires)
        ops = [qml.CNOT(list(w)) if len(w) == 2 else qml.RZ(0.1, w[0]) for _, w in natives]
        depth = qml.tape.QuantumScript(ops).graph.get_depth() if ops else 0
        assert value == space.cost(arch, "depth") == depth
        assert space.cost(arch, "two_qubit_gates") == sum(len(w) == 2 for _, w in natives)
    # the relaxed term is differentiable in alpha (score-function gradient)
    alpha = torch.zeros(space.alpha_shape, requires_grad=True)
    cost.value(alpha).backward()
    assert alpha.grad[torch.as_tensor(space.alpha_mask)].abs().sum() > 0


def test_routing_keeps_the_circuit_and_costs_the_swaps():
    _pennylane()
    line = get_space("circuit:qubits=4,placeholders=6,coupling=line")
    ring = get_space("circuit:qubits=4,placeholders=6,coupling=ring")
    arch = line.from_string("ry0-cnot0_3-rx2-zz1_3-h3-cnot3_0")
    assert line.metrics(arch)["swaps"] > ring.metrics(ring.from_string(line.to_string(arch)))["swaps"] >= 0
    angles = torch.tensor([0.7, 0.0, 1.1, 0.4, 0.0, 0.0], dtype=torch.float64)
    gates = [Gate(g.kind, g.wires, k) for k, g in enumerate(line.gates(arch))]
    routed = CircuitModel(line.processor, gates, angles)()
    # the same logical circuit on all-to-all hardware needs no SWAPs: the outputs agree
    full = get_space("circuit:qubits=4,placeholders=6,coupling=ring").processor
    assert full.route(gates)[0] != line.processor.route(gates)[0]
    direct = CircuitModel(full, gates, angles)()
    assert torch.allclose(routed, direct, atol=1e-10) and abs(float(routed.detach().abs().pow(2).sum()) - 1) < 1e-10


def test_depolarising_noise_makes_shallower_circuits_win():
    _pennylane()
    from hwnas.search.quantum import get_task

    noisy = get_space("circuit:qubits=3,placeholders=6,noise=0.02")
    task = get_task("ghz", 3)
    short = noisy.from_string("h0-cnot0_1-none-cnot1_2-none-none")
    long = noisy.from_string("h0-cnot0_2-none-cnot0_1-none-none")  # the same state, with SWAPs on the line
    scores = {}
    for name, arch in (("short", short), ("long", long)):
        rho = noisy.build(arch)()
        assert rho.shape == (8, 8) and abs(float(torch.trace(rho).real) - 1) < 1e-9
        scores[name] = task.objective(rho)[1]
    assert noisy.cost(long, "depth") > noisy.cost(short, "depth")
    assert 0.5 < scores["long"] < scores["short"] < 0.99
    clean = get_space("circuit:qubits=3,placeholders=6")
    assert task.objective(clean.build(long)())[1] == pytest.approx(1.0)


def test_dqas_finds_a_ghz_circuit_within_its_depth_budget_on_a_line():
    _pennylane()
    from hwnas.search.quantum import CircuitSearchOptions, baselines, get_task, search_circuit

    space = get_space("circuit:qubits=3,placeholders=4,coupling=line")
    task = get_task("ghz", 3)
    r = search_circuit(space, task, {"depth": 4}, CircuitSearchOptions(seed=0, finetune_steps=60))
    assert r["success"] and r["within_budget"] and r["score"] > 0.99
    arch = space.from_string(r["arch"])
    assert r["depth"] == space.cost(arch, "depth") <= 4
    # the chosen circuit, rebuilt from its string and angles, prepares GHZ
    model = space.build(arch)
    with torch.no_grad():
        model.angles.copy_(torch.tensor(r["angles"], dtype=torch.float64))
    assert task.objective(model())[1] > 0.99
    assert len(r["history"]) == 8 and all(row["multiplier"]["depth"] >= 0 for row in r["history"])
    textbook = baselines(space, task)[0]
    assert textbook["name"] == "ghz-textbook" and textbook["score"] == pytest.approx(1.0)


def test_circuit_space_bad_input_is_one_line():
    space = get_space("circuit")
    arch = space.from_string("h0-cnot0_1-none-zz1_2")
    assert space.to_string(arch) == "h0-cnot0_1-none-zz1_2" and space.ragged
    assert space.parse(space.to_string(space.sample(np.random.default_rng(0)))).space == "circuit"
    for text, match in (("h0-cnot0_1", "needs 4"), ("cnot0_1-h0-none-none", "single-qubit gate"),
                        ("h7-none-none-none", "qubits 0..2")):
        with pytest.raises(HwnasError, match=match):
            space.from_string(text)
    for spec, match in (("circuit:coupling=star", "line, ring, heavy-hex"), ("circuit:qubits=20", "2..8"),
                        ("circuit:native=u3", ", ".join(NATIVE_SETS)), ("circuit:noise=0.9", r"\[0, 0.5\)")):
        with pytest.raises(HwnasError, match=match):
            get_space(spec)
    rng = np.random.default_rng(3)
    assert all(space.arch_at(space.index(a)) == a for a in (space.sample(rng) for _ in range(20)))
    with pytest.raises(HwnasError, match="takes no input data"):  # profile, export and training refuse
        space.check_input_shape(space.default_input_shape)
    from hwnas.search.quantum import check_budgets, get_task

    with pytest.raises(HwnasError, match="accepted: ghz"):
        get_task("bell", 3)
    with pytest.raises(HwnasError, match="accepted: depth"):
        check_budgets({"latency_ms": 1.0})


@pytest.mark.parametrize("args, message", [
    (["--space", "circuit", "--budget-depth", "4"], "needs --task and --budget-depth"),
    (["--space", "nb201", "--task", "ghz", "--budget-depth", "4"], "give --space circuit"),
    (["--space", "circuit", "--task", "ghz", "--budget-depth", "4", "--strategy", "gumbel"], "--strategy dqas"),
    (["--space", "circuit", "--task", "ghz", "--budget-depth", "-1"], "depth budget"),
])
def test_hwnas_search_circuit_bad_input_is_one_line(args, message, tmp_path):
    from click.testing import CliRunner

    from hwnas.cli import cli

    r = CliRunner().invoke(cli, ["search", *args, "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 2 and message in r.output and not (tmp_path / "run").exists()


def test_sparsemax_is_a_sparse_distribution():
    z = torch.tensor([[3.0, 1.0, 0.2, -1.0], [0.1, 0.1, 0.1, 0.1]])
    p = sparsemax(z)
    assert torch.allclose(p.sum(-1), torch.ones(2)) and (p[0] == 0).sum() >= 2 and torch.allclose(p[1], z[1] * 2.5)


def test_hgp_sl_fits_saves_as_data_loads_and_predicts(nb201_data, tmp_path):
    import csv

    space = get_space("nb201")
    with open(nb201_data / "latency_ms.csv", newline="") as f:
        rows = [r for _, r in zip(range(400), csv.DictReader(f))]
    archs = [space.from_string(r["arch"]) for r in rows]
    y = np.array([float(r["pixel3"]) for r in rows])
    X = encode_archs(space, archs, "graph")
    p = get_predictor("hgp-sl", space=space, epochs=40, hidden=32)
    assert p.encoding == "graph"
    p.fit(X[:150], y[:150])
    before = p.predict(X[150:])
    from scipy.stats import spearmanr

    assert spearmanr(before, y[150:])[0] > 0.6  # it ranks unseen architectures
    path = p.save(tmp_path / "hgp.npz", {"space": space.spec, "target": "latency_ms"})
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    q = load_predictor(path)
    assert q.name == "hgp-sl" and q.settings["blocks"] == p.settings["blocks"]
    np.testing.assert_array_equal(q.predict(X[150:]), before)


def test_hgp_sl_takes_any_spaces_graph():
    space = get_space("circuit:qubits=4,placeholders=6")
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(40)]
    y = np.array([space.cost(a, "depth") + 1.0 for a in archs])
    X = encode_archs(space, archs, "graph")
    pred = get_predictor("hgp-sl", epochs=20, hidden=16).fit(X, y).predict(X)
    assert pred.shape == (40,) and np.all(np.isfinite(pred))
