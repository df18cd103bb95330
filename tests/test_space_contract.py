"""Published FLOPs and parameter counts (NAS-Bench-201's convention), the analytic memory estimate and the limit
it is checked against, bounded macro settings, and a budget controller that settles with a multiplier >= 0."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.search.cost import HardwareCost, total_loss
from hwnas.spaces import get_space
from hwnas.spaces.analysis import profile_model
from hwnas.spaces.base import memory_limit

torch.set_num_threads(1)
ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture(scope="module")
def nb201():
    return get_space("nb201:C=16,N=5,classes=10")


# NAS-Bench-201's published figures (C=16, N=5, 32x32, 10 classes): MFLOPs and M parameters
@pytest.mark.parametrize(("arch", "mflops", "mparams"), [
    (ALL_CONV3, 220.11969, 1.531546),
    (0, 15.64737, 0.129306),
    (ALL_NONE, 7.78305, 0.073306),
])
def test_benchmark_flops_and_parameters_match_the_published_values(nb201, arch, mflops, mparams):
    a = nb201.parse(arch)
    assert nb201.flops(a, (3, 32, 32), convention="benchmark") / 1e6 == pytest.approx(mflops, rel=1e-4)
    assert nb201.profile(a, (3, 32, 32)).params / 1e6 == pytest.approx(mparams, rel=1e-4)
    assert nb201.param_count(a) / 1e6 == pytest.approx(mparams, rel=1e-4)  # analytic, before building
    # the fast table-based count equals the count on the built network, in both conventions
    built = profile_model(nb201.build(a, (3, 32, 32)), (3, 32, 32))
    assert built.benchmark_flops == pytest.approx(nb201.flops(a, convention="benchmark"), rel=1e-9)
    assert built.macs == pytest.approx(nb201.flops(a), rel=1e-9)


def test_full_convention_counts_batchnorm_and_pooling_and_unknown_convention_is_refused(nb201):
    pool = nb201.parse("|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|")
    none = nb201.parse(ALL_NONE)
    # pooling costs nothing in the benchmark's convention, and something in the full one
    assert nb201.flops(pool, convention="benchmark") == pytest.approx(nb201.flops(none, convention="benchmark"))
    assert nb201.flops(pool) > 1.5 * nb201.flops(none)
    with pytest.raises(HwnasError, match="accepted: full, benchmark"):
        nb201.flops(none, convention="published")


def test_supernet_parameter_count_is_exact_before_building():
    space = get_space("nb201:C=8,N=2,classes=7")
    assert space.param_count(None) == sum(p.numel() for p in space.supernet((3, 16, 16)).parameters())


@pytest.mark.parametrize("spec", ["nb201:C=100000", "nb201:N=100000", "nb201:C=99999999999999999999999",
                                  "nb201:C=-3", "nb201:classes=0", "nb201:C=8.5", "nb201:N=abc"])
def test_absurd_macro_settings_are_refused_in_one_line_with_the_range(spec):
    with pytest.raises(HwnasError) as e:
        get_space(spec)
    message = str(e.value)
    assert "\n" not in message and "accepted: an integer" in message and len(message) < 300


def test_what_cannot_fit_is_refused_before_building_naming_the_limit(monkeypatch):
    monkeypatch.setenv("HWNAS_MEMORY_LIMIT_GB", "4")
    assert memory_limit() == (4e9, "HWNAS_MEMORY_LIMIT_GB")
    big = get_space("nb201:C=4096,N=64")
    with pytest.raises(HwnasError, match="over the memory limit of 4 GB") as e:
        big.build(big.parse(ALL_CONV3))
    assert "\n" not in str(e.value) and "HWNAS_MEMORY_LIMIT_GB" in str(e.value)
    with pytest.raises(HwnasError, match="memory limit"):
        big.supernet()
    space = get_space("nb201:C=8,N=1")
    space.check_fits((3, 32, 32), 1)  # fits
    for shape, batch in [((3, 100000, 100000), 1), ((3, 32, 32), 100_000_000), ((10_000_000, 32, 32), 1)]:
        with pytest.raises(HwnasError, match="needs about .* GB \\(estimated\\), over the memory limit"):
            space.check_fits(shape, batch)
    with pytest.raises(HwnasError, match="batch 0 is not accepted"):
        space.check_fits((3, 32, 32), 0)
    monkeypatch.setenv("HWNAS_MEMORY_LIMIT_GB", "lots")
    with pytest.raises(HwnasError, match="HWNAS_MEMORY_LIMIT_GB='lots' is not accepted"):
        memory_limit()
    monkeypatch.delenv("HWNAS_MEMORY_LIMIT_GB")
    limit, source = memory_limit()
    assert limit > 1e8 and "of RAM" in source


def test_memory_estimate_grows_with_batch_input_and_supernet():
    space = get_space("nb201:C=8,N=1")
    arch = space.parse(ALL_CONV3)
    one = space.memory_estimate(arch, (3, 32, 32), 1, training=True)
    assert space.memory_estimate(arch, (3, 32, 32), 8, training=True) > 4 * one
    assert space.memory_estimate(arch, (3, 64, 64), 1, training=True) > 2.5 * one
    assert space.memory_estimate(None, (3, 32, 32), 1) > 1.5 * one  # the supernet, trained
    assert space.memory_estimate(space.parse(ALL_NONE), (3, 32, 32), 1, training=True) < one
    run = space.memory_estimate(arch, (3, 32, 32), 64)  # measured (inference): far less than training
    assert space.memory_estimate(arch, (3, 32, 32), 1) < run < space.memory_estimate(arch, (3, 32, 32), 64, training=True)
    assert space.memory_estimate(arch, (3, 32, 32), 1) > 4 * space.param_count(arch)


def test_the_multiplier_settles_and_is_never_negative():
    """A simple case: a task loss that prefers the expensive operations, a budget at 40% of the dearest cell. Over
    15 epochs the multiplier changes direction at most 3 times, and neither it nor the pull goes below 0."""
    space = get_space("nb201:C=4,N=1")
    per_op = np.array([0.0, 0.05, 0.6, 1.5, 0.3], np.float32)
    table = np.tile(per_op, (6, 1))
    cost = HardwareCost(space, "latency_ms", 3.6, table=table)
    assert cost.track == "relaxed" and cost.mode == "target"
    alpha = torch.zeros(space.alpha_shape, requires_grad=True)
    opt = torch.optim.Adam([alpha], lr=0.05)
    reward = torch.tensor(table)
    per_epoch, values = [], []
    for _ in range(15):
        for _ in range(40):
            task = -(torch.softmax(alpha, -1) * reward).sum() / 4
            loss, now = total_loss(task, alpha, [cost])
            opt.zero_grad()
            loss.backward()
            opt.step()
            cost.update_multiplier(now["latency_ms"])
            assert cost.multiplier >= 0 and cost.pull >= 0 and not (cost.multiplier > 0 and cost.pull > 0)
            values.append(now["latency_ms"])
        per_epoch.append(cost.multiplier - cost.pull)
    steps = np.sign(np.diff(per_epoch))
    steps = steps[steps != 0]
    assert int((np.diff(steps) != 0).sum()) <= 3, per_epoch
    assert abs(np.mean(values[-40:]) / 3.6 - 1) < 0.05  # and it lands at the budget
