"""Profiling a space on a device: measure architectures one by one into the store, resuming what is there."""
from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from hwnas.errors import HwnasError, quote
from hwnas.measurement import Measurement, check_measurement
from hwnas.profilers.base import Backend
from hwnas.profilers.samplers import SAMPLERS
from hwnas.profilers.speed import SpeedReference
from hwnas.profilers.timing import TimingProtocol
from hwnas.reporting import Reporter, reporter_or_null
from hwnas.spaces import Arch, SearchSpace
from hwnas.store import Store


def measure_arch(
    space: SearchSpace,
    arch: Arch,
    backend: Backend,
    input_shape: Sequence[int] | None = None,
    batch: int = 1,
    protocol: TimingProtocol | None = None,
    store: Store | None = None,
    replace: bool = False,
    reference: SpeedReference | None = None,
) -> Measurement:
    """Build `arch`, measure it on `backend` and store it. An already stored measurement is returned as is
    unless `replace` (then the new one overwrites it). Its values are checked before anything is stored.
    `reference`: time alternately with it (hwnas.profilers.speed; backends with `times_against_reference`)."""
    return _measure(space, arch, backend, input_shape, batch, protocol, store, replace, reference)[0]


def _measure(space, arch, backend, input_shape=None, batch=1, protocol=None, store=None, replace=False,
             reference=None) -> tuple[Measurement, bool]:
    """(the measurement, whether this call stored it): a row another process stored first does not count."""
    shape = space.check_input_shape(input_shape or space.default_input_shape)
    arch_string = space.to_string(arch)
    if store is not None and not replace:
        stored = store.measurements(device=backend.device_id(), backend=backend.name, space=space.spec,
                                    input_shape=shape, batch=batch, arch=arch_string)
        if stored:
            return stored[0], False
    space.check_fits(shape, batch, arch)  # the batch of inputs too, before anything is built or allocated
    torch.manual_seed(0)  # the same weights for the same arch (timing should not depend on them, but be sure)
    model = space.build(arch, shape)
    m = (backend.measure(model, shape, batch, protocol) if reference is None
         else backend.measure(model, shape, batch, protocol, reference=reference))
    m.arch, m.space = arch_string, space.spec
    check_measurement(m)  # a NaN from the backend stops here, before a device row is written
    if store is None:
        return m, False
    return m, store_measurement(store, backend, m, replace)


def store_measurement(store: Store, backend: Backend, m: Measurement, replace: bool = False) -> bool:
    """Keep `m` (measured on `backend`) in `store`, with its device's row; whether a row was written."""
    store.add_device(backend.device_id(), backend.device_name(), backend.fingerprint())
    return store.add(m, replace=replace)


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
    speed_reference: dict[str, Any] | None = None  # what each architecture was timed alternately with, if anything

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def profile_space(
    space: SearchSpace,
    backend: Backend,
    store: Store,
    samples: int,
    sampler: str = "uniform",
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
    batch: int = 1,
    protocol: TimingProtocol | None = None,
    archs: Sequence[Arch] | None = None,
    reporter: Reporter | None = None,
    reference: SpeedReference | None = None,
) -> ProfileSummary:
    """Have `samples` distinct architectures of this (device, backend, space, shape, batch) measured in the store:
    those already stored count, and the rest are chosen by the registered `sampler` (uniform, flops, active, or
    one added with `register_sampler`). Each is committed as soon as it is measured, and the choice is a
    deterministic function of the seed (and, for active, of what is stored), so rerunning after an interruption
    measures only what is missing, and a larger `samples` extends the store. `archs` names the list instead (each
    measured unless stored). `measured_now` counts rows this call inserted: under two concurrent profilers of one
    store, a row the other stored first is not counted. Progress goes to `reporter` (default: silent)."""
    if not archs and sampler not in SAMPLERS:
        raise HwnasError(f"unknown sampler {quote(sampler)}; accepted: {', '.join(SAMPLERS.names())}")
    shape = space.check_input_shape(input_shape or space.default_input_shape)
    backend.require()
    store.require_writable()
    key = {"device": backend.device_id(), "backend": backend.name, "space": space.spec, "input_shape": shape, "batch": batch}
    started = time.perf_counter()
    if not getattr(backend, "times_against_reference", False):
        reference = None
    run = _Run(space, backend, store, shape, batch, protocol or TimingProtocol.quick(), key, reference)
    if archs:
        samples = len(run.stored | {space.to_string(a) for a in archs})
    already = min(len(run.stored), samples)
    report = reporter_or_null(reporter)
    with report.progress(f"profiling {space.name} on {backend.name}", total=samples, completed=already) as task:
        run.task = task
        if archs:
            run.measure(list(archs), samples)
        else:
            _sample_and_measure(run, SAMPLERS.get(sampler), samples, seed)
    lat = [m.latency_ms for m in store.measurements(**key)]
    return ProfileSummary(
        device=backend.device_id(), device_name=backend.device_name(), backend=backend.name, space=space.spec,
        input_shape=shape, batch=batch, requested=samples, measured_now=run.measured_now, already_stored=already,
        total_in_store=len(lat), seconds=round(time.perf_counter() - started, 2),
        latency_ms={"min": float(np.min(lat)), "median": float(np.median(lat)), "max": float(np.max(lat))} if lat else {},
        speed_reference=reference.describe() if reference is not None else None,
    )


def _sample_and_measure(run: _Run, sampler, samples: int, seed: int) -> None:
    """Ask the sampler (with what is stored) and measure what it offers, until `samples` are stored or it offers
    nothing new. Round 0 uses the bare seed, so a sampler's list is the same on a rerun."""
    for round_no in itertools.count():
        if len(run.stored) >= samples:
            return
        rng = np.random.default_rng(seed if round_no == 0 else [seed, round_no])
        offered = sampler(run.space, samples, rng, run.shape, run.measured())
        if not run.measure(offered, samples):
            return


class _Run:
    """One profiling call's state: what is stored for its key, and how many rows it inserted itself."""

    def __init__(self, space, backend, store, shape, batch, protocol, key, reference=None):
        self.space, self.backend, self.store, self.shape, self.batch, self.protocol = space, backend, store, shape, batch, protocol
        self.key, self.reference = key, reference
        self.stored = store.archs(**key)
        self.measured_now = 0
        self.task = None

    def measured(self) -> dict[Arch, float]:
        return {self.space.from_string(m.arch): m.learnt("latency_ms") for m in self.store.measurements(**self.key)}

    def measure(self, archs: Sequence[Arch], samples: int) -> bool:
        """Measure those not stored until `samples` are; True when at least one new architecture was offered."""
        new = False
        for arch in archs:
            s = self.space.to_string(arch)
            if s in self.stored:
                continue
            if len(self.stored) >= samples:
                break
            new = True
            m, inserted = _measure(self.space, arch, self.backend, self.shape, self.batch, self.protocol, self.store,
                                   reference=self.reference)
            self.stored.add(s)
            self.measured_now += int(inserted)
            if self.task is not None:
                self.task.advance(1, f"{m.learnt('latency_ms'):7.3f} ms  {s[:60]}")
        return new


__all__ = ["SAMPLERS", "ProfileSummary", "measure_arch", "profile_space"]
