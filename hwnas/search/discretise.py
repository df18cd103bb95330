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
from collections.abc import Set as AbstractSet

import numpy as np
import torch

from hwnas.errors import HwnasError
from hwnas.search.cost import HardwareCost
from hwnas.spaces.base import Arch


def arch_log_prob(space, alpha: torch.Tensor, archs) -> np.ndarray:
    """Log-probability of each architecture under softmax(alpha) (independent decisions)."""
    logp = torch.log_softmax(space.masked_logits(alpha.detach()), dim=-1).numpy()
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


def derive_within_budget(space, alpha: torch.Tensor, costs: Sequence[HardwareCost], exclude: AbstractSet[Arch] = frozenset(),
                         max_moves: int = 6, recent: Sequence[Arch] = ()) -> tuple[Arch, list[Arch]]:
    """Returns (arch, moves): the architecture and the architectures visited on the way.
    `exclude`: architectures not to return (measured over budget). `recent`: architectures the search derived
    lately (its last epoch, `Strategy.recent_archs`), candidates before neighbours."""
    arch = space.derive(alpha)
    moves = [arch]

    def usable(a: Arch) -> bool:
        return a not in exclude and worst_ratio(costs, [a])[0] <= 1.0

    if usable(arch):
        return arch, moves
    best = most_probable_feasible(space, alpha, costs, [a for a in dict.fromkeys(recent) if a not in exclude])
    if best is None:
        best, arch = _walk_neighbours(space, alpha, costs, arch, exclude, max_moves, moves)
    if best is None and space.size() is not None and space.size() <= 200_000:
        best = most_probable_feasible(space, alpha, costs, [a for a in space.all_archs() if a not in exclude])
    if best is not None:
        if best != moves[-1]:
            moves.append(best)
        return best, moves
    budgets = ", ".join(f"{c.target} <= {c.budget:g}" for c in costs)
    raise HwnasError(f"no architecture of {space.spec} is predicted within the budget ({budgets}); raise the budget")


def _walk_neighbours(space, alpha, costs, arch: Arch, exclude: AbstractSet[Arch], max_moves: int,
                     moves: list[Arch]) -> tuple[Arch | None, Arch]:
    """Up to `max_moves` steps: the best feasible neighbour if any, else step to the neighbour with the least
    overshoot (then most probable) and look again. Returns (found or None, where the walk ended)."""
    for _ in range(max_moves):
        nbrs = [n for n in space.neighbours(arch) if n not in exclude]
        if not nbrs:
            break
        best = most_probable_feasible(space, alpha, costs, nbrs)
        if best is not None:
            return best, arch
        ratio, score = worst_ratio(costs, nbrs), arch_log_prob(space, alpha, nbrs)
        arch = nbrs[int(np.lexsort((-score, ratio))[0])]  # least overshoot, then most probable
        moves.append(arch)
        if worst_ratio(costs, [arch])[0] <= 1.0:
            return arch, arch
    return None, arch
