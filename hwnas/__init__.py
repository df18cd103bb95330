"""hwnas: hardware-aware neural architecture search: profile a device, search under a budget, export."""
from hwnas.errors import HwnasError
from hwnas.spaces import Arch, SearchSpace, get_space

__version__ = "0.1.0"
__all__ = ["Arch", "HwnasError", "SearchSpace", "__version__", "get_space"]
