"""The training-free strategy (`--strategy zero-cost`): rank architectures by a vote of zero-cost proxies among
those the fitted cost predictors place within every budget; no supernet training.

It runs in the one search loop like every strategy: each step scores `per_step` new candidates (sampled among
the architectures predicted within budget) on one fixed batch (the first training batch, at most
`batch_size` examples, so every candidate sees the same images), and re-votes the whole pool (AZ-NAS's sum of log
relative ranks, hwnas.search.zero_cost.vote). `alpha` then points at the winner (a strong one-hot) plus the
option frequencies of the ten best (a consensus that orders the fall-backs), so the usual discretisation measures
the winner first and, if it is over budget on the device, refits and repairs exactly as after a supernet search.
The supernet is left untouched (its weights are never trained).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hwnas.search.discretise import worst_ratio
from hwnas.search.strategy import Strategy, register_strategy
from hwnas.search.zero_cost import score, vote
from hwnas.spaces.base import Arch

#: the default vote: AZ-NAS's components and FLOPs, with NASWOT, synflow and jacob_cov (bench/zero_cost.py)
VOTE_PROXIES = ("az_expressivity", "az_progressivity", "az_trainability", "flops", "naswot", "synflow", "jacob_cov")


@register_strategy("zero-cost")
class ZeroCost(Strategy):
    name = "zero-cost"

    def __init__(self, *args, proxies: Sequence[str] = VOTE_PROXIES, per_step: int = 1, batch_size: int = 32,
                 sample_tries: int = 200, **kwargs):
        super().__init__(*args, **kwargs)
        self.proxies = tuple(proxies)
        self.per_step, self.batch_size, self.sample_tries = per_step, batch_size, sample_tries
        self.rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator)))
        self.pool: list[Arch] = []
        self.scores: dict[str, list[float]] = {p: [] for p in self.proxies}
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def candidates(self, n: int) -> list[Arch]:
        """`n` unscored random architectures predicted within every budget (of `sample_tries` samples; when none
        is, the least over budget)."""
        seen = set(self.pool)
        drawn = list(dict.fromkeys(a for a in (self.space.sample(self.rng) for _ in range(self.sample_tries))
                                   if a not in seen))
        if not drawn:
            return []
        ratio = worst_ratio(self.costs, drawn)
        feasible = [a for a, r in zip(drawn, ratio) if r <= 1.0]  # in random order: no bias to cheap ones
        return (feasible or [drawn[i] for i in np.argsort(ratio, kind="stable")])[:n]

    def score_arch(self, arch: Arch) -> dict[str, float]:
        x, y = self.batch
        torch.manual_seed(self.seed_value)
        model = self.space.build(arch, tuple(x.shape[1:]))
        names = [p for p in self.proxies if p != "flops" or "profile" not in self.space.capabilities]
        values = score(model, (x, y), names, seed=self.seed_value)
        if "flops" in self.proxies and "flops" not in values:  # exact and instant where the space profiles
            values["flops"] = float(self.space.flops(arch, tuple(x.shape[1:])))
        return values

    @property
    def seed_value(self) -> int:
        return int(self.generator.initial_seed())

    def ranking(self) -> list[Arch]:
        """The pool, best voted first (ties: predicted cheaper first)."""
        if not self.pool:
            return []
        votes = vote({p: np.asarray(v) for p, v in self.scores.items()}, self.proxies)
        order = np.lexsort((worst_ratio(self.costs, self.pool), -votes))
        return [self.pool[i] for i in order]

    def point_alpha(self, ranked: list[Arch]) -> None:
        """alpha: 4 on the winner's options plus the option frequencies among the ten best voted."""
        table = np.zeros(self.space.alpha_shape, np.float32)
        for k, arch in enumerate(ranked[:10]):
            for d, c in enumerate(arch.choices):
                table[d, c] += (4.0 if k == 0 else 0.0) + 1.0 / min(10, len(ranked))
        with torch.no_grad():
            self.alpha.copy_(torch.as_tensor(table))

    def step(self, train, val):
        if self.batch is None:
            self.batch = (train[0][:self.batch_size], train[1][:self.batch_size])
        for arch in self.candidates(self.per_step):
            values = self.score_arch(arch)
            self.pool.append(arch)
            for p in self.proxies:
                self.scores[p].append(values[p])
        self.point_alpha(self.ranking())
        with torch.no_grad():
            costs = {c.target: float(c.value(self.alpha)) for c in self.costs}
        # nothing is trained: the loop's loss and accuracy columns stay 0
        return {"loss": 0.0, "accuracy": 0.0, "costs": costs}
