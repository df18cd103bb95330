"""Search spaces: the ground floor every other stage builds on."""
from hwnas.spaces import nb201  # noqa: F401  (registers "nb201")
from hwnas.spaces.base import Arch, Graph, SearchSpace
from hwnas.spaces.registry import SPACES, get_space, register_space

__all__ = ["SPACES", "Arch", "Graph", "SearchSpace", "get_space", "register_space"]
