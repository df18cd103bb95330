"""DARTS (Liu et al., ICLR 2019): bi-level; alpha steps on validation batches, weights on training batches.

First order treats the weights as fixed for the alpha step. Second order (`darts-2nd`) differentiates the
validation loss through one unrolled weight step, w' = w - lr * grad_w L_train(w, alpha), exactly by autograd
(double backward) rather than DARTS's finite-difference approximation: the networks here are small.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from hwnas.search.cost import total_loss
from hwnas.search.strategy import Strategy, register_strategy


@register_strategy("darts")
class DartsFirstOrder(Strategy):
    name = "darts"

    def step(self, train, val):
        task, acc, costs = self.arch_step(val)
        self.weight_step(train)
        return {"loss": task, "accuracy": acc, "costs": costs}


@register_strategy("darts-2nd")
class DartsSecondOrder(Strategy):
    name = "darts-2nd"

    def step(self, train, val):
        params = dict(self.supernet.named_parameters())
        weights = self.mixing()
        train_loss = F.cross_entropy(functional_call(self.supernet, params, (train[0], weights)), train[1])
        grads = torch.autograd.grad(train_loss, list(params.values()), create_graph=True)
        unrolled = {n: p - self.weight_lr * g for (n, p), g in zip(params.items(), grads)}
        logits = functional_call(self.supernet, unrolled, (val[0], weights))
        task = F.cross_entropy(logits, val[1])
        loss, costs = total_loss(task, self.alpha, self.costs)
        self.arch_opt.zero_grad()
        self.alpha.grad = torch.autograd.grad(loss, self.alpha)[0]
        self.arch_opt.step()
        self.weight_step(train)
        return {"loss": float(task.detach()), "accuracy": float((logits.argmax(1) == val[1]).float().mean()), "costs": costs}
