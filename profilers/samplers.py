"""Which architectures to profile: deterministic given a seed, and prefix-consistent (the first n of a request
for n+k are the request for n), so an interrupted run asks for the same list again and a larger --samples
extends what is stored instead of starting over."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from hwnas.errors import HwnasError
from hwnas.registry import Registry
from hwnas.spaces import Arch, SearchSpace

SAMPLERS: Registry = Registry("sampler")
register_sampler = SAMPLERS.register
Sampler = Callable[[SearchSpace, int, np.random.Generator, Sequence[int]], list[Arch]]


def _check_n(space: SearchSpace, n: int) -> None:
    size = space.size()
    if n < 1 or (size is not None and n > size):
        raise HwnasError(f"cannot sample {n} distinct architectures from {space.name}; accepted: 1..{size or 'any'}")


@register_sampler("uniform")
def uniform(space: SearchSpace, n: int, rng: np.random.Generator, input_shape: Sequence[int] = ()) -> list[Arch]:
    """n distinct architectures, uniformly at random."""
    _check_n(space, n)
    size = space.size()
    if size is not None:
        return [space.arch_at(int(i)) for i in rng.permutation(size)[:n]]
    seen: dict[Arch, None] = {}
    while len(seen) < n:
        seen.setdefault(space.sample(rng))
    return list(seen)


@register_sampler("flops")
def flops_stratified(space: SearchSpace, n: int, rng: np.random.Generator, input_shape: Sequence[int] = ()) -> list[Arch]:
    """n distinct architectures spread evenly over FLOPs quantiles, so cheap and costly ones are both covered
    (uniform sampling over-represents the middle of the FLOPs range)."""
    _check_n(space, n)
    pool = space.all_archs() if space.size() is not None else uniform(space, 20 * n, rng)
    flops = np.array([space.flops(a, input_shape or None) for a in pool])
    bins = 10
    edges = np.quantile(flops, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, flops, side="right") - 1, 0, bins - 1)
    members = [list(rng.permutation(np.flatnonzero(which == b))) for b in range(bins)]
    chosen: list[int] = []
    while len(chosen) < n:  # round robin over the bins; ties in FLOPs can leave some bins short
        for b in range(bins):
            if members[b] and len(chosen) < n:
                chosen.append(int(members[b].pop()))
    return [pool[i] for i in chosen]


def sample_archs(space: SearchSpace, n: int, sampler: str = "uniform", seed: int = 0,
                 input_shape: Sequence[int] = ()) -> list[Arch]:
    return SAMPLERS.get(sampler)(space, n, np.random.default_rng(seed), input_shape)
