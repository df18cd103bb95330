"""Searches that use their budget: from an architecture measured well under budget, discretisation climbs to
costlier neighbours predicted within budget and at least as accurate (one-shot, on the supernet), measuring
the best few for real, and keeps only one measured within budget."""
import numpy as np
import pytest
import torch

from hwnas.data import load_dataset
from hwnas.profilers import TimingProtocol, get_backend, measure_arch
from hwnas.search.climb import CLIMB_BELOW, LOCAL_SCALE, climb, costlier_feasible_neighbours, one_shot_accuracy
from hwnas.search.cost import HardwareCost
from hwnas.spaces import get_space

torch.set_num_threads(1)
SPEC = "nb201:C=4,N=1,classes=10"
PER_OP = np.array([0.0, 0.05, 0.6, 1.5, 0.3], np.float32)  # none, skip, conv1x1, conv3x3, pool: like a latency table


@pytest.fixture(scope="module")
def setup():
    space = get_space(SPEC)
    data = load_dataset("digits", seed=0, limit=256)
    torch.manual_seed(0)
    supernet = space.supernet(data.input_shape)
    return space, data, supernet


def scorer(space, supernet, data):
    return lambda archs: one_shot_accuracy(space, supernet, archs, data.x_val, data.y_val)


def cost(space, budget):
    return HardwareCost(space, "latency_ms", budget, table=np.tile(PER_OP, (space.alpha_shape[0], 1)))


def test_costlier_neighbours_are_feasible_and_cost_more(setup):
    space, _, _ = setup
    c = cost(space, 4.0)
    start = space.from_string(space.to_string(space.sample(np.random.default_rng(3))))
    here = c.predict_arch([start])[0]
    nbrs = costlier_feasible_neighbours(space, [c], start, exclude=set(), limit=10_000)
    assert nbrs and all(here < c.predict_arch([n])[0] <= 4.0 for n in nbrs)
    changed = [sum(x != y for x, y in zip(n.choices, start.choices)) for n in nbrs]
    assert set(changed) == {1, 2}  # two decisions reach what lies between one decision's steps
    one_step = [n for n in space.neighbours(start) if here < c.predict_arch([n])[0] <= 4.0]
    # a cell with an operation that reaches nothing is left out: the same cell without it computes the same
    idle = [n for n in one_step if space.has_idle_operations(n)]
    assert idle and not any(space.has_idle_operations(n) for n in nbrs)
    one_step = [n for n in one_step if n not in idle]
    assert set(one_step) <= set(nbrs)
    assert not costlier_feasible_neighbours(space, [c], start, exclude=set(nbrs), limit=10_000)
    # a limit keeps those predicted nearest the budget
    few = costlier_feasible_neighbours(space, [c], start, exclude=set(), limit=5)
    shares = sorted((float(c.predict_arch([n])[0]) for n in nbrs), reverse=True)
    assert len(few) == 5 and sorted(float(c.predict_arch([n])[0]) for n in few) == sorted(shares[:5])
    assert len(costlier_feasible_neighbours(space, [c], start, exclude=set(), reach=1, limit=10_000)) == len(one_step)


def test_an_operation_is_idle_when_it_reaches_nothing_or_nothing_reaches_it(setup):
    space, _, _ = setup
    live = space.from_string("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|")
    dead_end = space.from_string("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|nor_conv_3x3~1|none~2|")
    fed_nothing = space.from_string("|none~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|")
    assert not space.has_idle_operations(live)
    assert space.has_idle_operations(dead_end)  # node 2 never reaches the output: its two operations are idle
    assert space.has_idle_operations(fed_nothing)  # node 1 is zero: the conv1x1 out of it computes a constant
    assert not space.has_idle_operations(space.from_string("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"))
    assert space.to_string(space.without_idle_operations(dead_end)) == \
        "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|none~2|"
    assert space.without_idle_operations(live) == live


def test_the_measured_figure_calibrates_the_neighbours_within_bounds(setup):
    """A predictor 10% pessimistic at the measured architecture rules out neighbours that fit; scaled by
    measured / predicted there they come back, but one fast measurement cannot scale by more than LOCAL_SCALE."""
    space, _, _ = setup
    start = space.from_string(space.to_string(space.sample(np.random.default_rng(3))))
    here = float(cost(space, 1.0).predict_arch([start])[0])
    c = cost(space, 1.05 * here)  # a budget just over the start: few neighbours are predicted within it
    plain = costlier_feasible_neighbours(space, [c], start, exclude=set())
    calibrated = costlier_feasible_neighbours(space, [c], start, exclude=set(), measured={"latency_ms": 0.9 * here})
    assert set(plain) < set(calibrated)  # the neighbours predicted up to 1.05 / 0.9 of the start fit now
    lo = LOCAL_SCALE[0]
    wild = costlier_feasible_neighbours(space, [c], start, exclude=set(), measured={"latency_ms": 0.1 * here})
    assert all(lo * c.predict_arch([n])[0] <= c.budget for n in wild)  # scaled by 0.9 at most, not by 0.1


def test_what_the_climb_measured_recalibrates_its_next_candidates(setup):
    """Candidates measured 8% over their predictions (a predictor optimistic here) make the next round's
    predictions 8% higher: those that would measure over the ceiling are no longer proposed."""
    space, _, _ = setup
    start = space.from_string(space.to_string(space.sample(np.random.default_rng(3))))
    here = float(cost(space, 1.0).predict_arch([start])[0])
    c = cost(space, 1.25 * here)
    first = costlier_feasible_neighbours(space, [c], start, exclude=set(), measured={"latency_ms": here}, limit=10_000)
    observed = {a: {"latency_ms": 1.08 * float(c.predict_arch([a])[0])} for a in first[:6]}
    again = costlier_feasible_neighbours(space, [c], start, exclude=set(), measured={"latency_ms": here},
                                         observed=observed, limit=10_000)
    assert again and set(again) < set(first)  # the median ratio over start (1.0) and six at 1.08 is 1.08
    assert all(1.08 * float(c.predict_arch([a])[0]) <= 0.975 * c.budget for a in again)


def test_one_shot_accuracy_leaves_the_supernet_as_it_was(setup):
    space, data, supernet = setup
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    archs = [space.sample(np.random.default_rng(i)) for i in range(3)]
    acc = one_shot_accuracy(space, supernet, archs, data.x_val, data.y_val)
    assert acc.shape == (3,) and np.all((acc >= 0) & (acc <= 1))
    assert all(torch.equal(before[k], v) for k, v in supernet.state_dict().items())


def test_climb_measures_costlier_candidates_and_keeps_only_one_measured_within_budget(setup):
    space, data, supernet = setup
    backend = get_backend("onnxruntime-cpu", threads=1)
    start = space.from_string("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|"
                              "skip_connect~2|")
    budget = 1e3  # ms: every architecture of this tiny space is measured within it, so the test does not hang on noise
    c = cost(space, budget)

    def measure(arch):  # a real measurement's energy; its latency from the table, 5% slower (timing noise on
        # 0.05 ms networks could make a costlier cell measure cheaper, and the climb keeps only costlier ones)
        m = measure_arch(space, arch, backend, data.input_shape, 1, TimingProtocol.quick())
        return {"latency_ms": 1.05 * float(c.predict_arch([arch])[0]), "energy_mj": m.energy_mj}, True

    first = measure(start)[0]
    assert first["latency_ms"] / budget < CLIMB_BELOW
    arch, measured, attempts = climb(space, [c], scorer(space, supernet, data), start, first, measure, rounds=1, measure_best=2)
    assert 1 <= len(attempts) <= 2 and all(a["climb"] and a["within_budget"] for a in attempts)
    assert all(a["predicted"]["latency_ms"] > c.predict_arch([start])[0] for a in attempts)
    assert arch != start and space.to_string(arch) in {a["arch"] for a in attempts}
    chosen = next(a for a in attempts if a["arch"] == space.to_string(arch))
    assert chosen["one_shot_accuracy"] == max(a["one_shot_accuracy"] for a in attempts)
    assert measured == chosen["measured"]
    # candidates predicted costlier that measure cheaper than the start are not kept: the budget used only rises
    arch, measured, attempts = climb(space, [c], scorer(space, supernet, data), start, first,
                                     lambda a: ({"latency_ms": 0.5 * first["latency_ms"]}, True), rounds=2)
    assert attempts and arch == start and measured == first


def test_no_climb_once_the_budget_is_used(setup):
    space, data, supernet = setup
    start = space.sample(np.random.default_rng(0))
    used = {"latency_ms": 0.97}

    def measure(arch):  # never called: the start already uses 97% of the budget
        raise AssertionError(arch)

    assert climb(space, [cost(space, 1.0)], scorer(space, supernet, data), start, used, measure) == (start, used, [])
