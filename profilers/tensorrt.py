"""TensorRT backend: the model is exported to ONNX, built into an engine (fp16 by default) and timed on the GPU
with CUDA events around `execute_async_v3`. Energy comes from the GPU's NVML counter where it has one.

Importing this module never needs TensorRT or CUDA; `why_unavailable()` says what is missing."""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from hwnas.conversion import export_onnx
from hwnas.measurement import Measurement
from hwnas.profilers.base import Backend, random_input, register_backend
from hwnas.profilers.cuda_timing import energy_per_run, time_runs_cuda
from hwnas.profilers.energy import best_meter
from hwnas.profilers.tensorrt_engine import DEFAULT_WORKSPACE_MB, TensorRTRunner, build_engine, tensorrt_unavailable
from hwnas.profilers.timing import TimingProtocol


@register_backend("tensorrt")
class TensorRTBackend(Backend):
    kind = "gpu"
    energy_meters = ("nvml", "nvml-power")
    libraries = ("tensorrt", "torch", "onnx")
    runs_onnx = True

    def __init__(self, threads: int = 1, fp16: bool = True, workspace_mb: int = DEFAULT_WORKSPACE_MB, **options: Any):
        super().__init__(threads=threads, **options)
        self.fp16 = bool(fp16)
        self.workspace_mb = int(workspace_mb)

    def why_unavailable(self) -> str | None:
        return tensorrt_unavailable()

    def hardware(self) -> dict[str, Any]:
        from hwnas.profilers.torch_backend import gpu_hardware

        # Engine precision changes speed as much as the GPU does, so it is part of the device identity.
        return {**super().hardware(), **gpu_hardware(), "precision": "fp16" if self.fp16 else "fp32"}

    def device_name(self) -> str:
        from hwnas.profilers.torch_backend import gpu_hardware

        return f"{gpu_hardware().get('gpu', 'CUDA GPU')} (TensorRT {'fp16' if self.fp16 else 'fp32'})"

    # --- measuring -------------------------------------------------------------------------------------------
    def prepare(self, model: nn.Module, input_shape: Sequence[int], batch: int):
        runner = self._bound_runner(self._engine_from_model(model, input_shape, batch), input_shape, batch)
        return runner.enqueue, runner.stream.synchronize

    def build(self, onnx_path: str | Path, input_shape: Sequence[int], batch: int = 1) -> bytes:
        return build_engine(onnx_path, input_shape, fp16=self.fp16, opt_batch=batch,
                            max_batch=max(int(batch), 64), workspace_mb=self.workspace_mb)

    def _engine_from_model(self, model: nn.Module, input_shape: Sequence[int], batch: int) -> bytes:

        with tempfile.TemporaryDirectory(prefix="hwnas-trt-") as tmp:
            path = export_onnx(model, input_shape, Path(tmp) / "model.onnx",
                               exporter=self.options.get("exporter", "auto")).path
            return self.build(path, input_shape, batch)

    def _bound_runner(self, engine: bytes | str | Path, input_shape: Sequence[int], batch: int) -> TensorRTRunner:
        """A runner whose input is bound to a fixed random batch on the GPU, ready to `enqueue()`."""
        import torch

        runner = TensorRTRunner(engine)
        runner.bind(torch.from_numpy(random_input(tuple(input_shape), int(batch))).cuda())
        return runner

    def measure(self, model: nn.Module, input_shape: Sequence[int], batch: int = 1,
                protocol: TimingProtocol | None = None) -> Measurement:
        self.require()
        model = model.eval()
        runner = self._bound_runner(self._engine_from_model(model, input_shape, batch), input_shape, batch)
        return self._time_engine(runner, model, input_shape, batch, protocol)

    def measure_onnx(self, onnx_path: str | Path, input_shape: Sequence[int], batch: int = 1,
                     protocol: TimingProtocol | None = None, model: nn.Module | None = None) -> Measurement:
        """Build an engine from an exported file and time it."""
        self.require()
        runner = self._bound_runner(self.build(onnx_path, input_shape, batch), input_shape, batch)
        return self._time_engine(runner, model, input_shape, batch, protocol, extra={"onnx": str(onnx_path)})

    def measure_engine(self, engine_path: str | Path, input_shape: Sequence[int], batch: int = 1,
                       protocol: TimingProtocol | None = None, model: nn.Module | None = None) -> Measurement:
        """Time a serialized engine as deployed (an export bundle's model.engine)."""
        self.require()
        runner = self._bound_runner(engine_path, input_shape, batch)
        return self._time_engine(runner, model, input_shape, batch, protocol, extra={"engine": str(engine_path)})

    def _time_engine(self, runner, model, input_shape, batch, protocol, extra=None) -> Measurement:
        protocol = protocol or TimingProtocol()
        meter = best_meter(self.energy_meters)
        times = time_runs_cuda(runner.enqueue, runner.stream, protocol)
        extra = {"precision": "fp16" if self.fp16 else "fp32", "timer": "cuda-events", **(extra or {})}
        energy = None
        if meter:
            per_run, reading, runs = energy_per_run(meter, runner.enqueue, runner.stream)
            energy, extra["energy"] = (per_run, meter.method), reading.per_run(runs)
        return self._record(times, model, input_shape, batch, protocol, energy, extra)
