"""Once-for-All on the `mbv3` space: train one elastic supernet by progressive shrinking with knowledge
distillation, judge subnets by their shared weights, and search them (NAT / NATv2 style) under a budget.

- `train_supernet`: the largest network first, then elastic kernel, then elastic depth, then elastic expand
  (channels sorted by importance first), each phase sampling one subnet per step from what is elastic so far,
  with the largest network (a frozen copy from the first phase) as the teacher.
- `evaluate_subnet`: a subnet's accuracy with the supernet's weights, after recalibrating BatchNorm statistics
  for that subnet (restored afterwards).
- `nat_search`: NSGA-II (hwnas.search.multi_objective) over subnets, accuracy from a predictor trained on
  supernet-evaluated subnets and latency from a latency predictor (the layer table); NATv2's archive update:
  each round the front's best new subnets are evaluated with the supernet and join the archive the accuracy
  predictor is refitted on.
- `measured_choice`: measured repair: the most accurate front subnet predicted within budget is measured on
  the device; one over budget is stored, the latency predictor's correction refitted and the next taken.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import HwnasError
from hwnas.export.network import calibrate_batchnorm
from hwnas.predictors import get_predictor
from hwnas.profilers import TimingProtocol, measure_arch
from hwnas.reporting import Reporter, reporter_or_null
from hwnas.search.multi_objective import Constraint, Objective, StudySpec, run_multi_objective
from hwnas.spaces.base import Arch
from hwnas.spaces.mbv3 import DEPTHS, EXPANDS, KERNELS, PER_STAGE

#: progressive shrinking: (phase, allowed kernel, depth and expand option indices)
PHASES = (("largest", (2,), (2,), (2,)), ("kernel", (0, 1, 2), (2,), (2,)), ("depth", (0, 1, 2), (0, 1, 2), (2,)),
          ("expand", (0, 1, 2), (0, 1, 2), (0, 1, 2)))


@dataclass
class SupernetOptions:
    """epochs per phase (largest, kernel, depth, expand); kd_weight: weight of the distillation loss."""

    epochs: tuple[int, int, int, int] = (4, 2, 2, 2)
    batch_size: int = 64
    lr: float = 0.05
    kd_weight: float = 1.0
    seed: int = 0


def sample_subnet(space, rng: np.random.Generator, kernels=(0, 1, 2), depths=(0, 1, 2), expands=(0, 1, 2)) -> Arch:
    """A random subnet using only the given kernel, depth and expand options (indices), any resolution."""
    choices = []
    for d, n in enumerate(space.options_per_decision()):
        if space.resolutions and d == 0:
            choices.append(int(rng.integers(0, n)))
            continue
        k = (d - (1 if space.resolutions else 0)) % PER_STAGE
        allowed = depths if k == 0 else kernels if k % 2 else expands
        choices.append(int(rng.choice(allowed)))
    return space.canonical(Arch(space.name, tuple(choices)))


def subnet_logits(space, supernet: nn.Module, arch: Arch, x: torch.Tensor) -> torch.Tensor:
    return supernet.forward_subnet(x, arch.choices)


def train_supernet(space, data, options: SupernetOptions | None = None, reporter: Reporter | None = None,
                   supernet: nn.Module | None = None) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Progressive shrinking on `data` (a hwnas.data.Dataset); returns (supernet in eval mode, one row per epoch)."""
    o = options or SupernetOptions()
    report = reporter_or_null(reporter)
    torch.manual_seed(o.seed)
    rng = np.random.default_rng(o.seed)
    g = torch.Generator().manual_seed(o.seed)
    net = supernet if supernet is not None else space.supernet(data.input_shape)
    teacher = None
    history = []
    for (phase, kernels, depths, expands), epochs in zip(PHASES, o.epochs):
        if epochs <= 0:
            continue
        if phase == "expand":
            net.sort_channels()  # a smaller expand ratio keeps the most important channels
        opt = torch.optim.SGD(net.parameters(), lr=o.lr, momentum=0.9, weight_decay=3e-5, nesterov=True)
        steps = max(1, len(data.y_train) // o.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps)
        for epoch in range(epochs):
            net.train()
            loss_sum = 0.0
            order = torch.randperm(len(data.y_train), generator=g)
            for i in range(steps):
                idx = order[i * o.batch_size:(i + 1) * o.batch_size]
                x, y = data.x_train[idx], data.y_train[idx]
                arch = sample_subnet(space, rng, kernels, depths, expands)
                logits = subnet_logits(space, net, arch, x)
                loss = F.cross_entropy(logits, y)
                if teacher is not None and o.kd_weight > 0:
                    with torch.no_grad():
                        soft = F.softmax(subnet_logits(space, teacher, space.largest(), x), dim=1)
                    loss = loss + o.kd_weight * F.kl_div(F.log_softmax(logits, dim=1), soft, reduction="batchmean")
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                opt.step()
                sched.step()
                loss_sum += float(loss.detach())
            row = {"phase": phase, "epoch": epoch + 1, "loss": loss_sum / steps}
            history.append(row)
            report.message(f"supernet: {phase} epoch {epoch + 1}/{epochs} loss {row['loss']:.3f}")
        if phase == "largest":
            teacher = copy.deepcopy(net).eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
    return net.eval(), history


@torch.no_grad()
def evaluate_subnet(space, supernet: nn.Module, arch: Arch, x: torch.Tensor, y: torch.Tensor,
                    calibration: torch.Tensor | None = None) -> float:
    """Accuracy of a subnet with the supernet's weights on (x, y): the subnet is extracted (`space.extract`) and
    its BatchNorm statistics recalibrated on `calibration` (the supernet is left as it is)."""
    net = space.extract(supernet, arch, x.shape[1:])
    if calibration is not None:
        calibrate_batchnorm(net, calibration)
    net.eval()
    correct = 0
    for i in range(0, len(y), 256):
        correct += int((net(x[i:i + 256]).argmax(1) == y[i:i + 256]).sum())
    return correct / max(1, len(y))


@dataclass
class EncodedMetric:
    """A picklable objective: a fitted predictor on the space's one-hot code."""

    space: Any
    predictor: Any

    def __call__(self, arch: Arch) -> float:
        return float(self.predictor.predict(self.space.encode_many([self.space.canonical(arch)]))[0])


@dataclass
class NATOptions:
    """archive: subnets evaluated with the supernet before the first round; rounds: NSGA-II rounds, each adding
    `per_round` front subnets to the archive; trials: NSGA-II trials per round; population: its population."""

    archive: int = 40
    #: the front is searched under this share of the budget: room for timing noise before the measured repair
    margin: float = 0.9
    rounds: int = 2
    per_round: int = 8
    trials: int = 400
    population: int = 40
    accuracy_predictor: str = "ridge"
    seed: int = 0


@dataclass
class NATResult:
    front: list[dict[str, Any]]
    archive: dict[str, float]
    accuracy_predictor: Any
    seconds: float
    evaluations: int
    history: list[dict[str, Any]] = field(default_factory=list)


def fit_accuracy_predictor(space, archive: dict[Arch, float], name: str = "ridge", seed: int = 0):
    predictor = get_predictor(name, encoding="onehot", log_target=False, seed=seed)
    return predictor.fit(space.encode_many(list(archive)), np.array(list(archive.values())))


def nat_search(space, supernet: nn.Module, data, latency, budget_ms: float, options: NATOptions | None = None,
               reporter: Reporter | None = None) -> NATResult:
    """NSGA-II over subnets of the trained `supernet` (accuracy on `data`'s val split, predicted), latency from
    the `latency` predictor (one-hot codes, e.g. the layer table), subnets over `budget_ms` infeasible."""
    o = options or NATOptions()
    report = reporter_or_null(reporter)
    started = time.perf_counter()
    rng = np.random.default_rng(o.seed)
    calib = data.x_train[:256]

    def accuracy(arch: Arch) -> float:
        return evaluate_subnet(space, supernet, arch, data.x_val, data.y_val, calib)

    archive: dict[Arch, float] = {}
    candidates = [space.largest()] + [sample_subnet(space, rng) for _ in range(o.archive * 2)]
    for arch in candidates:
        if len(archive) >= o.archive:
            break
        archive.setdefault(arch, accuracy(arch))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    history, result = [], None
    for r in range(max(1, o.rounds)):
        predictor = fit_accuracy_predictor(space, archive, o.accuracy_predictor, o.seed)
        spec = StudySpec(space.spec, [Objective("accuracy", EncodedMetric(space, predictor)),
                                      Objective("latency_ms", EncodedMetric(space, latency))],
                         [Constraint("latency_ms", o.margin * budget_ms)], strategy="nsga2", study_name=f"nat-{r}",
                         seed=o.seed + r, population=o.population)
        result = run_multi_objective(spec, trials=o.trials)
        new = [space.from_string(p.arch) for p in result.front if space.from_string(p.arch) not in archive]
        for arch in new[: o.per_round]:  # NATv2's archive update: the front's new subnets, evaluated for real
            archive[arch] = accuracy(arch)
        history.append({"round": r + 1, "front": len(result.front), "archive": len(archive)})
        report.message(f"nat: round {r + 1}: front of {len(result.front)}, archive {len(archive)} subnets")
    predictor = fit_accuracy_predictor(space, archive, o.accuracy_predictor, o.seed)
    front = []
    for p in result.front:
        arch = space.from_string(p.arch)
        front.append({"arch": p.arch, "predicted_accuracy": float(predictor.predict(space.encode_many([arch]))[0]),
                      "supernet_accuracy": archive.get(arch), "predicted_latency_ms": p.values["latency_ms"]})
    return NATResult(front, {space.to_string(a): v for a, v in archive.items()}, predictor,
                     round(time.perf_counter() - started, 2), len(archive), history)


def measured_choice(space, front: list[dict[str, Any]], latency, budget_ms: float, backend, store, input_shape,
                    max_repairs: int = 5, protocol: TimingProtocol | None = None, reporter: Reporter | None = None,
                    accuracy=None) -> dict[str, Any]:
    """The most accurate front subnet measured within budget: candidates by predicted accuracy (supernet accuracy
    where known), each measured on `backend` and stored; over budget refits the latency predictor's correction on
    the store's measurements and takes the next predicted within budget. When the front is spent, the subnet this
    device already measured within budget that `accuracy` (a predictor on one-hot codes) rates best."""
    report = reporter_or_null(reporter)
    attempts: list[dict[str, Any]] = []
    tried: set[str] = set()
    for _ in range(max_repairs + 1):
        scored = [(p["supernet_accuracy"] if p["supernet_accuracy"] is not None else p["predicted_accuracy"], p)
                  for p in front if p["arch"] not in tried]
        feasible = [(acc, p) for acc, p in scored if _predict(space, latency, p["arch"]) <= budget_ms]
        if not feasible:
            break
        _, best = max(feasible, key=lambda t: t[0])
        tried.add(best["arch"])
        arch = space.from_string(best["arch"])
        m = measure_arch(space, arch, backend, input_shape, 1, protocol or TimingProtocol(), store=store)
        ok = m.latency_ms <= budget_ms
        attempts.append({"arch": best["arch"], "predicted": _predict(space, latency, best["arch"]),
                         "measured": m.latency_ms, "within_budget": ok})
        report.message(f"measured {best['arch']}: {m.latency_ms:.4g} ms (predicted {attempts[-1]['predicted']:.4g}, "
                       f"budget {budget_ms:g}) -> {'within budget' if ok else 'OVER: refit and repair'}")
        if ok:
            return {**best, "measured_latency_ms": m.latency_ms, "attempts": attempts}
        rows = store.measurements(device=backend.device_id(), backend=backend.name, space=space.spec,
                                  input_shape=tuple(input_shape), batch=1)
        codes = space.encode_many([space.from_string(r.arch) for r in rows])
        latency.fit(codes, np.array([r.latency_ms for r in rows]))
    fallback = _measured_fallback(space, accuracy, latency, budget_ms, backend, store, input_shape)
    if fallback is not None:
        report.message(f"front spent: {fallback['arch']}, measured {fallback['measured_latency_ms']:.4g} ms before, "
                       "is the best rated subnet this device measured within budget")
        return {**fallback, "attempts": attempts}
    raise HwnasError(f"no subnet of the front was measured within {budget_ms:g} ms after {len(attempts)} "
                     "measurement(s); raise the budget")


def _measured_fallback(space, accuracy, latency, budget_ms, backend, store, input_shape) -> dict[str, Any] | None:
    if accuracy is None:
        return None
    rows = [r for r in store.measurements(device=backend.device_id(), backend=backend.name, space=space.spec,
                                          input_shape=tuple(input_shape), batch=1) if r.latency_ms <= budget_ms]
    if not rows:
        return None
    scores = accuracy.predict(space.encode_many([space.from_string(r.arch) for r in rows]))
    best = rows[int(np.argmax(scores))]
    return {"arch": best.arch, "predicted_accuracy": float(np.max(scores)), "supernet_accuracy": None,
            "predicted_latency_ms": _predict(space, latency, best.arch), "measured_latency_ms": best.latency_ms,
            "fallback": True}


def _predict(space, predictor, arch_string: str) -> float:
    return float(predictor.predict(space.encode_many([space.from_string(arch_string)]))[0])


__all__ = ["DEPTHS", "EXPANDS", "KERNELS", "NATOptions", "NATResult", "SupernetOptions", "evaluate_subnet",
           "measured_choice", "nat_search", "sample_subnet", "train_supernet"]
