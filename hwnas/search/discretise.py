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

from collections.abc import Sequence

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


def most_probable_feasible(space, alpha: torch.Tensor, costs: Sequence[HardwareCost], archs):
    """The most probable (under softmax(alpha)) of `archs` predicted within every budget, or None."""
    if not archs:
        return None
    ratio, score = worst_ratio(costs, archs), arch_log_prob(space, alpha, archs)
    ok = np.flatnonzero(ratio <= 1.0)
    return archs[int(ok[np.argmax(score[ok])])] if len(ok) else None


def derive_within_budget(space, alpha: torch.Tensor, costs: Sequence[HardwareCost], exclude: set[str] = frozenset(),
                         max_moves: int = 6, recent: Sequence[str] = ()):
    """Returns (arch, moves): the architecture and the list of architecture strings visited on the way.
    `recent`: architecture strings the search derived lately (its last epoch), candidates before neighbours."""
    arch = space.derive(alpha)
    moves = [space.to_string(arch)]

    def usable(a) -> bool:
        return space.to_string(a) not in exclude and worst_ratio(costs, [a])[0] <= 1.0

    def found(best):
        moves.append(space.to_string(best))
        return best, moves

    if usable(arch):
        return arch, moves
    best = most_probable_feasible(space, alpha, costs, [space.from_string(a) for a in dict.fromkeys(recent)
                                                        if a not in exclude])
    if best is not None:
        return found(best)
    for _ in range(max_moves):
        nbrs = [n for n in space.neighbours(arch) if space.to_string(n) not in exclude]
        if not nbrs:
            break
        best = most_probable_feasible(space, alpha, costs, nbrs)
        if best is not None:
            return found(best)
        ratio, score = worst_ratio(costs, nbrs), arch_log_prob(space, alpha, nbrs)
        arch = nbrs[int(np.lexsort((-score, ratio))[0])]  # least overshoot, then most probable
        moves.append(space.to_string(arch))
        if usable(arch):
            return arch, moves
    if space.size() is not None and space.size() <= 200_000:
        best = most_probable_feasible(space, alpha, costs,
                                      [a for a in space.all_archs() if space.to_string(a) not in exclude])
        if best is not None:
            return found(best)
    budgets = ", ".join(f"{c.target} <= {c.budget:g}" for c in costs)
    raise HwnasError(f"no architecture of {space.spec} is predicted within the budget ({budgets}); raise the budget")
