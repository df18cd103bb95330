"""Which architectures to profile: a registry of samplers, each deterministic given its generator.

A sampler is `sampler(space, n, rng, input_shape, measured) -> list[Arch]`: up to `n` distinct architectures to
have measured, in order. `measured` maps the architectures already stored for this (device, backend, space, shape,
batch) to their latency in ms; samplers that do not learn from it ignore it. `profile_space` measures what a
sampler returns (skipping what is stored) and asks it again, with the new measurements, until `n` are stored or it
offers nothing new, so an adaptive sampler ("active") returns one batch per call.

"uniform" and "flops" are prefix-consistent (the first n of a request for n+k are the request for n), so an
interrupted run asks for the same list again and a larger --samples extends what is stored instead of starting
over. Register another with `@register_sampler("name")` and declare it in hwnas.registries; `hwnas profile
--strategy` offers every registered one.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from hwnas.errors import HwnasError
from hwnas.predictors.active import select_active
from hwnas.registries import SAMPLERS
from hwnas.spaces import Arch, SearchSpace


class Sampler(Protocol):
    def __call__(self, space: SearchSpace, n: int, rng: np.random.Generator, input_shape: Sequence[int] = (),
                 measured: Mapping[Arch, float] | None = None) -> list[Arch]: ...


register_sampler = SAMPLERS.register

#: active sampling: architectures measured per round, and the pool of candidates it ranks
ACTIVE_BATCH = 5
ACTIVE_POOL = 2000
#: finite spaces up to this size are sampled by permuting their indices (the FLOPs sampler lists them whole);
#: larger ones by drawing architectures
LIST_AT_MOST = 200_000


def _check_n(space: SearchSpace, n: int) -> None:
    size = space.size()
    if n < 1 or (size is not None and n > size):
        raise HwnasError(f"cannot sample {n} distinct architectures from {space.name}; accepted: 1..{size or 'any'}")


@register_sampler("uniform")
def uniform(space: SearchSpace, n: int, rng: np.random.Generator, input_shape: Sequence[int] = (),
            measured: Mapping[Arch, float] | None = None) -> list[Arch]:
    """n distinct architectures, uniformly at random."""
    _check_n(space, n)
    size = space.size()
    if size is not None and size <= LIST_AT_MOST:  # a permutation of a huge space would not fit in memory
        return [space.arch_at(int(i)) for i in rng.permutation(size)[:n]]
    seen: dict[Arch, None] = {}
    while len(seen) < n:
        seen.setdefault(space.sample(rng))
    return list(seen)


@register_sampler("flops")
def flops_stratified(space: SearchSpace, n: int, rng: np.random.Generator, input_shape: Sequence[int] = (),
                     measured: Mapping[Arch, float] | None = None) -> list[Arch]:
    """n distinct architectures spread evenly over FLOPs quantiles, so cheap and costly ones are both covered
    (uniform sampling over-represents the middle of the FLOPs range)."""
    _check_n(space, n)
    size = space.size()
    pool = space.all_archs() if size is not None and size <= LIST_AT_MOST else uniform(space, 20 * n, rng)
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


@register_sampler("active")
def active(space: SearchSpace, n: int, rng: np.random.Generator, input_shape: Sequence[int] = (),
           measured: Mapping[Arch, float] | None = None) -> list[Arch]:
    """A uniform seed set (a quarter of n, at least 10), then batches of 5 where a predictor ensemble is least
    sure (see hwnas.predictors.active.select_active), one batch per call."""
    _check_n(space, n)
    measured = dict(measured or {})
    seeds = min(n, max(10, n // 4))
    if len(measured) < seeds:
        return uniform(space, seeds, rng)
    if len(measured) >= n:
        return []
    size = space.size()
    pool = uniform(space, min(size or ACTIVE_POOL, ACTIVE_POOL), rng)
    candidates = [a for a in pool if a not in measured]
    if not candidates:
        return []
    k = min(ACTIVE_BATCH, n - len(measured))
    return select_active(space, candidates, list(measured), np.array(list(measured.values())), k,
                         seed=int(rng.integers(2**20)), input_shape=tuple(input_shape) or None)


def sample_archs(space: SearchSpace, n: int, sampler: str = "uniform", seed: int = 0,
                 input_shape: Sequence[int] = (), measured: Mapping[Arch, float] | None = None) -> list[Arch]:
    return SAMPLERS.get(sampler)(space, n, np.random.default_rng(seed), input_shape, measured)
