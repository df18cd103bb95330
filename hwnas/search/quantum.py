"""Circuit tasks, their hand-written baselines, and the budgeted DQAS search over the `circuit` space.

Tasks (`TASKS`): `ghz` (prepare the GHZ state, by fidelity), `random-state` (a seeded Haar-random state, by
fidelity), `maxcut` (MaxCut on a seeded random graph, one qubit per node: the expected cut over the circuit's
output distribution divided by the exact optimum, found by enumeration). Noise comes from the space's processor
(`circuit:noise=0.01`): under depolarising noise every gate costs fidelity, so shallower circuits win.

`search_circuit` runs DQAS in the one search loop (`run_search`) with the routed cost as a budget
(`HardwareCost` in "cap" mode over a `SampledCost`), then fine-tunes the angles of a few candidates (the derived
architecture and the best ones sampled) and returns the best one within every budget.
"""
from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwnas.errors import HwnasError, quote
from hwnas.files import atomic_write
from hwnas.reporting import Reporter, reporter_or_null
from hwnas.search.cost import HardwareCost
from hwnas.search.dqas import SampledCost
from hwnas.search.strategy import get_strategy, run_search
from hwnas.spaces import get_space
from hwnas.spaces.base import Arch
from hwnas.spaces.circuit import METRICS, CircuitModel, CircuitSpace, Gate

#: fidelity / approximation ratio at or above which a task counts as solved
SUCCESS = 0.99


@dataclass
class CircuitTask:
    """A state to prepare (`target`) or a MaxCut graph (`edges`, with its exact `optimum`) on `qubits`."""

    name: str
    qubits: int
    target: np.ndarray | None = None
    edges: tuple[tuple[int, int], ...] = ()
    optimum: float = 0.0
    cuts: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def objective(self, output: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(loss to minimise, score in [0, 1]) of a circuit's output (state vector or density matrix)."""
        if self.target is not None:
            t = torch.as_tensor(self.target, dtype=output.dtype)
            if output.ndim == 1:
                fidelity = (t.conj() @ output).abs() ** 2
            else:
                fidelity = (t.conj() @ output @ t).real
            return 1.0 - fidelity, float(fidelity.detach())
        probs = (output.abs() ** 2) if output.ndim == 1 else torch.diagonal(output).real
        ratio = (probs * torch.as_tensor(self.cuts, dtype=probs.dtype)).sum() / self.optimum
        return 1.0 - ratio, float(ratio.detach())


def ghz_task(qubits: int, seed: int = 0) -> CircuitTask:
    target = np.zeros(2 ** qubits, np.complex128)
    target[0] = target[-1] = 2 ** -0.5
    return CircuitTask("ghz", qubits, target=target)


def random_state_task(qubits: int, seed: int = 0) -> CircuitTask:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=2 ** qubits) + 1j * rng.normal(size=2 ** qubits)
    return CircuitTask("random-state", qubits, target=v / np.linalg.norm(v))


def maxcut_task(qubits: int, seed: int = 0) -> CircuitTask:
    """A seeded random graph (each edge with probability 0.6, redrawn until connected); cut values per bit string
    (wire 0 is the most significant bit, PennyLane's order)."""
    rng = np.random.default_rng(seed)
    pairs = list(itertools.combinations(range(qubits), 2))
    while True:
        edges = tuple(p for p in pairs if rng.random() < 0.6)
        if _connected(qubits, edges):
            break
    bits = (np.arange(2 ** qubits)[:, None] >> (qubits - 1 - np.arange(qubits))[None, :]) & 1
    cuts = np.array([sum(b[i] != b[j] for i, j in edges) for b in bits], np.float64)
    return CircuitTask("maxcut", qubits, edges=edges, optimum=float(cuts.max()), cuts=cuts)


def _connected(n: int, edges) -> bool:
    reach, changed = {0}, True
    while changed:
        changed = False
        for a, b in edges:
            if (a in reach) != (b in reach):
                reach |= {a, b}
                changed = True
    return len(reach) == n


TASKS: dict[str, Callable[[int, int], CircuitTask]] = {"ghz": ghz_task, "random-state": random_state_task,
                                                       "maxcut": maxcut_task}


def get_task(name: str, qubits: int, seed: int = 0) -> CircuitTask:
    if name not in TASKS:
        raise HwnasError(f"unknown circuit task {quote(name, 40)}; accepted: {', '.join(TASKS)}")
    return TASKS[name](qubits, seed)


# --- baselines ------------------------------------------------------------------------------------------------
def ghz_textbook(qubits: int) -> list[Gate]:
    """H on qubit 0, then a CNOT chain."""
    return [Gate("h", (0,))] + [Gate("cnot", (q, q + 1)) for q in range(qubits - 1)]


def qaoa(task: CircuitTask, layers: int) -> list[Gate]:
    """QAOA for MaxCut: H on every qubit, then per layer exp(-i gamma ZZ) on every edge and RX(beta) mixers;
    angle k of layer l: gamma at 2l, beta at 2l + 1."""
    gates = [Gate("h", (q,)) for q in range(task.qubits)]
    for layer in range(layers):
        gates += [Gate("zz", e, 2 * layer) for e in task.edges]
        gates += [Gate("rx", (q,), 2 * layer + 1) for q in range(task.qubits)]
    return gates


def finetune(model: CircuitModel, task: CircuitTask, steps: int, lr: float = 0.05) -> float:
    """Adam on the circuit's angles for `steps` steps; keeps the best angles and returns their score."""
    loss, best = task.objective(model())
    if not loss.requires_grad:  # no angle changes the output (only Hadamards and CNOTs)
        return best
    best_angles = model.angles.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss, score = task.objective(model())
        if score > best:
            best, best_angles = score, model.angles.detach().clone()
    with torch.no_grad():
        model.angles.copy_(best_angles)
    return best


def baselines(space: CircuitSpace, task: CircuitTask, steps: int = 150, seed: int = 0) -> list[dict[str, Any]]:
    """The hand-written circuits of `task` on `space`'s processor: textbook GHZ; QAOA p=1 and p=2 (angles tuned
    from a few starts). Each row: name, score, routed metrics."""
    rows = []
    if task.name == "ghz":
        gates = ghz_textbook(task.qubits)
        rows.append(("ghz-textbook", gates, CircuitModel(space.processor, gates)))
    if task.name == "maxcut":
        rng = np.random.default_rng(seed)
        for p in (1, 2):
            gates = qaoa(task, p)
            best = None
            for _ in range(3):
                model = CircuitModel(space.processor, gates, torch.as_tensor(rng.uniform(0, np.pi / 2, 2 * p)))
                model.score = finetune(model, task, steps)
                best = model if best is None or model.score > best.score else best
            rows.append((f"qaoa-p{p}", gates, best))
    out = []
    for name, gates, model in rows:
        score = getattr(model, "score", None) or task.objective(model())[1]
        out.append({"name": name, "score": float(score), **space.processor.metrics(gates)})
    return out


# --- the search ---------------------------------------------------------------------------------------------
class _Steps:
    """What `run_search` walks: a circuit task has no data, so each training row is one DQAS step."""

    input_shape = (1,)

    def __init__(self, steps: int):
        self.x_train = self.x_val = torch.zeros(steps, 1)
        self.y_train = self.y_val = torch.zeros(steps, dtype=torch.long)


@dataclass
class CircuitSearchOptions:
    """epochs x steps DQAS steps of `samples` circuits each; `candidates` fine-tuned for `finetune_steps`."""

    epochs: int = 8
    steps: int = 10
    samples: int = 8
    weight_lr: float = 0.05
    arch_lr: float = 0.2
    multiplier_lr: float = 0.5
    candidates: int = 4
    finetune_steps: int = 100
    entropy: float = 0.0
    seed: int = 0


def check_budgets(budgets: dict[str, float]) -> None:
    for metric, value in budgets.items():
        if metric not in METRICS:
            raise HwnasError(f"unknown circuit budget {quote(metric, 40)}; accepted: {', '.join(METRICS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
            raise HwnasError(f"the {metric} budget {quote(value, 40)} is not accepted; give a finite positive number")


def search_circuit(space: CircuitSpace, task: CircuitTask, budgets: dict[str, float],
                   options: CircuitSearchOptions | None = None, reporter: Reporter | None = None) -> dict[str, Any]:
    """DQAS on `task` under the routed-cost `budgets` ({metric: limit}, metrics from METRICS); returns the chosen
    circuit (string, score after fine-tuning, routed metrics, within_budget), the candidates, and the history."""
    o, report = options or CircuitSearchOptions(), reporter_or_null(reporter)
    if not isinstance(space, CircuitSpace):
        raise HwnasError(f"circuit tasks search the circuit space, not {space.spec}; use --space circuit")
    check_budgets(budgets)
    if task.qubits != space.params["qubits"]:
        raise HwnasError(f"task {task.name} has {task.qubits} qubits but {space.spec} has {space.params['qubits']}")
    torch.manual_seed(o.seed)
    started = time.perf_counter()
    costs = [HardwareCost(space, metric, budget, cost_fn=SampledCost(space, lambda a, m=metric: space.cost(a, m),
                                                                       seed=o.seed),
                          mode="cap", multiplier_lr=o.multiplier_lr) for metric, budget in budgets.items()]
    supernet = space.supernet()

    def objective(batch, choices):
        return task.objective(supernet(None, None, choices))

    strategy = get_strategy("dqas")(space, supernet, costs, weight_lr=o.weight_lr, arch_lr=o.arch_lr,
                                    arch_weight_decay=0.0, seed=o.seed, samples=o.samples, objective=objective,
                                    entropy=o.entropy)
    history = run_search(strategy, _Steps(o.steps), o.epochs, batch_size=1,
                         on_epoch=lambda row: report.message(_epoch_line(row, o.epochs)))
    chosen, tried = _choose(space, task, strategy, budgets, o)
    for row in history:
        row.pop("steps", None)  # per-step traces are for plots; the result stays small
    return {"space": space.spec, "task": task.name, "strategy": "dqas", "budgets": dict(budgets), **chosen,
            "candidates": tried, "history": history, "search_seconds": time.perf_counter() - started}


def within(space: CircuitSpace, arch: Arch, budgets: dict[str, float]) -> bool:
    return all(space.cost(arch, m) <= b for m, b in budgets.items())


def _choose(space, task, strategy, budgets, o) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fine-tune the derived architecture and the best sampled ones (within budget first); keep the best score
    among those within every budget (or, when none is, the cheapest, reported as over budget)."""
    derived = space.derive(strategy.alpha)
    ranked = sorted(strategy.seen, key=lambda a: (not within(space, a, budgets), strategy.seen[a]))
    candidates = list(dict.fromkeys([derived] + ranked))[: max(1, o.candidates)]
    angles = strategy.supernet.angles.detach().reshape(-1)
    tried = []
    for arch in candidates:
        gates = space.gates(arch)
        init = torch.stack([angles[space.param_slot(arch.choices, g.param)] for g in gates]) if gates else None
        model = CircuitModel(space.processor, [Gate(g.kind, g.wires, k) for k, g in enumerate(gates)], init)
        score = finetune(model, task, o.finetune_steps)
        tried.append({"arch": space.to_string(arch), "score": float(score), "within_budget": within(space, arch, budgets),
                      "derived": arch == derived, "angles": model.angles.detach().tolist(), **space.metrics(arch)})
    feasible = [t for t in tried if t["within_budget"]]
    best = max(feasible, key=lambda t: t["score"]) if feasible else min(tried, key=lambda t: t["depth"])
    return {**best, "success": bool(best["within_budget"] and best["score"] >= SUCCESS)}, tried


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    costs = ", ".join(f"{t} {v:.3g} (budget {row['budget'][t]:g}, λ {row['multiplier'][t]:.2f})"
                      for t, v in row["cost"].items())
    return (f"dqas epoch {row['epoch']}/{epochs}: loss {row['loss']:.4f}, score {row['accuracy']:.4f}, {costs}; "
            f"derived {row['derived']}")


def search_circuit_run(space_spec: str, task_name: str, budgets: dict[str, float],
                       options: CircuitSearchOptions | None = None, run_dir: str | Path = "runs/default",
                       reporter: Reporter | None = None) -> dict[str, Any]:
    """What `hwnas search --space circuit --task ...` runs: the search, the task's baselines on the same
    processor, and RUN_DIR/search.json."""
    o = options or CircuitSearchOptions()
    space = get_space(space_spec)
    if not isinstance(space, CircuitSpace):
        raise HwnasError(f"--task searches quantum circuits: give --space circuit[:settings], not {quote(space_spec)}")
    check_budgets(budgets)
    task = get_task(task_name, space.params["qubits"], o.seed)
    result = search_circuit(space, task, budgets, o, reporter)
    result["baselines"] = baselines(space, task, seed=o.seed)
    with atomic_write(Path(run_dir) / "search.json") as f:
        f.write(json.dumps(result, indent=2, default=str))
    return result
