"""The differentiable hardware cost term of a budgeted search.

`HardwareCost` gives the predicted latency or energy of the relaxed architecture, either from a differentiable
predictor applied to `space.relax(alpha)` or as the expected cost under a per-operation table. The budget is
met by a Lagrange multiplier adapted by dual ascent on (cost / budget - 1), so the search settles at the
budget without a hand-tuned weight. The multiplier is the dual variable (the integral of the violation) plus a
proportional term on the current violation (the PID-Lagrangian of Stooke et al., 2020): plain dual ascent
oscillates around the budget when the task loss is close to linear in the mixing weights; the proportional
term damps that, and the search lands at the budget within a few per cent.

By default (`mode="target"`) the budget is a target, not only a cap: while the tightest budget is not used, its
multiplier may turn negative (down to -max_pull) and pulls the architecture up to it. Without that, DARTS's
known drift to parameter-free operations (skip, pooling) on an easy task leaves much of the budget unused, and
users asked for the most accurate network that fits, which on real tasks is the one that uses the budget.
Only the tightest cost may pull up, so a latency budget and an energy budget never pull against each other. `form="proxyless"` gives ProxylessNAS's multiplicative form instead.
Several costs (latency and energy) combine: `total_loss(task_loss, alpha, costs)`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hwnas.errors import HwnasError

FORMS = ("dual", "proxyless")
TRACKS = ("derived", "relaxed")
#: "target": the budget is where the search should land (the multiplier may turn negative and pull a cost that
#: sits under its budget up to it); "cap": the budget is only an upper limit (multiplier >= 0)
MODES = ("target", "cap")


class HardwareCost:
    """Predicted cost of relaxed architecture parameters, with its budget and multiplier.

    predictor: a differentiable hwnas predictor (its `torch_module()` maps encodings to the target's units).
    table: instead of a predictor, per-decision per-option costs of shape `space.alpha_shape` plus `base`:
        the expected cost under softmax(alpha) is base + sum(table * softmax(alpha)), linear and exact for
        additive costs (Once-for-All / FBNet lookup tables).
    form: "dual" adds multiplier * (cost / budget - 1), multiplier = max(floor, dual + proportional * violation),
        where `dual` rises by multiplier_lr * violation per step while over budget and falls (never below the
        floor) while under; the floor is 0 with mode="cap" and -max_pull with mode="target" (see the module doc). `track` says which cost the multiplier follows: "derived" (default), the predicted cost of
        the architecture the search would output now (argmax of alpha), so that it is the discretised
        architecture that lands at the budget; or "relaxed", the cost of the mixture itself (the gradient always
        comes from the relaxed cost); "proxyless" multiplies the task loss by (cost / budget) ** beta, the
        ProxylessNAS / MnasNet soft constraint (the ratio replaces ProxylessNAS's log(cost) / log(budget), which
        breaks for budgets below one unit), with a fixed beta and no multiplier.
    """

    def __init__(self, space, target: str, budget: float, predictor=None, table: np.ndarray | None = None,
                 base: float = 0.0, form: str = "dual", multiplier_lr: float = 0.05, multiplier: float = 0.0,
                 proportional: float = 2.0, track: str = "derived", beta: float = 0.6, mode: str = "target",
                 max_pull: float = 2.0):
        if mode not in MODES:
            raise HwnasError(f"unknown budget mode {mode!r}; accepted: {', '.join(MODES)}")
        if track not in TRACKS:
            raise HwnasError(f"unknown cost tracking {track!r}; accepted: {', '.join(TRACKS)}")
        if form not in FORMS:
            raise HwnasError(f"unknown cost form {form!r}; accepted: {', '.join(FORMS)}")
        if not budget > 0:
            raise HwnasError(f"a {target} budget must be positive (got {budget})")
        if (predictor is None) == (table is None):
            raise HwnasError("a hardware cost needs exactly one of a differentiable predictor or a per-operation table")
        self.space, self.target, self.budget, self.form = space, target, float(budget), form
        self.scale = 1.0  # raised by the repair loop when measurements show the predictor runs low
        self.predictor = self.module = None
        self.table = None if table is None else torch.as_tensor(np.asarray(table, np.float32))
        if self.table is not None and tuple(self.table.shape) != tuple(space.alpha_shape):
            raise HwnasError(f"a cost table must have shape {space.alpha_shape} (decisions x options); got {tuple(self.table.shape)}")
        self.base = float(base)
        if predictor is not None:
            self.set_predictor(predictor)
        self.multiplier_lr = float(multiplier_lr)
        self.dual = float(multiplier)  # the dual variable: accumulated relative violation
        self.multiplier = float(multiplier)  # what the loss uses: dual + proportional term, never below 0
        self.proportional = float(proportional)
        self.track = track
        self.beta = float(beta)
        self.mode, self.max_pull = mode, float(max_pull)

    def set_predictor(self, predictor) -> None:
        """Use `predictor` from now on: a differentiable one on one-hot codes (its torch module on the relaxed
        code), or an additive lookup table (the exact expected cost under softmax(alpha))."""
        if hasattr(predictor, "table_for") and not getattr(predictor, "log_target", True):
            base, table = predictor.table_for(tuple(self.space.alpha_shape))
            self.predictor, self.module = predictor, None
            self.table, self.base = torch.as_tensor(np.asarray(table, np.float32)), float(base)
            return
        if not getattr(predictor, "differentiable", False):
            raise HwnasError(f"predictor {predictor.name!r} is not differentiable; the search needs one "
                             "with torch_module(), e.g. 'mlp', or an additive 'lookup' table")
        if getattr(predictor, "encoding", "onehot") != "onehot":
            raise HwnasError(f"predictor {predictor.name!r} reads the {predictor.encoding!r} encoding; the search feeds "
                             "it relaxed one-hot codes, so fit it with the 'onehot' encoding")
        self.predictor, self.module, self.table = predictor, predictor.torch_module(), None
        for p in self.module.parameters():
            p.requires_grad_(False)

    def value(self, alpha: torch.Tensor) -> torch.Tensor:
        """Predicted cost (in the target's units) of the relaxed architecture; differentiable in alpha."""
        if self.table is not None:
            return self.scale * (self.base + (torch.softmax(alpha, dim=-1) * self.table).sum())
        return self.scale * self.module(self.space.relax(alpha).reshape(1, -1)).reshape(())

    def predict_arch(self, archs) -> np.ndarray:
        """Predicted cost of discrete architectures (one-hot codes)."""
        codes = self.space.encode_many(list(archs))
        if self.table is not None and self.predictor is None:
            return self.scale * (self.base + codes @ self.table.numpy().reshape(-1))
        return self.scale * np.asarray(self.predictor.predict(codes), np.float64)

    def penalty(self, alpha: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The dual term multiplier * (cost / budget - 1) and the cost's value (a float, for logging)."""
        cost = self.value(alpha)
        return self.multiplier * (cost / self.budget - 1.0), float(cost.detach())

    def update_multiplier(self, cost: float, tightest: bool = True) -> float:
        """Dual ascent on the tracked cost: the dual variable moves by its rate times the relative violation;
        the multiplier adds the proportional term on the current violation. Both stay >= 0 in "cap" mode or
        when another budget is tighter; in "target" mode the tightest may go down to -max_pull."""
        if self.form == "dual":
            violation = cost / self.budget - 1.0
            floor = -self.max_pull if (self.mode == "target" and tightest) else 0.0
            self.dual = max(floor, self.dual + self.multiplier_lr * violation)
            self.multiplier = max(floor, self.dual + self.proportional * violation)
        return self.multiplier


def total_loss(task_loss: torch.Tensor, alpha: torch.Tensor, costs: Sequence[HardwareCost]) -> tuple[torch.Tensor, dict[str, float]]:
    """Task loss combined with every cost term; returns the loss and each cost's current value."""
    loss = task_loss
    values: dict[str, float] = {}
    for c in costs:
        if c.form == "dual":
            term, values[c.target] = c.penalty(alpha)
            loss = loss + term
        else:
            cost = c.value(alpha)
            values[c.target] = float(cost.detach())
            loss = loss * (cost / c.budget) ** c.beta
    return loss, values


def op_table_from_measurements(space, archs, values) -> tuple[np.ndarray, float]:
    """A per-operation cost table fitted by least squares to measured architectures (an additive model:
    base + one term per decision and option), for a table-driven `HardwareCost`."""
    from sklearn.linear_model import Ridge

    X = space.encode_many(list(archs))
    model = Ridge(alpha=1e-3).fit(X, np.asarray(values, np.float64))
    return model.coef_.reshape(space.alpha_shape).astype(np.float32), float(model.intercept_)
