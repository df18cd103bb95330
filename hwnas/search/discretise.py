"""Turning architecture parameters into one discrete architecture that respects the budget (by prediction).

`derive_within_budget` takes the strongest option at every decision; if that is predicted over any budget
(or was already measured over it), it takes the most probable (under softmax(alpha)) of the architectures
the search itself derived during its last epoch that are predicted within budget: with the multiplier holding
the derived architecture at the budget, these sit just under it, where one forced move to a neighbour can
drop a whole convolution. Failing that, it moves to the best feasible neighbour, "best" meaning the most
probable under softmax(alpha). With no feasible neighbour it steps to the neighbour that most reduces the
worst relative overshoot and looks again; a finite space falls back to the most probable feasible
architecture of the whole space.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from hwnas.errors import HwnasError
from hwnas.search.cost import HardwareCost


def arch_log_prob(space, alpha: torch.Tensor, archs) -> np.ndarray:
    """Log-probability of each architecture under softmax(alpha) (independent decisions)."""
    logp = torch.log_softmax(alpha.detach(), dim=-1).numpy()
    choices = np.array([a.choices for a in archs])
    return logp[np.arange(logp.shape[0])[None, :], choices].sum(axis=1)


def worst_ratio(costs: Sequence[HardwareCost], archs) -> np.ndarray:
    """max over targets of predicted cost / budget, per architecture (<= 1 means feasible)."""
    if not costs:
        return np.zeros(len(archs))
    return np.max([c.predict_arch(archs) / c.budget for c in costs], axis=0)


def predicted(costs: Sequence[HardwareCost], arch) -> dict[str, float]:
    return {c.target: float(c.predict_arch([arch])[0]) for c in costs}


def derive_within_budget(space, alpha: torch.Tensor, costs: Sequence[HardwareCost], exclude: set[str] = frozenset(),
                         max_moves: int = 6, recent: Sequence[str] = ()):
    """Returns (arch, moves): the architecture and the list of architecture strings visited on the way.
    `recent`: architecture strings the search derived lately (its last epoch), candidates before neighbours."""
    arch = space.derive(alpha)
    moves = [space.to_string(arch)]
    if space.to_string(arch) in exclude or worst_ratio(costs, [arch])[0] > 1.0:
        seen = [space.from_string(a) for a in dict.fromkeys(recent) if a not in exclude]
        if seen:
            ratio, score = worst_ratio(costs, seen), arch_log_prob(space, alpha, seen)
            ok = np.flatnonzero(ratio <= 1.0)
            if len(ok):
                best = seen[int(ok[np.argmax(score[ok])])]
                moves.append(space.to_string(best))
                return best, moves
    for _ in range(max_moves + 1):
        if space.to_string(arch) not in exclude and worst_ratio(costs, [arch])[0] <= 1.0:
            return arch, moves
        nbrs = [n for n in space.neighbours(arch) if space.to_string(n) not in exclude]
        if not nbrs:
            break
        ratio, score = worst_ratio(costs, nbrs), arch_log_prob(space, alpha, nbrs)
        ok = np.flatnonzero(ratio <= 1.0)
        if len(ok):
            best = nbrs[int(ok[np.argmax(score[ok])])]
            moves.append(space.to_string(best))
            return best, moves
        arch = nbrs[int(np.lexsort((-score, ratio))[0])]  # least overshoot, then most probable
        moves.append(space.to_string(arch))
    if space.size() is not None and space.size() <= 200_000:
        everything = [a for a in space.all_archs() if space.to_string(a) not in exclude]
        ratio, score = worst_ratio(costs, everything), arch_log_prob(space, alpha, everything)
        ok = np.flatnonzero(ratio <= 1.0)
        if len(ok):
            best = everything[int(ok[np.argmax(score[ok])])]
            moves.append(space.to_string(best))
            return best, moves
    budgets = ", ".join(f"{c.target} <= {c.budget:g}" for c in costs)
    raise HwnasError(f"no architecture of {space.spec} is predicted within the budget ({budgets}); raise the budget")
