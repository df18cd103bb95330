"""Checking a bundle, at export and later or elsewhere (`validate_bundle`), Polygraphy-style: the same inputs
through the exported file and the PyTorch reference, compared; then the exported file itself is timed on the
device against the budgets. Hashes are checked before any file is parsed, and a backend that cannot run an
ONNX file is refused (timing the PyTorch network instead would validate something that is not deployed)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.conversion import load_onnx
from hwnas.errors import HwnasError
from hwnas.export.manifest import (
    BUDGET_KEYS,
    INT8_FILE,
    MANIFEST_FILE,
    ONNX_FILE,
    PARITY_FILE,
    WEIGHTS_FILE,
    bundle_folder,
    check_budgets,
    check_input_shape_matches,
    check_tolerance,
    hash_failures,
    hash_status,
    manifest_input_shape,
    manifest_tolerances,
    now,
    read_manifest,
)
from hwnas.export.network import (
    load_weights_into,
    one_torch_thread,
    read_parity_file,
    run_onnxruntime,
    summary_of,
    torch_outputs,
)
from hwnas.measurement import random_inputs
from hwnas.profilers import BACKENDS, Backend, get_backend
from hwnas.profilers.onnxruntime import OnnxRuntimeCPU
from hwnas.profilers.tensorrt import TensorRTBackend
from hwnas.profilers.tensorrt_engine import ENGINE_FILE, TensorRTRunner, tensorrt_unavailable
from hwnas.profilers.timing import TimingProtocol, settle_near_budget
from hwnas.spaces import get_space

DEFAULT_BACKEND = "onnxruntime-cpu"
#: fp16 engines differ from the float32 model by half-precision rounding, compounded over the layers
FP16_TOLERANCE = {"rtol": 1e-2, "atol": 1e-2}


@dataclass
class CheckSettings:
    """How a bundle is checked: the backend that times the exported file, the batch timed, the parity tolerances,
    the budgets, the timing protocol, whether to time at all, and whether a listed weights.pt may be absent."""

    backend: Backend
    batch: int = 1
    rtol: float = 1e-3
    atol: float = 1e-4
    budgets: dict[str, float] | None = None
    protocol: TimingProtocol | None = None
    measure: bool = True
    require_weights: bool = True
    #: time the file alternately with this hwnas.profilers.speed.SpeedReference (where the backend can)
    reference: Any = None


def onnx_backends() -> list[str]:
    """The registered backends that time exported ONNX files (`Backend.runs_onnx`)."""
    return [n for n in BACKENDS.names() if BACKENDS.get(n).runs_onnx]


def resolve_backend(backend: str | Backend | None, threads: int = 1) -> Backend:
    """A backend that works here and runs ONNX files; anything else is one HwnasError naming those that do."""
    if isinstance(backend, Backend):
        backend.require()
    else:
        backend = get_backend(backend or DEFAULT_BACKEND, threads=int(threads))
    if not backend.runs_onnx:
        raise HwnasError(f"backend {backend.name!r} runs PyTorch modules, not exported ONNX files, so it cannot time a "
                         f"bundle as deployed; use one of: {', '.join(onnx_backends())}")
    return backend


def recorded_backend(manifest: dict[str, Any]) -> str:
    """The backend the bundle was measured on if it works here and runs ONNX files, else the default."""
    name = (manifest.get("device") or {}).get("backend")
    if isinstance(name, str) and name in BACKENDS.names():
        cls = BACKENDS.get(name)
        if cls.runs_onnx and cls().available():
            return name
    return DEFAULT_BACKEND


# --- validate ----------------------------------------------------------------------------------------------
@one_torch_thread
def validate_bundle(
    path: str | Path,
    backend: str | Backend | None = None,
    threads: int | None = None,
    batch: int = 1,
    rtol: float | None = None,
    atol: float | None = None,
    budgets: dict | None = None,
    protocol: TimingProtocol | None = None,
    measure: bool = True,
    require_weights: bool = True,
) -> dict[str, Any]:
    """Re-check a bundle (later, or on another machine) and return the report; the bundle is not changed.

    One HwnasError (bad input, nothing checked) when: the folder or manifest is missing or malformed (a file
    named outside the bundle, bad tolerances or budgets), model.onnx matches its hash but fails onnx.checker, the
    manifest's input_shape does not match model.onnx's input, a tolerance or budget given here is bad, or the
    backend does not work here or cannot run ONNX files. Reported as failures (`passed` False): a file missing or
    no longer matching its SHA-256 (checked before anything is parsed; a changed model.onnx that no longer
    parses is reported so, without parity), ONNX Runtime outputs out of tolerance against the PyTorch network
    rebuilt from weights.pt, a TensorRT engine out of tolerance, a measurement of the exported file over budget.
    `require_weights=False` accepts a deployed copy without weights.pt: parity then uses the outputs recorded at
    export. Defaults: backend, threads, tolerances and budgets recorded in the manifest (the backend only if it
    works here, else onnxruntime-cpu).
    """
    folder = bundle_folder(path)
    manifest = read_manifest(folder)
    settings = _validate_settings(manifest, backend, threads, batch, rtol, atol, budgets, protocol, measure,
                                  require_weights)
    hashes = hash_status(folder, manifest)
    unreadable = _changed_onnx_that_does_not_load(folder, hashes)
    if unreadable:
        report = _failed_before_parity(hashes, settings, unreadable)
    else:
        check_input_shape_matches(manifest, load_onnx(folder / ONNX_FILE))
        report, _ = check_bundle(folder, manifest, settings, hashes=hashes)
    b = settings.backend
    recorded = manifest.get("device") if isinstance(manifest.get("device"), dict) else {}
    return {"bundle": str(folder.resolve()), "checked_at": now(), "arch": manifest["arch"], "space": manifest["space"],
            "device": {"backend": b.name, "threads": b.threads, "id": b.device_id(), "name": b.device_name(),
                       "same_as_export": b.device_id() == recorded.get("id")},
            **report}


def _validate_settings(manifest, backend, threads, batch, rtol, atol, budgets, protocol, measure,
                       require_weights) -> CheckSettings:
    budgets = check_budgets(budgets) if budgets is not None else check_budgets(manifest.get("budgets"))
    if int(batch) < 1:
        raise HwnasError(f"batch={batch} is not accepted; give a positive batch size")
    tolerances = manifest_tolerances(manifest)  # checked by read_manifest already; given values override
    rtol = tolerances["rtol"] if rtol is None else check_tolerance("rtol", rtol)
    atol = tolerances["atol"] if atol is None else check_tolerance("atol", atol)
    device = manifest.get("device") if isinstance(manifest.get("device"), dict) else {}
    if backend is None:
        backend = recorded_backend(manifest)
    if threads is None:
        same = (backend if isinstance(backend, str) else getattr(backend, "name", None)) == device.get("backend")
        recorded_threads = device.get("threads")
        threads = recorded_threads if same and isinstance(recorded_threads, int) and recorded_threads >= 1 else 1
    return CheckSettings(resolve_backend(backend, threads), int(batch), rtol, atol, budgets, protocol, bool(measure),
                         bool(require_weights))


def _changed_onnx_that_does_not_load(folder: Path, hashes: dict[str, str]) -> str | None:
    """Why model.onnx cannot be checked when it changed since export and no longer parses, else None."""
    if hashes.get(ONNX_FILE) == "missing":
        return f"{ONNX_FILE} is missing, so nothing can be checked"
    if hashes.get(ONNX_FILE) != "changed":
        return None
    try:
        load_onnx(folder / ONNX_FILE)
    except HwnasError as e:
        return str(e)
    return None


def _failed_before_parity(hashes, settings: CheckSettings, why: str) -> dict[str, Any]:
    failures = hash_failures(hashes, () if settings.require_weights else (WEIGHTS_FILE,))
    if why not in failures and not why.startswith(f"{ONNX_FILE} is missing"):
        failures.append(why)
    return {"hashes": hashes, "onnx_check": why, "parity": None, "int8_parity": None, "tensorrt_parity": None,
            "measured": None, "measured_int8": None, "prediction_error": {}, "budget_check": {},
            "failures": failures, "passed": False}


# --- the checks --------------------------------------------------------------------------------------------
def check_bundle(folder: Path, manifest: dict[str, Any], settings: CheckSettings, net=None,
                 hashes: dict[str, str] | None = None) -> tuple[dict[str, Any], Any]:
    """Hashes, parity (float, int8, TensorRT), measurement of the exported file and budgets: the report and the
    Measurement (None without measuring). `net`: the PyTorch reference (else rebuilt from weights.pt)."""
    hashes = hash_status(folder, manifest) if hashes is None else hashes
    failures = hash_failures(hashes, () if settings.require_weights else (WEIGHTS_FILE,))
    shape = manifest_input_shape(manifest)
    net, batches = _reference(folder, manifest, hashes, shape, net)
    report: dict[str, Any] = {"hashes": hashes, "onnx_check": "ok"}
    parity, outputs = _float_parity(folder, batches, net, settings, failures)
    report["parity"] = parity
    report["int8_parity"] = None
    if isinstance(manifest.get("int8"), dict) and hashes.get(INT8_FILE) == "ok":
        trained = not str((manifest.get("weights") or {}).get("source", "")).startswith("random init")
        report["int8_parity"] = _int8_report(folder / INT8_FILE, batches, outputs, manifest["int8"].get("mode"),
                                             settings.rtol, settings.atol, trained)
    report["tensorrt_parity"] = _tensorrt_report(folder, manifest, hashes, batches, outputs, settings, failures)
    measurement, report["measured"], report["measured_int8"] = _measure_report(folder, manifest, net, shape, settings,
                                                                               report["int8_parity"] is not None)
    report["prediction_error"] = _prediction_error(manifest, report["measured"] or {})
    report["budget_check"] = _budget_report(report["measured"] or {}, settings, failures)
    report["failures"] = failures
    report["passed"] = not failures
    return report, measurement


def _reference(folder: Path, manifest, hashes, shape, net):
    """The PyTorch reference (given, else rebuilt from an unchanged weights.pt, else None) and the parity batches
    {kind: (inputs, recorded outputs or None, labels or None)}."""
    if net is None and hashes.get(WEIGHTS_FILE) == "ok":
        space = get_space(manifest["space"])
        arch = space.from_string(manifest["arch"])
        space.check_fits(shape, arch=arch)
        net = load_weights_into(space, arch, shape, folder / WEIGHTS_FILE)
    batches = read_parity_file(folder / PARITY_FILE) if hashes.get(PARITY_FILE) == "ok" else {}
    if net is None and not batches:
        raise HwnasError(f"bundle {folder} has neither usable {WEIGHTS_FILE} nor {PARITY_FILE}: nothing to check the "
                         "ONNX model against; re-export it")
    if not batches:  # weights but no recorded inputs: seeded random ones
        batches = {"random": (random_inputs(8, shape, 0), None, None)}
    return net, batches


def _float_parity(folder: Path, batches, net, settings: CheckSettings, failures: list[str]):
    """ONNX Runtime against the reference on every batch; fills in the batches' reference outputs."""
    outputs: dict[str, np.ndarray] = {}
    parity: dict[str, Any] = {"reference": "pytorch (weights.pt)" if net is not None else "outputs recorded at export"}
    for kind, (x, recorded, labels) in list(batches.items()):
        reference = torch_outputs(net, x) if net is not None else recorded
        outputs[kind] = run_onnxruntime(folder / ONNX_FILE, x)
        parity[kind] = compare_outputs(outputs[kind], reference, settings.rtol, settings.atol)
        batches[kind] = (x, reference, labels)
        if not parity[kind]["passed"]:
            failures.append(f"ONNX vs PyTorch on {kind} inputs: max abs error {parity[kind]['max_abs_error']:.3g} "
                            f"exceeds atol {settings.atol:g} + rtol {settings.rtol:g} x |reference|")
    parity["passed"] = all(parity[k]["passed"] for k in batches)
    return parity, outputs


def _int8_report(path: Path, batches, outputs, mode, rtol: float, atol: float, trained: bool = True
                 ) -> dict[str, Any]:
    """int8 is not expected to meet float tolerances: its agreement with the float model and, with labels and
    trained weights (an accuracy change of untrained weights means nothing), its accuracy change are reported,
    not judged."""
    out: dict[str, Any] = {"mode": mode, "trained": trained}
    for kind, (x, reference, labels) in batches.items():
        int8_out = run_onnxruntime(path, x)
        out[kind] = summary_of(compare_outputs(int8_out, reference, rtol, atol))
        if labels is not None and trained:
            acc_float = float(np.mean(outputs[kind].argmax(1) == labels))
            acc_int8 = float(np.mean(int8_out.argmax(1) == labels))
            out[kind].update(accuracy_float=acc_float, accuracy_int8=acc_int8, accuracy_delta=acc_int8 - acc_float)
    main = out.get("real") or out.get("smooth") or out["random"]
    out["top1_agreement"] = main["top1_agreement"]
    out["accuracy_delta"] = main.get("accuracy_delta")
    return out


def _tensorrt_report(folder: Path, manifest, hashes, batches, outputs, settings: CheckSettings, failures: list[str]):
    engine = manifest.get("tensorrt")
    if not (isinstance(engine, dict) and engine.get("file") and hashes.get(ENGINE_FILE) == "ok"):
        return None
    x = np.concatenate([b[0] for b in batches.values()])
    onnx_all = np.concatenate([outputs[k] for k in batches])
    report = tensorrt_parity(folder, engine.get("precision"), x, onnx_all, settings.rtol, settings.atol)
    if report.get("passed") is False:
        failures.append(f"TensorRT vs ONNX Runtime: max abs error {report['max_abs_error']:.3g} out of tolerance")
    return report


def tensorrt_parity(folder: Path, precision, x, onnx_out, rtol, atol) -> dict[str, Any]:
    """The bundle's engine against ONNX Runtime's outputs; skipped with the reason where TensorRT is not usable."""
    why = tensorrt_unavailable()
    if why:
        return {"skipped": f"TensorRT is not available here: {why}"}
    try:
        runner = TensorRTRunner(folder / ENGINE_FILE)
    except HwnasError as e:  # an engine built on another GPU or TensorRT version: a fact about here, not the bundle
        return {"skipped": str(e)}
    if precision == "int8":  # int8 engines are judged like the int8 ONNX model: reported, not failed
        return {**summary_of(compare_outputs(runner.infer(x), onnx_out, rtol, atol)), "precision": precision}
    tol = FP16_TOLERANCE if precision == "fp16" else {"rtol": rtol, "atol": atol}
    return {**compare_outputs(runner.infer(x), onnx_out, **tol), "precision": precision}


def _measure_report(folder: Path, manifest, net, shape, settings: CheckSettings, has_int8: bool):
    """(Measurement, its dict, the int8 file's dict): the exported file timed as deployed; Nones without measuring."""
    if not settings.measure:
        return None, None, None
    b, batch, protocol = settings.backend, settings.batch, settings.protocol
    measurement = None
    engine = manifest.get("tensorrt") if isinstance(manifest.get("tensorrt"), dict) else {}
    if engine.get("file") and isinstance(b, TensorRTBackend):
        try:
            measurement = b.measure_engine(folder / ENGINE_FILE, shape, batch, protocol, model=net)
        except HwnasError:
            measurement = None  # engine from another GPU or TensorRT version: build from the ONNX file instead
    reference = settings.reference if getattr(b, "times_against_reference", False) else None
    if measurement is None and reference is not None:  # alternately with the search's reference: drift cancels
        measurement = b.measure_onnx(folder / ONNX_FILE, shape, batch, protocol, model=net, reference=reference)
    if measurement is None:  # a verdict close to a budget (or over it) is decided on the fastest of three sessions
        measurement, _ = settle_near_budget(lambda: b.measure_onnx(folder / ONNX_FILE, shape, batch, protocol, model=net),
                                            settings.budgets)
    measured_int8 = None
    if has_int8 and isinstance(b, OnnxRuntimeCPU):  # int8 QDQ files are timed where ONNX Runtime runs them
        int8 = (b.measure_onnx(folder / INT8_FILE, shape, batch, protocol, model=net) if reference is None else
                b.measure_onnx(folder / INT8_FILE, shape, batch, protocol, model=net, reference=reference))
        measured_int8 = measured_dict(b, int8)
    return measurement, measured_dict(b, measurement), measured_int8


def _prediction_error(manifest, measured: dict[str, Any]) -> dict[str, Any]:
    predicted = manifest.get("predicted") if isinstance(manifest.get("predicted"), dict) else {}
    out = {}
    for key, p in predicted.items():
        if key in BUDGET_KEYS and isinstance(p, (int, float)):
            m = measured.get(key)
            out[key] = {"predicted": p, "measured": m, "error_pct": None if not m else 100.0 * (p - m) / m}
    return out


def _budget_report(measured: dict[str, Any], settings: CheckSettings, failures: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not settings.measure:
        return out
    name = settings.backend.name
    for key, limit in (settings.budgets or {}).items():
        value = measured.get(key)
        ok = value is not None and value <= limit
        out[key] = {"budget": limit, "measured": value, "passed": ok}
        if value is None:
            failures.append(f"{key}: not measured on {name}, budget {limit:g}")
        elif not ok:
            failures.append(f"{key}: measured {value:.4g} over budget {limit:g} on {name}")
    return out


def measured_dict(backend: Backend, m) -> dict[str, Any]:
    """The report's figures of a Measurement. Timed against a speed reference, `latency_ms` is the latency at the
    reference's nominal speed (what the budget is judged on; p10, p90 and std on the same scale), `latency_raw_ms`
    the median as timed, and `speed_reference` what the reference measured (its ratio, and the machine's slowdown
    against its nominal)."""
    out = {
        "backend": m.backend, "device": m.device, "device_name": backend.device_name(), "batch": m.batch,
        "latency_ms": m.latency_ms, "latency_p10_ms": m.latency_p10_ms, "latency_p90_ms": m.latency_p90_ms,
        "latency_std_ms": m.latency_std_ms, "runs": m.runs, "energy_mj": m.energy_mj,
        "energy_method": m.energy_method, "versions": m.versions,
    }
    speed = (m.extra or {}).get("speed_reference")
    if speed and m.latency_ms:  # the spread on the same scale as the figure
        k = speed["latency_ms"] / m.latency_ms
        out.update(latency_ms=speed["latency_ms"], latency_p10_ms=k * m.latency_p10_ms,
                   latency_p90_ms=k * m.latency_p90_ms, latency_std_ms=k * m.latency_std_ms, latency_raw_ms=m.latency_ms,
                   speed_reference=speed)
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


__all__ = [
    "DEFAULT_BACKEND",
    "MANIFEST_FILE",
    "CheckSettings",
    "check_bundle",
    "compare_outputs",
    "onnx_backends",
    "recorded_backend",
    "resolve_backend",
    "tensorrt_parity",
    "validate_bundle",
]
