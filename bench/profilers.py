"""Profiler sanity that depends on timing, so it is a benchmark rather than a test (tests assert no speed).

    python bench/profilers.py

Measures a tiny nb201 cell (all `none` but one skip) and a larger all-conv network with ONNX Runtime on one
thread, and checks that the larger one takes clearly longer (it has about 1000x the FLOPs). Exits 1 if not.
"""
from __future__ import annotations

import sys

import torch

from hwnas.profilers import TimingProtocol, get_backend, measure_arch
from hwnas.spaces import get_space

SMALL = ("nb201:C=4,N=1", "|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")
LARGE = ("nb201:C=32,N=2", ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                            "nor_conv_3x3~2|"))
PROTOCOL = TimingProtocol(warmup_runs=2, min_runs=5, max_runs=20, target_rel_ci=0.2, max_seconds=0.2)
MIN_RATIO = 3.0


def measure(spec: str, arch: str) -> float:
    space = get_space(spec)
    m = measure_arch(space, space.from_string(arch), get_backend("onnxruntime-cpu", threads=1), (3, 32, 32),
                     protocol=PROTOCOL)
    return m.latency_ms


def main() -> int:
    torch.set_num_threads(1)
    small, large = measure(*SMALL), measure(*LARGE)
    ratio = large / small
    print(f"small {small:.3f} ms, large {large:.3f} ms: {ratio:.1f}x (expected > {MIN_RATIO}x)")
    return 0 if ratio > MIN_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
