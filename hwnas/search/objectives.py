"""Metrics a multi-objective search optimises (`Objective.fn`), each a picklable callable Arch -> float that loads
what it needs on first use in the worker that calls it (nothing heavy crosses a process boundary):

- `TableMetric(csv, column, space)`: a published table's value (NAS-Bench-201 accuracy.csv: the tabular accuracy
  oracle; latency_ms.csv: a device column), read by architecture index; an architecture missing from the table is
  an error.
- `PredictorMetric(path, space)`: a predictor file from `hwnas fit` (latency_ms / energy_mj, or an accuracy
  predictor fitted on a few evaluated architectures).
- `ShortTrainingMetric(...)`: train briefly and read test accuracy, error or introspectability
  (hwnas.search.introspectability); one training per architecture serves every metric of it (cached).
- `ProxyMetric`: the hook for i10a's zero-cost proxies (`hwnas.search.zero_cost.score`); see its docstring.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import HwnasError, quote
from hwnas.spaces import get_space
from hwnas.spaces.base import Arch


@dataclass
class TableMetric:
    """The value of `column` in the wide table `csv` (an `arch` column of canonical strings) for an architecture
    of the finite, indexed `space` (default nb201)."""

    csv: str
    column: str
    space: str = "nb201"
    _values: Any = field(default=None, init=False, repr=False, compare=False)

    def load(self) -> np.ndarray:
        if self._values is None:
            from hwnas.search.tabular import load_table

            self._values = load_table(self.csv, self.column, get_space(self.space))
        return self._values

    def __call__(self, arch: Arch) -> float:
        sp = get_space(self.space)
        value = float(self.load()[sp.index(arch)])
        if not np.isfinite(value):
            raise HwnasError(f"{self.csv} has no {self.column} value for {sp.to_string(arch)}")
        return value

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_values": None}  # workers read the table themselves


@dataclass
class PredictorMetric:
    """The prediction of a predictor file (`hwnas fit`, or `save_predictor`) for an architecture of `space`."""

    path: str
    space: str
    _predictor: Any = field(default=None, init=False, repr=False, compare=False)

    def __call__(self, arch: Arch) -> float:
        from hwnas.predictors import load_predictor, predict_archs

        if self._predictor is None:
            self._predictor = load_predictor(self.path)
        return float(predict_archs(self._predictor, get_space(self.space), [arch])[0])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_predictor": None}


@dataclass
class ShortTrainingMetric:
    """Train `arch` for `epochs` on `dataset` (hwnas.search.train.train_arch) and read `metric`: "accuracy"
    (test accuracy in [0, 1]), "error" (1 - accuracy) or "introspectability" (hwnas.search.introspectability:
    class separation of the last layer's features on the test split). Results are cached per architecture in
    the worker, so accuracy and introspectability of one architecture cost one training."""

    metric: str
    space: str
    dataset: str = "digits"
    epochs: int = 3
    limit: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.metric not in ("accuracy", "error", "introspectability"):
            raise HwnasError(f"short-training metric {quote(self.metric)} is not accepted; accepted: accuracy, "
                             "error, introspectability")

    def __call__(self, arch: Arch) -> float:
        from hwnas.search.introspectability import short_training_metrics

        m = short_training_metrics(self.space, self.space_string(arch), self.dataset, self.epochs, self.limit,
                                   self.seed)
        return {"accuracy": m["accuracy"], "error": 1.0 - m["accuracy"],
                "introspectability": m["introspectability"]}[self.metric]

    def space_string(self, arch: Arch) -> str:
        return get_space(self.space).to_string(arch)


def accuracy_from_path(path: str | Path, space: str, column: str = "cifar10"):
    """The accuracy metric a path names: a .csv table (tabular oracle, `column`) or a predictor file."""
    p = str(path)
    if p.endswith(".csv"):
        return TableMetric(p, column, space)
    return PredictorMetric(p, space)
