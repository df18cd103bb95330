"""The front door the CLI and notebooks share: fit a predictor from the store or a CSV file, save it with its
metadata (and a predicted-vs-measured plot), predict for architectures or for every row of a CSV file."""
from __future__ import annotations

import copy
import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import HwnasError, quote
from hwnas.files import atomic_write, read_csv_rows, read_wide_csv
from hwnas.measurement import TARGETS, check_value
from hwnas.predictors.auto import AUTO, choose_predictor
from hwnas.predictors.base import Predictor, get_predictor, load_predictor
from hwnas.predictors.encodings import ENCODINGS, encode_archs
from hwnas.predictors.metrics import finite_metrics, regression_metrics
from hwnas.predictors.transfer import cached_pretrain, transfer_cache_key
from hwnas.spaces import get_space
from hwnas.spaces.base import Arch, SearchSpace

MIN_MEASUREMENTS = 5


def _space(space: SearchSpace | str) -> SearchSpace:
    return get_space(space) if isinstance(space, str) else space


def fit_predictor(X: np.ndarray, y: np.ndarray, predictor: str = "mlp", encoding: str | None = None,
                  holdout: float = 0.2, seed: int = 0, settings: Mapping[str, Any] | None = None,
                  sources: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                  pretrained: Predictor | None = None) -> tuple[Predictor, dict[str, Any]]:
    """Fit on a random (1 - holdout) share, report metrics on the rest, then refit on every row.

    The held-out measured and predicted values are kept on the returned predictor as `.heldout` (for the plot).
    `sources` ({device: (X, y)}) pretrains a `transfer` predictor (once) before it adapts to (X, y); `pretrained`
    is one already pretrained (e.g. from the cache, `cached_pretrain`), copied for each fit instead.
    """
    X, y = np.asarray(X, np.float32), np.asarray(y, np.float64)
    if len(y) < MIN_MEASUREMENTS:
        raise HwnasError(f"only {len(y)} measurement(s) to fit on; a predictor needs at least {MIN_MEASUREMENTS}")
    if not np.all(np.isfinite(y)):
        raise HwnasError("the targets hold missing or non-finite values; every row needs a number")
    if not 0 <= holdout < 1:
        raise HwnasError(f"holdout {holdout} is not accepted; it is a share in [0, 1)")

    bodies = [pretrained] if pretrained is not None else []

    def new() -> Predictor:
        if predictor != "transfer":
            return get_predictor(predictor, encoding=encoding, seed=seed, **dict(settings or {}))
        if not bodies:  # pretrained once, adapted twice (held-out share, then every row)
            if not sources:
                raise HwnasError("the 'transfer' predictor needs measurements of other devices to pretrain on; "
                                 "none were found with the same space, input shape and batch")
            bodies.append(get_predictor(predictor, encoding=encoding, seed=seed, **dict(settings or {}))
                          .pretrain(sources))
        return clone_predictor(bodies[0])

    metrics: dict[str, Any] = {}
    heldout = (np.zeros(0), np.zeros(0))
    n_hold = round(holdout * len(y))
    if holdout > 0 and n_hold >= 1 and len(y) - n_hold >= 2:
        order = np.random.default_rng(seed).permutation(len(y))
        test, train = order[:n_hold], order[n_hold:]
        trained = new().fit(X[train], y[train])
        pred = trained.predict(X[test])
        metrics = finite_metrics(regression_metrics(y[test], pred))
        metrics["n_train"] = len(train)
        heldout = (y[test], pred)
    final = new().fit(X, y)
    final.heldout = heldout
    return final, metrics


def clone_predictor(predictor: Predictor) -> Predictor:
    """An independent copy: same kind, settings, encoding, seed and metadata, and whatever it learned so far (a
    `transfer` predictor keeps its pretrained body, which a predictor rebuilt from its settings would lack)."""
    return copy.deepcopy(predictor)


def refit_predictor(predictor: Predictor, X: np.ndarray, y: np.ndarray) -> Predictor:
    """A copy of `predictor` fitted on (X, y) (encoded with `predictor.encoding`), the original untouched: what a
    search's repair loop does after a measurement. Pretrained state is kept; metadata gains `refitted_on`."""
    y = np.asarray(y, np.float64)
    if len(y) == 0 or not np.all(np.isfinite(y)):
        raise HwnasError("refitting a predictor needs at least one row and finite targets")
    fresh = clone_predictor(predictor)
    fresh.fit(np.asarray(X, np.float32), y)
    fresh.metadata = {**predictor.metadata, "refitted_on": len(y)}
    return fresh


def _listing(items: Sequence[str], most: int = 8) -> str:
    items = list(items)
    return ", ".join(items[:most]) + (f" and {len(items) - most} more" if len(items) > most else "")


def pick_measurements(store, space: SearchSpace | str, device: str | None = None, backend: str | None = None,
                      input_shape=None, batch: int = 1) -> tuple[str, str]:
    """The (device id, backend) whose measurements of (space, input shape, batch) to fit on: as given, or the only
    one the store holds. When nothing matches, the HwnasError says which part of the request has no data and what
    the store holds instead (spaces, shapes, devices or backends); when several match, it lists those that do."""
    from hwnas.measurement import shape_from_str, shape_to_str

    sp = _space(space)
    if isinstance(input_shape, str):
        input_shape = shape_from_str(input_shape)
    shape = shape_to_str(sp.check_input_shape(input_shape or sp.default_input_shape))
    names = {d["id"]: d["name"] for d in store.devices()}
    device_id = store.resolve_device(device) if device is not None else None
    groups = store.groups()  # one row per (device, backend, space, shape, batch): cheap on a large store
    if not groups:
        raise HwnasError(f"the store {store.url} holds no measurements yet: run `hwnas profile` or "
                         "`hwnas measurements import` first")
    wanted = f"{sp.spec}, input {shape}, batch {batch}"
    on = f" on device {names.get(device_id, device)!r}" if device_id else ""
    rows = _on_device(groups, device_id, device, names)
    rows = _of_space_and_shape(rows, sp, shape, batch, wanted, on)
    if backend is not None:
        here = [g for g in rows if g[1] == backend]
        if not here:
            raise HwnasError(f"no measurements of {wanted}{on} with backend {backend!r}; backends with measurements of "
                             f"it: {', '.join(sorted({g[1] for g in rows}))}")
        rows = here
    return _the_only_one(rows, names, wanted)


def _on_device(groups, device_id, device, names):
    if not device_id:
        return groups
    rows = [g for g in groups if g[0] == device_id]
    if not rows:
        with_data = sorted({names.get(g[0], g[0]) for g in groups})
        raise HwnasError(f"device {device!r} has no measurements in the store; devices with measurements: "
                         f"{_listing(with_data)}")
    return rows


def _of_space_and_shape(rows, sp: SearchSpace, shape: str, batch: int, wanted: str, on: str):
    here = [g for g in rows if g[2] == sp.spec]
    if not here:
        by_space: dict[str, set[str]] = {}
        for g in rows:
            by_space.setdefault(g[2], set()).add(f"input {g[3]} batch {g[4]}")
        kinds = _listing([f"{spec} ({', '.join(sorted(v))})" for spec, v in sorted(by_space.items())])
        raise HwnasError(f"no measurements of {sp.spec}{on}; measured: {kinds}; pass one of these with "
                         "--space, or run `hwnas profile` first")
    matching = [g for g in here if g[3] == shape and g[4] == batch]
    if not matching:
        measured = _listing(sorted({f"input {g[3]} batch {g[4]}" for g in here}))
        raise HwnasError(f"no measurements of {wanted}{on}; {sp.spec} was measured with {measured}; "
                         "pass that shape with --input-shape / --batch")
    return matching


def _the_only_one(rows, names, wanted: str) -> tuple[str, str]:
    devices = sorted({g[0] for g in rows})
    if len(devices) > 1:
        counts = {d: sum(g[5] for g in rows if g[0] == d) for d in devices}
        raise HwnasError(f"name the device with --device; devices with measurements of {wanted}: "
                         + _listing([f"{names.get(d, d)} ({counts[d]})" for d in devices], most=12))
    backends = sorted({g[1] for g in rows})
    if len(backends) > 1:
        raise HwnasError(f"name the backend with --backend; device {names.get(devices[0], devices[0])!r} has "
                         f"measurements of {wanted} from {', '.join(backends)}")
    return devices[0], backends[0]


def pick_shape(store, space: SearchSpace | str, input_shape=None, batch: int | None = None
               ) -> tuple[tuple[int, ...], int]:
    """The (input shape, batch) to fit `space` on: as given; else what the store measured of this space (with this
    batch, when given) when that is one; else the space's default shape and batch 1 (or `batch`), which
    `pick_measurements` then reports on. A batch given with no measurements of the space at that batch is a
    HwnasError listing what was measured, rather than a fit on other data."""
    from hwnas.measurement import shape_from_str

    sp = _space(space)
    if isinstance(input_shape, str):
        input_shape = shape_from_str(input_shape)
    if input_shape:
        return tuple(sp.check_input_shape(input_shape)), int(batch or 1)
    measured = sorted({(g[3], int(g[4])) for g in store.groups() if g[2] == sp.spec})
    matching = [m for m in measured if batch is None or m[1] == batch]
    if batch is not None and measured and not matching:
        raise HwnasError(f"no measurements of {sp.spec} with batch {batch}; it was measured with "
                         f"{_listing([f'input {s} batch {b}' for s, b in measured])}; pass one of these batches "
                         "with --batch (and its shape with --input-shape)")
    if len(matching) == 1:
        shape, b = matching[0]
        return tuple(sp.check_input_shape(shape_from_str(shape))), b
    return tuple(sp.check_input_shape(sp.default_input_shape)), int(batch or 1)


def fit_from_store(store, space: SearchSpace | str, device: str | None = None, backend: str | Any = None,
                   input_shape=None, batch: int = 1, target: str = "latency_ms", predictor: str = AUTO,
                   encoding: str | None = None, holdout: float = 0.2, seed: int = 0,
                   settings: Mapping[str, Any] | None = None, budget: float | None = None,
                   ) -> tuple[Predictor, dict[str, Any]]:
    """Fit a predictor of `target` on the store's measurements of (space, device, backend, input shape, batch).

    device: a device name or id as the store knows it; backend: its name (or a Backend). Either may be None when
    the store holds only one for this space, shape and batch (see `pick_measurements`). For the `transfer`
    predictor, the other devices' measurements of the same space, shape and batch are the pretraining data.
    """
    from hwnas.measurement import shape_from_str

    if target not in TARGETS:
        raise HwnasError(f"unknown target {target!r}; accepted: {', '.join(TARGETS)}")
    sp = _space(space)
    shape = sp.check_input_shape(shape_from_str(input_shape) if isinstance(input_shape, str)
                                 else (input_shape or sp.default_input_shape))
    backend_name = backend if backend is None or isinstance(backend, str) else backend.name
    device_id, backend_name = pick_measurements(store, sp, device, backend_name, shape, batch)
    device = device or device_id
    rows = [m for m in store.measurements(device=device_id, backend=backend_name, space=sp.spec, input_shape=shape,
                                          batch=batch) if m.learnt(target) is not None]
    if len(rows) < MIN_MEASUREMENTS:
        raise HwnasError(
            f"{len(rows)} {target} measurement(s) of {sp.spec} on device {device!r} with backend {backend_name!r}, "
            f"input {'x'.join(map(str, shape))}, batch {batch}; a predictor needs at least {MIN_MEASUREMENTS}: "
            "run `hwnas profile` first")
    archs = [sp.from_string(m.arch) for m in rows]
    y = np.array([m.learnt(target) for m in rows], np.float64)  # at the nominal speed where timed against a reference
    predictor, encoding, auto = _resolve_auto(predictor, encoding, sp, archs, y, shape, budget, seed, holdout)
    probe = get_predictor(predictor, encoding=encoding, space=sp, **dict(settings or {}))
    X = encode_archs(sp, archs, probe.encoding, shape)
    sources, body, rows_of = None, None, {}
    if predictor == "transfer":
        rows_of = _transfer_rows(store, device_id, sp, shape, batch, target)
        if rows_of:
            key = transfer_cache_key({n: len(ms) for n, ms in rows_of.items()}, space=sp.spec, input_shape=list(shape),
                                     batch=batch, target=target, encoding=probe.encoding, seed=seed,
                                     settings=dict(settings or {}))
            cache = store.path.parent if store.path is not None else None  # beside an SQLite store
            body = cached_pretrain(lambda: _encode_sources(rows_of, sp, shape, target, probe.encoding), cache, key,
                                   seed, {"space": sp.spec, "input_shape": list(shape)}, probe.encoding,
                                   **dict(settings or {}))
    fitted, metrics = fit_predictor(X, y, predictor, probe.encoding, holdout, seed, settings, sources, body)
    info = next((d for d in store.devices() if d["id"] == device_id), {})
    fitted.metadata.update({
        "space": sp.spec, "target": target, "unit": TARGETS[target], "device": device_id,
        "device_name": info.get("name", device), "device_fingerprint": info.get("fingerprint", {}),
        "backend": backend_name, "input_shape": list(shape), "batch": int(batch), "encoding": fitted.encoding,
        "training_size": len(y), "holdout": holdout, "seed": seed, "heldout_metrics": metrics,
        "source": f"store {store.url}", "sources": list(rows_of),
        "energy_methods": sorted({m.energy_method for m in rows if m.energy_method}) if target == "energy_mj" else [],
        **auto, **({"transfer_body": body.metadata["transfer_body"]} if body is not None else {}),
    })
    return fitted, metrics


def _transfer_rows(store, device_id: str, space: SearchSpace, shape, batch: int, target: str) -> dict[str, list]:
    """{other device's name: its measurements of the same space, shape, batch and target} (enough of them)."""
    per_device = {}
    for other in store.devices():
        if other["id"] == device_id:
            continue
        ms = [m for m in store.measurements(device=other["id"], space=space.spec, input_shape=shape, batch=batch)
              if getattr(m, target) is not None]
        if len(ms) >= MIN_MEASUREMENTS:
            per_device[other["name"]] = ms
    return per_device


def _encode_sources(per_device: dict[str, list], space: SearchSpace, shape, target: str, encoding: str
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{device: (encodings, values)}; an architecture measured on several devices is encoded once (analytic
    encodings build each network)."""
    archs = list(dict.fromkeys(m.arch for ms in per_device.values() for m in ms))
    if not archs:
        return {}
    codes = encode_archs(space, [space.from_string(a) for a in archs], encoding, shape)
    row = {a: i for i, a in enumerate(archs)}
    return {name: (codes[[row[m.arch] for m in ms]], np.array([getattr(m, target) for m in ms]))
            for name, ms in per_device.items()}


def _resolve_auto(predictor: str, encoding: str | None, space: SearchSpace, archs, y: np.ndarray, shape,
                  budget: float | None, seed: int, holdout: float) -> tuple[str, str | None, dict[str, Any]]:
    """(predictor, encoding, metadata to add): as given, or for "auto" the cross-validated choice and its scores."""
    if predictor != AUTO:
        return predictor, encoding, {}
    if not 0 <= holdout < 1:  # checked before the cross-validation, not after it
        raise HwnasError(f"holdout {holdout} is not accepted; it is a share in [0, 1)")
    if encoding is not None:
        ENCODINGS.get(encoding)  # an unknown one names the known ones
        raise HwnasError(f"--encoding {quote(encoding)} does not go with predictor 'auto' (each candidate reads its "
                         "own encoding); name a predictor to choose its encoding")
    choice = choose_predictor(space, archs, y, shape, budget=budget, seed=seed)
    return choice.predictor, choice.encoding, {"auto": choice.to_dict()}


def read_table(path: str | Path, space: SearchSpace, arch_column: str, target: str | None = None
               ) -> tuple[list[dict[str, str]], list[Arch], np.ndarray | None]:
    """Rows of a CSV file, their parsed architectures (strings or indices) and (if `target`) the target column as
    floats; any bad cell is a HwnasError naming its line. With a target the table goes through the one wide-table
    reader (hwnas.files.read_wide_csv): values finite and above 0, one row per architecture."""
    if target is not None:
        table = read_wide_csv(path, arch_column, [target], parse_arch=space.parse,
                              check=lambda text, where: check_value(text, where, unit="the target's units"))
        return table.rows, table.archs, np.array(table.values[target])
    rows = read_csv_rows(path)  # predict: every row is kept, repeats included, and no value column is read
    if arch_column not in rows[0]:
        raise HwnasError(f"{path}: no column {quote(arch_column)}; columns: {quote(', '.join(rows[0]), 400)[1:-1]}")
    archs = []
    for line, row in enumerate(rows, start=2):
        try:
            archs.append(space.parse(row[arch_column]))
        except HwnasError as e:
            raise HwnasError(f"{path}, line {line}: {e}") from None
    return rows, archs, None


def fit_from_csv(path: str | Path, arch_column: str, target: str, space: SearchSpace | str = "nb201",
                 predictor: str = AUTO, encoding: str | None = None, holdout: float = 0.2, seed: int = 0,
                 settings: Mapping[str, Any] | None = None, input_shape: Sequence[int] | None = None,
                 budget: float | None = None) -> tuple[Predictor, dict[str, Any]]:
    """Fit on every row of a CSV file (like ../shared/data/nb201/latency_ms.csv: an arch column, one value column
    per device), after reporting metrics on a held-out share."""
    sp = _space(space)
    shape = sp.check_input_shape(input_shape or sp.default_input_shape)
    _, archs, y = read_table(path, sp, arch_column, target)
    predictor, encoding, auto = _resolve_auto(predictor, encoding, sp, archs, y, shape, budget, seed, holdout)
    probe = get_predictor(predictor, encoding=encoding, space=sp, **dict(settings or {}))
    X = encode_archs(sp, archs, probe.encoding, shape)
    fitted, metrics = fit_predictor(X, y, predictor, probe.encoding, holdout, seed, settings)
    fitted.metadata.update({
        "space": sp.spec, "target": target, "unit": "ms" if target.endswith("ms") else "", "device": f"imported:{target}",
        "device_name": target, "device_fingerprint": {"name": target, "source": str(Path(path).resolve())},
        "input_shape": list(shape), "batch": None, "encoding": fitted.encoding, "training_size": len(y),
        "holdout": holdout, "seed": seed, "heldout_metrics": metrics, "source": str(Path(path).resolve()),
        "arch_column": arch_column, **auto,
    })
    return fitted, metrics


def save_predictor(predictor: Predictor, path: str | Path, plot: bool = True) -> dict[str, str]:
    """Save the predictor file and, when there is a held-out set, `<name>.png` beside it (predicted vs measured)."""
    path = Path(path)
    with atomic_write(path, "wb") as f:  # a failure (disk full, interrupt) never truncates an existing file
        predictor.save(f.name)  # into the temporary file, renamed over `path` only once complete
    out = {"predictor": str(path)}
    y_true, y_pred = getattr(predictor, "heldout", (np.zeros(0), np.zeros(0)))
    if plot and len(y_true):
        from hwnas.predictors.plots import plot_predicted_vs_measured

        meta = predictor.metadata
        m = meta.get("heldout_metrics", {})
        device, target = meta.get("device_name") or "", meta.get("target") or ""
        subject = target if device in ("", target) else f"{device} {target}"  # a CSV column is both
        title = (f"{predictor.name} on {subject}: held-out n={len(y_true)}\n"
                 f"within ±10% {_figure(m.get('within_10'), '.1%')}, Spearman {_figure(m.get('spearman'), '.3f')}")
        png = plot_predicted_vs_measured(y_true, y_pred, path.with_suffix(".png"), title, meta.get("unit") or "as in the file")
        out["plot"] = str(png)
    return out


def _figure(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def predict_archs(predictor: Predictor, space: SearchSpace | str, archs: Sequence[Arch | str]) -> np.ndarray:
    """Predictions for architectures (Arch, canonical strings or indices), encoded with the predictor's own encoding."""
    sp = _space(space)
    recorded = predictor.metadata.get("space")
    if recorded and recorded.split(":")[0] != sp.name:
        raise HwnasError(f"this predictor was fitted on space {recorded}, not {sp.spec}")
    parsed = [sp.parse(a) for a in archs]
    shape = predictor.metadata.get("input_shape") or None
    return np.asarray(predictor.predict(encode_archs(sp, parsed, predictor.encoding, shape)), np.float64)


def predict_csv(predictor_path: str | Path, csv_path: str | Path, arch_column: str, out_path: str | Path,
                space: SearchSpace | str | None = None) -> int:
    """Write `out_path`: every row of `csv_path` with its columns kept and `predicted_<target>` added."""
    predictor = load_predictor(predictor_path)
    sp = _space(space or predictor.metadata.get("space") or "nb201")
    rows, archs, _ = read_table(csv_path, sp, arch_column)
    predictions = predict_archs(predictor, sp, archs)
    column = f"predicted_{predictor.metadata.get('target') or 'value'}"
    header = list(rows[0].keys())
    header += [column] if column not in header else []
    with atomic_write(out_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        for row, value in zip(rows, predictions):
            w.writerow({**row, column: f"{value:.6g}"})
    return len(rows)
