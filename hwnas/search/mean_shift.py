"""Mean-shift DARTS (MS-DARTS, Hsieh et al. 2021): the alpha update averages the gradients at several
architecture parameters sampled around the current ones within a bandwidth, weighted by a kernel on their
validation loss (lower loss weighs more, the mean-shift step towards the dense low-loss region). The
bandwidth decays linearly over the search, from broad exploration to plain DARTS at the end."""
from __future__ import annotations

import torch

from hwnas.search.cost import total_loss
from hwnas.search.strategy import Strategy, register_strategy


@register_strategy("mean-shift")
class MeanShift(Strategy):
    name = "mean-shift"

    def __init__(self, *args, samples: int = 3, bandwidth: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.samples, self.initial_bandwidth = samples, bandwidth

    @property
    def bandwidth(self) -> float:
        return self.initial_bandwidth * (1.0 - self.progress)

    def step(self, train, val):
        losses, grads, accs = [], [], []
        for _ in range(self.samples):
            noise = self.bandwidth * torch.randn(self.alpha.shape, generator=self.generator)
            sampled = (self.alpha.detach() + noise).requires_grad_(True)
            task, acc = self.task_loss(val, self.mixing(sampled))
            grads.append(torch.autograd.grad(task, sampled)[0])
            losses.append(float(task.detach()))
            accs.append(acc)
        kernel = torch.softmax(-torch.tensor(losses) / max(1e-3, float(torch.tensor(losses).std())), dim=0)
        task_grad = sum(k * g for k, g in zip(kernel, grads))
        # The hardware cost is deterministic in alpha: its gradient is taken at the current parameters.
        smoothed = torch.tensor(sum(k * l for k, l in zip(kernel.tolist(), losses)))
        cost_loss, costs = total_loss(smoothed, self.alpha, self.costs)
        cost_grad = torch.autograd.grad(cost_loss, self.alpha)[0] if self.costs else torch.zeros_like(self.alpha)
        self.arch_opt.zero_grad()
        self.alpha.grad = task_grad + cost_grad
        self.arch_opt.step()
        self.weight_step(train)
        return {"loss": sum(losses) / len(losses), "accuracy": sum(accs) / len(accs), "costs": costs}
