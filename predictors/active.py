"""Active sampling: which architectures to measure next (nn-Meter's adaptive sampling, ensemble-driven).

Half of each batch goes to the candidates where a bootstrap ensemble disagrees most (largest spread of its
members' log predictions); the other half to unmeasured neighbours (one decision changed) of the measured
architectures with the worst cross-validated error, ranked by the same uncertainty: nn-Meter samples more
configurations around the kernels its predictor gets most wrong.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwnas.errors import HwnasError
from hwnas.predictors.encodings import encode_archs
from hwnas.predictors.ensemble import EnsemblePredictor
from hwnas.predictors.trees import GradientBoostingPredictor
from hwnas.spaces.base import Arch, SearchSpace

#: fast members: this runs once per profiling round
ACTIVE_MEMBERS = ({"predictor": "ridge"}, {"predictor": "gbt", "settings": {"n_estimators": 150}},
                  {"predictor": "gbt", "settings": {"n_estimators": 150}}, {"predictor": "rf", "settings": {"n_estimators": 60}})


def select_active(space: SearchSpace, candidates: Sequence[Arch], measured_archs: Sequence[Arch],
                  measured_values: Sequence[float], k: int, seed: int = 0, encoding: str = "features",
                  input_shape: Sequence[int] | None = None) -> list[Arch]:
    """Up to k candidates (never one already measured) to measure next; random while fewer than 5 are measured."""
    if k < 1:
        raise HwnasError(f"active sampling needs k >= 1 (got {k})")
    if len(measured_archs) != len(measured_values):
        raise HwnasError(f"{len(measured_archs)} measured architectures but {len(measured_values)} values")
    measured = set(measured_archs)
    pool = list(dict.fromkeys(a for a in candidates if a not in measured))
    rng = np.random.default_rng(seed)
    if len(pool) <= k:
        return pool
    if len(measured_archs) < 5:
        return [pool[i] for i in rng.choice(len(pool), k, replace=False)]
    X = encode_archs(space, list(measured_archs), encoding, input_shape)
    y = np.asarray(measured_values, np.float64)
    ensemble = EnsemblePredictor(seed=seed, members=ACTIVE_MEMBERS, bootstrap=True)
    ensemble.encoding = encoding
    ensemble.fit(X, y)
    _, spread = ensemble.predict_with_std(encode_archs(space, pool, encoding, input_shape))
    spread = spread + rng.uniform(0, 1e-9, len(spread))  # break ties reproducibly
    error = _cross_validated_error(X, y, rng, seed)
    chosen = _choose(space, pool, measured_archs, spread, error, k)
    return [pool[i] for i in chosen[:k]]


def _cross_validated_error(X: np.ndarray, y: np.ndarray, rng: np.random.Generator, seed: int) -> np.ndarray:
    """Relative error of every measured architecture, each predicted by a model that did not see it (5 folds)."""
    folds = rng.permutation(len(y)) % 5
    cv_pred = np.empty_like(y)
    for f in range(5):
        train, test = folds != f, folds == f
        if test.any() and train.sum() >= 2:
            cv_pred[test] = GradientBoostingPredictor(seed=seed, n_estimators=150).fit(X[train], y[train]).predict(X[test])
    return np.abs(cv_pred - y) / np.maximum(np.abs(y), 1e-9)


def _choose(space: SearchSpace, pool: list[Arch], measured_archs: Sequence[Arch], spread: np.ndarray,
            error: np.ndarray, k: int) -> list[int]:
    """Pool positions: half by the ensemble's spread, then the most uncertain unmeasured neighbour of each worst
    predicted measured architecture, then by spread again until k."""
    position = {a: i for i, a in enumerate(pool)}
    by_spread = [int(i) for i in np.argsort(-spread)]
    chosen: list[int] = by_spread[: (k + 1) // 2]
    for j in np.argsort(-error):
        if len(chosen) >= k:
            break
        near = [position[n] for n in space.neighbours(measured_archs[j]) if n in position and position[n] not in chosen]
        if near:
            chosen.append(max(near, key=lambda i: spread[i]))
    chosen += [i for i in by_spread if i not in chosen][: max(0, k - len(chosen))]
    return chosen
