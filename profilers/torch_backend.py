"""PyTorch eager backends: what a model costs before export, on the CPU or a CUDA GPU."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hwnas.measurement import Measurement
from hwnas.profilers.base import Backend, random_input, register_backend
from hwnas.profilers.cuda_timing import energy_per_run, time_runs_cuda
from hwnas.profilers.energy import best_meter
from hwnas.profilers.nvml import gpu_state
from hwnas.profilers.timing import TimingProtocol


def gpu_hardware() -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {}
    props = torch.cuda.get_device_properties(0)
    return {"gpu": props.name, "gpu_memory_gb": round(props.total_memory / 2**30, 1),
            "compute_capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda}


@register_backend("torch-cpu")
class TorchCPU(Backend):
    libraries = ("torch",)
    times_against_reference = True

    def why_unavailable(self) -> str | None:
        return None

    def prepare(self, model: nn.Module, input_shape: Sequence[int], batch: int):
        x = torch.from_numpy(random_input(input_shape, batch))

        def run():
            # Thread count is process-wide in torch: set it for each call, put it back after.
            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                with torch.inference_mode():
                    return model(x)
            finally:
                torch.set_num_threads(previous)

        return run, None


@register_backend("torch-cuda")
class TorchCUDA(Backend):
    """PyTorch eager on a CUDA GPU, timed with CUDA events on the current stream after warm-up runs and a
    synchronisation; energy from NVML (the counter, else sampled power) over back-to-back runs. The fingerprint
    adds the GPU's driver, clocks, power limit and temperature (pynvml), which are kept but do not change the
    device id (they vary from run to run, like library versions)."""

    kind = "gpu"
    energy_meters = ("nvml", "nvml-power")
    libraries = ("torch",)
    #: replay the model as one captured CUDA graph (fewer kernel launches; see TorchCUDAGraph)
    cuda_graph = False

    def why_unavailable(self) -> str | None:
        if not torch.cuda.is_available():
            return "torch sees no CUDA GPU" + ("" if torch.version.cuda else " (this torch is a CPU-only build)")
        return None

    def hardware(self) -> dict[str, Any]:
        return {**super().hardware(), **gpu_hardware()}

    def fingerprint(self) -> dict[str, Any]:
        return {**super().fingerprint(), "gpu_state": gpu_state()}

    def device_name(self) -> str:
        return gpu_hardware().get("gpu", "CUDA GPU")

    def prepare(self, model: nn.Module, input_shape: Sequence[int], batch: int):
        model = model.cuda()
        x = torch.from_numpy(random_input(input_shape, batch)).cuda()

        def run():
            with torch.inference_mode():
                return model(x)

        if self.cuda_graph:
            run = capture_graph(run)
        return run, torch.cuda.synchronize

    def measure(self, model: nn.Module, input_shape: Sequence[int], batch: int = 1,
                protocol: TimingProtocol | None = None) -> Measurement:
        self.require()
        protocol = protocol or TimingProtocol()
        run, _ = self.prepare(model.eval(), tuple(input_shape), int(batch))
        stream = torch.cuda.current_stream()
        times = time_runs_cuda(run, stream, protocol)
        extra: dict[str, Any] = {"timer": "cuda-events", "cuda_graph": self.cuda_graph,
                                 "gpu_state": {k: v for k, v in gpu_state().items()
                                               if k in ("sm_clock_mhz", "memory_clock_mhz", "temperature_c")}}
        energy = None
        meter = best_meter(self.energy_meters)
        if meter is not None:
            per_run, reading, runs = energy_per_run(meter, run, stream)
            energy, extra["energy"] = (per_run, meter.method), reading.per_run(runs)
        return self._record(times, model, input_shape, batch, protocol, energy, extra)


@register_backend("torch-cuda-graph")
class TorchCUDAGraph(TorchCUDA):
    """torch-cuda with the forward pass captured once as a CUDA graph and replayed (launch overhead removed)."""

    cuda_graph = True


def capture_graph(run, warmup: int = 3):
    """`run` captured as a CUDA graph (after warm-up on a side stream, as torch requires); returns a function
    that replays it. The input tensor `run` reads is fixed, so the graph's static input is that tensor."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()

    def replay():
        graph.replay()

    return replay
