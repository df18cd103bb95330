"""torch-cuda timing with CUDA events, CUDA graphs and the GPU fingerprint; skipped where no GPU is."""
import pytest
import torch

from hwnas.profilers import TimingProtocol, get_backend
from hwnas.spaces import get_space

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA GPU here (torch.cuda.is_available() is False): torch-cuda cannot run")


@pytest.mark.parametrize("name", ["torch-cuda", "torch-cuda-graph"])
def test_torch_cuda_is_timed_with_events_and_fingerprinted(name):
    backend = get_backend(name)
    space = get_space("nb201:C=8,N=1")
    m = backend.measure(space.build(space.parse(0), (3, 32, 32)), (3, 32, 32), 1,
                        TimingProtocol(warmup_runs=3, min_runs=5, max_runs=5))
    assert m.extra["timer"] == "cuda-events" and m.extra["cuda_graph"] == (name == "torch-cuda-graph")
    assert m.latency_ms > 0 and m.energy_mj > 0
    fp = backend.fingerprint()
    assert fp["gpu"] and "gpu_state" in fp
    if "nvml" not in fp["gpu_state"]:  # pynvml and a driver: the state is recorded
        assert {"driver", "power_limit_w", "temperature_c"} <= set(fp["gpu_state"])
