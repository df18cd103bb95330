"""Gumbel-softmax sampling (GDAS, Dong & Yang 2019; FBNet): each step samples one operation per edge with the
straight-through Gumbel-softmax, and only that operation runs (the supernet's `active`), so memory and time
are those of one network. The temperature anneals from `tau_max` to `tau_min`; the hardware cost is the
expected cost under the relaxed distribution, as in FBNet."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hwnas.search.strategy import Strategy, register_strategy


@register_strategy("gumbel")
class Gumbel(Strategy):
    name = "gumbel"

    def __init__(self, *args, tau_max: float = 5.0, tau_min: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.tau_max, self.tau_min = tau_max, tau_min

    @property
    def tau(self) -> float:
        return self.tau_max * (self.tau_min / self.tau_max) ** self.progress

    def sample(self) -> tuple[torch.Tensor, list[int]]:
        u = torch.rand(self.alpha.shape, generator=self.generator).clamp_(1e-9, 1 - 1e-9)
        logits = self.space.masked_logits(self.alpha)  # -inf where a ragged decision has no option: never sampled
        soft = F.softmax((logits - torch.log(-torch.log(u))) / self.tau, dim=-1)
        index = soft.argmax(dim=-1)
        hard = F.one_hot(index, soft.shape[-1]).to(soft.dtype)
        return hard - soft.detach() + soft, index.tolist()  # straight-through: hard forward, soft gradient

    def step(self, train, val):
        weights, active = self.sample()
        task, acc, costs = self.arch_step(val, weights, active)
        weights, active = self.sample()
        self.weight_step(train, weights, active)
        return {"loss": task, "accuracy": acc, "costs": costs}
