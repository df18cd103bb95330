"""Climbing towards the budget after discretisation: budget left unused is accuracy left on the table.

When the measured architecture uses less than `CLIMB_BELOW` of its tightest budget, the architectures within
`CLIMB_REACH` changed decisions of it that are predicted within every budget (predictions scaled by measured /
predicted at the architecture) but cost more are found; the `CLIMB_SCORED` predicted nearest the budget are scored
by the supernet's one-shot accuracy (the shared weights with that architecture's one-hot mixing weights, on
validation data); those at least as accurate are ranked by that accuracy and the best few are measured. Of those
measured costlier than the architecture and within every budget (with a margin for timing noise, `CLIMB_CEILING`),
the most accurate becomes the result. This repeats from there for a few rounds; a round that keeps none is tried
again with its predictions recalibrated on what it measured. Nothing is kept unless measured within budget, and
the budget used only rises.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from hwnas.search.cost import HardwareCost
from hwnas.search.discretise import worst_ratio
from hwnas.spaces.base import Arch

#: climb only while the measured architecture uses less than this share of its tightest budget
CLIMB_BELOW = 0.95
#: a climbed-to architecture is kept only if measured within this share of every budget: a session on a shared
#: machine can time a few per cent slow, and the climb should not trade a safe result for one that a re-measurement
#: (the exported file's) puts over the budget
CLIMB_CEILING = 0.975
#: validation examples the one-shot accuracy is computed on
EVAL_EXAMPLES = 512
#: how many decisions a climb step may change. Two reach what lies between one decision's steps: NAS-Bench-201
#: repeats its cell nine times, so one edge from a skip to a 3x3 convolution adds 30-40% of a budget at once, while
#: a swap (one edge up, another down) adds a few per cent
CLIMB_REACH = 2
#: reach 2 only while it means at most this many architectures (neighbours squared), else 1
MAX_REACHED = 5000
#: of the costlier candidates predicted within budget, this many (the nearest the budget) are scored one-shot
CLIMB_SCORED = 40


def one_shot_accuracy(space, supernet: torch.nn.Module, archs: Sequence[Arch], x: torch.Tensor, y: torch.Tensor,
                      ) -> np.ndarray:
    """Validation accuracy (or negative MSE for real-valued targets) of each architecture with the supernet's shared weights (batch statistics in the
    normalisation layers, as during the search; the weights are not changed)."""
    x, y = x[:EVAL_EXAMPLES], y[:EVAL_EXAMPLES]
    was_training = supernet.training
    supernet.train()  # batch statistics: the running ones mix every operation of the search
    state = {k: v.clone() for k, v in supernet.state_dict().items() if "running" in k or "num_batches" in k}
    out = []
    with torch.no_grad():
        for arch in archs:
            weights = torch.as_tensor(space.table_from_code(space.encode(arch)), dtype=torch.float32)
            # `active`: only the chosen operations run (the others have weight 0 and add nothing), 3-4x faster
            out.append(_score(supernet(x, weights, weights.argmax(-1).tolist()), y))
    supernet.load_state_dict(state, strict=False)  # the running statistics as they were
    supernet.train(was_training)
    return np.array(out)


def _score(output: torch.Tensor, y: torch.Tensor) -> float:
    """Higher is better: accuracy for class labels, the negative mean squared error for real-valued targets
    (forecasting), as `Strategy.task_loss` treats them."""
    if y.is_floating_point():
        return -float(torch.mean((output.reshape(y.shape) - y) ** 2))
    return float((output.argmax(1) == y).float().mean())


def within_reach(space, arch: Arch, reach: int = CLIMB_REACH) -> list[Arch]:
    """The architectures that differ from `arch` in 1..`reach` decisions (reach 2 only while the neighbours
    squared are at most MAX_REACHED), nearest first, in the space's neighbour order."""
    first = list(space.neighbours(arch))
    found = dict.fromkeys(first)
    frontier = first
    for _ in range(1, reach if len(first) ** 2 <= MAX_REACHED else 1):
        frontier = [n for a in frontier for n in space.neighbours(a) if n != arch and n not in found]
        found.update(dict.fromkeys(frontier))
    return list(found)


def costlier_feasible_neighbours(space, costs: Sequence[HardwareCost], arch: Arch, exclude,
                                 measured: dict[str, float | None] | None = None, reach: int = CLIMB_REACH,
                                 limit: int = CLIMB_SCORED, observed: dict[Arch, dict] | None = None) -> list[Arch]:
    """Architectures within `reach` changed decisions of `arch` (`within_reach`), predicted within CLIMB_CEILING
    of every budget and costlier (by the tightest budget's share) than `arch`: the `limit` predicted nearest it.

    With `arch`'s `measured` figures (and those of nearby architectures the climb `observed`) the predictions are
    calibrated locally: each target's predictions are scaled by the median of measured / predicted there, as a
    neighbour (an operation or two changed) shares most of its predictor's error. A predictor 10% pessimistic here
    would otherwise rule out every neighbour that fits, and one 10% optimistic send every measurement over."""
    nbrs = [n for n in within_reach(space, arch, reach) if n not in exclude and not space.has_idle_operations(n)]
    if not nbrs:
        return []
    scale = _local_scale(costs, {**(observed or {}), arch: measured or {}})
    ratio = np.max([c.predict_arch(nbrs) * scale[c.target] / c.budget for c in costs], axis=0)
    here = max(float(c.predict_arch([arch])[0]) * scale[c.target] / c.budget for c in costs)
    feasible = [i for i, r in enumerate(ratio) if here * (1 + 1e-6) < r <= CLIMB_CEILING]  # costlier, not rounding
    feasible.sort(key=lambda i: -ratio[i])  # stable: at equal shares, nearer (fewer changes) first
    return [nbrs[i] for i in sorted(feasible[:limit])]


#: the local calibration's bounds: one measurement taken in a fast moment of a shared machine must not open the way
#: to candidates far over budget (down to 0.9); scaling up only makes the climb more careful, and predictors were
#: seen 30-40% optimistic around cells whose dead branches ONNX drops (up to 1.5)
LOCAL_SCALE = (0.9, 1.5)


def _local_scale(costs: Sequence[HardwareCost], observed: dict[Arch, dict]) -> dict[str, float]:
    """Per target, the median of measured / predicted over the `observed` architectures ({arch: figures}), within
    LOCAL_SCALE (1 where no figure and prediction are both positive)."""
    out = {}
    for c in costs:
        ratios = [m[c.target] / p for a, m in observed.items()
                  if (m or {}).get(c.target) is not None and m[c.target] > 0
                  and (p := float(c.predict_arch([a])[0])) > 0]
        out[c.target] = float(np.clip(np.median(ratios), *LOCAL_SCALE)) if ratios else 1.0
    return out


def budget_share(measured: dict[str, float | None], budgets: dict[str, float]) -> float:
    """The largest measured share of a budget (the tightest one's), 0 when nothing was measured."""
    shares = [measured[t] / b for t, b in budgets.items() if measured.get(t) is not None]
    return max(shares) if shares else 0.0


def climb(space, costs: Sequence[HardwareCost], score: Callable[[list[Arch]], np.ndarray], arch: Arch,
          measured: dict[str, float | None], measure: Callable[[Arch], tuple[dict[str, float | None], bool]],
          rounds: int = 2, measure_best: int = 3, exclude=frozenset()) -> tuple[Arch, dict[str, Any], list[dict]]:
    """Up to `rounds` climbs from `arch` (measured within budget as `measured`); `score(archs)` is their predicted
    accuracy (higher is better: `one_shot_accuracy` with the search's supernet; `bench/climb_sim.py` passes the
    published accuracy plus noise), `measure(arch)` measures one architecture and returns (figures, whether it was
    a new measurement). Returns (arch, its measured figures, the attempts made: one dict per architecture measured,
    as in SearchResult.attempts)."""
    budgets = {c.target: c.budget for c in costs}
    attempts: list[dict] = []
    seen = set(exclude) | {arch}
    observed: dict[Arch, dict] = {}  # every candidate measured: they calibrate the next round's predictions
    current_acc = None
    for _ in range(rounds):
        if budget_share(measured, budgets) >= CLIMB_BELOW:
            break
        candidates = costlier_feasible_neighbours(space, costs, arch, seen, measured, observed=observed)
        if not candidates:
            break
        scores = score([arch, *candidates])
        current_acc, scores = scores[0], scores[1:]
        ratio = worst_ratio(costs, candidates)
        ranked = [i for i in np.lexsort((-ratio, -scores)) if scores[i] >= current_acc][:measure_best]
        if not ranked:  # none as accurate: another round would score the same candidates again
            break
        best = None
        for i in ranked:
            cand = candidates[i]
            seen.add(cand)
            figures, new = measure(cand)
            observed[cand] = figures
            ok = all(figures.get(t) is not None and figures[t] <= CLIMB_CEILING * b for t, b in budgets.items())
            attempts.append({"arch": space.to_string(cand), "predicted": {c.target: float(c.predict_arch([cand])[0])
                             for c in costs}, "measured": figures, "within_budget": ok, "moves": 0, "climb": True,
                             "one_shot_accuracy": float(scores[i]), "new": new})
            # kept: within budget, measured costlier than where the climb stands (predicted costlier is not enough:
            # a climb that moves to a cheaper cell for its one-shot accuracy, a noisy signal this early, walks down
            # and leaves the budget unused), and the most accurate (one-shot) of those, then the costliest
            gain = (scores[i], budget_share(figures, budgets))
            if ok and gain[1] > budget_share(measured, budgets) and (best is None or gain > best[2]):
                best = (cand, figures, gain)
        if best is not None:  # else the next round tries again from here, its predictions recalibrated
            arch, measured, current_acc = best[0], best[1], best[2][0]
    return arch, measured, attempts
