"""GPU timing shared by the CUDA backends (torch-cuda, tensorrt): CUDA events around each launch after warm-up
and synchronisation, and energy per inference from an NVML meter over back-to-back runs.

Importing this module never needs CUDA; torch is imported when a function runs."""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from hwnas.profilers.energy import EnergyMeter, EnergyReading
from hwnas.profilers.timing import TimingProtocol

#: seconds of back-to-back runs behind one energy figure
ENERGY_SECONDS = 0.5


def time_runs_cuda(enqueue: Callable[[], object], stream, protocol: TimingProtocol) -> np.ndarray:
    """Milliseconds per inference from CUDA events recorded on `stream` around each launch: GPU time, without
    the Python launch overhead that a host clock would add. Warm-up runs first, then a synchronisation; the same
    stopping rule as the host timer."""
    import torch

    for _ in range(protocol.warmup_runs):
        enqueue()
    stream.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < protocol.max_runs:
        start.record(stream)
        enqueue()
        end.record(stream)
        end.synchronize()
        times.append(start.elapsed_time(end))
        if protocol.enough(times, started):
            break
    return np.asarray(times)


def energy_per_run(meter: EnergyMeter, enqueue: Callable[[], object], stream, min_seconds: float = ENERGY_SECONDS,
                   subtract_idle: bool = True) -> tuple[float, EnergyReading, int]:
    """(mJ per inference, the span's reading, runs) from back-to-back runs lasting at least `min_seconds`: NVML
    refreshes its counter every few tens of milliseconds, and the timing loop's per-run synchronisation leaves
    the GPU idle between runs, so neither the timed runs nor a short span give a usable difference. The idle
    power measured just before is subtracted unless `subtract_idle` is False (the reading says which)."""
    stream.synchronize()

    def work() -> int:
        started, runs = time.perf_counter(), 0
        while time.perf_counter() - started < min_seconds:
            for _ in range(20):
                enqueue()
            runs += 20
            stream.synchronize()  # keep the queue short so that the span measured is the span run
        return runs

    runs, reading = meter.measure(work, subtract_idle)
    return reading.energy_mj / runs, reading, runs
