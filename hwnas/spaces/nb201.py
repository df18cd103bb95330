"""NAS-Bench-201 cell space (Dong & Yang, ICLR 2020): a 4-node cell, 6 edges, 5 operations, 15,625 cells.

Strings and indices are NAS-Bench-201's own, so published measurements (HW-NAS-Bench, NATS-Bench, HELP) join
by either. The macro skeleton is the benchmark's: stem, three stages of N cells joined by residual reduction
blocks, BN-ReLU, global pooling and a linear classifier; operations are ReLU-Conv-BN.
"""
from __future__ import annotations

import functools
import random
import re
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError, quote
from hwnas.spaces.analysis import ModelProfile, profile_model
from hwnas.spaces.base import Arch, Graph, SearchSpace, bounded_int, check_convention
from hwnas.spaces.registry import register_space

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: (from node, to node) of each edge, in string and `encode` order.
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
_NODE_RE = re.compile(r"^([a-z0-9_]+)~(\d+)$")
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


@functools.lru_cache(maxsize=1)
def _benchmark_order() -> tuple[tuple[int, ...], ...]:
    """All cells in NAS-Bench-201's index order: its generator enumerates node by node (edges from lower
    nodes first, ops in OPS order) and then shuffles with Python's `random.seed(88)`; reproduced exactly."""
    combos: list[tuple[int, ...]] = [()]
    for node in (1, 2, 3):
        per_node = [()]
        for _ in range(node):
            per_node = [p + (op,) for p in per_node for op in range(len(OPS))]
        combos = [c + p for c in combos for p in per_node]
    rng = random.Random()
    rng.seed(88)
    order = list(combos)
    rng.shuffle(order)
    return tuple(order)


@functools.lru_cache(maxsize=1)
def _index_of() -> dict[tuple[int, ...], int]:
    return {choices: i for i, choices in enumerate(_benchmark_order())}


# --- operations --------------------------------------------------------------------------------------------
class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class Zero(nn.Module):
    """The `none` operation. Multiplying keeps the output's shape and device (and exports as one Mul)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(name: str, channels: int, affine: bool = True) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, affine)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, affine)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise HwnasError(f"unknown nb201 operation {name!r}; accepted: {', '.join(OPS)}")


class ResNetReduction(nn.Module):
    """NAS-Bench-201's residual reduction block: halves the resolution and doubles the channels."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, affine)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, affine)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class Cell(nn.Module):
    """A discrete cell: node j is the sum of the operations on its incoming edges.

    `none` edges add exactly zero, so they are left out of the sums rather than computed: a deployed model should
    not multiply by zero, and ONNX Runtime ran a cell with one `none` edge 1.4x slower than with `avg_pool_3x3`
    there (the exported Mul). A node whose edges are all `none` is zero (one Mul, as before)."""

    def __init__(self, channels: int, choices: Sequence[int]):
        super().__init__()
        self.edges = nn.ModuleList(make_op(OPS[c], channels) for c in choices)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in (1, 2, 3):
            terms = [self.edges[k](nodes[i]) for k, (i, to) in enumerate(EDGES)
                     if to == j and not isinstance(self.edges[k], Zero)]
            node = terms[0] if terms else x.mul(0.0)
            for term in terms[1:]:
                node = node + term
            nodes.append(node)
        return nodes[3]


class MixedOp(nn.Module):
    """All five operations of one edge, mixed by weights (DARTS), or only the chosen one (GDAS)."""

    def __init__(self, channels: int):
        super().__init__()
        self.ops = nn.ModuleList(make_op(name, channels, affine=False) for name in OPS)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: int | None = None) -> torch.Tensor:
        if active is None:  # `none` adds nothing (and its weight gets no gradient from it), so it is not computed
            return sum(w * op(x) for w, op in zip(weights, self.ops) if not isinstance(op, Zero))
        # Only the chosen op runs; the others add their (zero-valued) weight so every weight keeps a gradient.
        return sum(weights[i] * op(x) if i == active else weights[i] for i, op in enumerate(self.ops))


class SearchCell(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.edges = nn.ModuleList(MixedOp(channels) for _ in EDGES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[int] | None = None) -> torch.Tensor:
        nodes = [x]
        for j in (1, 2, 3):
            nodes.append(
                sum(
                    self.edges[k](nodes[i], weights[k], None if active is None else int(active[k]))
                    for k, (i, to) in enumerate(EDGES)
                    if to == j
                )
            )
        return nodes[3]


class NB201Network(nn.Module):
    """The benchmark's macro skeleton around either discrete cells or weight-sharing search cells."""

    def __init__(self, in_channels: int, C: int, N: int, classes: int, make_cell, affine: bool = True):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        channels = C
        for stage in range(3):
            if stage > 0:
                layers.append(ResNetReduction(channels, channels * 2, affine))
                channels *= 2
            layers.extend(make_cell(channels) for _ in range(N))
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, classes)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.lastact(x)), 1))


class NB201Model(NB201Network):
    def __init__(self, in_channels: int, C: int, N: int, classes: int, choices: Sequence[int]):
        super().__init__(in_channels, C, N, classes, lambda ch: Cell(ch, choices))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.cells:
            x = layer(x)
        return self.head(x)


class NB201Supernet(NB201Network):
    """`forward(x, weights, active=None)`: weights (6, 5) mix the operations of every edge of every cell."""

    def __init__(self, in_channels: int, C: int, N: int, classes: int):
        super().__init__(in_channels, C, N, classes, SearchCell, affine=False)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[int] | None = None) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.cells:
            x = layer(x, weights, active) if isinstance(layer, SearchCell) else layer(x)
        return self.head(x)

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())


@register_space("nb201")
class NB201Space(SearchSpace):
    name = "nb201"
    defaults: ClassVar[dict[str, int]] = {"C": 16, "N": 5, "classes": 10}
    #: accepted range of each macro setting (what fits is checked further by `check_fits`)
    bounds: ClassVar[dict[str, tuple[int, int]]] = {"C": (1, 4096), "N": (1, 64), "classes": (1, 100_000)}
    capabilities = frozenset({"profile", "live_edges", "index", "memory"})
    default_input_shape = (3, 32, 32)
    ops = OPS
    edges = EDGES

    def __init__(self, **params):
        super().__init__(**params)
        for key, (low, high) in self.bounds.items():
            self.params[key] = bounded_int("nb201", key, self.params[key], low, high)
        self._profiles: dict[tuple[int, ...], tuple[ModelProfile, np.ndarray]] = {}

    def options_per_decision(self) -> tuple[int, ...]:
        return (len(OPS),) * len(EDGES)

    def option_labels(self, decision: int) -> tuple[str, ...]:
        return OPS

    def none_options(self) -> frozenset[tuple[int, int]]:
        return frozenset((k, OPS.index("none")) for k in range(len(EDGES)))

    # --- naming -------------------------------------------------------------------------------------------
    def to_string(self, arch: Arch) -> str:
        parts, k = [], 0
        for node in (1, 2, 3):
            parts.append("|" + "|".join(f"{OPS[arch.choices[k + i]]}~{i}" for i in range(node)) + "|")
            k += node
        return "+".join(parts)

    def from_string(self, text: str) -> Arch:
        s = str(text).strip()
        hint = f"expected NAS-Bench-201's form, e.g. {EXAMPLE}"
        shown = quote(s)  # at most ~200 characters of what was given
        nodes = s.split("+")
        if len(nodes) != 3:
            raise HwnasError(f"malformed nb201 architecture {shown}: {len(nodes)} node(s) separated by '+', need 3; {hint}")
        choices: list[int] = []
        for node, part in enumerate(nodes, start=1):
            if not (part.startswith("|") and part.endswith("|")) or len(part) < 2:
                raise HwnasError(f"malformed nb201 architecture {shown}: node {node} {quote(part, 60)} must be wrapped in '|'; {hint}")
            edges = part[1:-1].split("|")
            if len(edges) != node:
                raise HwnasError(f"malformed nb201 architecture {shown}: node {node} has {len(edges)} edge(s), needs {node}; {hint}")
            for i, edge in enumerate(edges):
                m = _NODE_RE.match(edge)
                if not m:
                    raise HwnasError(f"malformed nb201 architecture {shown}: edge {quote(edge, 60)} is not 'op~input'; {hint}")
                op, source = m.group(1), int(m.group(2))
                if op not in OPS:
                    raise HwnasError(f"malformed nb201 architecture {shown}: unknown operation {quote(op, 60)}; accepted: {', '.join(OPS)}")
                if source != i:
                    raise HwnasError(f"malformed nb201 architecture {shown}: edge {quote(edge, 60)} of node {node} must read node {i}; {hint}")
                choices.append(OPS.index(op))
        return Arch(self.name, tuple(choices))

    def sample(self, rng: np.random.Generator) -> Arch:
        return Arch(self.name, tuple(int(c) for c in rng.integers(0, len(OPS), size=len(EDGES))))  # one call, as before

    def size(self) -> int:
        return len(OPS) ** len(EDGES)

    def index(self, arch: Arch) -> int:
        return _index_of()[tuple(arch.choices)]

    def arch_at(self, index: int) -> Arch:
        if not 0 <= int(index) < self.size():
            raise HwnasError(f"nb201 index {index} is out of range; accepted: 0..{self.size() - 1}")
        return Arch(self.name, _benchmark_order()[int(index)])

    def all_archs(self) -> list[Arch]:
        return [Arch(self.name, c) for c in _benchmark_order()]

    # --- encodings ----------------------------------------------------------------------------------------
    def live_edges(self, arch: Arch) -> list[bool]:
        """Which edges carry a non-`none` operation on some path from the cell's input to its output."""
        on = [arch.choices[k] != 0 for k in range(len(EDGES))]
        reach_from_input = {0}
        for k, (i, j) in enumerate(EDGES):  # EDGES is in topological order of the target node
            if on[k] and i in reach_from_input:
                reach_from_input.add(j)
        reaches_output = {3}
        for k, (i, j) in reversed(list(enumerate(EDGES))):
            if on[k] and j in reaches_output:
                reaches_output.add(i)
        return [on[k] and i in reach_from_input and j in reaches_output for k, (i, j) in enumerate(EDGES)]

    def graph(self, arch: Arch) -> Graph:
        """Operations as nodes (the usual NAS-Bench-201 graph for GCN predictors): input, six ops, output."""
        n = len(EDGES) + 2
        adjacency = np.zeros((n, n), np.float32)
        for k, (i, j) in enumerate(EDGES):
            sources = [0] if i == 0 else [1 + e for e, (_, to) in enumerate(EDGES) if to == i]
            for s in sources:
                adjacency[s, 1 + k] = 1.0
            if j == 3:
                adjacency[1 + k, n - 1] = 1.0
        ops = ("input",) + tuple(OPS[c] for c in arch.choices) + ("output",)
        return Graph(ops=ops, adjacency=adjacency, op_vocabulary=("input",) + OPS + ("output",))

    # --- networks -----------------------------------------------------------------------------------------
    def check_input_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(s) for s in input_shape)
        accepted = "(channels, height, width) with height and width multiples of 4 (two stride-2 reductions), e.g. 3x32x32"
        if len(shape) != 3 or shape[0] < 1 or any(s < 4 or s % 4 for s in shape[1:]):
            raise HwnasError(f"input shape {'x'.join(map(str, shape))} cannot be built by nb201; accepted: {accepted}")
        return shape

    def build(self, arch: Arch, input_shape: Sequence[int] | None = None) -> nn.Module:
        shape = self.check_input_shape(input_shape or self.default_input_shape)
        self.check_fits(shape, 1, arch)
        p = self.params
        return NB201Model(shape[0], p["C"], p["N"], p["classes"], arch.choices)

    def supernet(self, input_shape: Sequence[int] | None = None) -> NB201Supernet:
        shape = self.check_input_shape(input_shape or self.default_input_shape)
        self.check_fits(shape, 1, None)
        p = self.params
        return NB201Supernet(shape[0], p["C"], p["N"], p["classes"])

    def profile(self, arch: Arch, input_shape: Sequence[int] | None = None) -> ModelProfile:
        """MACs, parameters and memory traffic. Exact and instant: every cell's cost is the skeleton's plus one
        term per edge and operation, so 25 built networks give the table for all 15,625 cells."""
        shape = self.check_input_shape(input_shape or self.default_input_shape)
        if shape not in self._profiles:
            none = Arch(self.name, (0,) * len(EDGES))
            base = profile_model(self.build(none, shape), shape)
            delta = np.zeros((len(EDGES), len(OPS), 5))
            for k in range(len(EDGES)):
                for op in range(1, len(OPS)):
                    choices = [0] * len(EDGES)
                    choices[k] = op
                    prof = profile_model(self.build(Arch(self.name, tuple(choices)), shape), shape)
                    delta[k, op] = np.subtract(_as_vector(prof), _as_vector(base))
            self._profiles[shape] = (base, delta)
        base, delta = self._profiles[shape]
        total = np.add(_as_vector(base), delta[np.arange(len(EDGES)), list(arch.choices)].sum(axis=0))
        return ModelProfile(macs=float(total[0]), params=round(total[1]), activation_bytes=float(total[2]),
                            layers=round(total[3]), benchmark_flops=float(total[4]))

    def flops(self, arch: Arch, input_shape: Sequence[int] | None = None, convention: str = "full") -> float:
        """See `SearchSpace.flops`: "full" (default; sampler, analytic encodings, export manifest `macs`) or
        "benchmark" (NAS-Bench-201's published FLOPs: Conv2d and Linear with bias). Exact, from `profile`."""
        check_convention(convention)
        prof = self.profile(arch, input_shape)
        return prof.macs if convention == "full" else prof.benchmark_flops

    # --- sizes --------------------------------------------------------------------------------------------
    def param_count(self, arch: Arch | None, in_channels: int = 3) -> int:
        """Parameters of the discrete network (or, for None, the supernet, whose cells have no BN affine)."""
        C, N, classes = self.params["C"], self.params["N"], self.params["classes"]
        bn = 0 if arch is None else 2  # affine BatchNorm: weight and bias per channel
        total = in_channels * C * 9 + 2 * C
        for stage in range(3):
            c = C * 2 ** stage
            if stage > 0:
                h = c // 2
                total += h * c * 9 + bn * c + c * c * 9 + bn * c + h * c
            if arch is None:
                per_cell = len(EDGES) * (c * c * 9 + c * c)
            else:
                per_cell = sum({"nor_conv_3x3": c * c * 9 + 2 * c, "nor_conv_1x1": c * c + 2 * c}.get(OPS[k], 0)
                               for k in arch.choices)
            total += N * per_cell
        cf = C * 4
        return total + 2 * cf + cf * classes + classes

    def memory_estimate(self, arch: Arch | None, input_shape: Sequence[int] | None = None, batch: int = 1,
                        training: bool | None = None) -> float:
        """Bytes, float32, computed without building. Training (the default for the supernet, `arch=None`):
        parameters x3 (weights, gradients, momentum) plus the activations autograd keeps at this batch (per edge:
        ReLU, conv and BN outputs of each convolution, pooling and zero outputs; in the supernet every operation
        of every edge). Inference (the default for an architecture, as measured): parameters plus the input and
        the activations alive at once (a cell's four nodes and one operation's intermediates, at the widest
        stage)."""
        shape = self.check_input_shape(input_shape or self.default_input_shape)
        training = arch is None if training is None else training
        C, N = self.params["C"], self.params["N"]
        hw = shape[1] * shape[2]
        params = self.param_count(arch, shape[0])
        if not training:
            return 4.0 * (params + float(batch) * (shape[0] * hw + 10 * C * hw))
        kept = {"none": 1, "skip_connect": 0, "nor_conv_1x1": 3, "nor_conv_3x3": 3, "avg_pool_3x3": 1}
        per_cell = len(EDGES) * (sum(kept.values()) + 2) if arch is None else sum(kept[OPS[k]] for k in arch.choices)
        per_cell += 6  # node sums
        act = shape[0] * hw + 2 * C * hw
        for stage in range(3):
            c, area = C * 2 ** stage, hw // 4 ** stage
            if stage > 0:
                act += 8 * c * area + (c // 2) * area
            act += N * per_cell * c * area
        act += 4 * C * 3 + 4 * C  # head
        return 4.0 * (3 * params + float(batch) * act)


def _as_vector(p: ModelProfile) -> np.ndarray:
    return np.array([p.macs, p.params, p.activation_bytes, p.layers, p.benchmark_flops], dtype=np.float64)
