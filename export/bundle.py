"""Deployable bundles: a folder with the exported model, the evidence that it is the searched network, and how
it measured against its budgets on the device.

    model.onnx         float32, dynamic batch (input `input`, output `logits`)
    model.int8.onnx    optional: ONNX Runtime int8 (static QDQ, calibrated, or dynamic)
    model.engine       optional: TensorRT engine (GPU- and TensorRT-version specific)
    weights.pt         the PyTorch state_dict, so `validate_bundle` can rebuild the reference from (space, arch)
    parity.npz         the parity inputs (seeded white noise "random", image-like low-frequency noise "smooth",
                       and "real" samples when given) with the PyTorch outputs on them, so a machine without
                       the weights still checks the ONNX file
    manifest.json      arch, space, input shape, the exporter that ran and its opset, parity figures, predicted vs
                       measured latency/energy, budgets and pass/fail, device fingerprint, library versions and
                       the SHA-256 of every file above

`export_bundle` writes and checks a bundle (hwnas.export.validate checks it; hwnas.export.manifest reads and
writes the manifest; hwnas.export.network holds the PyTorch side).
"""
from __future__ import annotations

import math
import numbers
import os
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.conversion import DEFAULT_OPSET, EXPORTERS, INPUT_NAME, OUTPUT_NAME, OnnxExport, export_onnx
from hwnas.errors import HwnasError, quote
from hwnas.export.manifest import (
    BUNDLE_FORMAT,
    INT8_FILE,
    ONNX_FILE,
    PARITY_FILE,
    WEIGHTS_FILE,
    bundle_files,
    check_budgets,
    check_output_dir,
    check_tolerance,
    file_record,
    now,
    replace_dir,
    write_manifest,
)
from hwnas.export.network import (
    CALIBRATION_BATCH,
    CALIBRATION_SAMPLES,
    MAX_REAL_SAMPLES,
    calibrate_batchnorm,
    check_labels,
    check_samples,
    index_or_none,
    macs_or_none,
    network_with_weights,
    one_torch_thread,
    smooth_inputs,
    write_parity_file,
)
from hwnas.export.quantize import int8_mode, quantize_onnx
from hwnas.export.validate import DEFAULT_BACKEND, CheckSettings, check_bundle, resolve_backend
from hwnas.measurement import TARGETS, random_inputs, shape_from_str
from hwnas.profilers import Backend, TimingProtocol
from hwnas.profilers.tensorrt_engine import (
    ENGINE_FILE,
    MAX_BATCH,
    TENSORRT_PRECISIONS,
    build_engine,
    tensorrt_unavailable,
    tensorrt_version,
)
from hwnas.reporting import Reporter, reporter_or_null
from hwnas.spaces import SearchSpace, get_space
from hwnas.spaces.base import memory_limit
from hwnas.store import Store
from hwnas.versions import CORE_LIBRARIES, library_versions

#: copied from the check into the manifest
REPORT_KEYS = ("parity", "int8_parity", "tensorrt_parity", "measured", "measured_int8", "prediction_error",
               "budget_check", "failures", "passed")


@dataclass
class ExportOptions:
    """How `export_bundle` exports, checks and measures (every field has a default).

    input_shape: one sample, e.g. (3, 32, 32) or "3x32x32" [the space's default]. exporter: "auto" (TorchScript,
    dynamo where it fails), "torchscript" or "dynamo"; opset: the ONNX opset asked for (dynamo uses >= 18).
    int8: False, True / "static" (calibrated QDQ) or "dynamic". tensorrt: also build an engine in
    `tensorrt_precision` (fp32 / fp16 / int8, int8 from the static QDQ model); skipped with the reason where
    TensorRT or CUDA is missing. predicted / accuracy: what the search predicted, kept to compare with the
    measurement. budgets: {"latency_ms": x, "energy_mj": y}. backend (name or Backend, default onnxruntime-cpu,
    `threads` threads) times the exported file with `protocol`, `batch` samples per run. samples: seeded
    white-noise parity inputs (as many smooth ones). rtol/atol: parity tolerances. seed: random weights and
    inputs. calibrate_bn: recalibrate BatchNorm statistics (default: only for random weights)."""

    input_shape: tuple[int, ...] | str | None = None
    exporter: str = "auto"
    opset: int = DEFAULT_OPSET
    int8: bool | str = False
    tensorrt: bool = False
    tensorrt_precision: str = "fp16"
    predicted: dict[str, float] = field(default_factory=dict)
    accuracy: float | None = None
    budgets: dict[str, float] = field(default_factory=dict)
    backend: str | Backend | None = None
    threads: int = 1
    batch: int = 1
    samples: int = 8
    rtol: float = 1e-3
    atol: float = 1e-4
    protocol: TimingProtocol | None = None
    seed: int = 0
    calibrate_bn: bool | None = None
    #: a hwnas.profilers.speed.SpeedReference prepared on `backend` (the search's): the file is timed alternately
    #: with it, and judged at its nominal speed, as the search's verdicts were
    reference: Any = None

    @classmethod
    def of(cls, options: ExportOptions | dict[str, Any] | None) -> ExportOptions:
        """Options from an ExportOptions, a dict of its fields (an unknown key is one HwnasError) or None."""
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        if isinstance(options, dict):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(options) - known)
            if unknown:
                raise HwnasError(f"unknown export option(s) {', '.join(map(quote, unknown))}; accepted: "
                                 f"{', '.join(sorted(known))}")
            return cls(**options)
        raise HwnasError(f"export options must be an ExportOptions or a dict, not {type(options).__name__}")

    def checked(self, space: SearchSpace, arch=None, real_samples: int = 0) -> tuple[tuple[int, ...], str | None,
                                                                                 dict[str, float]]:
        """Check every option against `space` before anything is written: the input shape (and that the network
        fits in memory at the largest batch the export runs: the timed batch, the parity samples, BatchNorm
        calibration's 16 and `real_samples` given ones), the int8 mode and the budgets, returned; anything else
        wrong is one HwnasError."""
        shape = _resolve_shape(space, self.input_shape)
        if self.exporter not in EXPORTERS:
            raise HwnasError(f"unknown ONNX exporter {quote(self.exporter)}; accepted: {', '.join(EXPORTERS)}")
        mode = int8_mode(self.int8)
        budgets = check_budgets(self.budgets)
        for name in ("batch", "samples", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise HwnasError(f"{name}={quote(value)} is not accepted; give a positive whole number")
        check_tolerance("rtol", self.rtol)
        check_tolerance("atol", self.atol)
        _numbers(self.predicted, "predicted")
        if self.accuracy is not None and not _is_finite_number(self.accuracy):
            raise HwnasError(f"accuracy {quote(self.accuracy)} is not accepted; give a finite number or None")
        if self.tensorrt_precision not in TENSORRT_PRECISIONS:
            raise HwnasError(f"unknown TensorRT precision {quote(self.tensorrt_precision)}; accepted: "
                             f"{', '.join(TENSORRT_PRECISIONS)}")
        if self.tensorrt and self.tensorrt_precision == "int8" and mode != "static":
            raise HwnasError("a TensorRT int8 engine is built from the static int8 (QDQ) model; add int8='static' "
                             "(CLI: --int8 static)")
        real_samples = min(real_samples, MAX_REAL_SAMPLES)
        space.check_fits(shape, max(self.batch, self.samples, CALIBRATION_BATCH, real_samples), arch=arch)
        _check_input_arrays(space, shape, CALIBRATION_SAMPLES + 2 * self.samples + real_samples)
        return shape, mode, budgets


@one_torch_thread
def export_bundle(
    space: SearchSpace | str,
    arch,
    out_dir: str | Path,
    options: ExportOptions | dict[str, Any] | None = None,
    *,
    model: nn.Module | None = None,
    inputs: np.ndarray | torch.Tensor | None = None,
    labels: np.ndarray | torch.Tensor | None = None,
    calibration: np.ndarray | torch.Tensor | None = None,
    store: Store | str | None = None,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Export `arch` of `space` as a bundle at `out_dir`, check and measure it, and return the manifest.

    space: a SearchSpace or a spec ("nb201:C=8,N=1"); arch: an Arch, its canonical string or its index.
    options: ExportOptions (or a dict of its fields). model: the trained network; its weights must fit
    `space.build(arch, input_shape)`, which is what is exported. None: freshly initialised with the seed,
    BatchNorm statistics calibrated, so outputs depend on the input and top-1 agreement means something.
    inputs/labels: real samples (N, *input_shape) / (N,) for parity (top-1 agreement), int8 calibration and int8
    accuracy (up to 256 kept); `calibration` overrides the int8 calibration set. store: a Store (or path) that also
    keeps the measurement of the exported file. reporter: where progress and the exporter's notes go.

    Every input is checked before anything is written (one HwnasError). The bundle is written beside `out_dir`
    and moved there once complete, so a failed export leaves an earlier bundle at `out_dir` as it was.
    `manifest["passed"]` is False when parity or a budget failed; `manifest["exporter"]` names the exporter that
    ran ("torchscript" or "dynamo") and `manifest["opset"]` the file's opset.
    """
    opts = ExportOptions.of(options)
    report = reporter_or_null(reporter)
    space = space if isinstance(space, SearchSpace) else get_space(space)
    arch = space.parse(arch)
    shape, mode, budgets = opts.checked(space, arch, len(inputs) if hasattr(inputs, "__len__") else 0)
    real = check_samples(inputs, shape, "inputs")
    real_labels = check_labels(labels, real)
    calib = check_samples(calibration, shape, "calibration")
    backend = resolve_backend(opts.backend or DEFAULT_BACKEND, opts.threads)
    out_dir = check_output_dir(out_dir)
    store = _open_store(store)

    net = network_with_weights(space, arch, shape, model, opts.seed)
    bn_calibrated = opts.calibrate_bn if opts.calibrate_bn is not None else model is None
    if bn_calibrated:
        calibrate_batchnorm(net, real if real is not None else random_inputs(CALIBRATION_SAMPLES, shape, opts.seed + 1))

    partial = _partial_dir(out_dir)
    try:
        manifest, measurement = _write_bundle(partial, space, arch, shape, net, opts, mode, budgets, backend,
                                              real, real_labels, calib, model is not None, bn_calibrated, report)
        replace_dir(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if store is not None and measurement is not None:
        _store_measurement(store, measurement, space, arch, out_dir, manifest)
    return manifest


def _write_bundle(partial: Path, space, arch, shape, net, opts: ExportOptions, mode, budgets, backend, real,
                  real_labels, calib, given_model: bool, bn_calibrated: bool, report: Reporter):
    """Write every file into `partial`, check them and write the manifest: (manifest, Measurement)."""
    torch.save(net.state_dict(), partial / WEIGHTS_FILE)
    exported = export_onnx(net, shape, partial / ONNX_FILE, exporter=opts.exporter, opset=opts.opset, reporter=report)
    report.message(f"exported {ONNX_FILE} with the {exported.exporter} exporter (opset {exported.opset})")
    write_parity_file(partial / PARITY_FILE, net, random_inputs(opts.samples, shape, opts.seed),
                      smooth_inputs(opts.samples, shape, opts.seed),
                      None if real is None else real[:MAX_REAL_SAMPLES],
                      None if real_labels is None else real_labels[:MAX_REAL_SAMPLES])
    int8_info = _write_int8(partial, shape, mode, calib, real, opts.seed)
    engine_info = _build_engine_or_skip(partial, shape, opts)
    manifest = {
        "format": BUNDLE_FORMAT,
        "created_at": now(),
        "space": space.spec,
        "arch": space.to_string(arch),
        "arch_index": index_or_none(space, arch),
        "input_shape": "x".join(map(str, shape)),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        **_exporter_record(exported),
        "weights": {"source": "given model" if given_model else f"random init (seed {opts.seed})",
                    "batchnorm_calibrated": bool(bn_calibrated)},
        "int8": int8_info,
        "tensorrt": engine_info,
        "macs": macs_or_none(space, arch, shape),
        "predicted": _numbers(opts.predicted, "predicted"),
        "accuracy": None if opts.accuracy is None else float(opts.accuracy),
        "budgets": budgets,
        "tolerances": {"rtol": float(opts.rtol), "atol": float(opts.atol)},
        "device": {"backend": backend.name, "threads": backend.threads, "id": backend.device_id(),
                   "name": backend.device_name(), "fingerprint": backend.fingerprint()},
        "versions": {**library_versions(*CORE_LIBRARIES), "tensorrt": tensorrt_version()},
        "files": {name: file_record(partial / name) for name in bundle_files(partial)},
    }
    settings = CheckSettings(backend, opts.batch, float(opts.rtol), float(opts.atol), budgets, opts.protocol,
                             reference=opts.reference)
    checked, measurement = check_bundle(partial, manifest, settings, net=net)
    manifest.update({key: checked[key] for key in REPORT_KEYS})
    write_manifest(partial, manifest)
    return manifest, measurement


def _exporter_record(exported: OnnxExport) -> dict[str, Any]:
    """The manifest's record of the export: the exporter that ran, the one asked for, the opset and any note."""
    return {"exporter": exported.exporter, "exporter_requested": exported.requested, "opset": exported.opset,
            "exporter_note": exported.note}


def _write_int8(partial: Path, shape, mode, calib, real, seed: int) -> dict[str, Any] | None:
    if not mode:
        return None
    cal = calib if calib is not None else real
    quantize_onnx(partial / ONNX_FILE, partial / INT8_FILE, shape, mode=mode, calibration=cal, seed=seed)
    if mode == "dynamic":
        source = None
    else:
        kind = "given samples" if calib is not None else "real inputs" if real is not None else "standard-normal random inputs"
        source = f"{kind} ({32 if cal is None else len(cal)})"
    return {"file": INT8_FILE, "mode": mode, "calibration": source}


def _build_engine_or_skip(folder: Path, shape, opts: ExportOptions) -> dict[str, Any] | None:
    if not opts.tensorrt:
        return None
    precision = opts.tensorrt_precision
    why = tensorrt_unavailable()
    if why:
        return {"skipped": f"TensorRT is not available here: {why}", "precision": precision}
    max_batch = max(int(opts.batch), int(opts.samples), MAX_BATCH)
    source = folder / (INT8_FILE if precision == "int8" else ONNX_FILE)
    (folder / ENGINE_FILE).write_bytes(build_engine(source, shape, fp16=precision in ("fp16", "int8"),
                                                    int8=precision == "int8", opt_batch=opts.batch, max_batch=max_batch))
    return {"file": ENGINE_FILE, "precision": precision, "built_from": source.name, "max_batch": max_batch,
            "gpu": torch.cuda.get_device_name(0), "tensorrt": tensorrt_version()}


def _resolve_shape(space: SearchSpace, input_shape) -> tuple[int, ...]:
    if input_shape is None:
        return space.check_input_shape(space.default_input_shape)
    if isinstance(input_shape, str):
        input_shape = shape_from_str(input_shape)
    return space.check_input_shape(input_shape)


def _check_input_arrays(space: SearchSpace, shape, count: int) -> None:
    """The export holds `count` samples of `shape` at once (BatchNorm calibration, parity inputs, real samples),
    drawn in float64 before they become float32: refuse, saying the limit, where they alone would not fit."""
    need = 8.0 * count * math.prod(shape)
    limit, source = memory_limit()
    if need > limit:
        raise HwnasError(f"exporting from {space.spec} at input {'x'.join(map(str, shape))} holds {count} samples of "
                         f"about {need / count / 1e9:.3g} GB each, {need / 1e9:.3g} GB in all, over the memory limit "
                         f"of {limit / 1e9:.3g} GB ({source}); use a smaller input shape")


def _is_finite_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _numbers(values, what: str) -> dict[str, float]:
    """{target: finite number} (None values dropped); anything else is one HwnasError."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise HwnasError(f"{what} {quote(values)} is not a mapping of {', '.join(TARGETS)} to numbers")
    out = {}
    for k, v in values.items():
        if v is None:
            continue
        if not _is_finite_number(v):
            raise HwnasError(f"{what} {k}={quote(v)} is not accepted; give a finite number")
        out[str(k)] = float(v)
    return out


def _open_store(store: Store | str | Path | None) -> Store | None:
    if store is None or isinstance(store, Store):
        return store
    return Store(store)


def _partial_dir(out_dir: Path) -> Path:
    partial = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
    except OSError as e:
        raise HwnasError(f"cannot write {out_dir} ({e.strerror or type(e).__name__})") from None
    return partial


def _store_measurement(store: Store, measurement, space, arch, out_dir: Path, manifest) -> None:
    """Keep the exported file's measurement with the profiled ones (it replaces an earlier one of the same key:
    it is the newer, deployed-form measurement)."""
    measurement.arch, measurement.space = space.to_string(arch), space.spec
    measurement.extra = {**measurement.extra, "bundle": str(out_dir.resolve()), "onnx": str((out_dir / ONNX_FILE).resolve()),
                         "onnx_sha256": manifest["files"][ONNX_FILE]["sha256"]}
    store.add_device(measurement.device, manifest["device"]["name"], manifest["device"]["fingerprint"])
    store.add(measurement, replace=True)
    manifest["stored_in"] = store.url
    write_manifest(out_dir, manifest)
