"""Parameterised quantum circuits as a ragged search space (DQAS, Zhang et al. 2022), with a quantum processor
model as the hardware.

A circuit is a sequence of `placeholders`; each picks one operation from its pool. Pools alternate: even
placeholders hold single-qubit gates (rotations `rx0`, `ry2`, ..., and Hadamards `h1`), odd ones entangling gates on qubit pairs
(`cnot0_1` on every ordered pair, `zz0_2` = IsingZZ on every unordered pair); both have `none`. The two pools have
different sizes, so the space is ragged. Canonical string: the labels joined by "-", e.g. `ry0-cnot0_1-none-cnot1_2`.

The hardware is a `Processor`: a coupling map (`line`, `ring`, or `heavy-hex`: the first qubits, in breadth-first
order, of IBM's 27-qubit heavy-hex Falcon map), a native gate set (`cx`: rx/ry/rz + cx; `cz`: rx/ry/rz + cz;
`ibm`: rz/sx/x + cx) with gate times, and a depolarising error rate per native gate (`noise`). A logical circuit
is routed by `route`: trivial initial layout, then before each two-qubit gate on non-adjacent qubits, SWAPs along
a shortest path move the first qubit next to the second (the greedy router of Qiskit's BasicSwap; small and
deterministic, and it needs no PennyLane, so costs, encodings and graphs work without the quantum extra). Each
routed gate is then decomposed into native gates; `cost(arch, metric)` is the routed circuit's depth (native
layers), two-qubit gate count, or duration in ns (as-soon-as-possible schedule with the gate times).

Simulation uses PennyLane (the `quantum` extra, imported only when a circuit is built) with its PyTorch
interface: `default.qubit` gives the state vector (noise 0), `default.mixed` the density matrix under
depolarising noise; gradients are PyTorch's backprop. The routed circuit is what is simulated (SWAPs included,
with their noise), and the output is put back in logical qubit order.
"""
from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError, quote
from hwnas.spaces.base import Arch, Graph, SearchSpace, bounded_int
from hwnas.spaces.registry import register_space

ROTATIONS = ("rx", "ry", "rz")
COUPLINGS = ("line", "ring", "heavy-hex")
#: IBM Falcon r4 (27 qubits) heavy-hex coupling map; `heavy-hex` uses its first qubits in breadth-first order
FALCON_27 = ((0, 1), (1, 2), (1, 4), (2, 3), (3, 5), (4, 7), (5, 8), (6, 7), (7, 10), (8, 9), (8, 11), (10, 12),
             (11, 14), (12, 13), (12, 15), (13, 14), (14, 16), (15, 18), (16, 19), (17, 18), (18, 21), (19, 20),
             (19, 22), (21, 23), (22, 25), (23, 24), (24, 25), (25, 26))
#: native gate sets: their single- and two-qubit gates
NATIVE_SETS = {"cx": ("rx", "ry", "rz", "cx"), "cz": ("rx", "ry", "rz", "cz"), "ibm": ("rz", "sx", "x", "cx")}
#: gate times in ns (superconducting, IBM-like): rz is virtual (a frame change) and takes no time
GATE_TIMES_NS = {"rz": 0.0, "rx": 35.0, "ry": 35.0, "sx": 35.0, "x": 35.0, "cx": 300.0, "cz": 200.0}
METRICS = ("depth", "two_qubit_gates", "duration_ns")
#: gate kinds that take an angle
PARAMETRISED = frozenset({"rx", "ry", "rz", "zz"})
MAX_QUBITS = 8


@dataclass(frozen=True)
class Gate:
    """One logical or routed gate: `kind` (rx, ry, rz, h, cnot, zz, swap), its wires, and the index of its
    angle in the parameter vector (used by the kinds in PARAMETRISED)."""

    kind: str
    wires: tuple[int, ...]
    param: int = -1


def _decompose(kind: str, wires: tuple[int, ...], native: str) -> list[tuple[str, tuple[int, ...]]]:
    """Native gates of one routed gate (for counting and scheduling; angles do not matter here)."""
    if kind in ROTATIONS or kind == "h":
        if native == "ibm":  # the ZSXZSXZ Euler decomposition; rz alone stays rz; h = rz sx rz
            n = 1 if kind == "rz" else 3 if kind == "h" else 5
            return [("rz" if i % 2 == 0 else "sx", wires) for i in range(n)]
        return [("ry", wires), ("rz", wires)] if kind == "h" else [(kind, wires)]
    two = "cz" if native == "cz" else "cx"
    a, b = wires
    if native == "cz":  # cnot = ry(-pi/2)_b cz ry(pi/2)_b
        cnot = [("ry", (b,)), ("cz", (a, b)), ("ry", (b,))]
    else:
        cnot = [(two, (a, b))]
    if kind == "cnot":
        return cnot
    if kind == "zz":  # exp(-i t/2 ZZ) = cnot rz_b cnot
        return cnot + [("rz", (b,))] + cnot
    if kind == "swap":  # three alternating cnots
        reverse = [(g, tuple(b if w == a else a if w == b else w for w in ws)) for g, ws in cnot]
        return cnot + reverse + cnot
    raise HwnasError(f"unknown gate kind {quote(kind)}")


@dataclass(frozen=True)
class Processor:
    """A quantum processor model: coupling map, native gate set, gate times and depolarising error rate."""

    qubits: int
    coupling: str = "line"
    native: str = "cx"
    noise: float = 0.0

    @functools.cached_property
    def edges(self) -> tuple[tuple[int, int], ...]:
        n = self.qubits
        if self.coupling == "line":
            return tuple((i, i + 1) for i in range(n - 1))
        if self.coupling == "ring":
            return tuple((i, (i + 1) % n) for i in range(n if n > 2 else 1))
        return _heavy_hex(n)

    @functools.cached_property
    def distances(self) -> np.ndarray:
        """All-pairs hop counts on the coupling map (breadth-first search)."""
        n = self.qubits
        out = np.full((n, n), n + 1, np.int64)
        for s in range(n):
            out[s, s], frontier = 0, deque([s])
            while frontier:
                u = frontier.popleft()
                for v in self.neighbours(u):
                    if out[s, v] > out[s, u] + 1:
                        out[s, v] = out[s, u] + 1
                        frontier.append(v)
        return out

    def neighbours(self, q: int) -> list[int]:
        return sorted({b for a, b in self.edges if a == q} | {a for a, b in self.edges if b == q})

    def route(self, gates: Sequence[Gate]) -> tuple[list[Gate], tuple[int, ...]]:
        """The gates on physical qubits with SWAPs inserted, and the final layout (logical -> physical)."""
        layout = list(range(self.qubits))
        routed: list[Gate] = []
        for g in gates:
            if len(g.wires) == 2:
                a, b = g.wires
                while self.distances[layout[a], layout[b]] > 1:
                    # step the first qubit to the neighbour closest to the second (ties: lowest index)
                    here = layout[a]
                    nxt = min(self.neighbours(here), key=lambda q: (self.distances[q, layout[b]], q))
                    other = layout.index(nxt)
                    routed.append(Gate("swap", (here, nxt)))
                    layout[a], layout[other] = nxt, here
            routed.append(Gate(g.kind, tuple(layout[w] for w in g.wires), g.param))
        return routed, tuple(layout)

    def natives(self, routed: Sequence[Gate]) -> list[tuple[str, tuple[int, ...]]]:
        return [n for g in routed for n in _decompose(g.kind, g.wires, self.native)]

    def metrics(self, gates: Sequence[Gate]) -> dict[str, float]:
        """Routed depth (native layers), two-qubit gate count, duration (ns, as soon as possible) and SWAPs."""
        routed, _ = self.route(gates)
        natives = self.natives(routed)
        layer = np.zeros(self.qubits, np.int64)
        clock = np.zeros(self.qubits, np.float64)
        for kind, wires in natives:
            w = list(wires)
            layer[w] = layer[w].max() + 1
            clock[w] = clock[w].max() + GATE_TIMES_NS[kind]
        return {"depth": float(layer.max(initial=0)), "two_qubit_gates": float(sum(len(w) == 2 for _, w in natives)),
                "duration_ns": float(clock.max(initial=0.0)), "swaps": float(sum(g.kind == "swap" for g in routed))}


def _heavy_hex(n: int) -> tuple[tuple[int, int], ...]:
    order, seen, frontier = [], {0}, deque([0])
    adjacency = {q: sorted({b for a, b in FALCON_27 if a == q} | {a for a, b in FALCON_27 if b == q}) for q in range(27)}
    while frontier and len(order) < n:
        u = frontier.popleft()
        order.append(u)
        for v in adjacency[u]:
            if v not in seen:
                seen.add(v)
                frontier.append(v)
    index = {q: i for i, q in enumerate(order)}
    return tuple(sorted((min(index[a], index[b]), max(index[a], index[b]))
                        for a, b in FALCON_27 if a in index and b in index))


# --- simulation (PennyLane, imported here only) -------------------------------------------------------------
def _pennylane():
    try:
        import pennylane as qml
    except ImportError:
        raise HwnasError("simulating circuits needs PennyLane: pip install 'hwnas[quantum]'") from None
    return qml


def _apply(qml, gate: Gate, angle) -> None:
    w = list(gate.wires)
    {"rx": lambda: qml.RX(angle, wires=w), "ry": lambda: qml.RY(angle, wires=w), "rz": lambda: qml.RZ(angle, wires=w),
     "h": lambda: qml.Hadamard(wires=w), "cnot": lambda: qml.CNOT(wires=w), "swap": lambda: qml.SWAP(wires=w),
     "zz": lambda: qml.IsingZZ(angle, wires=w)}[gate.kind]()


@functools.lru_cache(maxsize=16)
def _qnode(qubits: int, mixed: bool):
    """One QNode per (qubits, noisy): the circuit is passed in, so one node serves every architecture."""
    qml = _pennylane()
    device = qml.device("default.mixed" if mixed else "default.qubit", wires=qubits)

    def circuit(routed, params, noise):
        for g in routed:
            _apply(qml, g, params[g.param] if g.kind in PARAMETRISED else None)
            for wire, p in noise.get(id(g), ()):
                qml.DepolarizingChannel(p, wires=wire)
        return qml.density_matrix(wires=range(qubits)) if mixed else qml.state()

    return qml.QNode(circuit, device, interface="torch", diff_method="backprop")


def simulate(processor: Processor, gates: Sequence[Gate], params: torch.Tensor) -> torch.Tensor:
    """The routed circuit's output in logical qubit order, from |0...0>: the state vector (2**n,) without noise,
    the density matrix (2**n, 2**n) under depolarising noise. Differentiable in `params` (torch backprop)."""
    routed, layout = processor.route(gates)
    noise: dict[int, list[tuple[int, float]]] = {}
    if processor.noise > 0:  # one depolarising channel per wire, compounded over that wire's native gates
        for g in routed:
            counts: dict[int, int] = {}
            for _, wires in _decompose(g.kind, g.wires, processor.native):
                for w in wires:
                    counts[w] = counts.get(w, 0) + 1
            noise[id(g)] = [(w, float(1 - (1 - processor.noise) ** k)) for w, k in sorted(counts.items())]
    out = _qnode(processor.qubits, processor.noise > 0)(routed, params, noise)
    n = processor.qubits
    order = list(layout)  # logical qubit q sits on physical layout[q]
    if processor.noise > 0:
        return out.reshape((2,) * (2 * n)).permute(order + [n + q for q in order]).reshape(2 ** n, 2 ** n)
    return out.reshape((2,) * n).permute(order).reshape(2 ** n)


class CircuitModel(nn.Module):
    """One circuit: `forward()` (input ignored) returns its output (see `simulate`); one angle per gate."""

    def __init__(self, processor: Processor, gates: Sequence[Gate], angles: torch.Tensor | None = None):
        super().__init__()
        self.processor, self.gates = processor, list(gates)
        init = torch.zeros(len(self.gates)) if angles is None else torch.as_tensor(angles)
        self.angles = nn.Parameter(init.detach().clone().double())

    def forward(self, x: torch.Tensor | None = None) -> torch.Tensor:
        return simulate(self.processor, self.gates, self.angles)


class CircuitSupernet(nn.Module):
    """Shared angles, one per (placeholder, option) as in DQAS; `forward(x, weights, active)` runs the circuit of
    the sampled choices `active` (a mixture of circuits is not a circuit, so `active` is required)."""

    def __init__(self, space: CircuitSpace, seed: int = 0):
        super().__init__()
        self.space = space
        g = torch.Generator().manual_seed(seed)
        self.angles = nn.Parameter((0.1 * torch.randn(space.alpha_shape, generator=g)).double())

    def forward(self, x, weights=None, active: Sequence[int] | None = None) -> torch.Tensor:
        if active is None:
            raise HwnasError("a circuit supernet runs one sampled circuit at a time; search circuits with the "
                             "'dqas' strategy")
        choices = tuple(int(c) for c in active)
        gates = self.space.gates(Arch(self.space.name, choices))
        slots = torch.tensor([self.space.param_slot(choices, g.param) for g in gates], dtype=torch.long)
        # gate k reads params[k]: its placeholder's angle for the chosen option
        numbered = [Gate(g.kind, g.wires, k) for k, g in enumerate(gates)]
        return simulate(self.space.processor, numbered, self.angles.reshape(-1)[slots])


@register_space("circuit")
class CircuitSpace(SearchSpace):
    """settings: qubits (2..8), placeholders (1..40), coupling (line|ring|heavy-hex), native (cx|cz|ibm), noise
    (depolarising probability per native gate, 0 = noiseless)."""

    name = "circuit"
    defaults: ClassVar[dict[str, Any]] = {"qubits": 3, "placeholders": 4, "coupling": "line", "native": "cx",
                                          "noise": 0.0}
    default_input_shape = (1,)

    def __init__(self, **params: Any):
        super().__init__(**params)
        p = self.params
        p["qubits"] = bounded_int(self.name, "qubits", p["qubits"], 2, MAX_QUBITS)
        p["placeholders"] = bounded_int(self.name, "placeholders", p["placeholders"], 1, 40)
        for key, accepted in (("coupling", COUPLINGS), ("native", tuple(NATIVE_SETS))):
            if p[key] not in accepted:
                raise HwnasError(f"circuit setting {key}={quote(p[key], 40)} is not accepted; accepted: "
                                 f"{', '.join(accepted)}")
        noise = p["noise"]
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < 0.5:
            raise HwnasError(f"circuit setting noise={quote(noise, 40)} is not accepted; accepted: a number in [0, 0.5)")
        p["noise"] = float(noise)
        n = p["qubits"]
        self.processor = Processor(n, p["coupling"], p["native"], p["noise"])
        pairs = [(a, b) for a in range(n) for b in range(n) if a != b]
        self.pools = (("none",) + tuple(f"{r}{q}" for r in ROTATIONS + ("h",) for q in range(n)),
                      ("none",) + tuple(f"cnot{a}_{b}" for a, b in pairs)
                      + tuple(f"zz{a}_{b}" for a, b in pairs if a < b))
        self._metrics: dict[tuple[int, ...], dict[str, float]] = {}

    # --- decisions ------------------------------------------------------------------------------------------
    def options_per_decision(self) -> tuple[int, ...]:
        return tuple(len(self.pools[d % 2]) for d in range(self.params["placeholders"]))

    def option_labels(self, decision: int) -> tuple[str, ...]:
        return self.pools[decision % 2]

    def none_options(self) -> frozenset[tuple[int, int]]:
        return frozenset((d, 0) for d in range(self.params["placeholders"]))

    capabilities: ClassVar[frozenset[str]] = frozenset({"index"})

    def size(self) -> int:
        return int(np.prod([int(c) for c in self.options_per_decision()], dtype=object))

    def index(self, arch: Arch) -> int:
        """Mixed-radix index, the first placeholder most significant."""
        out = 0
        for c, n in zip(arch.choices, self.options_per_decision()):
            out = out * n + int(c)
        return out

    def arch_at(self, index: int) -> Arch:
        choices = []
        for n in reversed(self.options_per_decision()):
            index, c = divmod(int(index), n)
            choices.append(c)
        return Arch(self.name, tuple(reversed(choices)))

    def to_string(self, arch: Arch) -> str:
        return "-".join(self.option_labels(d)[c] for d, c in enumerate(arch.choices))

    def from_string(self, text: str) -> Arch:
        parts = str(text).strip().split("-")
        count = self.params["placeholders"]
        if len(parts) != count:
            raise HwnasError(f"circuit architecture {quote(text)} has {len(parts)} operation(s); {self.spec} needs "
                             f"{count}, e.g. {self.example()}")
        choices = []
        for d, part in enumerate(parts):
            labels = self.option_labels(d)
            if part not in labels:
                kind = "a single-qubit gate (rx/ry/rz/h + qubit)" if d % 2 == 0 else "an entangler (cnotA_B or zzA_B)"
                raise HwnasError(f"operation {d} {quote(part, 40)} of circuit architecture {quote(text)} is not "
                                 f"accepted; accepted: none or {kind} on qubits 0..{self.params['qubits'] - 1}")
            choices.append(labels.index(part))
        return Arch(self.name, tuple(choices))

    def example(self) -> str:
        return "-".join(self.option_labels(d)[min(1, len(self.option_labels(d)) - 1)]
                        for d in range(self.params["placeholders"]))

    # --- the circuit and its hardware cost ----------------------------------------------------------------
    def gates(self, arch: Arch) -> list[Gate]:
        """The logical gates of `arch`; a gate's `param` is its placeholder (none is dropped)."""
        out = []
        for d, c in enumerate(arch.choices):
            m = re.fullmatch(r"(rx|ry|rz|h)(\d+)|(cnot|zz)(\d+)_(\d+)", self.option_labels(d)[c])
            if m is None:  # none
                continue
            if m.group(1):
                out.append(Gate(m.group(1), (int(m.group(2)),), d))
            else:
                out.append(Gate(m.group(3), (int(m.group(4)), int(m.group(5))), d))
        return out

    def param_slot(self, choices: Sequence[int], placeholder: int) -> int:
        """Index into the flattened (placeholders, most options) angle table of a placeholder's chosen option."""
        return placeholder * self.alpha_shape[1] + int(choices[placeholder])

    def metrics(self, arch: Arch) -> dict[str, float]:
        """Routed depth, two-qubit gate count, duration (ns) and SWAPs of `arch` on this space's processor."""
        key = tuple(arch.choices)
        if key not in self._metrics:
            self._metrics[key] = self.processor.metrics(self.gates(arch))
        return dict(self._metrics[key])

    def cost(self, arch: Arch, metric: str = "depth") -> float:
        if metric not in METRICS:
            raise HwnasError(f"unknown circuit cost {quote(metric, 40)}; accepted: {', '.join(METRICS)}")
        return self.metrics(arch)[metric]

    def graph(self, arch: Arch) -> Graph:
        """The circuit's DAG: input, one node per placeholder (`none` nodes stay unconnected), output; an edge
        follows each qubit from the last gate that touched it."""
        n_nodes = self.params["placeholders"] + 2
        adjacency = np.zeros((n_nodes, n_nodes), np.float32)
        last = [0] * self.params["qubits"]
        for g in self.gates(arch):
            for w in g.wires:
                adjacency[last[w], g.param + 1] = 1.0
                last[w] = g.param + 1
        for w in set(last):
            adjacency[w, n_nodes - 1] = 1.0
        vocabulary = ("input",) + self.pools[0] + self.pools[1][1:] + ("output",)
        labels = tuple(self.option_labels(d)[c] for d, c in enumerate(arch.choices))
        return Graph(("input",) + labels + ("output",), adjacency, vocabulary)

    # --- networks -------------------------------------------------------------------------------------------
    def check_input_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Circuits take no input tensor: the stages that feed one (profile, export, training on data) refuse."""
        raise HwnasError("a circuit takes no input data, so it is not profiled, exported or trained on a dataset; "
                         "its hardware cost comes from the processor model (routed depth, two-qubit gates, "
                         "duration): search it with `hwnas search --space circuit --task ghz|maxcut --budget-depth D`")

    def check_fits(self, input_shape=None, batch: int = 1, arch: Arch | None = None, training=None) -> None:
        """A state vector of at most 2**MAX_QUBITS amplitudes always fits."""

    def build(self, arch: Arch, input_shape: Sequence[int] | None = None) -> nn.Module:
        return CircuitModel(self.processor, [Gate(g.kind, g.wires, k) for k, g in enumerate(self.gates(arch))])

    def supernet(self, input_shape: Sequence[int] | None = None) -> nn.Module:
        return CircuitSupernet(self)

    def flops(self, arch: Arch, input_shape: Sequence[int] | None = None, convention: str = "full") -> float:
        raise HwnasError("a circuit has no FLOPs; its costs are routed depth, two-qubit gates and duration "
                         "(CircuitSpace.cost)")
