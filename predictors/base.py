"""The predictor contract: fit/predict on encoded architectures, saved as parameters (never pickles).

A predictor file is one `.npz` (read with allow_pickle=False): its arrays, plus a JSON `meta` entry with the
predictor's name, settings, format version and the caller's metadata (space, target, device, metrics...).
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from hwnas.errors import HwnasError
from hwnas.registry import Registry

PREDICTORS: Registry = Registry("predictor")
register_predictor = PREDICTORS.register
FORMAT_VERSION = 1


class Predictor(ABC):
    name: str = ""
    #: True when `torch_module()` gives a differentiable map from encodings to predictions.
    differentiable: bool = False

    def __init__(self, log_target: bool = True, seed: int = 0, **settings: Any):
        self.log_target = log_target
        self.seed = seed
        self.settings = settings
        self.metadata: dict[str, Any] = {}

    # Targets are fitted in log space by default: latencies span orders of magnitude and errors are relative.
    def _to_target(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, np.float64)
        return np.log(np.maximum(y, 1e-6)) if self.log_target else y

    def _from_target(self, t: np.ndarray) -> np.ndarray:
        return np.exp(t) if self.log_target else t

    @abstractmethod
    def fit(self, X: np.ndarray, y: np.ndarray) -> "Predictor": ...

    @abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def torch_module(self) -> nn.Module:
        raise HwnasError(f"predictor {self.name!r} is not differentiable; use one of the differentiable predictors")

    # --- persistence: parameters only -------------------------------------------------------------------------
    @abstractmethod
    def get_arrays(self) -> dict[str, np.ndarray]:
        """Everything fitted, as named float arrays."""

    @abstractmethod
    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None: ...

    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        if metadata:
            self.metadata.update(metadata)
        meta = {
            "format_version": FORMAT_VERSION, "predictor": self.name, "log_target": self.log_target,
            "seed": self.seed, "settings": self.settings, "metadata": self.metadata,
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:  # a file object keeps numpy from appending ".npz" to the caller's name
            np.savez(f, __meta__=np.array(json.dumps(meta, default=str)), **self.get_arrays())
        return path


def load_predictor(path: str | Path) -> Predictor:
    """Load a predictor file; a missing, foreign or newer-format file is one clear HwnasError."""
    p = Path(path)
    if not p.is_file():
        raise HwnasError(f"no predictor file at {path}; create one with `hwnas fit`")
    try:
        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
    except Exception as e:  # zipfile, ValueError, KeyError: all mean "not one of ours"
        raise HwnasError(f"{path} is not an hwnas predictor file ({type(e).__name__}: {e})") from None
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise HwnasError(
            f"{path} has predictor format {version}, this hwnas reads format {FORMAT_VERSION}; refit it with `hwnas fit`"
        )
    predictor = PREDICTORS.get(meta["predictor"])(log_target=meta["log_target"], seed=meta["seed"], **meta["settings"])
    predictor.set_arrays(arrays)
    predictor.metadata = meta.get("metadata", {})
    return predictor


def get_predictor(name: str, **settings: Any) -> Predictor:
    import hwnas.predictors  # noqa: F401  (registers the built-in predictors)

    return PREDICTORS.get(name)(**settings)
