"""A linear cost model corrected by gradient-boosted trees (`cost-gbt`).

The `linear-cost` model (ridge in milliseconds on operation counts, MACs, parameters and memory traffic) captures
the additive part of latency from few samples; trees then fit the log of measured / linear prediction on every
feature (including which edges are live), catching what is not additive: phone and board runtimes that drop
dead branches, fuse or cache some operations. From ~50 samples up it is the most accurate predictor on the
NAS-Bench-201 devices (bench/predictors.py); below that `linear-cost` alone is as good.

With few rows the trees also fit the device's timing noise, so only a share of their log correction is applied:
rows / FULL_CORRECTION_ROWS, all of it from there up. On the NAS-Bench-201 columns at 100 cells, half the
correction beats both none and all of it in Spearman on every device (by 0.01 on the noisy phone and board
columns), and ties at 300.
"""
from __future__ import annotations

import numpy as np

from hwnas.predictors.base import Predictor, register_predictor
from hwnas.predictors.encodings import cost_block_width
from hwnas.predictors.linear import LinearCostPredictor
from hwnas.predictors.trees import GradientBoostingPredictor

#: the linear prediction is floored at this share of the median measurement before taking the log ratio
FLOOR_SHARE = 1e-3
#: the trees' correction is applied in full from this many rows, in proportion below (few rows: the trees fit the
#: device's timing noise too). On NAS-Bench-201 at 100 cells half of it is best on every device, at 300 all of it.
FULL_CORRECTION_ROWS = 200


@register_predictor("cost-gbt")
class CostTreesPredictor(Predictor):
    """settings: n_estimators, max_depth, learning_rate, subsample (of the correcting trees)."""

    name = "cost-gbt"
    default_encoding = "cost-features"
    default_log_target = False  # the base is fitted in the target's units; the correction is always a log ratio

    def __init__(self, log_target: bool | None = None, seed: int = 0, n_estimators: int = 100, max_depth: int = 3,
                 learning_rate: float = 0.05, subsample: float = 0.8, **settings):
        super().__init__(log_target, seed, n_estimators=n_estimators, max_depth=max_depth,
                         learning_rate=learning_rate, subsample=subsample, **settings)
        self.base = LinearCostPredictor(seed=seed)
        self.trees = self._new_trees()
        self.width, self.floor = 0, 0.0
        self.shrink = 1.0  # the share of the trees' log correction applied

    def _new_trees(self) -> GradientBoostingPredictor:
        return GradientBoostingPredictor(log_target=False, seed=self.seed, **self.settings)

    def _base(self, X: np.ndarray) -> np.ndarray:
        return np.maximum(self.base.predict(np.asarray(X)[:, : self.width]), self.floor)

    def fit(self, X: np.ndarray, y: np.ndarray) -> CostTreesPredictor:
        X, y = np.asarray(X), np.asarray(y, np.float64)
        # on a space without analytic features (the minimal 'onehot' encoding) the linear base reads every column
        self.width = cost_block_width(X) if self.encoding == "cost-features" else X.shape[1]
        self.floor = FLOOR_SHARE * float(np.median(np.abs(y)))
        self.shrink = min(1.0, len(y) / FULL_CORRECTION_ROWS)
        self.base.fit(X[:, : self.width], y)
        self.trees = self._new_trees().fit(X, np.log(np.maximum(y, self.floor) / self._base(X)))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self._base(X) * np.exp(self.shrink * self.trees.predict(X))

    def check(self, X: np.ndarray) -> None:
        self.base.check(np.asarray(X)[:, : self.width])
        self.trees.check(X)
        super().check(X)

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {**{f"base/{k}": v for k, v in self.base.get_arrays().items()},
                **{f"trees/{k}": v for k, v in self.trees.get_arrays().items()},
                "width_floor": np.array([self.width, self.floor]), "shrink": np.array(self.shrink)}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for prefix, part in (("base/", self.base), ("trees/", self.trees)):
            part.set_arrays({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        width, self.floor = (float(v) for v in arrays["width_floor"])
        self.width = int(width)
        self.shrink = float(arrays.get("shrink", 1.0))  # files saved before the shrink apply all of the correction
