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


def test_bigger_networks_take_longer(space):
    backend = get_backend("onnxruntime-cpu")
    small = measure_arch(space, space.from_string("|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|"),
                         backend, (3, 32, 32), protocol=FAST)
    big = get_space("nb201:C=32,N=2")
    large = measure_arch(big, big.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|"
                                              "nor_conv_3x3~1|nor_conv_3x3~2|"), backend, (3, 32, 32), protocol=FAST)
    assert large.latency_ms > 3 * small.latency_ms


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
