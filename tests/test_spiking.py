"""Spiking spaces (snn-transformer, nb201-snn), the spiking backend (spike-ops energy) and training-free search."""
import numpy as np
import pytest
import torch

pytest.importorskip("snntorch", reason="spiking networks need snnTorch: install .[spiking]")

from hwnas.errors import HwnasError
from hwnas.profilers import TimingProtocol, get_backend, profile_space
from hwnas.profilers.energy import PJ_PER_AC, PJ_PER_MAC
from hwnas.profilers.spiking import count_spike_ops, real_batch
from hwnas.spaces import get_space
from hwnas.store import Store

SNN_T = "snn-transformer:depth=2,embed_min=8,embed_max=16,embed_step=8,T=2"
SNN_201 = "nb201-snn:C=4,N=1,T=2"
SHAPE = (1, 8, 8)
TINY = TimingProtocol(warmup_runs=1, min_runs=3, max_runs=3, max_seconds=0.2)


@pytest.fixture(scope="module")
def spiking_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spiking")
    store = Store(f"sqlite:///{folder / 'measurements.db'}")
    backend = get_backend("spiking")
    for spec, n in ((SNN_T, 6), (SNN_201, 3)):
        profile_space(get_space(spec), backend, store, n, input_shape=SHAPE, protocol=TINY)
    return folder, store


@pytest.mark.parametrize("spec", [SNN_T, SNN_201])
def test_spiking_backend_stores_energy_and_latency_with_method_spike_ops(spiking_store, spec):
    _, store = spiking_store
    rows = store.measurements(space=get_space(spec).spec)
    assert len(rows) >= 3
    for m in rows:
        assert m.energy_method == "spike-ops" and m.energy_mj > 0 and m.latency_ms > 0
        rates = m.extra["firing_rates"]
        assert rates and all(0 <= r <= 1 for r in rates.values())
        expected = (m.extra["macs_non_spiking"] * PJ_PER_MAC + m.extra["synaptic_ops"] * PJ_PER_AC) * 1e-9
        assert m.energy_mj == pytest.approx(expected)
        # spikes make operations sparse: the spiking layers cost fewer ops than their dense MACs
        assert m.extra["synaptic_ops"] < m.extra["spiking_layer_macs"]
    assert any(m.extra["synaptic_ops"] > 0 for m in rows)  # a cell of none/skip edges can be silent, not all


def test_a_network_without_neurons_counts_only_macs():
    space = get_space("nb201:C=4,N=1")
    counts = count_spike_ops(space.build(space.parse(0), SHAPE).eval(), real_batch(SHAPE, 4))
    assert counts.sops == 0 and counts.firing_rates == {} and counts.macs > 0


def test_snn_transformer_names_indexes_and_canonical_forms():
    space = get_space(SNN_T)
    archs = space.all_archs()
    assert len(archs) == space.size() == len({space.to_string(a) for a in archs})
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = space.sample(rng)
        assert space.from_string(space.to_string(a)) == a and space.arch_at(space.index(a)) == a
    assert get_space("snn-transformer").options_per_decision()[:2] == (10, 5)  # AutoST tiny: depth 1-10, 5 widths
    with pytest.raises(HwnasError, match="embed in"):
        space.from_string("e24-h4m3")
    with pytest.raises(HwnasError, match="supernet"):
        space.supernet(SHAPE)


def test_nb201_snn_supernet_trains_through_the_spikes():
    space = get_space(SNN_201)
    net = space.supernet(SHAPE)
    alpha = torch.zeros(space.alpha_shape, requires_grad=True)
    out = net(real_batch(SHAPE, 4), space.mixing_weights(alpha))
    out.sum().backward()
    assert out.shape == (4, 10) and alpha.grad is not None and torch.isfinite(alpha.grad).all()


def test_training_free_search_under_an_energy_budget_is_measured_within_it(spiking_store):
    from hwnas.search.api import SearchOptions
    from hwnas.search.training_free import search_training_free

    folder, store = spiking_store
    spec = get_space(SNN_T, classes=10).spec
    energies = sorted(m.energy_mj for m in store.measurements(space=spec))
    budget = float(energies[len(energies) // 2])
    r = search_training_free(SearchOptions(budget_mj=budget, space=SNN_T, backend="spiking", strategy="training-free",
                                           retrain_epochs=0, protocol="quick", run_dir=folder), candidates=30)
    assert r["within_budget"] and r["measured"]["energy_mj"] <= budget and r["energy_method"] == "spike-ops"
    assert (folder / "search.json").is_file()
