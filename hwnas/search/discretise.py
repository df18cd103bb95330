"""Turning architecture parameters into one discrete architecture that respects the budget (by prediction).

`derive_within_budget` takes the strongest option at every decision; if that is predicted over any budget
(or was already measured over it), it takes the most probable (under softmax(alpha)) of the architectures
the search itself derived during its last epoch that are predicted within budget: with the multiplier holding
the derived architecture at the budget, these sit just under it, where one forced move to a neighbour can
drop a whole convolution. Failing that, it moves to the best feasible neighbour, "best" meaning the most
probable under softmax(alpha). With no feasible neighbour it steps to the neighbour that most reduces the
worst relative overshoot and looks again; a finite space falls back to the most probable feasible
architecture of the whole space.

With `fill` (a share of the budget, `BudgetSearchOptions.fill`), an architecture so found that is predicted to use
less than `fill` of its tightest budget gives way, in a finite space, to the most probable architecture predicted
within `fill` to `FILL_CEILING` of it. The cost term holds the *expected* cost of the relaxed architecture at the
budget, but its argmax can sit far below: cheap options (skips, pooling) win the argmax on several edges while the
convolutions' probability mass carries the expected cost, and the derived cell uses a third of the budget.
Architectures with idle operations (`SearchSpace.has_idle_operations`) are not filled to; the derived one always
loses its own (fill or not).
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


#: the top of the band a filled discretisation aims into: a margin under the budget for timing noise (as the climb's)
FILL_CEILING = 0.975
#: a finite space up to this size is searched whole (the fill, the last fallback; NAS-Bench-201: 15,625)
WHOLE_SPACE_MAX = 200_000


def derive_within_budget(space, alpha: torch.Tensor, costs: Sequence[HardwareCost], exclude: AbstractSet[Arch] = frozenset(),
                         max_moves: int = 6, recent: Sequence[Arch] = (), fill: float = 0.0) -> tuple[Arch, list[Arch]]:
    """Returns (arch, moves): the architecture and the architectures visited on the way.
    `exclude`: architectures not to return (measured over budget). `recent`: architectures the search derived
    lately (its last epoch, `Strategy.recent_archs`), candidates before neighbours. `fill`: see the module doc
    (0: off)."""
    arch, moves = _derive_feasible(space, alpha, costs, exclude, max_moves, recent)
    if fill > 0 and costs and worst_ratio(costs, [arch])[0] < fill:
        filled = most_probable_in_band(space, alpha, costs, fill, FILL_CEILING, exclude)
        if filled is not None:
            moves.append(filled)
            return filled, moves
    return arch, moves


def most_probable_in_band(space, alpha: torch.Tensor, costs: Sequence[HardwareCost], low: float, high: float,
                          exclude: AbstractSet[Arch] = frozenset(), chunk: int = 512) -> Arch | None:
    """The most probable (under softmax(alpha)) architecture of a finite space (up to WHOLE_SPACE_MAX) predicted to use
    `low` to `high` of its tightest budget, or None. The cost term's fast predictor narrows the space to a wider
    band; the predictor that judges feasibility (the `exact` one where set) then checks the most probable first,
    a chunk at a time."""
    size = space.size()
    if size is None or size > WHOLE_SPACE_MAX:
        return None
    archs = space.all_archs()
    rough = np.max([c.predict_arch(archs, exact=False) / c.budget for c in costs], axis=0)
    wide = np.flatnonzero((rough >= low * 0.8) & (rough <= high * 1.2))  # the predictors differ by tens of per cent
    near = [archs[i] for i in wide if archs[i] not in exclude and not space.has_idle_operations(archs[i])]
    if not near:
        return None
    order = np.argsort(-arch_log_prob(space, alpha, near), kind="stable")
    for start in range(0, len(order), chunk):
        batch = [near[i] for i in order[start:start + chunk]]
        ratio = worst_ratio(costs, batch)
        inside = np.flatnonzero((ratio >= low) & (ratio <= high))
        if len(inside):
            return batch[int(inside[0])]
    return None


def _derive_feasible(space, alpha: torch.Tensor, costs: Sequence[HardwareCost], exclude: AbstractSet[Arch],
                     max_moves: int, recent: Sequence[Arch]) -> tuple[Arch, list[Arch]]:
    """The strongest option at every decision (idle operations dropped), or the fallbacks of the module doc when that
    is not feasible."""
    arch = space.derive(alpha)
    moves = [arch]
    if (lean := space.without_idle_operations(arch)) != arch:
        arch = lean
        moves.append(arch)

    def usable(a: Arch) -> bool:
        return a not in exclude and worst_ratio(costs, [a])[0] <= 1.0

    if usable(arch):
        return arch, moves
    best = most_probable_feasible(space, alpha, costs, [a for a in dict.fromkeys(recent) if a not in exclude])
    if best is None:
        best, arch = _walk_neighbours(space, alpha, costs, arch, exclude, max_moves, moves)
    if best is None and space.size() is not None and space.size() <= WHOLE_SPACE_MAX:
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
