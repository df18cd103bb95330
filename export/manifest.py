"""A bundle's manifest and files: names, reading and checking the manifest, hashes, budgets and tolerances.

Everything a manifest says is checked before it is used: file names must be plain names inside the bundle
(a manifest naming `/etc/hostname` or `../../x` is refused, never hashed), tolerances and budgets must be
finite non-negative (positive) numbers, the input shape must be sizes joined by 'x'."""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hwnas.errors import HwnasError, quote
from hwnas.files import atomic_write, read_json
from hwnas.measurement import TARGETS, shape_from_str
from hwnas.profilers.tensorrt_engine import ENGINE_FILE

BUNDLE_FORMAT = "hwnas-bundle/1"
MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
WEIGHTS_FILE = "weights.pt"
PARITY_FILE = "parity.npz"
#: every file a bundle may hold besides the manifest
BUNDLE_FILES = (ONNX_FILE, INT8_FILE, ENGINE_FILE, WEIGHTS_FILE, PARITY_FILE)
BUDGET_KEYS = tuple(TARGETS)
DEFAULT_TOLERANCES = {"rtol": 1e-3, "atol": 1e-4}


# --- where a bundle is -------------------------------------------------------------------------------------
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


# --- the manifest ------------------------------------------------------------------------------------------
def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the bundle at `path`, checked: format, required keys, file names inside the bundle with a
    SHA-256 each, tolerances and budgets. Anything malformed is one HwnasError; no file is read but the manifest."""
    folder = bundle_folder(path)
    f = folder / MANIFEST_FILE
    if not f.is_file():
        raise HwnasError(f"no {MANIFEST_FILE} in {folder}; validate takes a folder written by `hwnas export`")
    manifest = read_json(f, MANIFEST_FILE, "re-export the bundle with `hwnas export`")
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise HwnasError(f"{f} is not an hwnas bundle manifest (format {BUNDLE_FORMAT!r} expected)")
    missing = [k for k in ("space", "arch", "input_shape", "files") if k not in manifest]
    if missing or not isinstance(manifest["files"], dict) or ONNX_FILE not in manifest["files"]:
        raise HwnasError(f"{f} lacks {', '.join(missing) or 'model.onnx in files'}; re-export the bundle with `hwnas export`")
    for key in ("space", "arch"):
        if not isinstance(manifest[key], str):
            raise HwnasError(f"{f}: {key} {quote(manifest[key])} is not a string; re-export the bundle")
    check_file_records(manifest["files"], f)
    manifest_tolerances(manifest)
    try:
        check_budgets(manifest.get("budgets"))
    except HwnasError as e:
        raise HwnasError(f"{f}: {e}") from None
    return manifest


def check_file_records(files: dict[str, Any], where: str | Path = MANIFEST_FILE) -> None:
    """Every listed file is a plain name inside the bundle (one of BUNDLE_FILES) with a SHA-256: a manifest that
    names `/etc/hostname` or `../../x` is refused before anything is opened."""
    for name, record in files.items():
        if name not in BUNDLE_FILES:
            shown = quote(name)
            if Path(name).name != name or name in (".", ".."):
                raise HwnasError(f"{where} lists {shown}, a path outside the bundle folder; a bundle lists only its "
                                 f"own files ({', '.join(BUNDLE_FILES)}); re-export the bundle")
            raise HwnasError(f"{where} lists {shown}, which is not a bundle file; accepted: {', '.join(BUNDLE_FILES)}")
        sha = record.get("sha256") if isinstance(record, dict) else None
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            raise HwnasError(f"{where}: {name} has no SHA-256 (64 hex digits) but {quote(record)}; re-export the bundle")


def check_tolerance(name: str, value: Any) -> float:
    """A parity tolerance: a finite number >= 0 (a string, NaN, infinity or a negative number is one HwnasError)."""
    v = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else float("nan")
    if not (math.isfinite(v) and v >= 0):
        raise HwnasError(f"tolerance {name}={quote(value)} is not accepted; give a finite number >= 0")
    return float(v)


def manifest_tolerances(manifest: dict[str, Any]) -> dict[str, float]:
    """{"rtol", "atol"} recorded in the manifest (defaults where absent), each checked."""
    recorded = manifest.get("tolerances")
    if recorded is None:
        recorded = {}
    if not isinstance(recorded, dict):
        raise HwnasError(f"manifest tolerances {quote(recorded)} are malformed; accepted: "
                         '{"rtol": x, "atol": y} with finite numbers >= 0')
    try:
        return {k: check_tolerance(k, recorded.get(k, d)) for k, d in DEFAULT_TOLERANCES.items()}
    except HwnasError as e:
        raise HwnasError(f"manifest {e}; re-export the bundle or give --rtol/--atol") from None


def manifest_input_shape(manifest: dict[str, Any]) -> tuple[int, ...]:
    """The input shape of one sample recorded in the manifest ("3x32x32"; a list of sizes is also read)."""
    recorded = manifest.get("input_shape")
    if isinstance(recorded, list) and recorded and all(isinstance(v, int) and v > 0 for v in recorded):
        return tuple(recorded)
    try:
        return shape_from_str(recorded) if isinstance(recorded, str) else shape_from_str("")
    except HwnasError:
        raise HwnasError(f"manifest input_shape {quote(recorded)} is malformed; accepted: positive sizes joined by 'x' "
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


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a manifest."""
    with atomic_write(Path(folder) / MANIFEST_FILE) as f:
        f.write(json.dumps(manifest, indent=2, default=str) + "\n")


# --- hashes ------------------------------------------------------------------------------------------------
def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    return {"sha256": file_sha256(path), "bytes": path.stat().st_size}


def hash_status(folder: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """{file: "ok" | "changed" | "missing"} for every file the (checked) manifest lists."""
    check_file_records(manifest["files"])
    out = {}
    for name, record in manifest["files"].items():
        f = folder / name
        if not f.is_file():
            out[name] = "missing"
        else:
            out[name] = "ok" if file_sha256(f) == record["sha256"] else "changed"
    return out


def hash_failures(hashes: dict[str, str], optional: tuple[str, ...] = ()) -> list[str]:
    """One failure line per file that changed, or is missing and not in `optional`."""
    out = []
    for name, status in hashes.items():
        if status == "changed":
            out.append(f"{name} changed since export (its SHA-256 differs from {MANIFEST_FILE})")
        elif status == "missing" and name not in optional:
            out.append(f"{name} is missing (listed in {MANIFEST_FILE})")
    return out


def verify_hashes(path: str | Path) -> None:
    """Raise one HwnasError naming every bundle file that is missing or no longer matches its SHA-256."""
    folder = bundle_folder(path)
    bad = {n: s for n, s in hash_status(folder, read_manifest(folder)).items() if s != "ok"}
    if bad:
        raise HwnasError(f"bundle {folder}: " + ", ".join(f"{n} {s}" for n, s in bad.items())
                         + f" since export (SHA-256 in {MANIFEST_FILE}); re-export it with `hwnas export`")


# --- budgets -----------------------------------------------------------------------------------------------
def check_budgets(budgets: dict | None) -> dict[str, float]:
    if budgets is not None and not isinstance(budgets, dict):
        raise HwnasError(f"budgets {quote(budgets)} are malformed; accepted: a mapping of {', '.join(BUDGET_KEYS)} "
                         "to positive numbers")
    out: dict[str, float] = {}
    for key, value in (budgets or {}).items():
        if value is None:
            continue
        if key not in BUDGET_KEYS:
            raise HwnasError(f"unknown budget {quote(key)}; accepted: {', '.join(BUDGET_KEYS)}")
        v = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else float("nan")
        if not (v > 0 and math.isfinite(v)):
            raise HwnasError(f"the {key} budget {quote(value)} is not accepted; give a finite positive number")
        out[key] = float(v)
    return out


# --- folders -----------------------------------------------------------------------------------------------
def bundle_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST_FILE)


def replace_dir(src: Path, dst: Path) -> None:
    """Move the complete bundle `src` to `dst`, replacing an earlier bundle there only once `src` is complete."""
    old = None
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def now() -> str:
    return datetime.now(timezone.utc).isoformat()
