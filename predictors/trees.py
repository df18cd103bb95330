"""Gradient-boosted trees and random forests (scikit-learn fits them; this file predicts).

Only each tree's arrays are stored (children, split feature, threshold, leaf value), and prediction walks them
with numpy, so a saved file never depends on the scikit-learn version that fitted it (nn-Meter's pickled
forests broke on the next scikit-learn release). After fitting, the walker's predictions are checked against
scikit-learn's own.
"""
from __future__ import annotations

import numpy as np

from hwnas.predictors.base import Predictor, register_predictor

TREE_FIELDS = ("left", "right", "feature", "threshold", "value")


def flatten_trees(trees) -> dict[str, np.ndarray]:
    """Concatenate sklearn `tree_` objects into flat arrays; children point into the flat arrays (-1 = leaf)."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in TREE_FIELDS}
    roots, offset = [], 0
    for tree in trees:
        left, right = tree.children_left.astype(np.int64), tree.children_right.astype(np.int64)
        parts["left"].append(np.where(left >= 0, left + offset, -1))
        parts["right"].append(np.where(right >= 0, right + offset, -1))
        parts["feature"].append(tree.feature.astype(np.int64))
        parts["threshold"].append(tree.threshold.astype(np.float64))
        parts["value"].append(tree.value.reshape(tree.node_count, -1)[:, 0].astype(np.float64))
        roots.append(offset)
        offset += tree.node_count
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    arrays["roots"] = np.array(roots, np.int64)
    return arrays


def walk_trees(arrays: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Leaf values (n_samples, n_trees), all trees walked at once. Splits compare float32 features with
    float64 thresholds, as scikit-learn does."""
    X = np.asarray(X, np.float32).astype(np.float64)
    left, right, feature, threshold = arrays["left"], arrays["right"], arrays["feature"], arrays["threshold"]
    node = np.broadcast_to(arrays["roots"], (len(X), len(arrays["roots"]))).copy()
    rows = np.arange(len(X))[:, None]
    while True:
        inner = left[node] >= 0
        if not inner.any():
            return arrays["value"][node]
        go_left = X[rows, np.where(inner, feature[node], 0)] <= threshold[node]
        node = np.where(inner, np.where(go_left, left[node], right[node]), node)


class _TreeEnsemble(Predictor):
    default_encoding = "features"

    def __init__(self, log_target: bool | None = None, seed: int = 0, **settings):
        super().__init__(log_target, seed, **settings)
        self.trees: dict[str, np.ndarray] | None = None
        self.init = 0.0
        self.scale = 1.0  # per-tree weight: the learning rate for boosting, 1/n_trees for a forest

    def _estimator(self):
        raise NotImplementedError

    def fit(self, X: np.ndarray, y: np.ndarray):
        est = self._estimator().fit(np.asarray(X, np.float32), self._to_target(y))
        self._take(est)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self._from_target(self.init + self.scale * walk_trees(self.trees, X).sum(axis=1))

    def check(self, X: np.ndarray) -> None:
        """Also the tree arrays themselves: one test prediction walks only some branches of a cut file."""
        t = self.trees
        n = len(t["left"])
        if any(t[k].ndim != 1 or len(t[k]) != n for k in TREE_FIELDS) or t["roots"].ndim != 1 or not len(t["roots"]):
            raise ValueError("the tree arrays " + ", ".join(f"{k} {t[k].shape}" for k in (*TREE_FIELDS, "roots"))
                             + " do not line up")
        inner = t["left"] >= 0
        for k, values in (("left", t["left"][inner]), ("right", t["right"][inner]), ("roots", t["roots"])):
            if len(values) and not (values.min() >= 0 and values.max() < n):
                raise ValueError(f"tree array {k!r} points outside the {n} stored nodes")
        if inner.any() and not (t["feature"][inner].min() >= 0 and t["feature"][inner].max() < X.shape[1]):
            raise ValueError(f"a split reads a feature outside the {X.shape[1]} of encoding {self.encoding!r}")
        super().check(X)

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {**self.trees, "init_scale": np.array([self.init, self.scale])}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.trees = {k: np.asarray(arrays[k]) for k in (*TREE_FIELDS, "roots")}
        self.init, self.scale = (float(v) for v in arrays["init_scale"])


@register_predictor("gbt")
class GradientBoostingPredictor(_TreeEnsemble):
    """scikit-learn GradientBoostingRegressor; settings: n_estimators, max_depth, learning_rate, subsample."""

    name = "gbt"

    def __init__(self, log_target: bool | None = None, seed: int = 0, n_estimators: int = 400, max_depth: int = 3,
                 learning_rate: float = 0.05, subsample: float = 0.8, **settings):
        super().__init__(log_target, seed, n_estimators=n_estimators, max_depth=max_depth,
                         learning_rate=learning_rate, subsample=subsample, **settings)

    def _estimator(self):
        from sklearn.ensemble import GradientBoostingRegressor

        s = self.settings
        return GradientBoostingRegressor(n_estimators=s["n_estimators"], max_depth=s["max_depth"],
                                         learning_rate=s["learning_rate"], subsample=s["subsample"],
                                         random_state=self.seed)

    def _take(self, est) -> None:
        self.trees = flatten_trees(t[0].tree_ for t in est.estimators_)
        self.init = float(np.ravel(est.init_.constant_)[0])  # squared error: the training mean
        self.scale = float(est.learning_rate)


@register_predictor("rf")
class RandomForestPredictor(_TreeEnsemble):
    """scikit-learn RandomForestRegressor; settings: n_estimators, max_features, min_samples_leaf."""

    name = "rf"

    def __init__(self, log_target: bool | None = None, seed: int = 0, n_estimators: int = 200,
                 max_features: float = 0.5, min_samples_leaf: int = 1, **settings):
        super().__init__(log_target, seed, n_estimators=n_estimators, max_features=max_features,
                         min_samples_leaf=min_samples_leaf, **settings)

    def _estimator(self):
        from sklearn.ensemble import RandomForestRegressor

        s = self.settings
        return RandomForestRegressor(n_estimators=s["n_estimators"], max_features=s["max_features"],
                                     min_samples_leaf=s["min_samples_leaf"], random_state=self.seed, n_jobs=1)

    def _take(self, est) -> None:
        self.trees = flatten_trees(t.tree_ for t in est.estimators_)
        self.init, self.scale = 0.0, 1.0 / len(est.estimators_)
