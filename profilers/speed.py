"""Speed references: a fixed network timed alternately with each candidate, so that the machine's drift cancels.

On a shared machine the speed drifts: a whole timing session of one network can run 20-80% slow, and budgets
computed minutes apart differ by a sixth. Timed alternately (a block of runs of the candidate, one of the
reference, per round), both see the same moments: on this 2-core VM, in a slow phase, each network's session
median varied by 16-25% (coefficient of variation over 30 s of 60-run sessions) and its ratio to the reference by
6-14%, the less the nearer the reference's size (`python bench/speed_reference.py --seconds 30`); a verdict's
thorough session runs many more rounds.

A verdict's figure is then that ratio times the reference's nominal latency, taken when the reference was made
(the fastest of a few sessions: interference only adds time). Every verdict of a run (the search's, the exported
file's) uses the same reference and nominal, so they agree with each other however the machine's speed moves
between them. The measurement's `latency_ms` stays the candidate's raw median; `extra["speed_reference"]` holds the
ratio, the reference's median now and the verdict's figure (`latency_ms` there).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hwnas.errors import HwnasError
from hwnas.profilers.timing import RETIME_SESSIONS, TimingProtocol, median_ci_halfwidth, time_runs

#: runs of each network per round: a run just after the other network's is slowed by its cache state (alternating
#: single runs read 15-26% slower than runs alone, unevenly between networks; blocks of 10, 3-11%, the more the
#: larger the network than the reference, which is therefore chosen near the budget, the candidates' size)
PAIRED_BLOCK = 10



@dataclass
class SpeedReference:
    """`arch` (an architecture string of `space`) prepared on a backend, with its nominal latency in ms."""

    arch: str
    space: str
    nominal_ms: float
    run: Callable[[], object] = field(repr=False, compare=False)
    sync: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def make(cls, space, arch, backend, input_shape: Sequence[int], batch: int = 1,
             protocol: TimingProtocol | None = None, sessions: int = RETIME_SESSIONS) -> SpeedReference:
        """Build `arch` on `backend` and take its nominal latency: the fastest of `sessions` medians."""
        import torch

        shape = tuple(input_shape)
        torch.manual_seed(0)  # the same weights as the profiler's
        run, sync = backend.prepare(space.build(arch, shape).eval(), shape, int(batch))
        protocol = protocol or TimingProtocol()
        nominal = min(float(np.median(time_runs(run, protocol, sync))) for _ in range(sessions))
        return cls(space.to_string(arch), space.spec, nominal, run, sync)

    def figures(self, m) -> dict[str, float | None] | None:
        """A stored Measurement's verdict figures at this reference's nominal speed, or None when it was not timed
        against this reference (the same architecture of the same space)."""
        speed = (m.extra or {}).get("speed_reference") or {}
        if speed.get("arch") != self.arch or speed.get("space") != self.space or not speed.get("ratio"):
            return None
        return {"latency_ms": float(speed["ratio"]) * self.nominal_ms, "energy_mj": m.energy_mj}

    def describe(self) -> dict[str, Any]:
        return {"arch": self.arch, "space": self.space, "nominal_ms": self.nominal_ms}

    def verdict(self, times_ms: np.ndarray, reference_ms: np.ndarray, block: int = 0) -> dict[str, Any]:
        """What alternate timing (time_paired) says: the median per-round ratio, its 95% CI half-width, the
        reference's median now, and the candidate's latency at the reference's nominal speed (`latency_ms`, the
        verdict's figure)."""
        ratio = np.sort(pair_ratios(times_ms, reference_ms, block or PAIRED_BLOCK))
        r = float(np.median(ratio))
        return {**self.describe(), "ratio": r, "ratio_ci": median_ci_halfwidth(ratio),
                "reference_ms": float(np.median(reference_ms)), "latency_ms": r * self.nominal_ms,
                "slowdown": float(np.median(reference_ms)) / self.nominal_ms}


def time_paired(run: Callable[[], object], reference: SpeedReference, protocol: TimingProtocol,
                sync: Callable[[], None] | None = None, block: int = PAIRED_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """(ms per call of `run`, ms per call of the reference), in pairs of rounds of `block` runs of each, until the
    median of the per-pair ratios (`pair_ratios`) is known to the protocol's precision, or `run`'s runs reach the
    protocol's cap, or its time cap passes. A pair is A B then B A: the block just after a round's bookkeeping read
    3-5% slow here, the same network against itself included, and the pair's two orders cancel that."""
    def once(fn, wait):
        t0 = time.perf_counter()
        fn()
        if wait:
            wait()
        return (time.perf_counter() - t0) * 1e3

    for _ in range(protocol.warmup_runs):
        run()
        reference.run()
    for wait in (sync, reference.sync):
        if wait:
            wait()
    times: list[float] = []
    ref: list[float] = []
    ratios: list[float] = []
    started = time.perf_counter()
    while len(times) < protocol.max_runs:
        mine = [once(run, sync) for _ in range(block)]
        theirs = [once(reference.run, reference.sync) for _ in range(2 * block)]
        mine += [once(run, sync) for _ in range(block)]
        times += mine
        ref += theirs
        ratios.append(float(pair_ratios(mine, theirs, block)[0]))
        if len(times) >= protocol.min_runs and len(ratios) >= 3:
            r = np.sort(ratios)
            if median_ci_halfwidth(r) <= protocol.target_rel_ci * float(np.median(r)):
                break
        if time.perf_counter() - started > protocol.max_seconds:
            break
    return np.asarray(times), np.asarray(ref)


def time_sessions(runners: Sequence[tuple[Callable[[], object], Callable[[], None] | None]],
                  reference: SpeedReference, protocol: TimingProtocol, block: int = PAIRED_BLOCK
                  ) -> tuple[np.ndarray, np.ndarray]:
    """`time_paired` over fresh sessions of one candidate (`runners`: (run, sync) of each), the protocol's run and
    time caps shared between them and its precision target widened by sqrt(sessions), so that the pooled pairs
    (each session's, one after another) cost about what one session's did, and their median ratio averages over
    where each session's buffers landed, which one session's CI cannot see."""
    n = len(runners)
    if n == 1:
        return time_paired(runners[0][0], reference, protocol, runners[0][1], block)
    share = replace(protocol, min_runs=math.ceil(protocol.min_runs / n), max_runs=math.ceil(protocol.max_runs / n),
                    max_seconds=protocol.max_seconds / n, target_rel_ci=protocol.target_rel_ci * math.sqrt(n))
    parts = [time_paired(run, reference, share, sync, block) for run, sync in runners]
    return np.concatenate([t for t, _ in parts]), np.concatenate([r for _, r in parts])


def pair_ratios(times_ms: np.ndarray, reference_ms: np.ndarray, block: int = PAIRED_BLOCK) -> np.ndarray:
    """Per pair of rounds (time_paired's A B, B A), the geometric mean of its two ratios of block medians."""
    pairs = len(times_ms) // (2 * block)
    mine = np.median(np.asarray(times_ms)[:2 * pairs * block].reshape(2 * pairs, block), axis=1)
    theirs = np.median(np.asarray(reference_ms)[:2 * pairs * block].reshape(2 * pairs, block), axis=1)
    return np.sqrt((mine / theirs).reshape(pairs, 2).prod(axis=1))


def verdict_figures(m) -> dict[str, float | None]:
    """{"latency_ms", "energy_mj"} of a Measurement as a verdict reads them: the latency at the speed reference's
    nominal speed when it was timed against one, else its median."""
    speed = (m.extra or {}).get("speed_reference") or {}
    return {"latency_ms": speed.get("latency_ms", m.latency_ms), "energy_mj": m.energy_mj}


def reference_near(space, backend, store, input_shape: Sequence[int], batch: int, latency_ms: float,
                   protocol: TimingProtocol | None = None) -> SpeedReference | None:
    """A SpeedReference for verdicts against a `latency_ms` budget: of the architectures stored for this device,
    backend, space, shape and batch, the one measured nearest the budget (a network of the candidates' own size:
    its ratio to them is then near 1, where alternate timing is most exact). None when the backend times alone
    (`times_against_reference` false) or nothing is stored."""
    if store is None or not getattr(backend, "times_against_reference", False):
        return None
    shape = tuple(input_shape)
    rows = [m for m in store.measurements(device=backend.device_id(), backend=backend.name, space=space.spec,
                                          input_shape=shape, batch=batch) if m.learnt("latency_ms") > 0]
    # not a cell with idle operations: ONNX drops them, and predictions calibrated on it would be off for the rest
    rows = [m for m in rows if not _idle(space, m.arch)] or rows
    if not rows:
        return None
    nearest = min(rows, key=lambda m: abs(np.log(m.learnt("latency_ms") / latency_ms)))
    return SpeedReference.make(space, space.from_string(nearest.arch), backend, shape, batch, protocol)


def _idle(space, arch: str) -> bool:
    try:
        return space.has_idle_operations(space.from_string(arch))
    except HwnasError:  # a row of another form: not excluded here
        return False


#: architectures sampled to choose a profiling reference among (by FLOPs: analytic for NAS-Bench-201, nothing built)
REFERENCE_CANDIDATES = 100


def profiling_reference(space, backend, input_shape: Sequence[int], batch: int = 1, percentile: float = 50.0,
                        seed: int = 0) -> SpeedReference | None:
    """The network a profiling run times each architecture alternately with: of REFERENCE_CANDIDATES sampled
    (`seed`), the one at the `percentile` of FLOPs (`hwnas run`: its budget percentile), a network the size of those
    that matter (alternate timing is most exact between networks of one size); its nominal under the quick protocol.
    None where the backend times alone (`times_against_reference` false)."""
    if not getattr(backend, "times_against_reference", False):
        return None
    shape = tuple(input_shape)
    rng = np.random.default_rng([seed, 201])
    archs = [space.sample(rng) for _ in range(REFERENCE_CANDIDATES)]
    archs = [a for a in archs if not space.has_idle_operations(a)] or archs  # as in reference_near
    flops = np.array([space.flops(a, shape) for a in archs])
    at = int(np.argsort(flops, kind="stable")[min(len(archs) - 1, int(len(archs) * percentile / 100))])
    return SpeedReference.make(space, archs[at], backend, shape, batch, TimingProtocol.quick())
