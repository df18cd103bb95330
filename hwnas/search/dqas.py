"""Differentiable quantum architecture search (DQAS, Zhang et al., 2022) as a search strategy.

Each step samples `samples` architectures from the learned distribution softmax(alpha) (over each decision's
existing options, so ragged spaces work), evaluates each on the supernet's shared weights, updates the weights
by the mean loss (gradient descent, jointly), and updates alpha by the score-function (REINFORCE) gradient
mean((loss - baseline) * log p(arch)) with a moving-average baseline, plus the budget terms of
hwnas.search.cost (multiplier and all). The objective is `objective(batch, choices) -> (loss, score)`: a circuit
task's (hwnas.search.quantum) or, by default, the supernet's cross-entropy with the sampled path only (`active`),
so DQAS also runs as a REINFORCE search on neural supernets.

`SampledCost` is the cost term for costs known only per architecture (a routed circuit's depth): a
`DifferentiableCost` whose value is the mean cost of architectures drawn from the mixing weights and whose
gradient is the score-function gradient of the expected cost; on one-hot weights it is the exact cost.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.search.cost import total_loss
from hwnas.search.strategy import Batch, Strategy, register_strategy
from hwnas.spaces.base import Arch

Objective = Callable[[Batch, Sequence[int]], tuple[torch.Tensor, float]]


class SampledCost:
    """DifferentiableCost from an exact per-architecture cost `cost_of(arch)`, by sampling (see the module doc)."""

    def __init__(self, space, cost_of: Callable[[Arch], float], samples: int = 16, seed: int = 0):
        self.space, self.cost_of, self.samples = space, cost_of, int(samples)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, weights: torch.Tensor) -> torch.Tensor:
        probs = weights.detach().clamp_min(0.0)
        if bool(torch.all(probs.max(dim=-1).values == 1.0)):  # a discrete architecture: its exact cost
            arch = Arch(self.space.name, tuple(int(i) for i in probs.argmax(dim=-1).tolist()))
            return (weights * 0).sum() + float(self.cost_of(arch))
        index = torch.multinomial(probs, self.samples, replacement=True, generator=self.generator)  # (decisions, K)
        values = torch.tensor([float(self.cost_of(Arch(self.space.name, tuple(col)))) for col in index.T.tolist()],
                              dtype=weights.dtype)
        log_prob = torch.log(weights.gather(1, index).clamp_min(1e-30)).sum(0)
        # value: the sample mean; gradient: mean((cost - mean) * d log p), the score-function estimator
        return values.mean() + ((values - values.mean()) * (log_prob - log_prob.detach())).mean()


@register_strategy("dqas")
class DQAS(Strategy):
    """options: samples (architectures per step), objective (see the module doc), baseline_decay, entropy (weight
    of an entropy bonus on the distribution, which keeps it exploring until rare good architectures are found)."""

    name = "dqas"

    def __init__(self, *args, samples: int = 8, objective: Objective | None = None, baseline_decay: float = 0.9,
                 entropy: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.samples, self.baseline_decay, self.entropy = int(samples), float(baseline_decay), float(entropy)
        self.objective = objective or self.classification
        # Adam, as in DQAS, for the shared weights (circuit angles); the base class's SGD suits supernets
        self.weight_opt = torch.optim.Adam(self.supernet.parameters(), lr=self.weight_lr)
        self.baseline: float | None = None
        #: every architecture sampled so far, with its lowest loss (candidates for the final choice)
        self.seen: dict[Arch, float] = {}

    def classification(self, batch: Batch, choices: Sequence[int]) -> tuple[torch.Tensor, float]:
        weights = F.one_hot(torch.as_tensor(list(choices)), self.alpha.shape[1]).to(self.alpha.dtype)
        return self.task_loss(batch, weights, list(choices))

    def sample(self) -> tuple[list[list[int]], torch.Tensor]:
        """`samples` architectures (choice lists) drawn from softmax(alpha), and their log-probabilities."""
        log_probs = torch.log_softmax(self.space.masked_logits(self.alpha), dim=-1)
        index = torch.multinomial(log_probs.detach().exp(), self.samples, replacement=True, generator=self.generator)
        return index.T.tolist(), log_probs.gather(1, index).sum(0)

    def step(self, train: Batch, val: Batch) -> dict:
        choices, log_prob = self.sample()
        results = [self.objective(train, c) for c in choices]
        losses = torch.stack([loss for loss, _ in results])
        self.weight_opt.zero_grad()
        losses.mean().backward()
        nn.utils.clip_grad_norm_(self.supernet.parameters(), 5.0)
        self.weight_opt.step()
        rewards = losses.detach().to(self.alpha.dtype)
        mean = float(rewards.mean())
        self.baseline = mean if self.baseline is None else (
            self.baseline_decay * self.baseline + (1 - self.baseline_decay) * mean)
        surrogate = ((rewards - self.baseline) * log_prob).mean()
        if self.entropy > 0:
            weights = self.mixing()
            surrogate = surrogate + self.entropy * (weights * torch.log(weights.clamp_min(1e-30))).sum(-1).mean()
        loss, costs = total_loss(surrogate, self.alpha, self.costs)
        self.arch_opt.zero_grad()
        self.alpha.grad = torch.autograd.grad(loss, self.alpha)[0]
        self.arch_opt.step()
        for c, r in zip(choices, rewards.tolist()):
            arch = Arch(self.space.name, tuple(c))
            self.seen[arch] = min(r, self.seen.get(arch, np.inf))
        return {"loss": mean, "accuracy": float(np.mean([s for _, s in results])), "costs": costs}
