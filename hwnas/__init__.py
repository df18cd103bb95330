"""hwnas: hardware-aware neural architecture search: profile a device, search under a budget, export.

`Arch`, `SearchSpace` and `get_space` are loaded on first use, so that `import hwnas` (and `hwnas --help`)
does not import torch."""
from hwnas.errors import HwnasError

__version__ = "0.1.0"
__all__ = ["Arch", "HwnasError", "SearchSpace", "__version__", "get_space"]

_LAZY = {"Arch", "SearchSpace", "get_space"}


def __getattr__(name: str):
    if name in _LAZY:
        import hwnas.spaces

        return getattr(hwnas.spaces, name)
    raise AttributeError(f"module 'hwnas' has no attribute {name!r}")
