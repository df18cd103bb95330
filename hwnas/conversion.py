"""PyTorch -> ONNX, below both the profilers (which time exported files) and export (which ships them).

The TorchScript exporter takes ~0.2 s for an NB201 network on a 2-core CPU against ~3 s for the dynamo exporter,
so "auto" uses TorchScript and falls back to dynamo where it is gone or fails. TorchScript export is deprecated
in recent torch: its deprecation is surfaced as one `ExporterWarning` line (through the reporter when one is
given), so the day it is removed and "auto" switches to the slower dynamo exporter does not pass unnoticed.
`export_onnx` returns an `OnnxExport` saying which exporter ran and the file's opset."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hwnas.choices import EXPORTERS
from hwnas.errors import HwnasError
from hwnas.reporting import Reporter

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17
#: the dynamo exporter implements opset >= 18 only; asking for less triggers a lossy down-conversion
DYNAMO_MIN_OPSET = 18
TORCHSCRIPT_DEPRECATED = (
    f"the TorchScript ONNX exporter is deprecated in torch {torch.__version__.split('+')[0]}; when it is removed, "
    "exporter 'auto' falls back to the dynamo exporter (10-30x slower on CPU); pass exporter 'dynamo' to use it now")


class ExporterWarning(UserWarning):
    """The ONNX exporter that ran is deprecated, or 'auto' fell back to another one."""


@dataclass(frozen=True)
class OnnxExport:
    """What `export_onnx` wrote: the file, the exporter that ran ("torchscript" or "dynamo"), the one asked for
    ("auto", "torchscript", "dynamo"), the file's ONNX opset and a note (deprecation or fallback) or None."""

    path: Path
    exporter: str
    requested: str
    opset: int | None
    note: str | None = None

    def __fspath__(self) -> str:
        return str(self.path)

    def to_dict(self) -> dict:
        return {"exporter": self.exporter, "requested": self.requested, "opset": self.opset, "note": self.note}


def export_onnx(
    model: nn.Module,
    input_shape: Sequence[int],
    path: str | os.PathLike,
    exporter: str = "auto",
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    reporter: Reporter | None = None,
) -> OnnxExport:
    """Write `model` (in eval mode) as ONNX with one input `input` (batch, *input_shape) and output `logits`.

    Returns an OnnxExport naming the exporter that ran. A note (TorchScript deprecated, or 'auto' fell back to
    dynamo) goes to `reporter.warning` when a reporter is given, else it is issued as an ExporterWarning."""
    if exporter not in EXPORTERS:
        raise HwnasError(f"unknown ONNX exporter {exporter!r}; accepted: {', '.join(EXPORTERS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.randn(1, *input_shape)
    note = None
    ran = "dynamo"
    if exporter in ("auto", "torchscript"):
        try:
            note = _export_torchscript(model, example, path, opset, dynamic_batch)
            ran = "torchscript"
        except Exception as e:
            if exporter == "torchscript":
                raise
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            note = f"the TorchScript ONNX exporter failed ({first}); exported with the dynamo exporter instead"
    if ran == "dynamo":
        _export_dynamo(model, example, path, opset, dynamic_batch)
    record = OnnxExport(path, ran, exporter, onnx_opset(path), note)
    if note and note not in _NOTES_TOLD:  # the record always holds it; the user is told once per process
        _NOTES_TOLD.add(note)
        if reporter is not None:
            reporter.warning(note)
        else:
            warnings.warn(note, ExporterWarning, stacklevel=2)
    return record


#: exporter notes already shown: profiling exports hundreds of cells, and one deprecation line is enough
_NOTES_TOLD: set[str] = set()


def _export_torchscript(model, example, path, opset, dynamic_batch) -> str | None:
    """Export with the legacy exporter; return the deprecation note when torch warned that it is deprecated.
    Its other warnings (tracer warnings about Python control flow in the NB201 cells) are dropped."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None,
        )
    deprecated = any(issubclass(w.category, (DeprecationWarning, FutureWarning))
                     and ("TorchScript" in str(w.message) or "removed" in str(w.message)) for w in caught)
    return TORCHSCRIPT_DEPRECATED if deprecated else None


def _export_dynamo(model, example, path, opset, dynamic_batch) -> None:
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    sink = io.StringIO()
    # The exporter prints its progress on stdout and logs warnings (e.g. "torchvision is not installed") on stderr.
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), quiet_loggers("torch", "onnxscript"):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, (example,), dynamo=True, opset_version=max(opset, DYNAMO_MIN_OPSET), input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], dynamic_shapes=dynamic_shapes,
        )
        program.save(str(path))


def onnx_opset(path: str | os.PathLike) -> int | None:
    """The default-domain opset an ONNX file declares (None when it declares none)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


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


def load_onnx(path: str | os.PathLike):
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
