"""Deployable bundles: a folder with the exported model, the evidence that it is the searched network, and how
it measured against its budgets on the device.

    model.onnx         float32, dynamic batch (input `input`, output `logits`)
    model.int8.onnx    optional: ONNX Runtime int8 (static QDQ, calibrated, or dynamic)
    model.engine       optional: TensorRT engine (GPU- and TensorRT-version specific)
    weights.pt         the PyTorch state_dict, so `validate_bundle` can rebuild the reference from (space, arch)
    parity.npz         the parity inputs (seeded white noise "random", image-like low-frequency noise "smooth",
                       and "real" samples when given) with the PyTorch outputs on them, so a machine without
                       the weights still checks the ONNX file
    manifest.json      arch, space, input shape, parity figures, predicted vs measured latency/energy, budgets
                       and pass/fail, device fingerprint, library versions and the SHA-256 of every file above

`export_bundle` writes and checks a bundle; `validate_bundle` re-checks one later or on another machine,
Polygraphy-style (same inputs through both, compare), and measures it against its budgets.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.conversion import DEFAULT_OPSET, EXPORTERS, INPUT_NAME, OUTPUT_NAME, export_onnx, load_onnx
from hwnas.errors import HwnasError
from hwnas.export.quantize import int8_mode, quantize_onnx
from hwnas.export.tensorrt import (
    ENGINE_FILE,
    MAX_BATCH,
    TENSORRT_PRECISIONS,
    build_engine,
    tensorrt_unavailable,
    tensorrt_version,
)
from hwnas.measurement import TARGETS, random_inputs
from hwnas.versions import CORE_LIBRARIES, library_versions

BUNDLE_FORMAT = "hwnas-bundle/1"
MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
WEIGHTS_FILE = "weights.pt"
PARITY_FILE = "parity.npz"
#: may be left out of a deployed copy: validation then compares with the outputs recorded in parity.npz
OPTIONAL_FILES = (WEIGHTS_FILE,)
BUDGET_KEYS = tuple(TARGETS)
DEFAULT_BACKEND = "onnxruntime-cpu"
#: real samples kept in parity.npz (and used to check int8 accuracy) at most
MAX_REAL_SAMPLES = 256
#: fp16 engines differ from the float32 model by half-precision rounding, compounded over the layers
FP16_TOLERANCE = {"rtol": 1e-2, "atol": 1e-2}


# --- export ------------------------------------------------------------------------------------------------
def _one_torch_thread(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch_threads(1):
            return fn(*args, **kwargs)

    return wrapper


@_one_torch_thread
def export_bundle(
    space,
    arch,
    out_dir: str | Path,
    model: nn.Module | None = None,
    input_shape: Sequence[int] | str | None = None,
    *,
    exporter: str = "auto",
    opset: int = DEFAULT_OPSET,
    int8: bool | str = False,
    calibration: np.ndarray | None = None,
    inputs: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    tensorrt: bool = False,
    tensorrt_precision: str = "fp16",
    predicted: dict | None = None,
    accuracy: float | None = None,
    budgets: dict | None = None,
    backend=None,
    threads: int = 1,
    batch: int = 1,
    samples: int = 8,
    rtol: float = 1e-3,
    atol: float = 1e-4,
    protocol=None,
    seed: int = 0,
    calibrate_bn: bool | None = None,
    store=None,
) -> dict[str, Any]:
    """Export `arch` of `space` as a bundle at `out_dir`, check and measure it, and return the manifest.

    space: a SearchSpace or a spec ("nb201:C=8,N=1"); arch: an Arch, its canonical string or its index.
    model: the trained network; its weights must fit `space.build(arch, input_shape)`, which is what is
    exported. None: freshly initialised with `seed`, BatchNorm statistics calibrated (`calibrate_bn`, default
    on only then), so outputs depend on the input and top-1 agreement means something.
    Parity runs on `samples` seeded white-noise inputs, as many image-like smooth-noise ones, and `inputs`.
    inputs/labels: real samples (N, *input_shape) / (N,) for parity (top-1 agreement), int8 calibration and
    int8 accuracy (up to 256 kept); `calibration` overrides the int8 calibration set. int8: False, True / "static", "dynamic".
    tensorrt: also build a TensorRT engine (`tensorrt_precision` fp32 / fp16 / int8, int8 from the static QDQ
    model); where TensorRT or CUDA is missing the manifest says why and nothing fails.
    backend (name or Backend, default onnxruntime-cpu, `threads` threads) measures the exported file;
    budgets: {"latency_ms": x, "energy_mj": y}. store: a Store (or path) that also keeps the measurement.
    The bundle is written beside `out_dir` and moved there once complete, so a failed export leaves an earlier
    bundle at `out_dir` as it was. `manifest["passed"]` is False when parity or a budget failed.
    """
    from hwnas.spaces.base import SearchSpace

    # Check every input before writing anything.
    space = space if isinstance(space, SearchSpace) else _get_space(space)
    arch = space.parse(arch)
    shape = _resolve_shape(space, input_shape)
    if exporter not in EXPORTERS:
        raise HwnasError(f"unknown ONNX exporter {exporter!r}; accepted: {', '.join(EXPORTERS)}")
    mode = int8_mode(int8)
    budgets = check_budgets(budgets)
    if int(batch) < 1 or int(samples) < 1:
        raise HwnasError(f"batch={batch}, samples={samples} are not accepted; both must be positive")
    if tensorrt_precision not in TENSORRT_PRECISIONS:
        raise HwnasError(f"unknown TensorRT precision {tensorrt_precision!r}; accepted: {', '.join(TENSORRT_PRECISIONS)}")
    if tensorrt and tensorrt_precision == "int8" and mode != "static":
        raise HwnasError("a TensorRT int8 engine is built from the static int8 (QDQ) model; add int8='static' "
                         "(CLI: --int8 static)")
    real = _check_samples(inputs, shape, "inputs")
    real_labels = _check_labels(labels, real)
    calib = _check_samples(calibration, shape, "calibration")
    backend = _resolve_backend(backend, threads)
    out_dir = check_output_dir(out_dir)
    net = _network_with_weights(space, arch, shape, model, seed)
    if calibrate_bn if calibrate_bn is not None else model is None:
        calibrate_batchnorm(net, real if real is not None else random_inputs(64, shape, seed + 1))
        bn_calibrated = True
    else:
        bn_calibrated = False

    partial = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
    except OSError as e:
        raise HwnasError(f"cannot write {out_dir} ({e.strerror or type(e).__name__})") from None
    try:
        torch.save(net.state_dict(), partial / WEIGHTS_FILE)
        export_onnx(net, shape, partial / ONNX_FILE, exporter=exporter, opset=opset)
        _write_parity_file(partial / PARITY_FILE, net, random_inputs(samples, shape, seed),
                           _smooth_inputs(samples, shape, seed),
                           None if real is None else real[:MAX_REAL_SAMPLES],
                           None if real_labels is None else real_labels[:MAX_REAL_SAMPLES])
        int8_info = None
        if mode:
            cal = calib if calib is not None else real
            quantize_onnx(partial / ONNX_FILE, partial / INT8_FILE, shape, mode=mode, calibration=cal, seed=seed)
            int8_info = {"file": INT8_FILE, "mode": mode,
                         "calibration": None if mode == "dynamic" else
                         ("given samples" if calib is not None else "real inputs" if real is not None
                          else "standard-normal random inputs") + f" ({32 if cal is None else len(cal)})"}
        engine_info = _build_engine_or_skip(partial, shape, tensorrt, tensorrt_precision, batch, samples)
        manifest = {
            "format": BUNDLE_FORMAT,
            "created_at": _now(),
            "space": space.spec,
            "arch": space.to_string(arch),
            "arch_index": _index_or_none(space, arch),
            "input_shape": "x".join(map(str, shape)),
            "input_name": INPUT_NAME,
            "output_name": OUTPUT_NAME,
            "exporter": exporter,
            "opset": _opset_of(partial / ONNX_FILE),
            "weights": {"source": "given model" if model is not None else f"random init (seed {seed})",
                        "batchnorm_calibrated": bn_calibrated},
            "int8": int8_info,
            "tensorrt": engine_info,
            "macs": _macs_or_none(space, arch, shape),
            "predicted": {k: float(v) for k, v in (predicted or {}).items() if v is not None},
            "accuracy": None if accuracy is None else float(accuracy),
            "budgets": budgets,
            "tolerances": {"rtol": float(rtol), "atol": float(atol)},
            "device": {"backend": backend.name, "threads": backend.threads, "id": backend.device_id(),
                       "name": backend.device_name(), "fingerprint": backend.fingerprint()},
            "versions": _versions(),
            "files": {name: file_record(partial / name) for name in _bundle_files(partial)},
        }
        report, measurement = _check(partial, manifest, backend, batch, rtol, atol, budgets, protocol, net=net)
        for key in ("parity", "int8_parity", "tensorrt_parity", "measured", "measured_int8", "prediction_error",
                    "budget_check", "failures", "passed"):
            manifest[key] = report[key]
        write_manifest(partial, manifest)
        _replace_dir(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if store is not None:
        _store_measurement(store, measurement, space, arch, out_dir, manifest)
    return manifest


@contextlib.contextmanager
def torch_threads(n: int):
    """PyTorch on `n` threads for the block: the reference runs here are tiny, and on a busy machine torch's
    default (every core) is over ten times slower than one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def calibrate_batchnorm(net: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 16) -> nn.Module:
    """Set every BatchNorm's running statistics to their average over `x` in batches of `batch_size` (forward
    passes in train mode, no gradients), then return the net in eval mode. Untrained networks keep BatchNorm's initial statistics
    (mean 0, variance 1), under which NB201 cells shrink the signal until the logits barely depend on the input."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return net.eval()
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    net.train()
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            net(x[start : start + batch_size])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    return net.eval()


# --- validation --------------------------------------------------------------------------------------------
@_one_torch_thread
def validate_bundle(
    path: str | Path,
    backend=None,
    threads: int | None = None,
    batch: int = 1,
    rtol: float | None = None,
    atol: float | None = None,
    budgets: dict | None = None,
    protocol=None,
    measure: bool = True,
) -> dict[str, Any]:
    """Re-check a bundle (later, or on another machine) and return the report; the bundle is not changed.

    One HwnasError (bad input, nothing checked) when: the folder or manifest is missing or malformed,
    model.onnx is missing or fails onnx.checker, the manifest's input_shape does not match model.onnx's input,
    or the backend does not work here. Reported as failures
    (`passed` False): a file that no longer matches its SHA-256, ONNX Runtime outputs out of tolerance against
    the PyTorch network rebuilt from weights.pt (or, without weights, the outputs recorded at export), a
    TensorRT engine out of tolerance, a measurement over budget. weights.pt may be left out of a deployed
    copy (not a failure; parity then uses the recorded outputs). Defaults: backend, threads, tolerances and
    budgets recorded in the manifest (the backend only if it works here, else onnxruntime-cpu).
    """
    folder = bundle_folder(path)
    manifest = read_manifest(folder)
    check_input_shape_matches(manifest, load_onnx(folder / ONNX_FILE))
    budgets = check_budgets(budgets) if budgets is not None else check_budgets(manifest.get("budgets"))
    if int(batch) < 1:
        raise HwnasError(f"batch={batch} is not accepted; give a positive batch size")
    recorded = manifest.get("device") or {}
    if backend is None:
        backend = _recorded_backend(manifest)
    if threads is None:
        same = (backend if isinstance(backend, str) else getattr(backend, "name", None)) == recorded.get("backend")
        threads = int(recorded.get("threads") or 1) if same else 1
    backend = _resolve_backend(backend, threads)
    tolerances = manifest.get("tolerances") or {}
    rtol = float(tolerances.get("rtol", 1e-3)) if rtol is None else float(rtol)
    atol = float(tolerances.get("atol", 1e-4)) if atol is None else float(atol)
    report, _ = _check(folder, manifest, backend, batch, rtol, atol, budgets, protocol, measure=measure)
    return {"bundle": str(folder.resolve()), "checked_at": _now(), "arch": manifest["arch"], "space": manifest["space"],
            "device": {"backend": backend.name, "threads": backend.threads, "id": backend.device_id(),
                       "name": backend.device_name(), "same_as_export": backend.device_id() == recorded.get("id")},
            **report}


def _check(folder: Path, manifest: dict[str, Any], backend, batch, rtol, atol, budgets, protocol, net=None,  # noqa: C901 - being split (issue 8)
           measure: bool = True) -> tuple[dict[str, Any], Any]:
    """Hashes, parity (float, int8, TensorRT), measurement and budgets: the report and the Measurement."""
    failures: list[str] = []
    hashes = _hash_status(folder, manifest)
    for name, status in hashes.items():
        if status != "ok" and not (name in OPTIONAL_FILES and status == "missing"):
            failures.append(f"{name} changed since export (its SHA-256 differs from {MANIFEST_FILE})" if status == "changed"
                            else f"{name} is missing (listed in {MANIFEST_FILE})")
    shape = manifest_input_shape(manifest)
    if net is None and hashes.get(WEIGHTS_FILE) == "ok":
        space = _get_space(manifest["space"])
        net = load_weights_into(space, space.from_string(manifest["arch"]), shape, folder / WEIGHTS_FILE)
    batches = _read_parity_file(folder / PARITY_FILE) if hashes.get(PARITY_FILE) == "ok" else {}
    if net is None and not batches:
        raise HwnasError(f"bundle {folder} has neither usable {WEIGHTS_FILE} nor {PARITY_FILE}: nothing to check the "
                         "ONNX model against; re-export it")
    if not batches:  # weights but no recorded inputs: seeded random ones
        batches = {"random": (random_inputs(8, shape, 0), None, None)}

    report: dict[str, Any] = {"hashes": hashes, "onnx_check": "ok"}
    outputs: dict[str, np.ndarray] = {}
    parity: dict[str, Any] = {"reference": "pytorch (weights.pt)" if net is not None else "outputs recorded at export"}
    for kind, (x, recorded, _) in batches.items():
        reference = _torch_outputs(net, x) if net is not None else recorded
        outputs[kind] = _run_onnxruntime(folder / ONNX_FILE, x)
        parity[kind] = compare_outputs(outputs[kind], reference, rtol, atol)
        batches[kind] = (x, reference, batches[kind][2])
    parity["passed"] = all(parity[k]["passed"] for k in batches)
    report["parity"] = parity
    for kind in batches:
        if not parity[kind]["passed"]:
            failures.append(f"ONNX vs PyTorch on {kind} inputs: max abs error {parity[kind]['max_abs_error']:.3g} "
                            f"exceeds atol {atol:g} + rtol {rtol:g} x |reference|")

    report["int8_parity"] = None
    if manifest.get("int8") and hashes.get(INT8_FILE) == "ok":
        report["int8_parity"] = _int8_report(folder / INT8_FILE, batches, outputs, manifest["int8"]["mode"], rtol, atol)

    report["tensorrt_parity"] = None
    if manifest.get("tensorrt") and manifest["tensorrt"].get("file") and hashes.get(ENGINE_FILE) == "ok":
        x = np.concatenate([b[0] for b in batches.values()])
        onnx_all = np.concatenate([outputs[k] for k in batches])
        report["tensorrt_parity"] = _tensorrt_parity(folder, manifest, x, onnx_all, rtol, atol)
        if report["tensorrt_parity"].get("passed") is False:
            failures.append(f"TensorRT vs ONNX Runtime: max abs error {report['tensorrt_parity']['max_abs_error']:.3g} "
                            "out of tolerance")

    measurement = None
    report["measured"] = report["measured_int8"] = None
    if measure:
        measurement = _measure(backend, folder, manifest, net, shape, int(batch), protocol)
        report["measured"] = _measured_dict(backend, measurement)
        if report["int8_parity"] is not None and hasattr(backend, "measure_onnx") and hasattr(backend, "session"):
            report["measured_int8"] = _measured_dict(
                backend, backend.measure_onnx(folder / INT8_FILE, shape, int(batch), protocol, model=net))
    measured = report["measured"] or {}
    report["prediction_error"] = {
        key: {"predicted": p, "measured": measured.get(key),
              "error_pct": None if not measured.get(key) else 100.0 * (p - measured[key]) / measured[key]}
        for key, p in (manifest.get("predicted") or {}).items() if key in BUDGET_KEYS}
    report["budget_check"] = {}
    for key, limit in budgets.items() if measure else ():
        value = measured.get(key)
        ok = value is not None and value <= limit
        report["budget_check"][key] = {"budget": limit, "measured": value, "passed": ok}
        if value is None:
            failures.append(f"{key}: not measured on {backend.name}, budget {limit:g}")
        elif not ok:
            failures.append(f"{key}: measured {value:.4g} over budget {limit:g} on {backend.name}")
    report["failures"] = failures
    report["passed"] = not failures
    return report, measurement


def _int8_report(path: Path, batches, outputs, mode: str, rtol: float, atol: float) -> dict[str, Any]:
    """int8 is not expected to meet float tolerances: its agreement with the float model and, with labels, its
    accuracy change are reported, not judged."""
    out: dict[str, Any] = {"mode": mode}
    for kind, (x, reference, labels) in batches.items():
        int8_out = _run_onnxruntime(path, x)
        fig = compare_outputs(int8_out, reference, rtol, atol)
        out[kind] = {k: fig[k] for k in ("samples", "max_abs_error", "max_rel_error", "top1_agreement")}
        if labels is not None:
            acc_float = float(np.mean(outputs[kind].argmax(1) == labels))
            acc_int8 = float(np.mean(int8_out.argmax(1) == labels))
            out[kind].update(accuracy_float=acc_float, accuracy_int8=acc_int8, accuracy_delta=acc_int8 - acc_float)
    main = out.get("real") or out.get("smooth") or out["random"]
    out["top1_agreement"] = main["top1_agreement"]
    out["accuracy_delta"] = main.get("accuracy_delta")
    return out


def compare_outputs(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> dict[str, Any]:
    """Polygraphy-style comparison of two output batches (samples, classes): passes when every element is within
    atol + rtol * |expected|. `reference_top1_classes` (distinct argmax of `expected`) says how informative the
    top-1 agreement is: 1 means the reference predicts one class for every input."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return {"samples": len(expected), "passed": False, "max_abs_error": float("inf"),
                "max_rel_error": float("inf"), "top1_agreement": 0.0, "rtol": float(rtol), "atol": float(atol),
                "reference_top1_classes": None, "error": f"output shape {actual.shape} != reference {expected.shape}"}
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    scale = np.abs(expected.astype(np.float64))
    return {
        "samples": len(expected),
        "max_abs_error": float(diff.max()) if diff.size else 0.0,
        "max_rel_error": float((diff / np.maximum(scale, atol)).max()) if diff.size else 0.0,
        "top1_agreement": float(np.mean(actual.argmax(axis=1) == expected.argmax(axis=1))),
        "reference_top1_classes": len(np.unique(expected.argmax(axis=1))),
        "rtol": float(rtol),
        "atol": float(atol),
        "passed": bool(np.all(diff <= atol + rtol * scale)),
    }


# --- manifest and files ------------------------------------------------------------------------------------
def bundle_folder(path: str | Path) -> Path:
    """The bundle folder for a folder or for a file inside one (model.onnx, manifest.json)."""
    p = Path(path)
    if p.is_file():
        if p.suffix == ".onnx" or p.name == MANIFEST_FILE:
            return p.parent
        raise HwnasError(f"{path} is not a bundle folder (written by `hwnas export`); give the folder or its {ONNX_FILE}")
    if p.is_dir():
        return p
    raise HwnasError(f"no bundle at {path}; give a folder written by `hwnas export` (or its model.onnx)")


def read_manifest(path: str | Path) -> dict[str, Any]:
    folder = bundle_folder(path)
    f = folder / MANIFEST_FILE
    if not f.is_file():
        raise HwnasError(f"no {MANIFEST_FILE} in {folder}; validate takes a folder written by `hwnas export`")
    try:
        manifest = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HwnasError(f"{f} is not valid JSON ({e}); re-export the bundle with `hwnas export`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise HwnasError(f"{f} is not an hwnas bundle manifest (format {BUNDLE_FORMAT!r} expected)")
    missing = [k for k in ("space", "arch", "input_shape", "files") if k not in manifest]
    if missing or not isinstance(manifest["files"], dict) or ONNX_FILE not in manifest["files"]:
        raise HwnasError(f"{f} lacks {', '.join(missing) or 'model.onnx in files'}; re-export the bundle with `hwnas export`")
    return manifest


def manifest_input_shape(manifest: dict[str, Any]) -> tuple[int, ...]:
    """The input shape of one sample recorded in the manifest ("3x32x32"; a list of sizes is also read)."""
    from hwnas.measurement import shape_from_str

    recorded = manifest.get("input_shape")
    if isinstance(recorded, list) and recorded and all(isinstance(v, int) and v > 0 for v in recorded):
        return tuple(recorded)
    try:
        return shape_from_str(recorded) if isinstance(recorded, str) else shape_from_str("")
    except HwnasError:
        raise HwnasError(f"manifest input_shape {recorded!r} is malformed; accepted: positive sizes joined by 'x' "
                         "as `hwnas export` writes them, e.g. 3x32x32; re-export the bundle") from None


def onnx_input_dims(model) -> tuple[int | None, ...]:
    """The dims of the ONNX graph's data input (the first input that is not an initializer); None where the
    dim is symbolic (a dynamic batch)."""
    initializers = {t.name for t in model.graph.initializer}
    graph_input = next((i for i in model.graph.input if i.name not in initializers), None)
    if graph_input is None:
        return ()
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                 for d in graph_input.type.tensor_type.shape.dim)


def check_input_shape_matches(manifest: dict[str, Any], model) -> tuple[int, ...]:
    """The manifest's input shape, after checking it against the ONNX model's input (batch dim excluded; a
    symbolic dim matches any size); a mismatch is one HwnasError."""
    shape = manifest_input_shape(manifest)
    dims = onnx_input_dims(model)[1:]
    if len(dims) != len(shape) or any(d is not None and d != s for d, s in zip(dims, shape)):
        shown = "x".join("?" if d is None else str(d) for d in dims) or "(no sample dims)"
        raise HwnasError(f"manifest input_shape {'x'.join(map(str, shape))} does not match {ONNX_FILE}'s input "
                         f"{shown}; re-export the bundle with `hwnas export`")
    return shape


def check_output_dir(out_dir: str | Path) -> Path:
    """`out_dir` as a Path, after checking that a bundle can be written there: a new folder, an empty one or an
    earlier bundle (replaced). A file in the way, a folder holding other things or a read-only parent is one
    HwnasError, raised before any work is done."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILE).is_file())):
        raise HwnasError(f"{out_dir} exists and is not an hwnas bundle; give an empty or new folder for --out")
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != out_dir and not existing.is_dir():
        raise HwnasError(f"cannot write {out_dir} ({existing} is a file, not a folder); give a folder path for --out")
    if not os.access(existing if existing.is_dir() else existing.parent, os.W_OK):
        raise HwnasError(f"cannot write {out_dir} (no write permission in {existing}); give a writable folder for --out")
    return out_dir


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a manifest."""
    f = Path(folder) / MANIFEST_FILE
    tmp = f.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    os.replace(tmp, f)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    return {"sha256": file_sha256(path), "bytes": path.stat().st_size}


def _hash_status(folder: Path, manifest: dict[str, Any]) -> dict[str, str]:
    out = {}
    for name, record in manifest["files"].items():
        f = folder / name
        if not f.is_file():
            out[name] = "missing"
        else:
            out[name] = "ok" if file_sha256(f) == (record or {}).get("sha256") else "changed"
    return out


def verify_hashes(path: str | Path) -> None:
    """Raise one HwnasError naming every bundle file that is missing or no longer matches its SHA-256."""
    folder = bundle_folder(path)
    bad = {n: s for n, s in _hash_status(folder, read_manifest(folder)).items() if s != "ok"}
    if bad:
        raise HwnasError(f"bundle {folder}: " + ", ".join(f"{n} {s}" for n, s in bad.items())
                         + f" since export (SHA-256 in {MANIFEST_FILE}); re-export it with `hwnas export`")


def check_budgets(budgets: dict | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (budgets or {}).items():
        if value is None:
            continue
        if key not in BUDGET_KEYS:
            raise HwnasError(f"unknown budget {key!r}; accepted: {', '.join(BUDGET_KEYS)}")
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = float("nan")
        if not v > 0:
            raise HwnasError(f"budget {key}={value!r} is not accepted; give a positive number")
        out[key] = v
    return out


def load_weights_into(space, arch, shape, weights_path: str | Path) -> nn.Module:
    """`space.build(arch, shape)` with weights from a torch.save'd state_dict; errors are one HwnasError."""
    p = Path(weights_path)
    if not p.is_file():
        raise HwnasError(f"no weights file at {weights_path}; give a state_dict saved with torch.save")
    torch.manual_seed(0)
    net = space.build(arch, shape)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch.load raises many types for one meaning: not a state_dict
        raise HwnasError(f"{p} is not a readable PyTorch state_dict ({type(e).__name__}); save one with "
                         "torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise HwnasError(f"{p} holds a {type(state).__name__}, not a state_dict (a dict of tensors)")
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise HwnasError(f"{weights_path} does not fit {space.to_string(arch)} in {space.spec} ({first[:160]})") from None
    return net.eval()


# --- helpers -----------------------------------------------------------------------------------------------
def _get_space(spec: str):
    from hwnas.spaces import get_space

    return get_space(spec)


def _resolve_shape(space, input_shape) -> tuple[int, ...]:
    from hwnas.measurement import shape_from_str

    if input_shape is None:
        return space.check_input_shape(space.default_input_shape)
    if isinstance(input_shape, str):
        input_shape = shape_from_str(input_shape)
    return space.check_input_shape(input_shape)


def _check_samples(x, shape, what: str) -> np.ndarray | None:
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    data = np.asarray(x, dtype=np.float32)
    if data.ndim != len(shape) + 1 or tuple(data.shape[1:]) != tuple(shape) or len(data) == 0:
        raise HwnasError(f"{what} have shape {tuple(data.shape)}; accepted: (N, {', '.join(map(str, shape))}) with N >= 1")
    return data


def _check_labels(labels, real) -> np.ndarray | None:
    if labels is None:
        return None
    if real is None:
        raise HwnasError("labels were given without inputs; give both (real samples and their classes)")
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    y = np.asarray(labels)
    if y.shape != (len(real),) or not np.issubdtype(y.dtype, np.integer):
        raise HwnasError(f"labels have shape {y.shape} and dtype {y.dtype}; accepted: ({len(real)},) integer classes")
    return y.astype(np.int64)


def _smooth_inputs(n: int, shape, seed: int) -> np.ndarray | None:
    """Image-like inputs for (C, H, W) shapes: low-frequency noise (drawn at a quarter of the resolution and
    upsampled bilinearly), standardised per sample. Neighbouring pixels correlate as in photographs, which white
    noise lacks; None for other shapes."""
    if len(shape) != 3:
        return None
    c, h, w = shape
    low = np.random.default_rng(seed + 7).standard_normal((int(n), c, max(1, h // 4), max(1, w // 4)))
    x = torch.nn.functional.interpolate(torch.from_numpy(low.astype(np.float32)), size=(h, w), mode="bilinear",
                                        align_corners=False).numpy()
    x = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / (x.std(axis=(1, 2, 3), keepdims=True) + 1e-6)
    return x.astype(np.float32)


def _resolve_backend(backend, threads: int = 1):
    from hwnas.profilers import Backend, get_backend

    if isinstance(backend, Backend):
        backend.require()
        return backend
    return get_backend(backend or DEFAULT_BACKEND, threads=int(threads))


def _recorded_backend(manifest: dict[str, Any]) -> str:
    """The backend the bundle was measured on if it works here, else the default."""
    from hwnas.profilers import BACKENDS

    name = (manifest.get("device") or {}).get("backend")
    if name and name in BACKENDS.names() and BACKENDS.get(name)().available():
        return name
    return DEFAULT_BACKEND


def _network_with_weights(space, arch, shape, model: nn.Module | None, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = space.build(arch, shape)
    if model is not None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise HwnasError(f"the given model's weights do not fit {space.to_string(arch)} in {space.spec} "
                             f"({first[:160]}); pass the network built by space.build(arch, input_shape)") from None
    return net.eval()


def _torch_outputs(net: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net.eval()(torch.from_numpy(x)).numpy()


def _write_parity_file(path: Path, net, random_x: np.ndarray, smooth_x, real_x, real_y) -> None:
    arrays = {"random": random_x, "random_reference": _torch_outputs(net, random_x)}
    if smooth_x is not None:
        arrays.update(smooth=smooth_x, smooth_reference=_torch_outputs(net, smooth_x))
    if real_x is not None:
        arrays.update(real=real_x, real_reference=_torch_outputs(net, real_x))
        if real_y is not None:
            arrays["real_labels"] = real_y
    np.savez(path, **arrays)


def _read_parity_file(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """{"random" | "smooth" | "real": (inputs, reference outputs, labels or None)}."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {kind: (z[kind], z[f"{kind}_reference"], z.get(f"{kind}_labels", None))
                    for kind in ("random", "smooth", "real") if kind in z}
    except (OSError, ValueError, KeyError) as e:
        raise HwnasError(f"{path} is not a readable parity file ({type(e).__name__}); re-export the bundle") from None


def _run_onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        return sess.run(None, {sess.get_inputs()[0].name: x})[0]
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HwnasError(f"ONNX Runtime cannot run {path} ({first[:200]}); re-export the bundle") from None


def _build_engine_or_skip(folder: Path, shape, wanted: bool, precision: str, batch: int, samples: int):
    if not wanted:
        return None
    why = tensorrt_unavailable()
    if why:
        return {"skipped": f"TensorRT is not available here: {why}", "precision": precision}
    max_batch = max(int(batch), int(samples), MAX_BATCH)
    source = folder / (INT8_FILE if precision == "int8" else ONNX_FILE)
    (folder / ENGINE_FILE).write_bytes(build_engine(source, shape, fp16=precision in ("fp16", "int8"),
                                                    int8=precision == "int8", opt_batch=batch, max_batch=max_batch))
    return {"file": ENGINE_FILE, "precision": precision, "built_from": source.name, "max_batch": max_batch,
            "gpu": torch.cuda.get_device_name(0), "tensorrt": tensorrt_version()}


def _tensorrt_parity(folder: Path, manifest, x, onnx_out, rtol, atol) -> dict[str, Any]:
    why = tensorrt_unavailable()
    if why:
        return {"skipped": f"TensorRT is not available here: {why}"}
    from hwnas.export.tensorrt import TensorRTRunner

    try:
        runner = TensorRTRunner(folder / ENGINE_FILE)
    except HwnasError as e:  # an engine built on another GPU or TensorRT version: a fact about here, not the bundle
        return {"skipped": str(e)}
    precision = manifest["tensorrt"].get("precision")
    if precision == "int8":  # int8 engines are judged like the int8 ONNX model: reported, not failed
        fig = compare_outputs(runner.infer(x), onnx_out, rtol, atol)
        return {k: fig[k] for k in ("samples", "max_abs_error", "max_rel_error", "top1_agreement")} | {"precision": precision}
    tol = FP16_TOLERANCE if precision == "fp16" else {"rtol": rtol, "atol": atol}
    return {**compare_outputs(runner.infer(x), onnx_out, **tol), "precision": precision}


def _measure(backend, folder: Path, manifest, net, shape, batch, protocol):
    engine = manifest.get("tensorrt") or {}
    if engine.get("file") and hasattr(backend, "measure_engine"):
        try:
            return backend.measure_engine(folder / ENGINE_FILE, shape, batch, protocol, model=net)
        except HwnasError:
            pass  # engine from another GPU or TensorRT version: build from the ONNX file instead
    if hasattr(backend, "measure_onnx"):
        return backend.measure_onnx(folder / ONNX_FILE, shape, batch, protocol, model=net)
    if net is None:
        raise HwnasError(f"backend {backend.name!r} measures PyTorch networks and this bundle has no usable "
                         f"{WEIGHTS_FILE}; use an ONNX backend (onnxruntime-cpu)")
    return backend.measure(net, shape, batch, protocol)


def _measured_dict(backend, m) -> dict[str, Any]:
    return {
        "backend": m.backend, "device": m.device, "device_name": backend.device_name(), "batch": m.batch,
        "latency_ms": m.latency_ms, "latency_p10_ms": m.latency_p10_ms, "latency_p90_ms": m.latency_p90_ms,
        "latency_std_ms": m.latency_std_ms, "runs": m.runs, "energy_mj": m.energy_mj,
        "energy_method": m.energy_method, "versions": m.versions,
    }


def _store_measurement(store, measurement, space, arch, out_dir: Path, manifest) -> None:
    """Keep the exported file's measurement with the profiled ones (it replaces an earlier one of the same key:
    it is the newer, deployed-form measurement)."""
    from hwnas.store import Store

    if measurement is None:
        return
    store = store if isinstance(store, Store) else Store(store)
    measurement.arch, measurement.space = space.to_string(arch), space.spec
    measurement.extra = {**measurement.extra, "bundle": str(out_dir.resolve()), "onnx": str((out_dir / ONNX_FILE).resolve()),
                         "onnx_sha256": manifest["files"][ONNX_FILE]["sha256"]}
    store.add_device(measurement.device, manifest["device"]["name"], manifest["device"]["fingerprint"])
    store.add(measurement, replace=True)
    manifest["stored_in"] = store.url
    write_manifest(out_dir, manifest)


def _bundle_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST_FILE)


def _replace_dir(src: Path, dst: Path) -> None:
    old = None
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _opset_of(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _index_or_none(space, arch) -> int | None:
    try:
        return int(space.index(arch)) if space.size() is not None else None
    except (HwnasError, KeyError):
        return None


def _macs_or_none(space, arch, shape) -> float | None:
    try:
        return float(space.flops(arch, shape))
    except Exception:  # noqa: BLE001 - a space without a cost model still exports
        return None


def _versions() -> dict[str, str | None]:
    return {**library_versions(*CORE_LIBRARIES), "tensorrt": tensorrt_version()}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
