"""Linear predictors: ridge regression, and the additive per-operation lookup table (Once-for-All / FBNet).

Both store only coefficients. Features are standardised inside (the mean and scale are stored), and the
ridge penalty is chosen by scikit-learn's efficient leave-one-out cross-validation (RidgeCV).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwnas.errors import HwnasError
from hwnas.predictors.base import Predictor, register_predictor

ALPHAS = tuple(float(a) for a in np.logspace(-4, 3, 15))


def _fit_ridge(X: np.ndarray, t: np.ndarray, alphas: Sequence[float]) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import RidgeCV

    model = RidgeCV(alphas=list(alphas)).fit(X, t)
    return np.asarray(model.coef_, np.float64), float(model.intercept_)


@register_predictor("ridge")
class RidgePredictor(Predictor):
    """Ridge regression on standardised features; `alphas` are the penalties tried by leave-one-out CV."""

    name = "ridge"
    default_encoding = "features"

    def __init__(self, log_target: bool | None = None, seed: int = 0, alphas: Sequence[float] = ALPHAS, **settings):
        super().__init__(log_target, seed, alphas=[float(a) for a in alphas], **settings)
        self.coef = self.center = self.scale = None
        self.intercept = 0.0

    def fit(self, X: np.ndarray, y: np.ndarray) -> RidgePredictor:
        X = np.asarray(X, np.float64)
        self.center = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale = np.where(std > 0, std, 1.0)
        self.coef, self.intercept = _fit_ridge((X - self.center) / self.scale, self._to_target(y), self.settings["alphas"])
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, np.float64) - self.center) / self.scale
        return self._from_target(Z @ self.coef + self.intercept)

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef, "center": self.center, "scale": self.scale, "intercept": np.array(self.intercept)}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.coef, self.center, self.scale = (np.asarray(arrays[k], np.float64) for k in ("coef", "center", "scale"))
        self.intercept = float(arrays["intercept"])


@register_predictor("linear-cost")
class LinearCostPredictor(RidgePredictor):
    """Ridge in the target's own units (ms, mJ) on the `cost` encoding: per-operation counts plus MACs, parameters
    and memory traffic. Latency is close to additive in these on GPUs, CPUs and FPGAs, so a handful of
    coefficients fit from 10-20 measurements already rank a whole space well."""

    name = "linear-cost"
    default_encoding = "cost"
    default_log_target = False

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.maximum(super().predict(X), 0.0)  # a linear fit may dip below zero on cells with no work left


@register_predictor("lookup")
class LookupTablePredictor(Predictor):
    """Additive per-operation table: cost = base + sum over decisions of table[decision, chosen option].

    Additive in the target's own units (ms, mJ), so it fits untransformed targets by default. Fitted by
    least squares on one-hot codes (a tiny ridge penalty keeps the redundant columns determined), or built from
    per-operation profiling with `from_table` / `hwnas.profilers.lookup_from_profiling`.
    """

    name = "lookup"
    default_encoding = "onehot"
    default_log_target = False
    additive = True

    def __init__(self, log_target: bool | None = None, seed: int = 0, alpha: float = 1e-3, **settings):
        super().__init__(log_target, seed, alpha=float(alpha), **settings)
        self.table: np.ndarray | None = None
        self.base = 0.0

    def fit(self, X: np.ndarray, y: np.ndarray) -> LookupTablePredictor:
        from sklearn.linear_model import Ridge

        model = Ridge(alpha=self.settings["alpha"]).fit(np.asarray(X, np.float64), self._to_target(y))
        self.table, self.base = np.asarray(model.coef_, np.float64), float(model.intercept_)
        return self

    @classmethod
    def from_table(cls, base: float, table: np.ndarray) -> LookupTablePredictor:
        """A table from per-operation costs (e.g. measured): `table` flattens in the one-hot code's layout."""
        predictor = cls(log_target=False)
        predictor.table, predictor.base = np.asarray(table, np.float64).reshape(-1), float(base)
        return predictor

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self._from_target(np.asarray(X, np.float64) @ self.table + self.base)

    def table_for(self, space) -> tuple[float, np.ndarray]:
        """(base, table of shape space.alpha_shape, zero where a ragged decision has no option): the
        AdditiveCost protocol of hwnas.search.cost."""
        if self.log_target:
            raise HwnasError("a lookup table fitted on log targets is not additive; fit it with log_target=False")
        if self.table is None or self.encoding != "onehot" or self.table.size != space.code_length:
            size = "no" if self.table is None else self.table.size
            raise HwnasError(f"this lookup table has {size} entries, not one per decision and option "
                             f"({space.code_length} for {space.name}); it was fitted on the {self.encoding!r} "
                             "encoding: fit it with --encoding onehot")
        return self.base, space.table_from_code(self.table)

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {"table": self.table, "base": np.array(self.base)}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.table, self.base = np.asarray(arrays["table"], np.float64), float(arrays["base"])
