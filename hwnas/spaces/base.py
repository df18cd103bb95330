"""The search-space contract every stage speaks through (see ARCHITECTURE.md, "Data contracts").

A space declares what it offers beyond the minimum in `capabilities`; every stage asks with `require` instead of
probing with `hasattr`, so a new space either works or is refused with one line. The minimum (every space):
`options_per_decision`, naming (`to_string`/`from_string`), `build`, `supernet`, and from those the one-hot code,
`relax`, `derive`, `neighbours`, `sample` and a chain `graph`. Decisions may have different option counts
(ragged): `alpha_shape` is (decisions, most options) and `alpha_mask` marks the options that exist.
"""
from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError, quote
from hwnas.spaces.analysis import profile_model
from hwnas.spaces.registry import SPACES

#: what a space may declare beyond the minimum, and what each means
CAPABILITIES = {
    "profile": "profile(arch, input_shape) -> ModelProfile, analytic MACs/params/traffic (analytic encodings)",
    "live_edges": "live_edges(arch) -> which decisions carry data to the output, with none_options() (live encodings)",
    "index": "size(), index(arch), arch_at(i): a finite, indexed space",
    "memory": "memory_estimate(arch, input_shape, batch) analytically, before building",
    "grow": "decision 0 is the depth; node_decisions(node) lists a node's decisions; the supernet has active_nodes "
            "and grow_node() (a new node with zero gain: function-preserving growth)",
    "layers": "layers(arch, input_shape) -> [(layer description, its input shape)] and layer_module(description): "
              "per-layer latency tables (the layer-lut predictor)",
    "elastic": "an elastic (Once-for-All) supernet: load_supernet(path) -> (supernet, record), extract(supernet, arch) "
               "-> build(arch) with the shared weights",
}
#: FLOPs conventions of `SearchSpace.flops`
FLOPS_CONVENTIONS = ("full", "benchmark")
#: the memory limit when HWNAS_MEMORY_LIMIT_GB is not set: this share of physical RAM
DEFAULT_MEMORY_SHARE = 0.8


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


def _physical_memory_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:  # psutil is optional: POSIX sysconf gives the same figure
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def memory_limit() -> tuple[float, str]:
    """(bytes, where the figure comes from): HWNAS_MEMORY_LIMIT_GB if set, else 80% of physical RAM."""
    text = os.environ.get("HWNAS_MEMORY_LIMIT_GB", "").strip()
    if text:
        try:
            gb = float(text)
        except ValueError:
            gb = float("nan")
        if not (np.isfinite(gb) and gb > 0):
            raise HwnasError(f"HWNAS_MEMORY_LIMIT_GB={quote(text)} is not accepted; give a positive number of GB")
        return gb * 1e9, "HWNAS_MEMORY_LIMIT_GB"
    share = DEFAULT_MEMORY_SHARE
    return share * _physical_memory_bytes(), f"{share:.0%} of RAM; set HWNAS_MEMORY_LIMIT_GB to change it"


def bounded_int(space: str, key: str, value: Any, low: int, high: int) -> int:
    """A macro setting that must be an integer in [low, high]; one line saying the range otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= int(value) <= high:
        raise HwnasError(f"{space} setting {key}={quote(value, 40)} is not accepted; accepted: an integer "
                         f"{low}..{high}")
    return int(value)


class SearchSpace(ABC):
    """A family of networks. Subclasses set `name`, `defaults` (macro settings), `options_per_decision` and the
    abstract methods; they add what they offer to `capabilities` (see CAPABILITIES) and implement it."""

    name: str = ""
    #: macro settings with their defaults, e.g. {"C": 16, "N": 5, "classes": 10}; they are part of `spec`.
    defaults: ClassVar[dict[str, Any]] = {}
    #: what this space offers beyond the minimum (names from CAPABILITIES)
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise HwnasError(
                f"space {self.name!r} has no setting {', '.join(sorted(map(str, unknown)))}; accepted: "
                f"{', '.join(self.defaults)}"
            )
        self.params = {**self.defaults, **params}

    @property
    def spec(self) -> str:
        """The space with its settings, e.g. `nb201:C=16,N=5,classes=10`: what the store records."""
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.params.items())

    # --- capabilities -------------------------------------------------------------------------------------
    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def require(self, capability: str, for_what: str) -> None:
        """Raise one line when this space does not declare `capability`, naming the spaces that do."""
        if capability in self.capabilities:
            return
        accepted = [n for n in SPACES.names() if capability in getattr(SPACES.get(n), "capabilities", ())]
        raise HwnasError(f"space {self.name!r} cannot be used with {for_what}: it does not declare {capability!r}; "
                         f"accepted spaces: {', '.join(accepted) or 'none registered'}")

    # --- naming -------------------------------------------------------------------------------------------
    @abstractmethod
    def to_string(self, arch: Arch) -> str: ...

    @abstractmethod
    def from_string(self, text: str) -> Arch:
        """Parse the canonical string; raise HwnasError saying what is wrong and what is accepted."""

    def sample(self, rng: np.random.Generator) -> Arch:
        """A uniformly random architecture: one option per decision."""
        return Arch(self.name, tuple(int(rng.integers(0, n)) for n in self.options_per_decision()))

    def size(self) -> int | None:
        """Number of architectures, or None for an unbounded space."""
        return None

    def index(self, arch: Arch) -> int:
        self.require("index", "an architecture index")
        raise NotImplementedError

    def arch_at(self, index: int) -> Arch:
        self.require("index", "an architecture index")
        raise NotImplementedError

    def parse(self, arch: Arch | str | int) -> Arch:
        """The one way every stage reads an architecture: an `Arch` of this space, its canonical string, or its
        index in the space (typed as text or given as an int). Anything else is a HwnasError saying what is
        accepted; long input is quoted only in part."""
        if isinstance(arch, Arch):
            if arch.space != self.name:
                raise HwnasError(f"an architecture of space {arch.space!r} was given for space {self.name!r}")
            self.check_choices(arch)
            return arch
        if isinstance(arch, (int, np.integer)) and not isinstance(arch, bool):
            text = str(int(arch))
        elif isinstance(arch, str):
            text = arch.strip()
        else:
            raise HwnasError(f"architecture {quote(arch)} is not accepted; give an Arch, its canonical string or its index")
        if text.lstrip("+-").isdigit():
            size = self.size()
            if size is None or not self.has("index"):
                raise HwnasError(f"space {self.spec} has no architecture index; give the architecture string")
            index = int(text)
            if not 0 <= index < size:
                raise HwnasError(f"architecture index {index} is out of range for {self.spec}; accepted: an index "
                                 f"0..{size - 1} or an architecture string")
            return self.arch_at(index)
        return self.from_string(text)

    def check_choices(self, arch: Arch) -> None:
        """Raise one line unless `arch` picks one existing option at every decision."""
        counts = self.options_per_decision()
        if len(arch.choices) != len(counts) or any(not 0 <= c < n for c, n in zip(arch.choices, counts)):
            raise HwnasError(f"architecture choices {quote(arch.choices)} do not fit {self.spec}; accepted: one "
                             f"option per decision, counts {list(counts)}")

    def all_archs(self) -> Sequence[Arch]:
        n = self.size()
        if n is None:
            raise HwnasError(f"space {self.name!r} is not finite; sample from it instead")
        return [self.arch_at(i) for i in range(n)]

    # --- decisions and options ----------------------------------------------------------------------------
    @abstractmethod
    def options_per_decision(self) -> tuple[int, ...]:
        """How many options each decision has, in `encode` order (all equal unless the space is ragged)."""

    def option_labels(self, decision: int) -> tuple[str, ...]:
        """Names of the options of one decision (default: their numbers)."""
        return tuple(str(i) for i in range(self.options_per_decision()[decision]))

    def none_options(self) -> frozenset[tuple[int, int]]:
        """The (decision, option) pairs that mean "no operation" (default: none; option 0 is not special)."""
        return frozenset()

    @property
    def ragged(self) -> bool:
        return len(set(self.options_per_decision())) > 1

    @property
    def alpha_shape(self) -> tuple[int, int]:
        """(decisions, most options per decision): the shape of the architecture parameters."""
        counts = self.options_per_decision()
        return (len(counts), max(counts))

    @property
    def alpha_mask(self) -> np.ndarray:
        """Boolean (decisions, most options): True where the option exists."""
        return _mask(tuple(self.options_per_decision())).copy()

    @property
    def code_offsets(self) -> np.ndarray:
        """Where each decision's options start in the flat one-hot code; the last entry is the code's length."""
        return np.concatenate([[0], np.cumsum(self.options_per_decision())]).astype(np.int64)

    @property
    def code_length(self) -> int:
        return int(sum(self.options_per_decision()))

    def masked_logits(self, alpha: torch.Tensor) -> torch.Tensor:
        """`alpha` with the options that do not exist set to -inf (unchanged for a rectangular space)."""
        if not self.ragged:
            return alpha
        mask = torch.as_tensor(self.alpha_mask, device=alpha.device)
        return alpha.masked_fill(~mask, float("-inf"))

    def mixing_weights(self, alpha: torch.Tensor) -> torch.Tensor:
        """Softmax over the existing options of every decision, shape alpha_shape (0 where no option is)."""
        return torch.softmax(self.masked_logits(alpha), dim=-1)

    def table_from_code(self, codes: np.ndarray) -> np.ndarray:
        """Flat codes (..., code_length) laid out as (..., *alpha_shape), zeros where no option is."""
        codes = np.asarray(codes)
        out = np.zeros(codes.shape[:-1] + tuple(self.alpha_shape), codes.dtype)
        out[..., self.alpha_mask] = codes
        return out

    # --- encodings ----------------------------------------------------------------------------------------
    def encode(self, arch: Arch) -> np.ndarray:
        """One-hot of the choices, decision after decision (each over its own options), float32."""
        out = np.zeros(self.code_length, np.float32)
        out[self.code_offsets[:-1] + np.asarray(arch.choices, np.int64)] = 1.0
        return out

    def encode_many(self, archs: Sequence[Arch]) -> np.ndarray:
        return np.stack([self.encode(a) for a in archs]) if archs else np.zeros((0, self.code_length), np.float32)

    def relax(self, alpha: torch.Tensor) -> torch.Tensor:
        """Mixing weights in the same layout as `encode`, so a predictor fitted on one-hot codes accepts relaxed
        ones. `alpha` has shape alpha_shape (or (..., *alpha_shape) for a batch)."""
        return self.code_from_weights(self.expected_weights(alpha))

    def expected_weights(self, alpha: torch.Tensor) -> torch.Tensor:
        """The expected `encode` code of an architecture drawn from the mixing weights, laid out as alpha_shape:
        what a cost on codes reads. The mixing weights themselves, unless the space's `encode` leaves the blocks of
        decisions that do not exist in an architecture at zero (rnn-cell: nodes beyond the depth); such a space
        scales those rows by the probability that they exist."""
        return self.mixing_weights(alpha)

    def code_from_weights(self, weights: torch.Tensor) -> torch.Tensor:
        """Mixing weights (..., *alpha_shape) in the flat code's layout (..., code_length)."""
        if not self.ragged:
            return weights.flatten(start_dim=-2)
        return weights[..., torch.as_tensor(self.alpha_mask, device=weights.device)]

    def derive(self, alpha: torch.Tensor) -> Arch:
        """The discrete architecture with the strongest existing option at every decision."""
        return Arch(self.name, tuple(int(i) for i in self.masked_logits(alpha.detach()).argmax(dim=-1).tolist()))

    def neighbours(self, arch: Arch) -> list[Arch]:
        """Architectures that differ from `arch` in exactly one decision."""
        out = []
        for r, n in enumerate(self.options_per_decision()):
            for c in range(n):
                if c != arch.choices[r]:
                    choices = list(arch.choices)
                    choices[r] = c
                    out.append(Arch(self.name, tuple(choices)))
        return out

    def graph(self, arch: Arch) -> Graph:
        """Default graph: a chain input -> one node per decision (labelled by decision and option) -> output."""
        counts = self.options_per_decision()
        labels = tuple(f"{d}:{self.option_labels(d)[c]}" for d, c in enumerate(arch.choices))
        vocabulary = ("input",) + tuple(f"{d}:{lab}" for d in range(len(counts)) for lab in self.option_labels(d)) \
            + ("output",)
        n = len(counts) + 2
        adjacency = np.eye(n, k=1, dtype=np.float32)
        return Graph(ops=("input",) + labels + ("output",), adjacency=adjacency, op_vocabulary=vocabulary)

    def live_edges(self, arch: Arch) -> list[bool]:
        """Which decisions carry data from input to output (declared with the "live_edges" capability)."""
        self.require("live_edges", "live-edge encodings")
        raise NotImplementedError

    def has_idle_operations(self, arch: Arch) -> bool:
        """Whether an operation of `arch` carries nothing from the input to the output (spaces that declare
        "live_edges"; NAS-Bench-201: an edge into a node that never reaches the output, or out of one nothing
        reaches). The same cell with `none` there computes the same function (or one a constant away) for less:
        ONNX export drops the dead part, so a predictor that counts its operations is tens of per cent pessimistic
        there; a search should not fill or climb to such a cell, nor a speed reference be one."""
        if not self.has("live_edges"):
            return False
        none = {d for d, o in self.none_options() if arch.choices[d] == o}
        return any(not live and d not in none for d, live in enumerate(self.live_edges(arch)))

    def without_idle_operations(self, arch: Arch) -> Arch:
        """`arch` with its idle operations (`has_idle_operations`) set to `none`."""
        if not self.has_idle_operations(arch):
            return arch
        none, live = dict(self.none_options()), self.live_edges(arch)
        return Arch(arch.space, tuple(c if live[d] or d not in none else none[d] for d, c in enumerate(arch.choices)))

    def layers(self, arch: Arch, input_shape: Sequence[int] | None = None) -> list[tuple[str, tuple[int, ...]]]:
        """Each layer as (its own description, its input shape) (declared with the "layers" capability)."""
        self.require("layers", "per-layer latency tables")
        raise NotImplementedError

    def layer_module(self, description: str) -> nn.Module:
        """A standalone module for one layer description of `layers` (declared with the "layers" capability)."""
        self.require("layers", "per-layer latency tables")
        raise NotImplementedError

    def profile(self, arch: Arch, input_shape: Sequence[int] | None = None):
        """Analytic MACs, parameters and memory traffic (declared with the "profile" capability)."""
        self.require("profile", "analytic encodings")
        raise NotImplementedError

    # --- networks -----------------------------------------------------------------------------------------
    default_input_shape: tuple[int, ...] = (3, 32, 32)

    def check_input_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Return the shape as a tuple or raise HwnasError saying which shapes the space can build."""
        return tuple(int(s) for s in input_shape)

    def memory_estimate(self, arch: Arch | None, input_shape: Sequence[int] | None = None, batch: int = 1,
                        training: bool | None = None) -> float | None:
        """Bytes a network needs (parameters and activations at this batch, float32), computed without building
        it; `arch=None` means the supernet. `training` (default: True for the supernet, False for an
        architecture) counts what training keeps (gradients, optimiser state, every activation). None when the
        space gives no estimate (without the "memory" capability)."""
        return None

    def check_fits(self, input_shape: Sequence[int] | None = None, batch: int = 1, arch: Arch | None = None,
                   training: bool | None = None) -> None:
        """Raise one line, saying the limit, when a network of this space at this input shape and batch would
        not fit in memory (by `memory_estimate`); called before anything is built or allocated."""
        shape = self.check_input_shape(input_shape or self.default_input_shape)
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise HwnasError(f"batch {quote(batch, 40)} is not accepted; give a positive integer")
        need = self.memory_estimate(arch, shape, int(batch), training)
        if need is None:
            return
        limit, source = memory_limit()
        if need > limit:
            what = "the supernet" if arch is None else "a network"
            doing = "trained" if (arch is None if training is None else training) else "run"
            raise HwnasError(f"{what} of {self.spec} {doing} at input {'x'.join(map(str, shape))} and batch {batch} "
                             f"needs about {need / 1e9:.3g} GB (estimated), over the memory limit of "
                             f"{limit / 1e9:.3g} GB ({source}); use a smaller input, batch or space setting")

    @abstractmethod
    def build(self, arch: Arch, input_shape: Sequence[int] | None = None) -> nn.Module:
        """A standalone discrete network taking (batch, *input_shape) and returning class logits."""

    @abstractmethod
    def supernet(self, input_shape: Sequence[int] | None = None) -> nn.Module:
        """Weight-sharing network; `forward(x, weights)` takes mixing weights of shape alpha_shape."""

    def flops(self, arch: Arch, input_shape: Sequence[int] | None = None, convention: str = "full") -> float:
        """Operations of one inference at batch 1, counted on the built network.

        convention "full" (the default): multiply-accumulates of convolutions and linear layers (no bias) plus
        BatchNorm, pooling and global pooling; what the FLOPs-stratified sampler, the analytic encodings and the
        export manifest's `macs` use. "benchmark": NAS-Bench-201's count, Conv2d and Linear only with the bias
        included, so figures join published tables."""
        check_convention(convention)
        shape = self.check_input_shape(input_shape or self.default_input_shape)
        self.check_fits(shape, 1, arch)
        prof = profile_model(self.build(arch, shape), shape)
        return prof.macs if convention == "full" else prof.benchmark_flops


def check_convention(convention: str) -> None:
    if convention not in FLOPS_CONVENTIONS:
        raise HwnasError(f"unknown FLOPs convention {quote(convention, 40)}; accepted: {', '.join(FLOPS_CONVENTIONS)}")


@functools.lru_cache(maxsize=64)
def _mask(counts: tuple[int, ...]) -> np.ndarray:
    mask = np.arange(max(counts))[None, :] < np.asarray(counts)[:, None]
    mask.setflags(write=False)
    return mask
