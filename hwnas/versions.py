"""Library versions recorded with every measurement, predictor file and bundle manifest (one source)."""
from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

#: what a predictor file or bundle records when the caller names nothing else
CORE_LIBRARIES = ("hwnas", "numpy", "torch", "scikit-learn", "onnx", "onnxruntime")


def library_versions(*names: str) -> dict[str, str]:
    """{"python": ..., name: version} for each installed distribution among `names` (absent ones are left out)."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out
