"""PyTorch -> ONNX, below both the profilers (which time exported files) and export (which ships them).

The TorchScript exporter takes ~0.2 s for an NB201 network on a 2-core CPU against ~3 s
for the dynamo exporter, so "auto" uses TorchScript and falls back to dynamo where it is gone or fails."""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from hwnas.errors import HwnasError

EXPORTERS = ("auto", "torchscript", "dynamo")
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17


def export_onnx(
    model: nn.Module,
    input_shape: Sequence[int],
    path: str | Path,
    exporter: str = "auto",
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
) -> Path:
    """Write `model` (in eval mode) as ONNX with one input `input` (batch, *input_shape) and output `logits`."""
    if exporter not in EXPORTERS:
        raise HwnasError(f"unknown ONNX exporter {exporter!r}; accepted: {', '.join(EXPORTERS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.randn(1, *input_shape)
    if exporter in ("auto", "torchscript"):
        try:
            _export_torchscript(model, example, path, opset, dynamic_batch)
            return path
        except Exception:
            if exporter == "torchscript":
                raise
            # auto: this torch no longer has the legacy exporter, or it failed on this model; fall back
    _export_dynamo(model, example, path, opset, dynamic_batch)
    return path


def _export_torchscript(model, example, path, opset, dynamic_batch) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None,
        )


def _export_dynamo(model, example, path, opset, dynamic_batch) -> None:
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    sink = io.StringIO()
    # The exporter prints its progress on stdout and logs warnings (e.g. "torchvision is not installed") on stderr.
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), quiet_loggers("torch", "onnxscript"):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            # dynamo implements opset >= 18 only; asking for less triggers a lossy down-conversion
            model, (example,), dynamo=True, opset_version=max(opset, 18), input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], dynamic_shapes=dynamic_shapes,
        )
        program.save(str(path))


@contextlib.contextmanager
def quiet_loggers(*names: str, level: int = logging.ERROR):
    """Raise the threshold of the named loggers (and their children) for the duration of the block."""
    loggers = [logging.getLogger(n) for n in names]
    previous = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, previous):
            lg.setLevel(lvl)


def load_onnx(path: str | Path):
    """Load and check an ONNX file; a missing or corrupt file is one clear HwnasError."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise HwnasError(f"no ONNX file at {path}")
    try:
        model = onnx.load(str(p))
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - protobuf and the checker raise many types for one meaning
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HwnasError(f"{path} is not a valid ONNX model ({first[:200]}); re-export it with `hwnas export`") from None
    return model
