"""ONNX -> TensorRT engine (TensorRT 10 Python API), and a runner that executes an engine on torch CUDA tensors.

It sits in the profilers (the TensorRT backend times engines) and export uses it from here (bundles ship them), so
the two never import each other.

TensorRT and CUDA are optional: nothing here imports them until used, and `tensorrt_unavailable()` says why an
engine cannot be built on this machine ("torch sees no CUDA GPU", "tensorrt is not installed"), so callers
report that reason instead of failing at import.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.choices import TENSORRT_PRECISIONS  # noqa: F401  (re-exported)
from hwnas.errors import HwnasError

ENGINE_FILE = "model.engine"
DEFAULT_WORKSPACE_MB = 1024
#: the engine's optimisation profile covers batches 1..MAX_BATCH (parity checks run several samples at once)
MAX_BATCH = 64


def tensorrt_unavailable() -> str | None:
    """None when engines can be built and run here, else the reason."""
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU" + ("" if torch.version.cuda else " (this torch is a CPU-only build)")
    try:
        import tensorrt as trt
    except ImportError as e:
        return f"tensorrt is not installed ({e}); install it with `pip install tensorrt`"
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        return f"TensorRT {trt.__version__} is installed; hwnas needs TensorRT 10 or newer (name-based tensor API)"
    return None


def require_tensorrt():
    why = tensorrt_unavailable()
    if why:
        raise HwnasError(f"TensorRT is not available here: {why}")
    import tensorrt as trt

    return trt


def tensorrt_version() -> str | None:
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return str(trt.__version__)


_LOGGERS: list[Any] = []


def _logger(trt):
    # One logger per process: TensorRT expects the same logger for every builder and runtime.
    if not _LOGGERS:
        _LOGGERS.append(trt.Logger(trt.Logger.WARNING))
    return _LOGGERS[0]


def build_engine(
    onnx_path: str | Path,
    input_shape: Sequence[int],
    fp16: bool = True,
    int8: bool = False,
    opt_batch: int = 1,
    max_batch: int = MAX_BATCH,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
) -> bytes:
    """Parse the ONNX file and build a serialized engine whose optimisation profile covers batches
    1..max_batch (tuned for `opt_batch`). fp16 lets TensorRT pick half-precision kernels where faster; the
    engine's inputs and outputs stay float32. int8: the ONNX file is a QDQ (explicitly quantised) model, whose
    Q/DQ scales TensorRT uses for int8 kernels; TensorRT's guide asks for a strongly typed network there, with
    no precision flags (types come from the Q/DQ graph, so `fp16` is ignored), where this TensorRT has one."""
    trt = require_tensorrt()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    strongly_typed = int8 and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    # TensorRT 10: every network is explicit-batch, no flag needed for that
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise HwnasError(f"TensorRT could not parse {onnx_path}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if fp16 and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    if int8 and not strongly_typed:
        config.set_flag(trt.BuilderFlag.INT8)
    shape = tuple(int(s) for s in input_shape)
    opt_batch = max(1, min(int(opt_batch), int(max_batch)))
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        profile.set_shape(name, (1, *shape), (opt_batch, *shape), (int(max_batch), *shape))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise HwnasError(f"TensorRT could not build an engine from {onnx_path} (its log above says why)")
    return bytes(serialized)


def _torch_dtype(trt, dtype):
    import torch

    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int64: torch.int64, trt.int8: torch.int8, trt.bool: torch.bool}
    if dtype not in table:
        raise HwnasError(f"TensorRT tensor type {dtype} is not supported by hwnas's runner")
    return table[dtype]


class TensorRTRunner:
    """A deserialized engine with one execution context and its own CUDA stream.

    `bind(x)` points the engine's input at a CUDA tensor and returns the output tensor it will write;
    `enqueue()` launches one inference on the stream (asynchronous); `infer(array)` does all of it for numpy."""

    def __init__(self, engine: bytes | str | Path):
        trt = require_tensorrt()
        import torch

        self.trt = trt
        data = engine if isinstance(engine, (bytes, bytearray)) else Path(engine).read_bytes()
        self.runtime = trt.Runtime(_logger(trt))
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise HwnasError("the TensorRT engine could not be deserialised (built for another GPU or TensorRT "
                             "version?); rebuild it with `hwnas export --tensorrt` on this machine")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(self.inputs) != 1 or not self.outputs:
            raise HwnasError(f"expected an engine with one input and an output, got inputs {self.inputs}, "
                             f"outputs {self.outputs}")
        self.max_batch = int(self.engine.get_tensor_profile_shape(self.inputs[0], 0)[2][0])
        self._bound: list[Any] = []  # keeps bound tensors alive while the engine uses their memory

    def bind(self, x) -> Any:
        """Bind a contiguous CUDA float tensor (batch, *shape) as input; return the (first) output tensor."""
        import torch

        x = x.contiguous()
        self.context.set_input_shape(self.inputs[0], tuple(x.shape))
        self.context.set_tensor_address(self.inputs[0], x.data_ptr())
        outs = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=_torch_dtype(self.trt, self.engine.get_tensor_dtype(name)), device=x.device)
            self.context.set_tensor_address(name, out.data_ptr())
            outs.append(out)
        self._bound = [x, *outs]
        return outs[0]

    def enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise HwnasError("TensorRT failed to run the engine (execute_async_v3 returned False)")

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run a batch of any size (in chunks the engine's profile allows) and return float32 outputs."""
        import torch

        chunks = []
        with torch.cuda.stream(self.stream):
            for start in range(0, len(x), self.max_batch):
                xb = torch.from_numpy(np.ascontiguousarray(x[start : start + self.max_batch])).to("cuda", non_blocking=False)
                out = self.bind(xb)
                self.enqueue()
                self.stream.synchronize()
                chunks.append(out.float().cpu().numpy())
        return np.concatenate(chunks)
