"""Per-layer latency tables measured on the device (Once-for-All): every distinct layer of a space with the
"layers" capability (each block configuration: input size, channels, kernel, expand, stride, squeeze-excite; the
stem, the head, the resize) is built alone and timed; the table is keyed by the layer's own description.

Layer measurements go into the store like any other, under the space `<space spec>#layers` with the description
as the architecture and the layer's own input shape, so an interrupted profile resumes and a table is rebuilt
from the store without measuring again. `layer_lut_predictor` then learns the per-network correction from the
store's whole-network measurements of the space (if any).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hwnas.measurement import check_measurement
from hwnas.predictors.encodings import encode_archs
from hwnas.predictors.layer_lut import LayerLUTPredictor, layer_slots
from hwnas.predictors.metrics import finite_metrics, regression_metrics
from hwnas.profilers.base import Backend
from hwnas.profilers.timing import TimingProtocol
from hwnas.reporting import Reporter, reporter_or_null
from hwnas.spaces.base import SearchSpace
from hwnas.store import Store

#: per layer: enough runs for a stable median of a sub-millisecond layer, capped at half a second
LAYER_PROTOCOL = TimingProtocol(warmup_runs=10, min_runs=30, max_runs=400, target_rel_ci=0.02, max_seconds=0.5)


def layer_space(space: SearchSpace) -> str:
    """The store's space name for the layers of `space`."""
    return f"{space.spec}#layers"


class _Passthrough(torch.nn.Module):
    """The cheapest model with this input: what every timed call costs besides the layer's own work."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1.0


def null_key(shape: Sequence[int]) -> str:
    return "null-" + "x".join(map(str, shape))


def profile_layers(space: SearchSpace, backend: Backend, input_shape: Sequence[int], store: Store | None = None,
                   protocol: TimingProtocol | None = None, reporter: Reporter | None = None) -> dict[str, float]:
    """{layer description: ms} for every distinct layer of `space` at `input_shape` (batch 1): its median measured on
    `backend` (unless the store already holds it) less that of a pass-through model with the same input (the
    per-call overhead that a whole network pays once, not once per layer)."""
    raw = _measure_layers(space, backend, input_shape, store, protocol, reporter)
    _, shapes, _, _ = layer_slots(space, input_shape)
    table = {k: max(raw[k] - raw[null_key(shapes[k])], 0.02 * raw[k]) for k in shapes}
    table[null_key(input_shape)] = raw[null_key(input_shape)]  # the overhead a whole network pays once
    return table


def _measure_layers(space, backend, input_shape, store, protocol, reporter) -> dict[str, float]:
    keys, shapes, _, _ = layer_slots(space, input_shape)
    for shape in {*shapes.values(), tuple(input_shape)}:
        shapes[null_key(shape)] = shape
    keys = list(shapes)
    backend.require()
    report = reporter_or_null(reporter)
    table: dict[str, float] = {}
    key = {"device": backend.device_id(), "backend": backend.name, "space": layer_space(space), "batch": 1}
    if store is not None:
        stored = {m.arch: m.latency_ms for m in store.measurements(**key)}
        table.update({k: stored[k] for k in keys if k in stored})
        if len(table) < len(keys):
            store.require_writable()
            store.add_device(backend.device_id(), backend.device_name(), backend.fingerprint())
    title = f"profiling {len(keys)} layers of {space.spec}"
    with report.progress(title, total=len(keys), completed=len(table)) as task:
        for k in keys:
            if k in table:
                continue
            torch.manual_seed(0)
            module = _Passthrough() if k.startswith("null-") else space.layer_module(k)
            m = backend.measure(module, shapes[k], 1, protocol or LAYER_PROTOCOL)
            m.arch, m.space = k, layer_space(space)
            if k.startswith("null-"):  # no arithmetic: the analytical energy estimate is 0, which is not a value
                m.energy_mj = m.energy_method = None
            check_measurement(m)
            if store is not None:
                store.add(m)
            table[k] = m.latency_ms
            task.advance(1, f"{m.latency_ms:7.4f} ms  {k}")
    return table


def layer_lut_predictor(space: SearchSpace, backend: Backend, input_shape: Sequence[int], store: Store | None = None,
                        protocol: TimingProtocol | None = None, reporter: Reporter | None = None,
                        batch: int = 1) -> LayerLUTPredictor:
    """The `layer-lut` predictor of this device: the measured layer table, with the per-network correction fitted
    on the store's whole-network measurements of `space` at this input shape (none: the plain sum). Its metadata
    says how the table's sums compared with those measurements (`table_vs_networks`)."""
    shape = tuple(space.check_input_shape(input_shape))
    table = profile_layers(space, backend, shape, store, protocol, reporter)
    predictor = LayerLUTPredictor.from_table(space, shape, table)
    predictor.coef = np.array([1.0, table[null_key(shape)], 0.0])  # until networks are measured: sum + one call
    rows = [] if store is None else store.measurements(device=backend.device_id(), backend=backend.name,
                                                       space=space.spec, input_shape=shape, batch=batch)
    comparison = {}
    if rows:
        X = encode_archs(space, [space.from_string(m.arch) for m in rows], "onehot")
        y = np.array([m.latency_ms for m in rows])
        comparison["plain_sum"] = finite_metrics(regression_metrics(y, predictor.predict(X)))
        predictor.fit(X, y)
        comparison["corrected"] = finite_metrics(regression_metrics(y, predictor.predict(X)))
    predictor.metadata.update({
        "space": space.spec, "target": "latency_ms", "unit": "ms", "device": backend.device_id(),
        "device_name": backend.device_name(), "device_fingerprint": backend.fingerprint(), "backend": backend.name,
        "input_shape": list(shape), "batch": 1, "encoding": "onehot", "training_size": len(rows),
        "layers": len(predictor.keys), "correction": predictor.coef.tolist(), "table_vs_networks": comparison,
        "heldout_metrics": comparison.get("corrected", {}),
    })
    return predictor
