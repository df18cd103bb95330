"""Growing DARTS: start from a small cell and add nodes during one-shot training by network morphism.

A new node is added so that the supernet computes the same function (function-preserving initialisation): its
gain is 0 (so it adds nothing to the hidden state yet, while its gain still gets a gradient), and the depth
option it opens is split off the current deepest option, logit - log 2 each, so every mixing weight the old
network used is unchanged (softmax normaliser included). Options are pruned by setting their logit to a floor:
each prune round removes the weakest remaining option of every decision. Modes: "grow-then-prune" grows to the
space's node count over the first half of the epochs and then prunes until one option per decision is left;
"alternate" grows one node and prunes one round of the older nodes at every epoch. Updates are DARTS first order
(alpha on validation batches, weights on training batches). Growth and pruning happen at the start of epochs
2, 3, ... (a one-epoch search does not grow). Spaces must declare the "grow" capability.
"""
from __future__ import annotations

import math

import torch

from hwnas.errors import HwnasError, quote
from hwnas.search.strategy import Strategy, register_strategy

MODES = ("grow-then-prune", "alternate")
#: the logit of a closed option: its softmax weight is exactly 0 in float32
FLOOR = -1e4


@register_strategy("growing")
class Growing(Strategy):
    name = "growing"
    requires = frozenset({"grow"})

    def __init__(self, space, supernet, costs, start_nodes: int = 1, mode: str = "grow-then-prune", **kwargs):
        super().__init__(space, supernet, costs, **kwargs)
        for capability in self.requires:
            space.require(capability, "the growing strategy")
        if mode not in MODES:
            raise HwnasError(f"unknown growing mode {quote(mode)}; accepted: {', '.join(MODES)}")
        most = supernet.max_nodes
        if isinstance(start_nodes, bool) or not isinstance(start_nodes, int) or not 1 <= start_nodes <= most:
            raise HwnasError(f"start_nodes {quote(start_nodes)} is not accepted; give a whole number 1..{most}")
        self.mode, self.max_nodes = mode, most
        self.open = torch.as_tensor(space.alpha_mask).clone()  # options not pruned and not beyond the grown depth
        self.open[0, start_nodes:] = False
        supernet.active_nodes = start_nodes
        self.nodes = self.start_nodes = start_nodes
        self.grows = self.prune_rounds = 0
        #: (epoch, "grow" | "prune", nodes after it) for the record
        self.events: list[tuple[int, str, int]] = []
        self.close_options()

    def close_options(self) -> None:
        with torch.no_grad():
            self.alpha[~self.open] = FLOOR

    # --- morphisms ------------------------------------------------------------------------------------------
    def grow(self) -> None:
        """Add one node without changing the supernet's function (see the module's docstring)."""
        deepest = self.nodes - 1  # depth option index of the current deepest cell
        with torch.no_grad():
            split = self.alpha[0, deepest] - math.log(2.0)
            self.alpha[0, deepest] = split
            self.alpha[0, deepest + 1] = split
        self.open[0, deepest + 1] = True
        self.nodes = self.supernet.grow_node()
        self.arch_opt.state.clear()  # moments of closed logits would push the opened one
        self.grows += 1

    def prune(self, protect_depth: bool = False) -> int:
        """Close the weakest open option of every decision of the grown nodes that has more than one; returns how
        many were closed. The newest node is spared in "alternate" mode (it has had no time to learn)."""
        rows = [] if protect_depth else [0]
        last = self.nodes - (1 if self.mode == "alternate" else 0)
        for node in range(1, last + 1):
            rows += list(self.space.node_decisions(node))
        closed = 0
        with torch.no_grad():
            for r in rows:
                if int(self.open[r].sum()) > 1:
                    logits = self.alpha[r].masked_fill(~self.open[r], float("inf"))
                    self.open[r, int(logits.argmin())] = False
                    closed += 1
        self.close_options()
        self.prune_rounds += 1
        return closed

    # --- schedule -------------------------------------------------------------------------------------------
    def start_epoch(self, epoch: int, epochs: int) -> None:
        super().start_epoch(epoch, epochs)
        if epoch == 0:
            return
        if self.mode == "alternate":
            if self.nodes < self.max_nodes:
                self._grow(epoch)
            self._prune(epoch, protect_depth=True)
            return
        half = max(1, epochs // 2)
        if epoch <= half:  # growth phase: reach the most nodes by the end of it
            while self.grows < math.ceil((self.max_nodes - self.start_nodes) * epoch / half):
                self._grow(epoch)
            return
        # prune phase: one option per decision by the last epoch
        left = epochs - epoch
        rounds = math.ceil(self._rounds_needed() / left) if left > 0 else 0
        for _ in range(rounds):
            self._prune(epoch)

    def _rounds_needed(self) -> int:
        return int(self.open.sum(dim=1).max()) - 1

    def _grow(self, epoch: int) -> None:
        self.grow()
        self.events.append((epoch, "grow", self.nodes))

    def _prune(self, epoch: int, protect_depth: bool = False) -> None:
        if self.prune(protect_depth):
            self.events.append((epoch, "prune", self.nodes))

    def step(self, train, val):
        task, acc, costs = self.arch_step(val)
        self.weight_step(train)
        self.close_options()  # Adam's weight decay would lift closed logits
        return {"loss": task, "accuracy": acc, "costs": costs}
