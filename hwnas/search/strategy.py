"""Search strategies on one shared supernet, their registry, and the one search loop they all run in.

A strategy owns the architecture parameters `alpha` (shape `space.alpha_shape`; on a ragged space the entries
outside `space.alpha_mask` are ignored: `space.mixing_weights` gives them weight 0) and two optimisers (SGD for
the supernet's weights, Adam for alpha) and defines `step(train_batch, val_batch)`. A new strategy is one
file with a `Strategy` subclass and `@register_strategy("name")`, declared in hwnas.registries. Inside the
search an architecture is its `Arch` (hashable); strings appear only in the history, for people and files.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import HwnasError
from hwnas.registries import STRATEGIES
from hwnas.search.cost import HardwareCost, total_loss
from hwnas.spaces.base import Arch
from hwnas.threads import training_layout

register_strategy = STRATEGIES.register


def get_strategy(name: str) -> type[Strategy]:
    import hwnas.search  # noqa: F401  (registers the built-in strategies)

    return STRATEGIES.get(name)


Batch = tuple[torch.Tensor, torch.Tensor]


class Strategy:
    name = ""
    #: space capabilities the strategy needs (hwnas.spaces.CAPABILITIES); others are refused in one line
    requires: frozenset[str] = frozenset()

    def __init__(self, space, supernet: nn.Module, costs: Sequence[HardwareCost], weight_lr: float = 0.05,
                 arch_lr: float = 0.05, weight_decay: float = 3e-4, arch_weight_decay: float = 1e-3, seed: int = 0,
                 **options: Any):
        self.space, self.supernet, self.costs = space, training_layout(supernet), list(costs)
        self.generator = torch.Generator().manual_seed(seed)
        self.alpha = nn.Parameter(1e-3 * torch.randn(space.alpha_shape, generator=self.generator))
        self.weight_lr = weight_lr
        self.weight_opt = torch.optim.SGD(supernet.parameters(), lr=weight_lr, momentum=0.9, weight_decay=weight_decay)
        # DARTS's Adam settings for alpha, with a larger rate: searches here run for tens of epochs, not fifty.
        self.arch_opt = torch.optim.Adam([self.alpha], lr=arch_lr, betas=(0.5, 0.999), weight_decay=arch_weight_decay)
        self.options = options
        self.progress = 0.0  # fraction of the search done, for schedules
        #: the architectures derived at each step of the last epoch, oldest first (discretisation candidates)
        self.recent_archs: list[Arch] = []

    # --- shared pieces ----------------------------------------------------------------------------------------
    def mixing(self, alpha: torch.Tensor | None = None) -> torch.Tensor:
        """Mixing weights (decisions x options): the softmax of alpha over each decision's existing options."""
        return self.space.mixing_weights(self.alpha if alpha is None else alpha)

    def task_loss(self, batch: Batch, weights: torch.Tensor, active=None) -> tuple[torch.Tensor, float]:
        x, y = batch
        logits = self.supernet(x, weights, active)
        if y.is_floating_point():  # a regression task (forecasting): MSE, and R^2 of the batch in place of accuracy
            return regression_loss(logits, y)
        return F.cross_entropy(logits, y), float((logits.argmax(1) == y).float().mean())

    def weight_step(self, batch: Batch, weights: torch.Tensor | None = None, active=None) -> tuple[float, float]:
        loss, acc = self.task_loss(batch, self.mixing().detach() if weights is None else weights.detach(), active)
        self.weight_opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.supernet.parameters(), 5.0)
        self.weight_opt.step()
        return float(loss.detach()), acc

    def arch_step(self, batch: Batch, weights: torch.Tensor | None = None, active=None) -> tuple[float, float, dict[str, float]]:
        task, acc = self.task_loss(batch, self.mixing() if weights is None else weights, active)
        loss, costs = total_loss(task, self.alpha, self.costs)
        self.arch_opt.zero_grad()
        self.alpha.grad = torch.autograd.grad(loss, self.alpha)[0]
        self.arch_opt.step()
        return float(task.detach()), acc, costs

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.progress = epoch / max(1, epochs)

    def step(self, train: Batch, val: Batch) -> dict[str, Any]:
        """One update; returns {"loss", "accuracy", "costs": {target: relaxed cost}}."""
        raise NotImplementedError


def regression_loss(prediction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(MSE, R^2 of the batch): what a regression task reports where a classifier reports accuracy."""
    loss = F.mse_loss(prediction, target)
    variance = float(target.detach().var(unbiased=False)) if target.numel() > 1 else 0.0
    return loss, (1.0 - float(loss.detach()) / variance) if variance > 0 else 0.0


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator):
    order = torch.randperm(len(y), generator=generator)
    for i in range(0, len(y) - batch_size + 1 if len(y) >= batch_size else 1, batch_size):
        idx = order[i:i + batch_size]
        yield x[idx], y[idx]


def steps_per_epoch(dataset, batch_size: int) -> int:
    """How many steps `run_search` takes per epoch (one per full training batch, at least one)."""
    return max(1, len(dataset.y_train) // batch_size)


def run_search(strategy: Strategy, dataset, epochs: int, batch_size: int = 64,
               on_epoch: Callable[[dict[str, Any]], None] | None = None,
               on_step: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """The one search loop: per step a strategy update and a controller step of every multiplier; per epoch a
    history row: loss, accuracy, and per target the relaxed expected cost ("cost"), the derived architecture's
    predicted cost ("derived_cost"), which of the two the multiplier follows ("tracks"), the multiplier (>= 0),
    the pull (>= 0, "target" mode) and the dual variable; and the derived architecture. `on_step()` is called
    after every step."""
    strategy.space.check_fits(dataset.input_shape, batch_size)  # before the first batch is allocated
    history: list[dict[str, Any]] = []
    for epoch in range(epochs):
        strategy.start_epoch(epoch, epochs)
        strategy.supernet.train()
        sums = {"loss": 0.0, "accuracy": 0.0}
        trace = _run_epoch(strategy, dataset, batch_size, sums, on_step)
        steps = max(1, len(trace))
        with torch.no_grad():
            relaxed = {c.target: float(c.value(strategy.alpha)) for c in strategy.costs}
        arch = strategy.space.derive(strategy.alpha)
        row = {
            "epoch": epoch + 1, "loss": sums["loss"] / steps, "accuracy": sums["accuracy"] / steps,
            "cost": relaxed,
            "derived_cost": {c.target: float(c.predict_arch([arch])[0]) for c in strategy.costs},
            "tracks": {c.target: c.track for c in strategy.costs},
            "multiplier": {c.target: c.multiplier for c in strategy.costs},
            "pull": {c.target: c.pull for c in strategy.costs},
            "dual": {c.target: c.dual for c in strategy.costs},
            "budget": {c.target: c.budget for c in strategy.costs},
            "derived": strategy.space.to_string(arch),
            "steps": trace,
        }
        if math.isnan(row["loss"]):
            raise HwnasError("the search loss became NaN; lower --weight-lr / --arch-lr")
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
    return history


def _run_epoch(strategy: Strategy, dataset, batch_size: int, sums: dict[str, float],
               on_step: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """One pass over the training data; returns the per-step trace and keeps `strategy.recent_archs`."""
    g = strategy.generator
    trace: list[dict[str, Any]] = []  # per step: relaxed cost and multiplier, for the plot
    strategy.recent_archs = []
    val_iter = iter(())
    for train in batches(dataset.x_train, dataset.y_train, batch_size, g):
        val = next(val_iter, None)
        if val is None:
            val_iter = batches(dataset.x_val, dataset.y_val, batch_size, g)
            val = next(val_iter)
        out = strategy.step(train, val)
        derived = strategy.space.derive(strategy.alpha)
        strategy.recent_archs.append(derived)
        derived_cost = {c.target: float(c.predict_arch([derived])[0]) for c in strategy.costs}
        tracked = {c.target: derived_cost[c.target] if c.track == "derived" else out["costs"][c.target]
                   for c in strategy.costs}
        if strategy.costs:
            tightest = max(strategy.costs, key=lambda c: tracked[c.target] / c.budget).target
            for c in strategy.costs:
                c.update_multiplier(tracked[c.target], tightest=c.target == tightest)
        trace.append({"cost": dict(out["costs"]), "derived_cost": derived_cost,
                      "derived": strategy.space.to_string(derived),
                      "dual": {c.target: c.dual for c in strategy.costs},
                      "multiplier": {c.target: c.multiplier for c in strategy.costs},
                      "pull": {c.target: c.pull for c in strategy.costs}})
        sums["loss"] += out["loss"]
        sums["accuracy"] += out["accuracy"]
        if on_step is not None:  # progress within an epoch (an epoch of a large space takes minutes)
            on_step()
    return trace
