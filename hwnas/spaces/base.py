"""The search-space contract every stage speaks through (see ARCHITECTURE.md, "Data contracts")."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError, quote


@dataclass(frozen=True)
class Arch:
    """One architecture of one space: the index of the chosen option at each decision, in `encode` order."""

    space: str
    choices: tuple[int, ...]


@dataclass(frozen=True)
class Graph:
    """A node-labelled DAG for graph encoders: `ops[i]` labels node i, `adjacency[i, j] = 1` for an edge i -> j."""

    ops: tuple[str, ...]
    adjacency: np.ndarray
    op_vocabulary: tuple[str, ...]

    def features(self) -> np.ndarray:
        """One-hot node features over `op_vocabulary`, shape (nodes, len(op_vocabulary))."""
        out = np.zeros((len(self.ops), len(self.op_vocabulary)), np.float32)
        for i, op in enumerate(self.ops):
            out[i, self.op_vocabulary.index(op)] = 1.0
        return out


class SearchSpace(ABC):
    """A family of networks. Subclasses set `name`, `params` (the macro settings) and the methods below."""

    name: str = ""
    #: macro settings with their defaults, e.g. {"C": 16, "N": 5, "classes": 10}; they are part of `spec`.
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise HwnasError(
                f"space {self.name!r} has no setting {', '.join(sorted(unknown))}; accepted: {', '.join(self.defaults)}"
            )
        self.params = {**self.defaults, **params}

    @property
    def spec(self) -> str:
        """The space with its settings, e.g. `nb201:C=16,N=5,classes=10`: what the store records."""
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.params.items())

    # --- naming -------------------------------------------------------------------------------------------
    @abstractmethod
    def to_string(self, arch: Arch) -> str: ...

    @abstractmethod
    def from_string(self, text: str) -> Arch:
        """Parse the canonical string; raise HwnasError saying what is wrong and what is accepted."""

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Arch: ...

    def size(self) -> int | None:
        """Number of architectures, or None for an unbounded space."""
        return None

    def index(self, arch: Arch) -> int:
        raise HwnasError(f"space {self.name!r} has no architecture index")

    def arch_at(self, index: int) -> Arch:
        raise HwnasError(f"space {self.name!r} has no architecture index")

    def parse(self, arch: Arch | str | int) -> Arch:
        """The one way every stage reads an architecture: an `Arch` of this space, its canonical string, or its
        index in the space (typed as text or given as an int). Anything else is a HwnasError saying what is
        accepted; long input is quoted only in part."""
        if isinstance(arch, Arch):
            if arch.space != self.name:
                raise HwnasError(f"an architecture of space {arch.space!r} was given for space {self.name!r}")
            return arch
        if isinstance(arch, (int, np.integer)) and not isinstance(arch, bool):
            text = str(int(arch))
        elif isinstance(arch, str):
            text = arch.strip()
        else:
            raise HwnasError(f"architecture {quote(arch)} is not accepted; give an Arch, its canonical string or its index")
        if text.lstrip("+-").isdigit():
            size = self.size()
            if size is None:
                raise HwnasError(f"space {self.spec} has no architecture index; give the architecture string")
            index = int(text)
            if not 0 <= index < size:
                raise HwnasError(f"architecture index {index} is out of range for {self.spec}; accepted: an index "
                                 f"0..{size - 1} or an architecture string")
            return self.arch_at(index)
        return self.from_string(text)

    def all_archs(self) -> Sequence[Arch]:
        n = self.size()
        if n is None:
            raise HwnasError(f"space {self.name!r} is not finite; sample from it instead")
        return [self.arch_at(i) for i in range(n)]

    # --- encodings ----------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def alpha_shape(self) -> tuple[int, int]:
        """(decisions, options per decision): the shape of the architecture parameters."""

    def encode(self, arch: Arch) -> np.ndarray:
        """One-hot of the choices, flattened in (decision, option) order, float32."""
        rows, cols = self.alpha_shape
        out = np.zeros((rows, cols), np.float32)
        out[np.arange(rows), list(arch.choices)] = 1.0
        return out.reshape(-1)

    def encode_many(self, archs: Sequence[Arch]) -> np.ndarray:
        return np.stack([self.encode(a) for a in archs]) if archs else np.zeros((0, int(np.prod(self.alpha_shape))), np.float32)

    def relax(self, alpha: torch.Tensor) -> torch.Tensor:
        """Softmax of architecture parameters in the same layout as `encode`, so a predictor fitted on one-hot
        codes accepts relaxed ones. `alpha` has shape alpha_shape (or (..., *alpha_shape) for a batch)."""
        return torch.softmax(alpha, dim=-1).flatten(start_dim=-2)

    def derive(self, alpha: torch.Tensor) -> Arch:
        """The discrete architecture with the strongest option at every decision."""
        return Arch(self.name, tuple(int(i) for i in alpha.detach().argmax(dim=-1).tolist()))

    def neighbours(self, arch: Arch) -> list[Arch]:
        """Architectures that differ from `arch` in exactly one decision."""
        rows, cols = self.alpha_shape
        out = []
        for r in range(rows):
            for c in range(cols):
                if c != arch.choices[r]:
                    choices = list(arch.choices)
                    choices[r] = c
                    out.append(Arch(self.name, tuple(choices)))
        return out

    @abstractmethod
    def graph(self, arch: Arch) -> Graph: ...

    # --- networks -----------------------------------------------------------------------------------------
    default_input_shape: tuple[int, ...] = (3, 32, 32)

    def check_input_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Return the shape as a tuple or raise HwnasError saying which shapes the space can build."""
        return tuple(int(s) for s in input_shape)

    def check_fits(self, input_shape: Sequence[int] | None = None, batch: int = 1) -> None:
        """Raise HwnasError, saying the limit, when a network of this space at this input shape and batch could
        not fit in memory; called before anything is built or allocated. (Placeholder: spaces fill it in.)"""

    @abstractmethod
    def build(self, arch: Arch, input_shape: Sequence[int] | None = None) -> nn.Module:
        """A standalone discrete network taking (batch, *input_shape) and returning class logits."""

    @abstractmethod
    def supernet(self, input_shape: Sequence[int] | None = None) -> nn.Module:
        """Weight-sharing network; `forward(x, weights)` takes mixing weights of shape alpha_shape."""

    def flops(self, arch: Arch, input_shape: Sequence[int] | None = None) -> float:
        """Multiply-accumulates of one inference at batch 1 (counted on the built network)."""
        from hwnas.spaces.analysis import profile_model

        shape = self.check_input_shape(input_shape or self.default_input_shape)
        return profile_model(self.build(arch, shape), shape).macs
