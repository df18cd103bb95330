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


def _reference_choices(space: SearchSpace) -> list[int]:
    """Each decision at the option the space declares as "no operation" (`none_options`), else at option 0: the
    reference network every single-operation variant is measured against."""
    reference = [0] * len(space.options_per_decision())
    for decision, option in sorted(space.none_options(), reverse=True):  # the lowest declared `none` wins
        reference[decision] = option
    return reference


def lookup_from_profiling(space: SearchSpace, backend: Backend, input_shape: Sequence[int] | None = None,
                          batch: int = 1, protocol: TimingProtocol | None = None, store: Store | None = None,
                          target: str = "latency_ms") -> LookupTablePredictor:
    """Per-operation profiling: measure the reference network (every decision at its `none` option, else option 0)
    and every single-decision variant; each entry is its cost above the reference (0 for the reference options).
    1 + sum over decisions of (options - 1) measurements (25 for nb201); ragged spaces included."""
    reference = _reference_choices(space)

    def cost(choices) -> float:
        arch = Arch(space.name, tuple(choices))
        m = measure_arch(space, arch, backend, input_shape=input_shape, batch=batch, protocol=protocol, store=store)
        value = m.learnt(target)  # at a speed reference's nominal where timed against one
        if value is None:
            raise HwnasError(f"the backend gave no {target} for {space.to_string(arch)}")
        return float(value)

    base = cost(reference)
    table = np.zeros(space.code_length)  # the flat one-hot layout: decision d's options start at code_offsets[d]
    offsets = space.code_offsets
    for decision, count in enumerate(space.options_per_decision()):
        for option in range(count):
            if option != reference[decision]:
                choices = list(reference)
                choices[decision] = option
                table[offsets[decision] + option] = cost(choices) - base
    return LookupTablePredictor.from_table(base, table)
