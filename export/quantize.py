"""int8 with ONNX Runtime's quantization tools: static (QDQ, calibrated activations) or dynamic (weights only)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hwnas.choices import INT8_MODES
from hwnas.conversion import INPUT_NAME, load_onnx, quiet_loggers
from hwnas.errors import HwnasError


def int8_mode(int8: bool | str) -> str | None:
    """`export_bundle(int8=...)`: False/None -> no int8 file, True -> "static", or a mode name."""
    if int8 is False or int8 is None:
        return None
    mode = "static" if int8 is True else str(int8)
    if mode not in INT8_MODES:
        raise HwnasError(f"unknown int8 mode {int8!r}; accepted: True (static), {', '.join(INT8_MODES)}")
    return mode


def quantize_onnx(
    onnx_path: str | Path,
    out_path: str | Path,
    input_shape: Sequence[int],
    mode: str = "static",
    calibration: np.ndarray | None = None,
    samples: int = 32,
    seed: int = 0,
) -> Path:
    """Write an int8 copy of a float ONNX model.

    static: weights per channel and activations in int8 (QDQ format, which ONNX Runtime fuses into integer
    kernels); activation ranges come from `calibration` (N, *input_shape), or from `samples` standard-normal
    inputs, which is what a network trained on standardised data sees. dynamic: int8 weights, activation
    scales computed at run time (no calibration).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    load_onnx(onnx_path)
    out_path = Path(out_path)
    if mode not in INT8_MODES:
        raise HwnasError(f"unknown int8 mode {mode!r}; accepted: {', '.join(INT8_MODES)}")
    # ONNX Runtime's quantizer logs advice ("consider pre-processing") on the root logger.
    with quiet_loggers("", "onnxruntime"):
        if mode == "dynamic":
            quantize_dynamic(str(onnx_path), str(out_path), weight_type=QuantType.QInt8)
            return out_path
        data = _calibration_data(calibration, input_shape, samples, seed)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self._batches = iter(data[i : i + 1] for i in range(len(data)))

            def get_next(self):
                x = next(self._batches, None)
                return None if x is None else {INPUT_NAME: x}

        quantize_static(str(onnx_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        # symmetric (zero point 0) scales are what TensorRT accepts for its int8 kernels
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    return out_path


def _calibration_data(calibration, input_shape, samples, seed) -> np.ndarray:
    shape = tuple(int(s) for s in input_shape)
    if calibration is None:
        return np.random.default_rng(seed).standard_normal((samples, *shape)).astype(np.float32)
    data = np.asarray(calibration, dtype=np.float32)
    if data.ndim != len(shape) + 1 or tuple(data.shape[1:]) != shape or len(data) == 0:
        raise HwnasError(f"calibration data has shape {tuple(data.shape)}; accepted: (N, {', '.join(map(str, shape))})"
                         " with N >= 1")
    return data
