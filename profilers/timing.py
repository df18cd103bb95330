"""The timing protocol: warm up, then time runs until the median is known to a target precision or a cap is hit."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from hwnas.choices import PROTOCOL_NAMES

#: a measurement above this share of a budget is timed again before its verdict counts
RETIME_ABOVE = 0.95
#: sessions such a verdict is decided on (the fastest one)
RETIME_SESSIONS = 3


@dataclass(frozen=True)
class TimingProtocol:
    warmup_runs: int = 10
    min_runs: int = 20
    max_runs: int = 200
    #: stop once the 95% confidence interval of the median is narrower than this fraction of the median, each side
    target_rel_ci: float = 0.02
    #: stop timing after this many seconds even if the target was not reached (n then says how many runs were made)
    max_seconds: float = 2.0
    #: fresh sessions (the same file loaded again) a verdict against a speed reference spreads its runs over: each
    #: session's buffers land elsewhere, which moved thorough verdicts by 3-10% between sessions while each reported
    #: a 2.5-6% CI (`python bench/speed_reference.py`, part 2)
    sessions: int = 1

    def enough(self, times_ms: list[float], started: float) -> bool:
        """The stopping rule shared by every timer: after min_runs, stop once the median's CI is within the target
        (checked every 5 runs) or max_seconds have passed since `started` (a time.perf_counter() value)."""
        n = len(times_ms)
        if n < self.min_runs:
            return False
        if n % 5 == 0:
            s = np.sort(times_ms)
            if median_ci_halfwidth(s) <= self.target_rel_ci * float(np.median(s)):
                return True
        return time.perf_counter() - started > self.max_seconds

    def satisfied_by(self, recorded: dict | None) -> bool:
        """Whether a measurement taken under `recorded` (a protocol's fields, as stored in a measurement's
        extra["protocol"]) is at least as careful as this protocol: as many warm-up and timed runs, a target
        precision at least as tight, as many sessions."""
        if not isinstance(recorded, dict):
            return False
        try:
            return (recorded["warmup_runs"] >= self.warmup_runs and recorded["min_runs"] >= self.min_runs
                    and recorded["target_rel_ci"] <= self.target_rel_ci
                    and recorded.get("sessions", 1) >= self.sessions)
        except (KeyError, TypeError):
            return False

    @classmethod
    def quick(cls) -> TimingProtocol:
        """For profiling many architectures and for tests: fewer runs, looser target."""
        return cls(warmup_runs=5, min_runs=10, max_runs=60, target_rel_ci=0.05, max_seconds=0.5)

    @classmethod
    def named(cls, name: str) -> TimingProtocol:
        """A protocol by the name the CLI accepts (`PROTOCOL_NAMES`)."""
        from hwnas.errors import HwnasError

        if name not in PROTOCOL_NAMES:
            raise HwnasError(f"unknown timing protocol {name!r}; accepted: {', '.join(PROTOCOL_NAMES)}")
        return {"quick": cls.quick, "default": cls, "thorough": cls.thorough}[name]()

    @classmethod
    def thorough(cls) -> TimingProtocol:
        """For validating a deployed model against its budget."""
        return cls(warmup_runs=20, min_runs=50, max_runs=1000, target_rel_ci=0.01, max_seconds=10.0, sessions=3)


def median_ci_halfwidth(sorted_ms: np.ndarray) -> float:
    """Half-width of a distribution-free 95% CI of the median (order statistics n/2 +- 1.96 sqrt(n)/2)."""
    n = len(sorted_ms)
    half = 1.96 * np.sqrt(n) / 2
    lo, hi = int(max(0, np.floor(n / 2 - half))), int(min(n - 1, np.ceil(n / 2 + half)))
    return float(sorted_ms[hi] - sorted_ms[lo]) / 2


def time_runs(run: Callable[[], object], protocol: TimingProtocol, sync: Callable[[], None] | None = None) -> np.ndarray:
    """Milliseconds per call of `run` (after `sync`, for asynchronous devices)."""
    for _ in range(protocol.warmup_runs):
        run()
    if sync:
        sync()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < protocol.max_runs:
        t0 = time.perf_counter()
        run()
        if sync:
            sync()
        times.append((time.perf_counter() - t0) * 1e3)
        if protocol.enough(times, started):
            break
    return np.asarray(times)


def summarise(times_ms: np.ndarray) -> dict[str, float]:
    return {
        "latency_ms": float(np.median(times_ms)),
        "latency_p10_ms": float(np.percentile(times_ms, 10)),
        "latency_p90_ms": float(np.percentile(times_ms, 90)),
        "latency_std_ms": float(np.std(times_ms)),
        "runs": len(times_ms),
    }


M = TypeVar("M")


def settle_near_budget(measure: Callable[[], M], budgets: dict[str, float] | None, near: float = RETIME_ABOVE,
                       sessions: int = RETIME_SESSIONS) -> tuple[M, int]:
    """(measurement, sessions timed): `measure()` once; when a budgeted figure of it is above `near` of its
    budget (close to it, or over), `sessions` in all and the fastest one by the tightest budget's share.

    On a shared machine a whole session can run 20-80% slow: another tenant's burst lasts from a tenth of a second
    to seconds, longer than any protocol's runs, and only ever adds time. One slow session would call a model over
    budget that is not (or send a search to a cheaper one); the fastest of three, spread over a second or more, is
    the model's own latency. Each session is a median already, so a lucky single run cannot make it fast, and only
    close calls pay for the repeats."""
    first = measure()
    if not budgets or _tightest_share(first, budgets) <= near:
        return first, 1
    taken = [first] + [measure() for _ in range(sessions - 1)]
    return min(taken, key=lambda m: _tightest_share(m, budgets)), len(taken)


def _tightest_share(measurement: Any, budgets: dict[str, float]) -> float:
    """The largest figure/budget ratio of a Measurement (or a dict of figures); 0 when none is measured."""
    def figure(target):
        return measurement.get(target) if isinstance(measurement, dict) else getattr(measurement, target, None)

    shares = [figure(t) / b for t, b in budgets.items() if figure(t) is not None and b > 0]
    return max(shares, default=0.0)
