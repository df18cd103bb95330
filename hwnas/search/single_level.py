"""Single-level DARTS (Single-DARTS, Hou et al. 2021): weights and architecture updated from the same batch
and the same loss, with no validation split in the loop."""
from __future__ import annotations

from torch import nn

from hwnas.search.cost import total_loss
from hwnas.search.strategy import Strategy, register_strategy


@register_strategy("single-level")
class SingleLevel(Strategy):
    name = "single-level"

    def step(self, train, val):
        task, acc = self.task_loss(train, self.mixing())
        loss, costs = total_loss(task, self.alpha, self.costs)
        self.weight_opt.zero_grad()
        self.arch_opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.supernet.parameters(), 5.0)
        self.weight_opt.step()
        self.arch_opt.step()
        return {"loss": float(task.detach()), "accuracy": acc, "costs": costs}
