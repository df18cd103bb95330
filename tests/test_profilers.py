import numpy as np
import pytest

from hwnas import HwnasError, get_space
from hwnas.profilers import TimingProtocol, available_backends, get_backend, measure_arch, profile_space, sample_archs
from hwnas.profilers.timing import median_ci_halfwidth, summarise, time_runs
from hwnas.store import Store

FAST = TimingProtocol(warmup_runs=2, min_runs=5, max_runs=20, target_rel_ci=0.2, max_seconds=0.2)


@pytest.fixture(scope="module")
def space():
    return get_space("nb201:C=4,N=1")


def test_timing_protocol_stops_within_its_caps():
    times = time_runs(lambda: sum(range(2000)), TimingProtocol(warmup_runs=1, min_runs=10, max_runs=30,
                                                             target_rel_ci=0.0, max_seconds=10))
    assert len(times) == 30 and (times > 0).all()
    s = summarise(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert s["latency_ms"] == 3.0 and s["runs"] == 5 and s["latency_p10_ms"] < s["latency_ms"] < s["latency_p90_ms"]
    assert median_ci_halfwidth(np.ones(50)) == 0.0


def test_backends_report_availability_with_reasons():
    rows = {r["backend"]: r for r in available_backends()}
    assert rows["onnxruntime-cpu"]["available"] and rows["torch-cpu"]["available"]
    for r in rows.values():
        assert r["available"] or r["why"]
    with pytest.raises(HwnasError, match="known:"):
        get_backend("npu-9000")


def test_cuda_backend_says_why_when_absent():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(HwnasError, match="not available here: torch sees no CUDA GPU"):
        get_backend("torch-cuda")


@pytest.mark.parametrize("name", ["onnxruntime-cpu", "torch-cpu"])
def test_measure_gives_a_full_measurement(space, name):
    backend = get_backend(name)
    m = measure_arch(space, space.arch_at(1), backend, (3, 16, 16), protocol=FAST)
    assert m.arch == space.to_string(space.arch_at(1)) and m.space == space.spec and m.backend == name
    assert 0 < m.latency_p10_ms <= m.latency_ms <= m.latency_p90_ms and 5 <= m.runs <= 20
    assert m.energy_mj > 0 and m.energy_method in ("rapl", "analytical-45nm")
    assert m.device == backend.device_id() and m.versions["torch"]


def test_thread_count_is_part_of_the_device_identity():
    assert get_backend("onnxruntime-cpu", threads=1).device_id() != get_backend("onnxruntime-cpu", threads=2).device_id()
    with pytest.raises(HwnasError, match="positive thread count"):
        get_backend("onnxruntime-cpu", threads=0)


def test_samplers_are_deterministic_and_distinct(space):
    a = sample_archs(space, 40, "uniform", seed=3)
    assert a == sample_archs(space, 40, "uniform", seed=3) and len(set(a)) == 40
    assert sample_archs(space, 25, "uniform", seed=3) == a[:25]  # prefix-consistent: more samples extend the list
    f = sample_archs(space, 30, "flops", seed=3, input_shape=(3, 32, 32))
    assert len(set(f)) == 30 and sample_archs(space, 12, "flops", seed=3, input_shape=(3, 32, 32)) == f[:12]
    flops = sorted(space.flops(x, (3, 32, 32)) for x in f)
    all_flops = np.array([space.flops(x, (3, 32, 32)) for x in space.all_archs()])
    # stratified: both tails of the FLOPs range are covered
    assert flops[0] <= np.quantile(all_flops, 0.1) and flops[-1] >= np.quantile(all_flops, 0.9)
    with pytest.raises(HwnasError, match="cannot sample"):
        sample_archs(space, 20000)


def test_profile_space_resumes_without_duplicates(tmp_path, space):
    store = Store(tmp_path / "s.db")
    backend = get_backend("onnxruntime-cpu")
    first = profile_space(space, backend, store, 4, seed=7, input_shape=(3, 16, 16), protocol=FAST)
    assert first.measured_now == 4
    again = profile_space(space, backend, store, 6, seed=7, input_shape=(3, 16, 16), protocol=FAST)
    # a larger request with the same seed extends the stored list: only the 2 new ones are measured
    assert again.measured_now == 2 and again.already_stored == 4 and again.total_in_store == 6
    rerun = profile_space(space, backend, store, 6, seed=7, input_shape=(3, 16, 16), protocol=FAST)
    assert rerun.measured_now == 0
    # stored architectures count whatever strategy or seed chose them: --samples is the total wanted in the store
    flops = profile_space(space, backend, store, 8, "flops", seed=3, input_shape=(3, 16, 16), protocol=FAST)
    assert flops.measured_now == 2 and flops.total_in_store == 8
    fewer = profile_space(space, backend, store, 5, "uniform", seed=99, input_shape=(3, 16, 16), protocol=FAST)
    assert fewer.measured_now == 0 and fewer.total_in_store == 8


def test_profile_space_uses_any_registered_sampler_and_reports_progress(tmp_path, space):
    from hwnas.profilers import SAMPLERS, register_sampler
    from hwnas.reporting import Reporter

    calls = []

    @register_sampler("test-first-indices")
    def first(space, n, rng, input_shape=(), measured=None):
        calls.append(dict(measured or {}))
        return [space.arch_at(i) for i in range(n)]

    class Counting(Reporter):
        steps = 0

        def progress(self, title, total, completed=0):
            outer = self

            class Task:
                def advance(self, steps=1, description=""):
                    outer.steps += steps

            import contextlib

            return contextlib.nullcontext(Task())

    try:
        store, report = Store(tmp_path / "s.db"), Counting()
        summary = profile_space(space, get_backend("onnxruntime-cpu"), store, 3, sampler="test-first-indices",
                                input_shape=(3, 16, 16), protocol=FAST, reporter=report)
        assert summary.measured_now == 3 and report.steps == 3
        assert store.archs() == {space.to_string(space.arch_at(i)) for i in range(3)}
        assert calls[0] == {}  # the first call sees what is stored (nothing yet)
        with pytest.raises(HwnasError, match="unknown sampler 'nosuch'; accepted: .*test-first-indices"):
            profile_space(space, get_backend("onnxruntime-cpu"), store, 3, sampler="nosuch")
    finally:
        SAMPLERS._items.pop("test-first-indices", None)


def test_active_sampler_learns_from_what_is_stored(tmp_path, space):
    from hwnas.profilers import SAMPLERS

    rng = np.random.default_rng(0)
    seeds = SAMPLERS.get("active")(space, 20, rng, (3, 16, 16), {})
    assert len(seeds) == 10 and len(set(seeds)) == 10  # a uniform seed set first
    measured = {a: 1.0 + 0.1 * i for i, a in enumerate(seeds)}
    batch = SAMPLERS.get("active")(space, 20, np.random.default_rng(1), (3, 16, 16), measured)
    assert len(batch) == 5 and not set(batch) & set(measured)  # then batches of new architectures
    assert SAMPLERS.get("active")(space, 10, rng, (3, 16, 16), measured) == []  # enough are stored


def test_a_nan_measurement_stores_nothing_not_even_its_device(tmp_path, space):
    backend = get_backend("onnxruntime-cpu")
    original = type(backend).measure

    def nan_measure(self, *args, **kwargs):
        m = original(self, *args, **kwargs)
        m.latency_ms = float("nan")
        return m

    store = Store(tmp_path / "s.db")
    type(backend).measure = nan_measure
    try:
        with pytest.raises(HwnasError, match="latency_ms holds nan"):
            measure_arch(space, space.arch_at(3), backend, (3, 16, 16), protocol=FAST, store=store)
    finally:
        type(backend).measure = original
    assert store.devices() == [] and store.count() == 0
