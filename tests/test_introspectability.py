"""Introspectability as an objective (hwnas.search.introspectability): the class-separation surrogate on known
features, on a briefly trained tiny network, jointly optimised with error by NSGA-II, and captum attribution maps."""
import numpy as np
import pytest
import torch

from hwnas.search.introspectability import class_separation, introspectability, short_training_metrics
from hwnas.search.multi_objective import Objective, StudySpec, run_multi_objective
from hwnas.search.objectives import ShortTrainingMetric
from hwnas.spaces import get_space

SPEC = "nb201:C=4,N=1"
torch.set_num_threads(1)


def test_class_separation_orders_separated_over_mixed_features_and_ignores_scale():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(25)
    centres = 5.0 * torch.eye(4)[labels]
    noise = torch.randn(100, 4, generator=g)
    separated, mixed = class_separation(centres + noise, labels), class_separation(noise, labels)
    assert 0.0 <= mixed < separated < 1.0
    assert class_separation(10 * (centres + noise), labels) == pytest.approx(separated)
    assert class_separation(noise, torch.zeros(100, dtype=torch.long)) == 0.0  # one class: nothing to separate


def test_a_trained_network_separates_classes_better_than_an_untrained_one():
    space = get_space(SPEC, classes=10)
    arch = space.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_3x3~1|"
                             "skip_connect~2|")
    m = short_training_metrics(SPEC + ",classes=10", space.to_string(arch), "digits", epochs=3, limit=300)
    from hwnas.search.introspectability import _dataset

    data = _dataset("digits", 0, 300)
    torch.manual_seed(0)
    untrained = introspectability(space.build(arch, data.input_shape), data.x_test, data.y_test)
    assert 0.0 <= untrained < m["introspectability"] < 1.0
    assert m["accuracy"] > 0.3  # it did learn (chance is 0.1)


def test_nsga2_optimises_introspectability_jointly_with_error():
    spec = StudySpec(SPEC, [Objective("error", ShortTrainingMetric("error", SPEC, "digits", 1, 100)),
                            Objective("introspectability", ShortTrainingMetric("introspectability", SPEC, "digits", 1,
                                                                               100))], population=2, seed=0)
    result = run_multi_objective(spec, trials=4)
    assert result.objectives == ["error", "introspectability"] and result.front
    for p in result.points:
        assert 0.0 <= p.values["error"] <= 1.0 and 0.0 <= p.values["introspectability"] < 1.0


def test_attribution_maps_of_the_front_extremes(tmp_path):
    pytest.importorskip("captum", reason="attribution maps need captum: install .[moo]")
    from hwnas.search.introspectability import attribution_maps

    space = get_space(SPEC)
    rng = np.random.default_rng(0)
    archs = [("low", space.to_string(space.sample(rng))), ("high", space.to_string(space.sample(rng)))]
    png = attribution_maps(SPEC, archs, tmp_path / "attributions.png", epochs=1, limit=100, samples=2)
    data = (tmp_path / "attributions.png").read_bytes()
    assert png.endswith("attributions.png") and data.startswith(b"\x89PNG") and len(data) > 2000
