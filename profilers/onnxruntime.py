"""ONNX Runtime backends: the model is exported to ONNX and timed in a real InferenceSession."""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from hwnas.conversion import export_onnx, load_onnx
from hwnas.measurement import Measurement
from hwnas.profilers.base import Backend, random_input, register_backend
from hwnas.profilers.timing import TimingProtocol


@register_backend("onnxruntime-cpu")
class OnnxRuntimeCPU(Backend):
    provider = "CPUExecutionProvider"
    libraries = ("onnxruntime", "onnx", "torch")
    runs_onnx = True
    times_against_reference = True

    def why_unavailable(self) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            return f"onnxruntime is not installed ({e})"
        if self.provider not in ort.get_available_providers():
            return f"onnxruntime has no {self.provider} (installed providers: {', '.join(ort.get_available_providers())})"
        return None

    def session(self, onnx_path: str | Path):
        import onnxruntime as ort


        load_onnx(onnx_path)  # a corrupt file is one clear line, not an ONNX Runtime traceback
        opts = ort.SessionOptions()
        # Fixed threads: latency depends on them, and they are part of the device id.
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        return ort.InferenceSession(str(onnx_path), sess_options=opts, providers=[self.provider])

    def _runner(self, onnx_path, input_shape, batch):
        sess = self.session(onnx_path)
        name = sess.get_inputs()[0].name
        feed = {name: random_input(input_shape, batch)}
        return (lambda: sess.run(None, feed)), None

    def prepare(self, model: nn.Module, input_shape: Sequence[int], batch: int):
        return self.prepare_sessions(model, input_shape, batch, 1)[0]

    def prepare_sessions(self, model: nn.Module, input_shape: Sequence[int], batch: int, sessions: int) -> list:
        """Export once, then load the file into `sessions` fresh sessions."""
        with tempfile.TemporaryDirectory(prefix="hwnas-") as tmp:
            path = export_onnx(model, input_shape, Path(tmp) / "model.onnx",
                               exporter=self.options.get("exporter", "auto")).path
            # each session holds the model in memory
            return [self._runner(path, input_shape, batch) for _ in range(max(1, sessions))]

    def measure_onnx(
        self, onnx_path: str | Path, input_shape: Sequence[int], batch: int = 1, protocol: TimingProtocol | None = None,
        model: nn.Module | None = None, reference=None,
    ) -> Measurement:
        """Time an exported file as deployed. `model` (the PyTorch original) only feeds the analytical energy
        estimate when no energy counter is readable; `reference`: as in Backend.measure."""
        self.require()
        sessions = (protocol or TimingProtocol()).sessions if reference is not None else 1
        (run, sync), *more = [self._runner(onnx_path, tuple(input_shape), int(batch)) for _ in range(sessions)]
        return self._time(run, sync, model, input_shape, batch, protocol, extra={"onnx": str(onnx_path)},
                          reference=reference, more=more)


@register_backend("onnxruntime-cuda")
class OnnxRuntimeCUDA(OnnxRuntimeCPU):
    provider = "CUDAExecutionProvider"
    kind = "gpu"
    energy_meters = ("nvml", "nvml-power")

    def hardware(self):
        from hwnas.profilers.torch_backend import gpu_hardware

        return {**super().hardware(), **gpu_hardware()}

    def device_name(self) -> str:
        return self.hardware().get("gpu", "CUDA GPU")
