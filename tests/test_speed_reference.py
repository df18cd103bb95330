"""Speed references (hwnas.profilers.speed): verdicts timed alternately with a fixed network, so that the machine's
speed drift cancels, and every verdict of a run (the search's, the exported file's) judged at one nominal speed."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from hwnas.export import ExportOptions, export_bundle
from hwnas.profilers import TimingProtocol, get_backend, measure_arch, profile_space
from hwnas.profilers.speed import (
    PAIRED_BLOCK,
    SpeedReference,
    reference_near,
    time_paired,
    time_sessions,
    verdict_figures,
)
from hwnas.profilers.timing import time_runs
from hwnas.search.budget import _measure
from hwnas.spaces import get_space
from hwnas.store import Store

SPACE = "nb201:C=4,N=1,classes=10"
SHAPE = (1, 8, 8)
FIXED = TimingProtocol(warmup_runs=2, min_runs=200, max_runs=200, target_rel_ci=0.0, max_seconds=30.0)


def spin(ms: float) -> None:
    """Busy for `ms` milliseconds of wall time (a workload whose cost we know)."""
    end = time.perf_counter() + ms / 1e3
    while time.perf_counter() < end:
        pass


class DriftingMachine:
    """Work that takes `factor` times its nominal time, the factor switching between 1 and 3 every 20 ms: a machine
    whose speed drifts far more than any network's own timing noise."""

    def __init__(self):
        self.t0 = time.perf_counter()

    def factor(self) -> float:
        return 3.0 if int((time.perf_counter() - self.t0) / 0.02) % 2 else 1.0

    def work(self, ms: float):
        return lambda: spin(ms * self.factor())


def test_alternate_timing_cancels_drift_that_sessions_alone_cannot():
    machine = DriftingMachine()
    candidate, reference_work = machine.work(0.2), machine.work(0.1)  # the candidate costs twice the reference
    reference = SpeedReference("ref", "synthetic", nominal_ms=0.1, run=reference_work)
    verdict = reference.verdict(*time_paired(candidate, reference, FIXED))
    assert verdict["ratio"] == pytest.approx(2.0, rel=0.15)
    assert verdict["latency_ms"] == pytest.approx(verdict["ratio"] * 0.1)
    # the candidate alone: sessions land wherever the drift puts them
    alone = [float(np.median(time_runs(candidate, TimingProtocol(2, 20, 20, 0.0, 30.0)))) for _ in range(8)]
    assert max(alone) / min(alone) > 1.5


def test_the_nominal_is_the_fastest_session_and_figures_scale_with_it():
    space = get_space(SPACE)
    backend = get_backend("onnxruntime-cpu", threads=1)
    arch = space.sample(np.random.default_rng(3))
    ref = SpeedReference.make(space, arch, backend, SHAPE, protocol=TimingProtocol.quick())
    assert ref.arch == space.to_string(arch) and ref.space == space.spec and ref.nominal_ms > 0
    m = measure_arch(space, arch, backend, SHAPE, 1, TimingProtocol.quick(), reference=ref)
    speed = m.extra["speed_reference"]
    assert speed["arch"] == ref.arch and speed["nominal_ms"] == ref.nominal_ms
    assert verdict_figures(m)["latency_ms"] == pytest.approx(speed["ratio"] * ref.nominal_ms)
    assert 0.5 < speed["ratio"] < 2.0  # the same network on both sides
    assert m.latency_ms > 0  # the raw median is kept beside it
    # a stored measurement is read at the nominal of the reference asking, and only by the same reference
    doubled = SpeedReference(ref.arch, ref.space, 2 * ref.nominal_ms, ref.run)
    assert doubled.figures(m)["latency_ms"] == pytest.approx(2 * verdict_figures(m)["latency_ms"])
    assert SpeedReference("|other|", ref.space, ref.nominal_ms, ref.run).figures(m) is None


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    space = get_space(SPACE)
    backend = get_backend("onnxruntime-cpu", threads=1)
    store = Store(tmp_path_factory.mktemp("speed") / "m.db")
    profile_space(space, backend, store, 8, "uniform", 0, SHAPE, 1, TimingProtocol.quick())
    return space, backend, store


def test_the_reference_is_the_stored_network_nearest_the_budget(profiled):
    space, backend, store = profiled
    rows = store.measurements(device=backend.device_id(), space=space.spec, input_shape=SHAPE, batch=1)
    lean = [m for m in rows if not space.has_idle_operations(space.from_string(m.arch))]
    target = sorted(m.latency_ms for m in lean)[len(lean) // 2]
    ref = reference_near(space, backend, store, SHAPE, 1, target, TimingProtocol.quick())
    assert ref is not None and ref.arch == next(m.arch for m in lean if m.latency_ms == target)
    # never a cell with idle operations (ONNX drops them: predictions calibrated on it would be off elsewhere)
    idle = [m for m in rows if m not in lean]
    assert idle, "the fixture's 8 cells should include one with an idle operation"
    ref = reference_near(space, backend, store, SHAPE, 1, idle[0].latency_ms, TimingProtocol.quick())
    assert ref.arch in {m.arch for m in lean}
    # nothing stored for the key, or a backend that times alone: no reference (verdicts as before)
    assert reference_near(space, backend, store, (1, 9, 9), 1, target) is None
    assert reference_near(space, get_backend("spiking", require=False), store, SHAPE, 1, target) is None


def test_search_verdicts_are_stored_raw_and_reused_only_against_the_same_reference(profiled):
    space, backend, store = profiled
    ref = reference_near(space, backend, store, SHAPE, 1, 0.1, TimingProtocol.quick())
    arch = space.sample(np.random.default_rng(11))
    protocol = TimingProtocol.quick()
    figures, _ = _measure(space, arch, backend, store, SHAPE, 1, protocol, {"latency_ms": 1.0}, ref)
    row = store.measurements(device=backend.device_id(), space=space.spec, arch=space.to_string(arch))[0]
    speed = row.extra["speed_reference"]
    assert figures["latency_ms"] == pytest.approx(speed["ratio"] * ref.nominal_ms)
    again, new = _measure(space, arch, backend, store, SHAPE, 1, protocol, {"latency_ms": 1.0}, ref)
    assert not new and again == figures  # reused: same reference, protocol satisfied
    other = SpeedReference(space.to_string(arch), space.spec, ref.nominal_ms, ref.run)
    _measure(space, arch, backend, store, SHAPE, 1, protocol, {"latency_ms": 1.0}, other)  # timed afresh
    row = store.measurements(device=backend.device_id(), space=space.spec, arch=space.to_string(arch))[0]
    assert row.extra["speed_reference"]["arch"] == other.arch


def test_the_exported_file_is_judged_against_the_reference(profiled, tmp_path):
    space, backend, store = profiled
    ref = reference_near(space, backend, store, SHAPE, 1, 0.1, TimingProtocol.quick())
    torch.manual_seed(0)
    arch = space.from_string(ref.arch)
    manifest = export_bundle(space, arch, tmp_path / "b", ExportOptions(
        input_shape=SHAPE, protocol=TimingProtocol.quick(), backend=backend, reference=ref,
        budgets={"latency_ms": 1e4}))
    measured = manifest["measured"]
    speed = measured["speed_reference"]
    assert speed["arch"] == ref.arch and measured["latency_raw_ms"] > 0
    assert measured["latency_ms"] == pytest.approx(speed["ratio"] * ref.nominal_ms)
    assert manifest["budget_check"]["latency_ms"]["measured"] == measured["latency_ms"]
    from hwnas.commands.export import _summary_table  # the bundle table says what the figure is

    table = _summary_table("t", manifest)
    rows = dict(zip(table.columns[0].cells, table.columns[1].cells))
    assert "timed alternately with" in rows["speed reference"] and "as timed" in rows["speed reference"]


def test_latency_predictions_are_put_on_the_reference_scale():
    """The predictor learnt profiling's figures at whatever speed the machine had; verdicts are at the reference's
    nominal speed, so the search's predictions are scaled to predict the reference at its nominal (within bounds)."""
    from hwnas.predictors.linear import LookupTablePredictor
    from hwnas.search.budget import REFERENCE_SCALE, calibrate_to_reference
    from hwnas.search.cost import HardwareCost

    space = get_space(SPACE)
    arch = space.sample(np.random.default_rng(0))
    table = LookupTablePredictor.from_table(0.05, np.full(space.alpha_shape, 0.01))
    for nominal, factor in ((0.2, None), (10.0, REFERENCE_SCALE[1]), (1e-4, REFERENCE_SCALE[0])):
        latency = HardwareCost(space, "latency_ms", 1.0, predictor=table)
        energy = HardwareCost(space, "energy_mj", 1.0, predictor=table)
        before = float(latency.predict_arch([arch])[0])
        calibrate_to_reference(space, [latency, energy], SpeedReference(space.to_string(arch), space.spec, nominal,
                                                                        lambda: None))
        expected = nominal if factor is None else before * factor
        assert float(latency.predict_arch([arch])[0]) == pytest.approx(expected)
        assert energy.scale == 1.0  # energy is not timed against the reference


def test_spent_repairs_fall_back_to_stored_cells_timed_against_the_reference(profiled):
    """With a reference, a stored figure taken alone does not count as a verdict; the most probable stored cells
    that fit by their own figures are timed against the reference, and one measured within budget is the answer."""
    from hwnas.predictors.linear import LookupTablePredictor
    from hwnas.search.budget import _measured_fallback
    from hwnas.search.cost import HardwareCost

    space, backend, store = profiled
    rows = store.measurements(device=backend.device_id(), space=space.spec, input_shape=SHAPE, batch=1)
    alone = [m for m in rows if not m.extra.get("speed_reference")]
    budget = 3 * max(m.latency_ms for m in alone)  # every stored cell fits by its own figure, and when re-timed
    ref = reference_near(space, backend, store, SHAPE, 1, budget, TimingProtocol.quick())
    cost = HardwareCost(space, "latency_ms", budget, predictor=LookupTablePredictor.from_table(
        0.05, np.full(space.alpha_shape, 0.01)))
    alpha = torch.zeros(space.alpha_shape)
    attempts = [{"arch": "elsewhere"}]
    r = _measured_fallback(space, alpha, [cost], backend, store, SHAPE, 1, attempts, 0, ref, TimingProtocol.quick())
    assert r is not None and r.within_budget and r.attempts[-1]["fallback"]
    row = store.measurements(device=backend.device_id(), space=space.spec, arch=r.arch_string)[0]
    assert row.extra["speed_reference"]["arch"] == ref.arch
    assert r.measured["latency_ms"] == pytest.approx(ref.figures(row)["latency_ms"])


def test_profiling_against_a_reference_stores_raw_rows_that_predictors_learn_at_its_nominal(tmp_path):
    """profile_space(reference=...) times each architecture alternately with the reference: the row keeps its raw
    median, and `Measurement.learnt` (what fits read) is the figure at the reference's nominal speed."""
    space, backend = get_space(SPACE), get_backend("onnxruntime-cpu", threads=1)
    store = Store(tmp_path / "m.db")
    arch = space.sample(np.random.default_rng(7))
    ref = SpeedReference.make(space, arch, backend, SHAPE, 1, TimingProtocol.quick())
    summary = profile_space(space, backend, store, 5, seed=3, input_shape=SHAPE, reference=ref)
    rows = store.measurements(space=space.spec)
    assert summary.measured_now == len(rows) == 5
    for m in rows:
        speed = m.extra["speed_reference"]
        assert speed["arch"] == ref.arch and speed["nominal_ms"] == ref.nominal_ms
        assert m.learnt("latency_ms") == pytest.approx(speed["ratio"] * ref.nominal_ms) == speed["latency_ms"]
        assert m.learnt("energy_mj") == m.energy_mj and m.latency_ms > 0  # the raw median is kept
    plain = measure_arch(space, arch, backend, SHAPE, 1, TimingProtocol.quick())
    assert "speed_reference" not in plain.extra and plain.learnt("latency_ms") == plain.latency_ms


def test_a_thorough_verdict_spreads_its_runs_over_fresh_sessions():
    """Fresh sessions of one file time differently (where their buffers land); a thorough verdict against a
    reference pools whole A B B A pairs from three sessions, their caps shared, so it costs about one session."""
    space, backend = get_space(SPACE), get_backend("onnxruntime-cpu", threads=1)
    arch = space.sample(np.random.default_rng(5))
    ref = SpeedReference.make(space, arch, backend, SHAPE, 1, TimingProtocol.quick())
    m = measure_arch(space, arch, backend, SHAPE, 1, TimingProtocol.thorough(), reference=ref)
    assert m.extra["speed_reference"]["sessions"] == 3 and m.runs % (2 * PAIRED_BLOCK) == 0
    assert measure_arch(space, arch, backend, SHAPE, 1, TimingProtocol.quick(),
                        reference=ref).extra["speed_reference"]["sessions"] == 1
    # a verdict stored from one session is not as careful as the thorough protocol asks
    thorough = TimingProtocol.thorough()
    assert thorough.satisfied_by(m.extra["protocol"])
    assert not thorough.satisfied_by({**m.extra["protocol"], "sessions": 1})
    calls = [0, 0, 0]

    def counting(k):
        return lambda: calls.__setitem__(k, calls[k] + 1)

    fixed = TimingProtocol(warmup_runs=0, min_runs=60, max_runs=60, target_rel_ci=0.0, max_seconds=30.0)
    times, theirs = time_sessions([(counting(k), None) for k in range(3)], ref, fixed)
    assert calls == [2 * PAIRED_BLOCK] * 3 and len(times) == len(theirs) == 60  # 60 runs shared: one pair each
