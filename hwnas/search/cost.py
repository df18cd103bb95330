"""The differentiable hardware cost term of a budgeted search.

`HardwareCost` gives the predicted latency or energy of the relaxed architecture through one of two declared
protocols: an `AdditiveCost` (a predictor with `additive = True` and `table_for(space)`: per-decision per-option
costs, whose expected value under the mixing weights is exact) or a `DifferentiableCost` (a torch callable on the
mixing weights; a differentiable predictor's `torch_module()` applied to `space.relax(alpha)` is one). The budget
is met by a Lagrange multiplier adapted by dual ascent on (cost / budget - 1), so the search settles at the
budget without a hand-tuned weight. The controller is the dual variable (the integral of the violation) plus a
proportional term (the PID-Lagrangian of Stooke et al., 2020), damped so it settles instead of oscillating: it
follows the relaxed expected cost (smooth in alpha) by default, averages the violation over recent steps, and
ignores violations within a dead band (`tolerance`, 2% of the budget).

The multiplier is never below 0: it only pushes a cost down. By default (`mode="target"`) the budget is a
target, not only a cap: while the tightest budget is not used, a separate `pull` (also >= 0, at most
`max_pull`) pulls the architecture up to it. Without that, DARTS's known drift to parameter-free operations
(skip, pooling) on an easy task leaves much of the budget unused, and users asked for the most accurate network
that fits, which on real tasks is the one that uses the budget. Only the tightest cost may pull, so a latency
budget and an energy budget never pull against each other; multiplier and pull are never both positive.
`form="proxyless"` gives ProxylessNAS's multiplicative form instead.
Several costs (latency and energy) combine: `total_loss(task_loss, alpha, costs)`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from hwnas.choices import FORMS, MODES
from hwnas.errors import HwnasError
from hwnas.predictors.auto import PredictorPair
from hwnas.predictors.encodings import encode_archs

TRACKS = ("relaxed", "derived")


class AdditiveCost(Protocol):
    """A cost that is a sum of per-decision terms (Once-for-All / FBNet lookup tables)."""

    additive: bool

    def table_for(self, space) -> tuple[float, np.ndarray]:
        """(base, per-decision per-option costs of shape space.alpha_shape, zero where no option is)."""
        ...


class DifferentiableCost(Protocol):
    """A torch callable: mixing weights (space.alpha_shape) -> predicted cost (a scalar tensor, target's units)."""

    def __call__(self, weights: torch.Tensor) -> torch.Tensor: ...


class _TableCost:
    def __init__(self, base: float, table: torch.Tensor):
        self.base, self.table = float(base), table

    def __call__(self, weights: torch.Tensor) -> torch.Tensor:
        return self.base + (weights * self.table).sum()


class _PredictorCost:
    """A differentiable predictor fitted on one-hot codes, fed the relaxed code."""

    def __init__(self, space, module: torch.nn.Module):
        self.space, self.module = space, module

    def __call__(self, weights: torch.Tensor) -> torch.Tensor:
        return self.module(self.space.code_from_weights(weights).reshape(1, -1)).reshape(())


class HardwareCost:
    """Predicted cost of relaxed architecture parameters, with its budget and controller.

    predictor: an `AdditiveCost` predictor (e.g. 'lookup', the exact expected cost) or a differentiable one
        (its `torch_module()` maps one-hot encodings to the target's units).
    table: instead of a predictor, per-decision per-option costs of shape `space.alpha_shape` plus `base`.
    cost_fn: instead of either, any `DifferentiableCost` on the mixing weights.
    form: "dual" adds (multiplier - pull) * (cost / budget - 1). Per step the violation v = cost / budget - 1
        (zero within +-tolerance) is averaged (`averaging`, an exponential moving average); the dual variable
        moves by multiplier_lr * v, and multiplier = max(0, dual + proportional * average). In "target" mode the
        tightest cost's dual may go down to -max_pull, and then pull = -(dual + proportional * average) > 0 pulls
        the cost up to the budget instead. `track` says which cost the controller follows: "relaxed" (default),
        the expected cost of the mixture, smooth in alpha, so the multiplier settles; or "derived", the
        predicted cost of the architecture the search would output now (argmax of alpha), which jumps when the
        argmax changes. "proxyless" multiplies the task loss by (cost / budget) ** beta, the ProxylessNAS /
        MnasNet soft constraint, with a fixed beta and no multiplier.
    """

    def __init__(self, space, target: str, budget: float, predictor=None, table: np.ndarray | None = None,
                 base: float = 0.0, form: str = "dual", multiplier_lr: float = 0.05, multiplier: float = 0.0,
                 proportional: float = 2.0, track: str = "relaxed", beta: float = 0.6, mode: str = "target",
                 max_pull: float = 2.0, cost_fn: DifferentiableCost | None = None, tolerance: float = 0.02,
                 averaging: float = 0.8, exact=None):
        if isinstance(predictor, PredictorPair):  # `auto`: a differentiable cost term, the most accurate for archs
            predictor, exact = predictor.cost, predictor.exact
        _check_choice("budget mode", mode, MODES)
        _check_choice("cost tracking", track, TRACKS)
        _check_choice("cost form", form, FORMS)
        if not (np.isfinite(budget) and budget > 0):
            raise HwnasError(f"a {target} budget must be a positive finite number (got {budget})")
        if sum(x is not None for x in (predictor, table, cost_fn)) != 1:
            raise HwnasError("a hardware cost needs exactly one of a predictor, a per-operation table or a cost function")
        self.space, self.target, self.budget, self.form = space, target, float(budget), form
        self.scale = 1.0  # raised by the repair loop when measurements show the predictor runs low
        self.predictor = self.module = self.table = None
        self.set_exact(exact)
        self.base = float(base)
        self.fn: DifferentiableCost
        if table is not None:
            self._set_table(self.base, table)
        elif cost_fn is not None:
            self.fn = cost_fn
        else:
            self.set_predictor(predictor)
        self.multiplier_lr = float(multiplier_lr)
        self.dual = float(multiplier)  # the dual variable: accumulated relative violation
        self.multiplier = max(0.0, float(multiplier))  # pushes the cost down; never below 0
        self.pull = 0.0  # pulls an unused tightest budget up ("target" mode); never below 0
        self.average = 0.0  # moving average of the violation
        self.proportional = float(proportional)
        self.track = track
        self.beta = float(beta)
        self.mode, self.max_pull = mode, float(max_pull)
        self.tolerance, self.averaging = float(tolerance), float(averaging)

    def _set_table(self, base: float, table) -> None:
        self.table = torch.as_tensor(np.asarray(table, np.float32))
        if tuple(self.table.shape) != tuple(self.space.alpha_shape):
            raise HwnasError(f"a cost table must have shape {self.space.alpha_shape} (decisions x options); "
                             f"got {tuple(self.table.shape)}")
        self.table = self.table * torch.as_tensor(self.space.alpha_mask.copy(), dtype=self.table.dtype)
        self.base = float(base)
        self.fn = _TableCost(self.base, self.table)

    def set_predictor(self, predictor) -> None:
        """Use `predictor` from now on: an additive one (its table, the exact expected cost under the mixing
        weights) or a differentiable one on one-hot codes (its torch module on the relaxed code)."""
        if predictor.additive:
            base, table = predictor.table_for(self.space)
            self._set_table(base, table)
            self.predictor, self.module = predictor, None
            return
        if not predictor.differentiable:
            raise HwnasError(f"predictor {predictor.name!r} is not differentiable; the search needs one "
                             "with torch_module(), e.g. 'mlp', or an additive 'lookup' table")
        if predictor.encoding != "onehot":
            raise HwnasError(f"predictor {predictor.name!r} reads the {predictor.encoding!r} encoding; the search feeds "
                             "it relaxed one-hot codes, so fit it with the 'onehot' encoding")
        self.predictor, self.module, self.table = predictor, predictor.torch_module(), None
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.fn = _PredictorCost(self.space, self.module)

    def set_exact(self, exact) -> None:
        """Judge discrete architectures (`predict_arch`) with `exact` (any predictor, read in its own encoding),
        or with the cost term's predictor when None."""
        self.exact = exact
        self._exact_values: dict = {}  # arch -> prediction: analytic encodings are slow, and archs repeat per step

    def _predict_exact(self, archs) -> np.ndarray:
        todo = [a for a in dict.fromkeys(archs) if a not in self._exact_values]
        if todo:
            codes = encode_archs(self.space, todo, self.exact.encoding, self.exact.metadata.get("input_shape") or None)
            self._exact_values.update(zip(todo, np.asarray(self.exact.predict(codes), np.float64)))
        return np.array([self._exact_values[a] for a in archs], np.float64)

    def value(self, alpha: torch.Tensor) -> torch.Tensor:
        """Predicted cost (in the target's units) of the relaxed architecture; differentiable in alpha."""
        return self.scale * self.fn(self.space.expected_weights(alpha))

    def predict_arch(self, archs, exact: bool = True) -> np.ndarray:
        """Predicted cost of discrete architectures (`Arch`es); exact=False uses the cost term's own predictor even
        when an `exact` one is set (fast on a whole space: one-hot codes need no network analysis)."""
        if self.exact is not None and exact:
            return self.scale * self._predict_exact(list(archs))
        codes = self.space.encode_many(list(archs))
        if self.table is not None:
            return self.scale * (self.base + codes @ self.table.numpy()[self.space.alpha_mask])
        if self.predictor is not None:
            return self.scale * np.asarray(self.predictor.predict(codes), np.float64)
        with torch.no_grad():
            weights = torch.as_tensor(self.space.table_from_code(codes))
            return self.scale * np.array([float(self.fn(w)) for w in weights], np.float64)

    @property
    def coefficient(self) -> float:
        """What multiplies (cost / budget - 1) in the loss: multiplier - pull."""
        return self.multiplier - self.pull

    def penalty(self, alpha: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The dual term (multiplier - pull) * (cost / budget - 1) and the cost's value (a float, for logging)."""
        cost = self.value(alpha)
        return self.coefficient * (cost / self.budget - 1.0), float(cost.detach())

    def update_multiplier(self, cost: float, tightest: bool = True) -> float:
        """One controller step on the tracked cost (see the class doc); returns the multiplier (>= 0)."""
        if self.form != "dual":
            return self.multiplier
        violation = cost / self.budget - 1.0
        if abs(violation) <= self.tolerance:
            violation = 0.0
        self.average = self.averaging * self.average + (1.0 - self.averaging) * violation
        floor = -self.max_pull if (self.mode == "target" and tightest) else 0.0
        self.dual = min(max(floor, self.dual + self.multiplier_lr * violation), 1e6)
        signal = self.dual + self.proportional * self.average
        self.multiplier = max(0.0, signal)
        self.pull = min(self.max_pull, max(0.0, -signal)) if floor < 0 else 0.0
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
    base + one term per decision and option), shape space.alpha_shape, for a table-driven `HardwareCost`."""
    from sklearn.linear_model import Ridge

    X = space.encode_many(list(archs))
    model = Ridge(alpha=1e-3).fit(X, np.asarray(values, np.float64))
    return space.table_from_code(model.coef_).astype(np.float32), float(model.intercept_)


def _check_choice(what: str, value: str, accepted: Sequence[str]) -> None:
    if value not in accepted:
        raise HwnasError(f"unknown {what} {value!r}; accepted: {', '.join(accepted)}")
