"""Recurrent cell space (Growing DARTS for recurrent cells): a sequence model over fixed-length windows.

The cell sees two separate inputs, the current input x_t (projected to the hidden size) and the previous hidden
state h_{t-1}. Node i reads two earlier states (x, h or a node before it) and either applies one of tanh, relu,
sigmoid, identity to a linear map of both, f(A a + B b + bias), or takes their Hadamard product a * b (which
LSTM and GRU cells contain and the original DARTS space lacks). The new hidden state is
h_t = tanh(sum_i gain_i * n_i) over the cell's nodes; `gain` is a learned vector per node, which lets a node be
added with gain 0 without changing the function (network morphism, see hwnas.search.growing). The model reads
a (batch, steps, features) window, runs the cell over it and maps the last hidden state to `classes` outputs (the
forecast: one per target series).

Decisions, in `encode` order: the depth (how many nodes, 1..nodes), then per node slot i (1-based) its first
input, its second input (i + 1 options each: x, h, n1..n{i-1}) and its operation (5): ragged. Slots beyond the
depth are canonical at option 0. The canonical string lists the nodes in order, e.g.
`sigmoid(x,h)|tanh(x,h)|hadamard(n1,n2)`.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError, quote
from hwnas.spaces.base import Arch, Graph, SearchSpace, bounded_int
from hwnas.spaces.registry import register_space

OPS = ("tanh", "relu", "sigmoid", "identity", "hadamard")
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda z: z}
_NODE_RE = re.compile(r"^([a-z]+)\(([a-z0-9]+),([a-z0-9]+)\)$")
EXAMPLE = "sigmoid(x,h)|tanh(x,h)|hadamard(n1,n2)"


def state_names(node: int) -> tuple[str, ...]:
    """The states node `node` (1-based) may read: x, h, then the nodes before it."""
    return ("x", "h") + tuple(f"n{j}" for j in range(1, node))


def decision_of(node: int, part: int) -> int:
    """Index of a node's decision: part 0 first input, 1 second input, 2 operation (decision 0 is the depth)."""
    return 1 + 3 * (node - 1) + part


class CellNode(nn.Module):
    """One discrete node: `op(A a + B b + bias)` or, for hadamard, `a * b` (no parameters)."""

    def __init__(self, hidden: int, op: str, first: int, second: int):
        super().__init__()
        self.op, self.first, self.second = op, first, second
        if op != "hadamard":
            self.a = nn.Linear(hidden, hidden)
            self.b = nn.Linear(hidden, hidden, bias=False)

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        a, b = states[self.first], states[self.second]
        if self.op == "hadamard":
            return a * b
        return ACTIVATIONS[self.op](self.a(a) + self.b(b))


class RecurrentCell(nn.Module):
    """A discrete cell: (x_t, h_{t-1}) -> h_t."""

    def __init__(self, features: int, hidden: int, nodes: Sequence[tuple[int, int, int]]):
        super().__init__()
        self.input = nn.Linear(features, hidden)
        self.nodes = nn.ModuleList(CellNode(hidden, OPS[op], a, b) for a, b, op in nodes)
        self.gain = nn.Parameter(torch.ones(len(nodes), hidden))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        states = [self.input(x), h]
        total = torch.zeros_like(h)
        for i, node in enumerate(self.nodes):
            states.append(node(states))
            total = total + self.gain[i] * states[-1]
        return torch.tanh(total)


class SequenceModel(nn.Module):
    """Runs a cell over a fixed-length window (batch, steps, features) and maps the last hidden state to the
    outputs. `cell` is any module (x_t, h) -> h, so LSTM / GRU baselines of the same size use it too."""

    def __init__(self, cell: nn.Module, hidden: int, outputs: int, state: str = "h"):
        super().__init__()
        self.cell, self.hidden, self.state = cell, hidden, state
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden)
        c = h if self.state == "hc" else None
        for t in range(x.shape[1]):  # fixed length: unrolled when exported
            if c is None:
                h = self.cell(x[:, t], h)
            else:
                h, c = self.cell(x[:, t], (h, c))
        return self.head(h)


class SearchNode(nn.Module):
    """A node slot of the supernet: every input and operation, mixed by weights."""

    def __init__(self, hidden: int):
        super().__init__()
        self.a = nn.Linear(hidden, hidden)
        self.b = nn.Linear(hidden, hidden, bias=False)

    def forward(self, states: torch.Tensor, w_first: torch.Tensor, w_second: torch.Tensor,
                w_op: torch.Tensor) -> torch.Tensor:
        n = states.shape[0]
        a = torch.einsum("s,sbh->bh", w_first[:n], states)
        b = torch.einsum("s,sbh->bh", w_second[:n], states)
        z = self.a(a) + self.b(b)
        outs = [ACTIVATIONS[name](z) for name in OPS[:-1]] + [a * b]
        return sum(w * o for w, o in zip(w_op, outs))


class RecurrentSupernet(nn.Module):
    """`forward(x, weights, active=None)`: weights (decisions, 5). Only the first `active_nodes` slots are computed
    (the growing strategy raises it); the depth weights of the slots beyond it must be 0."""

    def __init__(self, features: int, hidden: int, nodes: int, outputs: int):
        super().__init__()
        self.hidden, self.max_nodes, self.active_nodes = hidden, nodes, nodes
        self.input = nn.Linear(features, hidden)
        self.slots = nn.ModuleList(SearchNode(hidden) for _ in range(nodes))
        self.gain = nn.Parameter(torch.ones(nodes, hidden))
        self.head = nn.Linear(hidden, outputs)

    def cell(self, x: torch.Tensor, h: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        k = self.active_nodes
        depth = weights[0, :k]
        # node i counts in every depth >= i: its coefficient is the tail sum of the depth weights
        coefficient = torch.flip(torch.cumsum(torch.flip(depth, [0]), 0), [0])
        states = [self.input(x), h]
        total = torch.zeros_like(h)
        for i in range(k):
            w = weights[decision_of(i + 1, 0):decision_of(i + 1, 3)]
            node = self.slots[i](torch.stack(states), w[0], w[1], w[2])
            states.append(node)
            total = total + coefficient[i] * self.gain[i] * node
        return torch.tanh(total)

    def grow_node(self) -> int:
        """Compute one more node slot, with gain 0 so the output does not change; returns the node count."""
        if self.active_nodes >= self.max_nodes:
            raise HwnasError(f"the supernet already computes all {self.max_nodes} nodes; raise the setting nodes")
        with torch.no_grad():
            self.gain[self.active_nodes].zero_()
        self.active_nodes += 1
        return self.active_nodes

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active=None) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden)
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h, weights)
        return self.head(h)

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())


@register_space("rnn-cell")
class RNNCellSpace(SearchSpace):
    """Settings: H hidden size, nodes (the most nodes a cell has), classes (outputs: the forecast targets)."""

    name = "rnn-cell"
    defaults: ClassVar[dict[str, int]] = {"H": 16, "nodes": 4, "classes": 1}
    bounds: ClassVar[dict[str, tuple[int, int]]] = {"H": (1, 4096), "nodes": (1, 12), "classes": (1, 100_000)}
    capabilities = frozenset({"grow"})
    #: (steps, features): an 8-step window of 3 series
    default_input_shape = (8, 3)
    ops = OPS

    def __init__(self, **params):
        super().__init__(**params)
        for key, (low, high) in self.bounds.items():
            self.params[key] = bounded_int("rnn-cell", key, self.params[key], low, high)

    @property
    def max_nodes(self) -> int:
        return self.params["nodes"]

    def options_per_decision(self) -> tuple[int, ...]:
        counts = [self.max_nodes]
        for node in range(1, self.max_nodes + 1):
            counts += [node + 1, node + 1, len(OPS)]
        return tuple(counts)

    def node_decisions(self, node: int) -> tuple[int, int, int]:
        """The decisions of node slot `node` (1-based): first input, second input, operation."""
        return decision_of(node, 0), decision_of(node, 1), decision_of(node, 2)

    def option_labels(self, decision: int) -> tuple[str, ...]:
        if decision == 0:
            return tuple(f"depth{d}" for d in range(1, self.max_nodes + 1))
        node, part = divmod(decision - 1, 3)
        return OPS if part == 2 else state_names(node + 1)

    # --- naming -------------------------------------------------------------------------------------------
    def nodes_of(self, arch: Arch) -> list[tuple[int, int, int]]:
        """(first input, second input, operation) of each node within the depth."""
        depth = arch.choices[0] + 1
        return [tuple(arch.choices[decision_of(i, 0):decision_of(i, 3)]) for i in range(1, depth + 1)]

    def canonical(self, arch: Arch) -> Arch:
        """The same cell with the slots beyond its depth at option 0 (what `from_string` gives)."""
        keep = decision_of(arch.choices[0] + 2, 0)
        return Arch(self.name, tuple(arch.choices[:keep]) + (0,) * (len(arch.choices) - keep))

    def to_string(self, arch: Arch) -> str:
        parts = []
        for i, (a, b, op) in enumerate(self.nodes_of(arch), start=1):
            names = state_names(i)
            parts.append(f"{OPS[op]}({names[a]},{names[b]})")
        return "|".join(parts)

    def from_string(self, text: str) -> Arch:
        s = str(text).strip()
        hint = f"expected nodes 'op(input,input)' joined by '|', e.g. {EXAMPLE}; ops: {', '.join(OPS)}"
        parts = s.split("|") if s else []
        if not 1 <= len(parts) <= self.max_nodes:
            raise HwnasError(f"malformed rnn-cell architecture {quote(s)}: {len(parts)} node(s), accepted 1.."
                             f"{self.max_nodes} (setting nodes); {hint}")
        choices = [len(parts) - 1] + [0] * (3 * self.max_nodes)
        for i, part in enumerate(parts, start=1):
            m = _NODE_RE.match(part.strip())
            if not m or m.group(1) not in OPS:
                raise HwnasError(f"malformed rnn-cell architecture {quote(s)}: node {i} {quote(part, 60)}; {hint}")
            names = state_names(i)
            for k, source in enumerate((m.group(2), m.group(3))):
                if source not in names:
                    raise HwnasError(f"malformed rnn-cell architecture {quote(s)}: node {i} reads {quote(source, 20)}; "
                                     f"accepted inputs of node {i}: {', '.join(names)}")
                choices[decision_of(i, k)] = names.index(source)
            choices[decision_of(i, 2)] = OPS.index(m.group(1))
        return Arch(self.name, tuple(choices))

    def encode(self, arch: Arch) -> np.ndarray:
        """One-hot of the depth and of each node within it; the blocks of the slots beyond the depth are zero (those
        nodes do not exist), so a cost fitted on codes charges nothing for them."""
        code = super().encode(arch)
        code[self.code_offsets[decision_of(arch.choices[0] + 2, 0)]:] = 0.0
        return code

    def expected_weights(self, alpha: torch.Tensor) -> torch.Tensor:
        """Mixing weights with each node's rows scaled by the probability that the depth reaches it: the expected
        code of `encode` (an additive cost on it is the exact expected cost)."""
        weights = self.mixing_weights(alpha)
        depth = weights[..., 0, :self.max_nodes]
        reach = torch.flip(torch.cumsum(torch.flip(depth, [-1]), -1), [-1])  # P(depth >= node)
        scale = torch.cat([torch.ones_like(reach[..., :1]), reach.repeat_interleave(3, dim=-1)], dim=-1)
        return weights * scale.unsqueeze(-1)

    def sample(self, rng: np.random.Generator) -> Arch:
        return self.canonical(super().sample(rng))

    def cell_count(self) -> int:
        """How many distinct cells the space holds. `size()` stays None: the space has no index (no "index")."""
        total = 0
        for depth in range(1, self.max_nodes + 1):
            total += math.prod((i + 1) ** 2 * len(OPS) for i in range(1, depth + 1))
        return total

    def derive(self, alpha: torch.Tensor) -> Arch:
        return self.canonical(super().derive(alpha))

    def neighbours(self, arch: Arch) -> list[Arch]:
        """Cells that differ in one decision within the depth (or in the depth), each once."""
        seen = {self.canonical(arch)}
        out = []
        for a in map(self.canonical, super().neighbours(arch)):
            if a not in seen:
                seen.add(a)
                out.append(a)
        return out

    def graph(self, arch: Arch) -> Graph:
        """Inputs x and h, one node per cell node labelled by its operation, and the output (all nodes feed it)."""
        nodes = self.nodes_of(arch)
        n = len(nodes) + 3
        adjacency = np.zeros((n, n), np.float32)
        for i, (a, b, _) in enumerate(nodes, start=1):
            adjacency[a, i + 1] = adjacency[b, i + 1] = 1.0  # state j is graph node j (x 0, h 1, n_i i + 1)
            adjacency[i + 1, n - 1] = 1.0
        ops = ("x", "h") + tuple(OPS[op] for _, _, op in nodes) + ("output",)
        return Graph(ops=ops, adjacency=adjacency, op_vocabulary=("x", "h") + OPS + ("output",))

    # --- networks -----------------------------------------------------------------------------------------
    def check_input_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 2 or not 1 <= shape[0] <= 4096 or not 1 <= shape[1] <= 100_000:
            raise HwnasError(f"input shape {'x'.join(map(str, shape))} cannot be built by rnn-cell; accepted: "
                             "(steps, features), steps 1..4096, e.g. 8x3")
        return shape

    def build(self, arch: Arch, input_shape: Sequence[int] | None = None) -> SequenceModel:
        shape = self.check_input_shape(input_shape or self.default_input_shape)
        arch = self.parse(arch)
        hidden = self.params["H"]
        return SequenceModel(RecurrentCell(shape[1], hidden, self.nodes_of(arch)), hidden, self.params["classes"])

    def supernet(self, input_shape: Sequence[int] | None = None) -> RecurrentSupernet:
        shape = self.check_input_shape(input_shape or self.default_input_shape)
        p = self.params
        return RecurrentSupernet(shape[1], p["H"], p["nodes"], p["classes"])


def baseline_model(kind: str, features: int, hidden: int, outputs: int) -> SequenceModel:
    """An LSTM or GRU cell of hidden size `hidden` in the same sequence model as the searched cells."""
    if kind == "lstm":
        return SequenceModel(nn.LSTMCell(features, hidden), hidden, outputs, state="hc")
    if kind == "gru":
        return SequenceModel(nn.GRUCell(features, hidden), hidden, outputs)
    raise HwnasError(f"unknown baseline {quote(kind)}; accepted: lstm, gru")
