"""An ensemble of predictors: the mean of its members' predictions and their spread as the uncertainty.

Members are any registered predictors, each fitted on a bootstrap resample (by default) with its own seed, all
reading the ensemble's encoding. The spread of the members' log predictions is what active sampling uses to
pick the architectures worth measuring next.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hwnas.predictors.base import Predictor, build_predictor, register_predictor


@register_predictor("ensemble")
class EnsemblePredictor(Predictor):
    """settings: members (predictor names, or {"predictor", "settings", "log_target"} dicts), bootstrap."""

    name = "ensemble"
    default_encoding = "features"

    def __init__(self, log_target: bool | None = None, seed: int = 0,
                 members: Sequence[Any] = ("ridge", "gbt", "gbt", "rf", "mlp"), bootstrap: bool = True, **settings):
        members = [m if isinstance(m, dict) else {"predictor": str(m)} for m in members]
        super().__init__(log_target, seed, members=members, bootstrap=bool(bootstrap), **settings)
        self.members: list[Predictor] = []

    def _new_members(self) -> list[Predictor]:
        out = []
        for i, d in enumerate(self.settings["members"]):
            out.append(build_predictor({"log_target": d.get("log_target", self.log_target),
                                        "settings": {}, **d, "seed": (self.seed * 1000 + i) % 2**32, "encoding": self.encoding}))
        return out

    def fit(self, X: np.ndarray, y: np.ndarray) -> EnsemblePredictor:
        X, y = np.asarray(X), np.asarray(y, np.float64)
        rng = np.random.default_rng(self.seed)
        self.members = self._new_members()
        for member in self.members:
            rows = rng.integers(0, len(X), len(X)) if self.settings["bootstrap"] and len(X) > 2 else np.arange(len(X))
            member.fit(X[rows], y[rows])
        return self

    def member_predictions(self, X: np.ndarray) -> np.ndarray:
        """(members, n) predictions in the target's units."""
        return np.stack([m.predict(X) for m in self.members])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_with_std(X)[0]

    def predict_with_std(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean prediction (geometric for log targets) and the members' relative spread (std of log predictions
        for log targets, std / |mean| otherwise): a unitless uncertainty."""
        p = self.member_predictions(X)
        if self.log_target:
            logs = np.log(np.maximum(p, 1e-9))
            return np.exp(logs.mean(0)), logs.std(0)
        mean = p.mean(0)
        return mean, p.std(0) / np.maximum(np.abs(mean), 1e-9)

    def check(self, X: np.ndarray) -> None:
        for member in self.members:
            member.check(X)
        super().check(X)

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {f"m{i}/{k}": v for i, m in enumerate(self.members) for k, v in m.get_arrays().items()}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.members = self._new_members()
        for i, member in enumerate(self.members):
            prefix = f"m{i}/"
            member.set_arrays({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
