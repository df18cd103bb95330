"""Per-layer latency tables (Once-for-All): a network's latency is the sum of its layers' measured latencies, each
looked up by the layer's own description (`space.layers`), with a learned per-network correction for what the sum
misses (one session call instead of many, memory reuse between layers): latency = a * sum + b + c * layers.

The table reads the `mbv3` decision layout (a space with the "layers" capability: [resolution], then per stage a
depth and 4 x (kernel, expand)). For a relaxed code (softmax mixing weights) `torch_module` gives the exact expected
latency under independent decisions (a block counts with the probability that the stage's depth reaches it), so
the table is a differentiable search cost too. Saved as data: the layer descriptions and their latencies (an .npz
of strings and numbers, no pickles), the slot layout and the correction.

The table is filled by measuring on the device (hwnas.profilers.layer_lut_predictor); `fit` then learns only
the correction, from whole-network measurements. Without a measured table (`hwnas fit --predictor layer-lut`, or
any space without the "layers" capability) `fit` estimates one cost per decision and option from whole networks
instead (ridge on the one-hot code), so the predictor works on every space like any other.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.predictors.base import Predictor, register_predictor
from hwnas.spaces.base import Arch, SearchSpace

#: mbv3's options per decision (depth, kernel and expand all have three) and block slots per stage
OPTIONS = 3
SLOTS = 4


def layer_slots(space: SearchSpace, input_shape
                ) -> tuple[list[str], dict[str, tuple[int, ...]], np.ndarray, np.ndarray]:
    """(distinct layer descriptions, their input shapes, slot_index (R, stages, 4, 3, 3) and fixed_index (R, 3), both
    indices into the descriptions, -1 where no layer is): which table entry each block slot, kernel and expand
    option reads at each resolution option (R = 1 without a resolution decision)."""
    space.require("layers", "per-layer latency tables (the layer-lut predictor)")
    counts = space.options_per_decision()
    resolutions = len(space.resolutions)
    stages = space.stages
    if set(counts) != {OPTIONS} or len(counts) != (1 if resolutions else 0) + stages * (1 + 2 * SLOTS):
        raise HwnasError(f"the layer table reads mbv3's decision layout; {space.spec} has another")
    keys: dict[str, tuple[int, ...]] = {}
    slot = np.full((max(1, resolutions), stages, SLOTS, OPTIONS, OPTIONS), -1, np.int64)
    fixed = np.full((max(1, resolutions), 3), -1, np.int64)
    for r in range(max(1, resolutions)):
        for k in range(OPTIONS):
            for e in range(OPTIONS):
                stage = [OPTIONS - 1] + [k, e] * SLOTS  # depth 4, every block at (k, e)
                arch = Arch(space.name, tuple(([r] if resolutions else []) + stage * stages))
                layers = space.layers(arch, input_shape)
                blocks = [(key, shape) for key, shape in layers if key.startswith("mbconv-")]
                others = [(key, shape) for key, shape in layers if not key.startswith("mbconv-")]
                for key, shape in layers:
                    keys.setdefault(key, tuple(shape))
                order = list(keys)
                for i, (key, _) in enumerate(blocks):
                    slot[r, i // SLOTS, i % SLOTS, k, e] = order.index(key)
                fixed[r, : len(others)] = [order.index(key) for key, _ in others]
    return list(keys), keys, slot, fixed


class LayerTableModule(nn.Module):
    """Codes (n, code_length), one-hot or relaxed -> predicted latency (n,), differentiable."""

    def __init__(self, block_table: np.ndarray, fixed: np.ndarray, fixed_layers: np.ndarray, coef: np.ndarray,
                 resolutions: int):
        super().__init__()
        self.register_buffer("block_table", torch.as_tensor(block_table, dtype=torch.float32))
        self.register_buffer("fixed", torch.as_tensor(fixed, dtype=torch.float32))
        self.register_buffer("fixed_layers", torch.as_tensor(fixed_layers, dtype=torch.float32))
        self.register_buffer("coef", torch.as_tensor(coef, dtype=torch.float32))
        self.resolutions = resolutions

    def parts(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of the table's layer latencies, number of layers), expected under the code's probabilities."""
        n = codes.shape[0]
        if self.resolutions:
            p_res, rest = codes[:, : self.resolutions], codes[:, self.resolutions:]
        else:
            p_res, rest = codes.new_ones((n, 1)), codes
        stages = self.block_table.shape[1]
        st = rest.reshape(n, stages, 1 + 2 * SLOTS, OPTIONS)
        depth, kernel, expand = st[:, :, 0], st[:, :, 1::2], st[:, :, 2::2]
        one = depth.new_ones(depth.shape[:2])
        # block b runs when the stage's depth (2, 3 or 4) exceeds b
        active = torch.stack([one, one, depth[..., 1] + depth[..., 2], depth[..., 2]], dim=-1)
        blocks = torch.einsum("nsbk,nsbe,rsbke->nrsb", kernel, expand, self.block_table)
        raw = p_res @ self.fixed + torch.einsum("nr,nrsb,nsb->n", p_res, blocks, active)
        layers = p_res @ self.fixed_layers + active.sum(dim=(1, 2))
        return raw, layers

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        raw, layers = self.parts(codes)
        return self.coef[0] * raw + self.coef[1] + self.coef[2] * layers


@register_predictor("layer-lut")
class LayerLUTPredictor(Predictor):
    name = "layer-lut"
    differentiable = True
    default_encoding = "onehot"
    default_log_target = False

    def __init__(self, log_target: bool | None = None, seed: int = 0, resolutions: int = 0, **settings: Any):
        super().__init__(False, seed, resolutions=int(resolutions), **settings)
        self.keys: np.ndarray | None = None
        self.values = self.slot_index = self.fixed_index = None
        self.coef = np.array([1.0, 0.0, 0.0])
        self.linear: np.ndarray | None = None  # per-option costs, when fitted without a measured table
        self.intercept = 0.0

    @classmethod
    def from_table(cls, space: SearchSpace, input_shape, table: dict[str, float]) -> LayerLUTPredictor:
        """The predictor for `space` at `input_shape` from measured layer latencies {description: ms}."""
        keys, _, slot, fixed = layer_slots(space, input_shape)
        missing = [k for k in keys if k not in table]
        if missing:
            raise HwnasError(f"the layer table lacks {len(missing)} layer(s) of {space.spec}, e.g. {missing[0]}")
        p = cls(resolutions=len(space.resolutions))
        p.keys = np.array(keys)
        p.values = np.array([float(table[k]) for k in keys], np.float64)
        p.slot_index, p.fixed_index = slot, fixed
        return p

    def table(self) -> dict[str, float]:
        """{layer description: measured ms}."""
        return dict(zip(self.keys.tolist(), self.values.tolist()))

    def torch_module(self) -> nn.Module:
        if self.values is None:
            if self.linear is None:
                raise HwnasError("this layer table has no measurements; build it with "
                                 "hwnas.profilers.layer_lut_predictor")
            linear = nn.Linear(len(self.linear), 1)
            with torch.no_grad():
                linear.weight.copy_(torch.as_tensor(self.linear, dtype=torch.float32)[None])
                linear.bias.fill_(self.intercept)
            return nn.Sequential(linear, nn.Flatten(0))
        values = np.append(self.values, 0.0)  # index -1 (no layer) reads 0
        fixed_layers = (self.fixed_index >= 0).sum(axis=1).astype(np.float64)
        return LayerTableModule(values[self.slot_index], values[self.fixed_index].sum(axis=1), fixed_layers,
                                self.coef, self.settings["resolutions"])

    def parts(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sum of layer latencies, layer count) per encoded architecture."""
        with torch.no_grad():
            raw, layers = self.torch_module().parts(torch.as_tensor(np.asarray(X, np.float32)))
        return raw.double().numpy(), layers.double().numpy()

    def fit(self, X: np.ndarray, y: np.ndarray) -> LayerLUTPredictor:
        """Learn the per-network correction from whole-network measurements (the table itself is measured): a, b,
        c of a * sum + b + c * layers by least squares with 8 or more rows, a and b with 3 or more, else a alone.
        Without a measured table: per-option costs by ridge regression on the one-hot code."""
        if self.values is None:
            return self._fit_linear(X, y)
        raw, layers = self.parts(X)
        y = np.asarray(y, np.float64)
        coef = None
        for columns, least in (((raw, np.ones_like(raw), layers), 8), ((raw, np.ones_like(raw)), 3)):
            if len(y) >= least:
                solution = np.linalg.lstsq(np.stack(columns, axis=1), y, rcond=None)[0]
                if solution[0] > 0:
                    coef = np.append(solution, [0.0] * (3 - len(solution)))
                    break
        if coef is None:  # few rows: keep the one-call overhead, scale the layers' sum
            base = float(self.coef[1])
            coef = np.array([float(np.median((y - base) / np.maximum(raw, 1e-9))) if len(y) else 1.0, base, 0.0])
        self.coef = coef
        return self

    def _fit_linear(self, X: np.ndarray, y: np.ndarray) -> LayerLUTPredictor:
        from sklearn.linear_model import Ridge  # as the lookup predictor does: scikit-learn loads only when fitting

        model = Ridge(alpha=1e-3).fit(np.asarray(X, np.float64), np.asarray(y, np.float64))
        self.linear, self.intercept = np.asarray(model.coef_, np.float64), float(model.intercept_)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.values is None:
            return np.maximum(np.asarray(X, np.float64) @ self.linear + self.intercept, 1e-6)
        raw, layers = self.parts(X)
        return np.maximum(self.coef[0] * raw + self.coef[1] + self.coef[2] * layers, 1e-6)

    def get_arrays(self) -> dict[str, np.ndarray]:
        if self.values is None:
            return {"linear": self.linear, "intercept": np.array(self.intercept)}
        return {"keys": self.keys.astype(str), "values": self.values, "slot_index": self.slot_index,
                "fixed_index": self.fixed_index, "coef": self.coef}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        if "linear" in arrays:
            self.linear, self.intercept = np.asarray(arrays["linear"], np.float64), float(arrays["intercept"])
            return
        self.keys = np.asarray(arrays["keys"]).astype(str)
        self.values = np.asarray(arrays["values"], np.float64)
        self.slot_index = np.asarray(arrays["slot_index"], np.int64)
        self.fixed_index = np.asarray(arrays["fixed_index"], np.int64)
        self.coef = np.asarray(arrays["coef"], np.float64)
