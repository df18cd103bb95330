"""Deliberate thread counts: one for training (supernet search, retraining, neural predictors), one for timing;
and the memory layout training runs in.

Timing uses the backend's own `--threads` (default 1; part of the device's identity). Training uses
`training_threads()`: the user's choice when there is one ($HWNAS_TRAIN_THREADS, else $OMP_NUM_THREADS), otherwise
one less than the cores this process may run on (at least 1, at most 8). PyTorch's default of every core
oversubscribes a machine another process is busy on: a DARTS epoch went from 5 s to 180 s on two shared cores.
`training_threads_context()` applies the count for a block and restores PyTorch's previous setting after it.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

#: training never takes more threads than this by default (small networks gain nothing from more)
MOST_TRAINING_THREADS = 8
ENVIRONMENT = ("HWNAS_TRAIN_THREADS", "OMP_NUM_THREADS")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def training_threads() -> tuple[int, str]:
    """(thread count for training, why): the first positive whole number of $HWNAS_TRAIN_THREADS or
    $OMP_NUM_THREADS, else max(1, min(usable cores - 1, MOST_TRAINING_THREADS))."""
    for name in ENVIRONMENT:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value), f"${name}"
    cores = usable_cores()
    return max(1, min(cores - 1, MOST_TRAINING_THREADS)), f"{cores} usable core(s), one left for the rest"


@contextlib.contextmanager
def training_threads_context() -> Iterator[int]:
    """PyTorch on `training_threads()` threads for the block; its previous setting afterwards."""
    import torch

    previous = torch.get_num_threads()
    n, _ = training_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)


def training_layout(model):
    """`model` with its 4-D weights in channels-last order, in place (returned for chaining). PyTorch's CPU
    convolutions and pooling run 1.4-1.7x faster so on the small feature maps searched here (a DARTS step on
    nb201 at 1x8x8: 0.41 s -> 0.26 s); other weights are left as they are. Results are the same up to rounding."""
    import torch

    return model.to(memory_format=torch.channels_last)
