"""Profiling a space on a device: measure architectures one by one into the store, resuming what is there."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from hwnas.measurement import Measurement
from hwnas.profilers.base import Backend
from hwnas.profilers.samplers import SAMPLERS, sample_archs
from hwnas.profilers.timing import TimingProtocol
from hwnas.spaces import Arch, SearchSpace
from hwnas.store import Store

STRATEGIES = ("uniform", "flops", "active")


def measure_arch(
    space: SearchSpace,
    arch: Arch,
    backend: Backend,
    input_shape: Sequence[int] | None = None,
    batch: int = 1,
    protocol: TimingProtocol | None = None,
    store: Store | None = None,
    replace: bool = False,
) -> Measurement:
    """Build `arch`, measure it on `backend` and store it. An already stored measurement is returned as is
    unless `replace` (then the new one overwrites it)."""
    shape = space.check_input_shape(input_shape or space.default_input_shape)
    arch_string = space.to_string(arch)
    if store is not None and not replace:
        stored = store.measurements(device=backend.device_id(), backend=backend.name, space=space.spec,
                                    input_shape=shape, batch=batch, arch=arch_string)
        if stored:
            return stored[0]
    torch.manual_seed(0)  # the same weights for the same arch (timing should not depend on them, but be sure)
    space.check_fits(shape, batch, arch)  # one line naming the limit, before inputs of this batch are allocated
    m = backend.measure(space.build(arch, shape), shape, batch, protocol)
    m.arch, m.space = arch_string, space.spec
    if store is not None:
        store.add_device(backend.device_id(), backend.device_name(), backend.fingerprint())
        store.add(m, replace=replace)
    return m


@dataclass
class ProfileSummary:
    device: str
    device_name: str
    backend: str
    space: str
    input_shape: tuple[int, ...]
    batch: int
    requested: int
    measured_now: int
    already_stored: int
    total_in_store: int
    seconds: float
    latency_ms: dict[str, float] = field(default_factory=dict)  # min / median / max over the profiled archs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def profile_space(
    space: SearchSpace,
    backend: Backend,
    store: Store,
    samples: int,
    strategy: str = "uniform",
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
    batch: int = 1,
    protocol: TimingProtocol | None = None,
    progress: bool = True,
    archs: Sequence[Arch] | None = None,
) -> ProfileSummary:
    """Have `samples` distinct architectures of this (device, backend, space, shape, batch) measured in the store:
    those already stored count, and the rest are chosen by `strategy` (uniform, flops, or active). Each is
    committed as soon as it is measured, and the choice is a deterministic function of the seed (and, for
    active, of what is stored), so rerunning after an interruption measures only what is missing, and a larger
    --samples extends the store. `archs` names the list instead (each measured unless stored)."""
    from hwnas.errors import HwnasError

    if strategy not in STRATEGIES and not archs:
        raise HwnasError(f"unknown profiling strategy {strategy!r}; accepted: {', '.join(STRATEGIES)}")
    shape = space.check_input_shape(input_shape or space.default_input_shape)
    backend.require()
    key = {"device": backend.device_id(), "backend": backend.name, "space": space.spec, "input_shape": shape, "batch": batch}
    started = time.perf_counter()
    protocol = protocol or TimingProtocol.quick()
    stored = store.archs(**key)
    if archs:
        todo, strategy = list(archs), "given"
        samples = len(stored | {space.to_string(a) for a in archs})
    elif strategy == "active":
        # A uniform seed set, then batches chosen where the predictor ensemble is least sure.
        todo = sample_archs(space, min(samples, max(10, samples // 4)), "uniform", seed, shape)
    else:
        todo = sample_archs(space, samples, strategy, seed, shape)
    already = min(len(stored), samples)
    measured_now = 0

    with _progress(progress, f"profiling {space.name} on {backend.name}") as bar:
        task = bar.add_task("measure", total=samples, completed=already) if bar else None

        def measure_list(archs: list[Arch]) -> None:
            nonlocal measured_now
            for arch in archs:
                s = space.to_string(arch)
                if s in stored:
                    continue
                if len(stored) >= samples:
                    return
                m = measure_arch(space, arch, backend, shape, batch, protocol, store)
                stored.add(s)
                measured_now += 1
                if bar:
                    bar.update(task, advance=1, description=f"{m.latency_ms:7.3f} ms  {s[:60]}")

        measure_list(todo)
        if strategy == "active":
            from hwnas.predictors import select_active

            pool = sample_archs(space, min(space.size() or 20000, 2000), "uniform", seed + 1, shape)
            round_no = 0
            while len(stored) < samples:
                rows = store.measurements(**key)  # everything measured on this device teaches the ensemble
                candidates = [a for a in pool if space.to_string(a) not in stored]
                if not candidates:
                    break
                k = min(5, samples - len(stored))
                picked = select_active(space, candidates, [space.from_string(m.arch) for m in rows],
                                       np.array([m.latency_ms for m in rows]), k, seed=seed + round_no)
                measure_list(picked)
                round_no += 1

    lat = [m.latency_ms for m in store.measurements(**key)]
    return ProfileSummary(
        device=backend.device_id(), device_name=backend.device_name(), backend=backend.name, space=space.spec,
        input_shape=shape, batch=batch, requested=samples, measured_now=measured_now, already_stored=already,
        total_in_store=store.count(**key), seconds=round(time.perf_counter() - started, 2),
        latency_ms={"min": float(np.min(lat)), "median": float(np.median(lat)), "max": float(np.max(lat))} if lat else {},
    )


class _NoProgress:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool, title: str):
    if not enabled:
        return _NoProgress()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from hwnas.commands.common import console

    return Progress(TextColumn(f"[bold]{title}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.description}"), console=console, transient=False)


__all__ = ["SAMPLERS", "STRATEGIES", "ProfileSummary", "measure_arch", "profile_space"]
