"""The predictor contract: fit/predict on encoded architectures, saved as parameters (never pickles).

A predictor file is one `.npz` (read with allow_pickle=False): its fitted arrays, plus a JSON `meta` entry with
the predictor's name, settings, encoding, format version, the library versions that wrote it and the caller's
metadata (space, target, device, training size, held-out metrics...). Because only parameters are stored (tree
arrays, weights, coefficients) and prediction is this package's own code, a file keeps loading after a
scikit-learn or torch upgrade; a file from a newer or unknown format is one clear HwnasError.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from hwnas.errors import HwnasError
from hwnas.predictors.encodings import ENCODINGS, encode_archs, encoding_for
from hwnas.registries import PREDICTORS
from hwnas.versions import CORE_LIBRARIES, library_versions

register_predictor = PREDICTORS.register
FORMAT_VERSION = 1


class Predictor(ABC):
    name: str = ""
    #: True when `torch_module()` gives a differentiable map from encodings to predictions.
    differentiable: bool = False
    #: the encoding (see hwnas.predictors.encodings) used when the caller names none.
    default_encoding: str = "onehot"
    #: the encoding used instead on a space that lacks what `default_encoding` needs (every space has it).
    minimal_encoding: str = "onehot"
    #: True when the cost is a sum of per-decision terms: `table_for(space)` gives them (hwnas.search.cost's
    #: AdditiveCost), and the search takes the exact expected cost under the mixing weights.
    additive: bool = False
    #: whether targets are fitted in log space unless the caller says otherwise.
    default_log_target: bool = True

    def __init__(self, log_target: bool | None = None, seed: int = 0, **settings: Any):
        self.log_target = self.default_log_target if log_target is None else bool(log_target)
        self.seed = seed
        self.settings = settings
        self.encoding = self.default_encoding
        self.metadata: dict[str, Any] = {}

    # Targets are fitted in log space by default: latencies span orders of magnitude and errors are relative.
    def _to_target(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, np.float64)
        return np.log(np.maximum(y, 1e-6)) if self.log_target else y

    def _from_target(self, t: np.ndarray) -> np.ndarray:
        return np.exp(t) if self.log_target else t

    @abstractmethod
    def fit(self, X: np.ndarray, y: np.ndarray) -> Predictor: ...

    @abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def check(self, X: np.ndarray) -> None:
        """Raise (any exception) unless these parameters predict one finite value per row of X: `load_predictor`
        runs it on an encoded architecture so a cut or hand-edited file fails at load time, not mid-search."""
        values = np.asarray(self.predict(X))
        if values.shape != (len(X),) or not np.all(np.isfinite(values)):
            raise ValueError(f"a test prediction for {len(X)} architecture(s) gave shape {values.shape}, "
                             f"values {values.ravel()[:3].tolist()}")

    def torch_module(self) -> nn.Module:
        raise HwnasError(f"predictor {self.name!r} is not differentiable; use one of the differentiable predictors")

    # --- persistence: parameters only -------------------------------------------------------------------------
    @abstractmethod
    def get_arrays(self) -> dict[str, np.ndarray]:
        """Everything fitted, as named numeric arrays."""

    @abstractmethod
    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None: ...

    def describe(self) -> dict[str, Any]:
        """What `load_predictor` needs to rebuild this predictor before `set_arrays` (JSON only)."""
        return {"predictor": self.name, "log_target": self.log_target, "seed": self.seed,
                "settings": self.settings, "encoding": self.encoding}

    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        if metadata:
            self.metadata.update(metadata)
        meta = {"format_version": FORMAT_VERSION, **self.describe(), "versions": library_versions(*CORE_LIBRARIES),
                "metadata": self.metadata}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = self.get_arrays()
        with open(path, "wb") as f:  # a file object keeps numpy from appending ".npz" to the caller's name
            np.savez(f, __meta__=np.array(json.dumps(meta, default=str)), **arrays)
        return path


def build_predictor(description: dict[str, Any]) -> Predictor:
    """A fresh predictor from `describe()`'s dictionary (also used for ensemble members)."""
    import hwnas.predictors  # noqa: F401  (registers the built-in predictors)

    predictor = PREDICTORS.get(description["predictor"])(
        log_target=description.get("log_target"), seed=description.get("seed", 0), **description.get("settings", {}))
    predictor.encoding = description.get("encoding") or predictor.default_encoding
    return predictor


def load_predictor(path: str | Path) -> Predictor:
    """Load a predictor file; a missing, foreign, tampered or newer-format file is one clear HwnasError."""
    p = Path(path)
    if not p.is_file():
        raise HwnasError(f"no predictor file at {path}; create one with `hwnas fit`")
    import zipfile

    if not zipfile.is_zipfile(p):
        raise HwnasError(f"{path} is not an hwnas predictor file (not an .npz archive); create one with `hwnas fit`")
    try:
        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
    except Exception as e:  # noqa: BLE001 - zipfile, ValueError, KeyError: all mean "not one of ours"
        raise HwnasError(f"{path} is not an hwnas predictor file ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict):
        raise HwnasError(f"{path} is not an hwnas predictor file (its metadata is not a JSON object)")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        written = (meta.get("versions") or {}).get("hwnas", "an unknown version")
        raise HwnasError(
            f"{path} has predictor format {version!r} (written by hwnas {written}); this hwnas reads formats "
            f"1..{FORMAT_VERSION}: upgrade hwnas or refit it with `hwnas fit`"
        )
    metadata = meta.get("metadata") if isinstance(meta.get("metadata"), dict) else {}
    try:
        predictor = build_predictor(meta)
        predictor.set_arrays(arrays)
        space, probe = _probe_archs(metadata)
        predictor.check(encode_archs(space, probe, predictor.encoding, metadata.get("input_shape") or None))
    except HwnasError as e:
        raise HwnasError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - missing, cut or misshapen arrays: a damaged or hand-edited file
        reason = str(e).splitlines()[0] if str(e) else ""
        raise HwnasError(f"{path} is a damaged predictor file ({type(e).__name__}: {reason}); "
                         "refit it with `hwnas fit`") from None
    predictor.metadata = metadata
    predictor.metadata.setdefault("versions", meta.get("versions", {}))
    return predictor


def _probe_archs(metadata: dict[str, Any]):
    """The recorded space (nb201 when none is recorded, as `hwnas predict` assumes) and two fixed architectures
    of it (analytic encodings build each network, so only two: tree arrays are checked whole in their `check`)."""
    from hwnas.spaces import get_space

    space = get_space(metadata.get("space") or "nb201")
    rng = np.random.default_rng(0)
    return space, [space.sample(rng) for _ in range(2)]


def get_predictor(name: str, encoding: str | None = None, space=None, **settings: Any) -> Predictor:
    """A new predictor by registry name; `encoding` overrides its default encoding. With a `space`, the
    encoding is checked against what the space declares, and a default the space cannot give falls back to the
    predictor's `minimal_encoding` (see hwnas.predictors.encodings.encoding_for)."""
    import hwnas.predictors  # noqa: F401  (registers the built-in predictors)

    predictor = PREDICTORS.get(name)(**settings)
    if encoding is not None:
        ENCODINGS.get(encoding)  # fails early with the known names
        predictor.encoding = encoding
    if space is not None:
        predictor.encoding = encoding_for(predictor, space, encoding)
    return predictor
