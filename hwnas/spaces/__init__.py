"""Search spaces: the ground floor every other stage builds on."""
# register the built-in spaces
from hwnas.spaces import circuit, mbv3, nb201, nb201_snn, rnn_cell, snn_transformer  # noqa: F401
from hwnas.spaces.base import CAPABILITIES, FLOPS_CONVENTIONS, Arch, Graph, SearchSpace, memory_limit
from hwnas.spaces.registry import SPACES, get_space, register_space

__all__ = ["CAPABILITIES", "FLOPS_CONVENTIONS", "SPACES", "Arch", "Graph", "SearchSpace", "get_space", "memory_limit",
           "register_space"]
