"""Per-operation profiling into an additive lookup table (Once-for-All / FBNet): it measures, so it lives with the
profilers; the table itself (`LookupTablePredictor`) is a predictor."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwnas.errors import HwnasError
from hwnas.predictors.linear import LookupTablePredictor
from hwnas.profilers.base import Backend
from hwnas.profilers.profile import measure_arch
from hwnas.profilers.timing import TimingProtocol
from hwnas.spaces.base import Arch, SearchSpace
from hwnas.store import Store


def _base_choices(space: SearchSpace) -> list[int]:
    """The option of each decision that means "no operation": from `space.none_options()` where the space declares
    it; otherwise option 0, the convention of every space before that capability existed (nb201: `none`)."""
    declared = getattr(space, "none_options", None)
    if declared is None:  # spaces from before the capability: option 0 is `none` (nb201)
        return [0] * space.alpha_shape[0]
    choices = [None] * space.alpha_shape[0]
    for decision, option in declared():
        if choices[decision] is None:
            choices[decision] = option
    missing = [d for d, c in enumerate(choices) if c is None]
    if missing:
        raise HwnasError(f"per-operation profiling needs a 'none' option in every decision of {space.spec}; "
                         f"decisions {missing[:10]} have none; fit another predictor (e.g. ridge) instead")
    return choices


def _options(space: SearchSpace, decision: int) -> int:
    per = getattr(space, "options_per_decision", None)
    return per()[decision] if per is not None else space.alpha_shape[1]


def lookup_from_profiling(space: SearchSpace, backend: Backend, input_shape: Sequence[int] | None = None,
                          batch: int = 1, protocol: TimingProtocol | None = None, store: Store | None = None,
                          target: str = "latency_ms") -> LookupTablePredictor:
    """Per-operation profiling: measure the all-`none` network and every single-operation variant (one decision
    set, the rest `none`); each entry is its cost above the all-`none` network (0 for the `none` options).
    1 + sum over decisions of (options - 1) measurements (25 for nb201)."""
    base_choices = _base_choices(space)

    def cost(choices) -> float:
        arch = Arch(space.name, tuple(choices))
        m = measure_arch(space, arch, backend, input_shape=input_shape, batch=batch, protocol=protocol, store=store)
        value = getattr(m, target)
        if value is None:
            raise HwnasError(f"the backend gave no {target} for {space.to_string(arch)}")
        return float(value)

    base = cost(base_choices)
    table = np.zeros(space.alpha_shape)
    for r in range(space.alpha_shape[0]):
        for c in range(_options(space, r)):
            if c == base_choices[r]:
                continue
            choices = list(base_choices)
            choices[r] = c
            table[r, c] = cost(choices) - base
    return LookupTablePredictor.from_table(base, table)
