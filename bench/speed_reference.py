"""Benchmark: how much of the machine's speed drift a speed reference cancels (hwnas.profilers.speed).

Four networks of `hwnas run`'s space, from the cheapest kind of cell to the costliest, are timed for --seconds in
rounds: each network alone (a session of --runs runs, one network after another), then each network alternately
with the reference (the second network; rounds of --block runs of each, --runs runs in all). Reported per network: the coefficient of
variation (std / mean) over sessions of the median alone, and of the median per-round ratio to the reference.
A verdict judged on the ratio moves as much as the second column; one judged on the median alone, as much as the
first. Also the mean ratio of the paired medians to the medians alone (1.0: alternating adds no bias).

Then (--fresh-sessions N, 0 skips) each network is prepared afresh N times (built, exported, loaded into a new ONNX
Runtime session, the same weights) and each session judged once with the thorough protocol against the reference:
the coefficient of variation of those verdicts' ratios against the 95% CI half-width each verdict reports. A CV
above the CI means the session itself (where its buffers landed) moves the figure, which one session cannot see.

    python bench/speed_reference.py                      # 60 s, JSON to bench/results/speed_reference.json
    python bench/speed_reference.py --seconds 20
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from hwnas.commands.common import table
from hwnas.profilers import TimingProtocol, get_backend
from hwnas.profilers.speed import PAIRED_BLOCK, SpeedReference, time_paired
from hwnas.profilers.timing import time_runs
from hwnas.search.api import DEFAULT_SPACE
from hwnas.spaces import get_space

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = ("|skip_connect~0|+|none~0|skip_connect~1|+|skip_connect~0|none~1|none~2|",
            "|none~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_1x1~1|skip_connect~2|",
            "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|skip_connect~2|",
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")


def main() -> None:
    from rich.console import Console

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--runs", type=int, default=60, help="runs of each network per session (alone or alternating)")
    p.add_argument("--block", type=int, default=PAIRED_BLOCK, help="runs of each network per alternating round")
    p.add_argument("--space", default=DEFAULT_SPACE)
    p.add_argument("--input-shape", default="1,8,8", help="one sample (hwnas run's digits: 1,8,8)")
    p.add_argument("--fresh-sessions", type=int, default=6, help="fresh sessions per network for part 2 (0: skip)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "speed_reference.json"))
    args = p.parse_args()
    console = Console()
    torch.set_num_threads(1)  # the timed sessions run one thread (backend threads=1); nothing else competes
    shape = tuple(int(v) for v in args.input_shape.split(","))
    space = get_space(args.space)
    backend = get_backend("onnxruntime-cpu", threads=1)
    fixed = TimingProtocol(warmup_runs=5, min_runs=args.runs, max_runs=args.runs, target_rel_ci=0.0)
    runners = []
    for arch in NETWORKS:
        torch.manual_seed(0)
        runners.append(backend.prepare(space.build(space.from_string(arch), shape).eval(), shape, 1))
    reference = SpeedReference(NETWORKS[1], space.spec, 1.0, *runners[1])
    alone, ratios, paired = [], [], []
    end = time.perf_counter() + args.seconds
    with console.status("timing sessions alone and alternately"):
        while time.perf_counter() < end:
            alone.append([float(np.median(time_runs(run, fixed, sync))) for run, sync in runners])
            pairs = [time_paired(run, reference, fixed, sync, args.block) for run, sync in runners]
            ratios.append([reference.verdict(t, r, args.block)["ratio"] for t, r in pairs])
            paired.append([float(np.median(t)) for t, _ in pairs])
    alone, ratios, paired = np.array(alone), np.array(ratios), np.array(paired)

    def cv(x):
        return float(np.std(x) / np.mean(x))

    rows = [{"network": arch, "median_alone_ms": float(np.median(alone[:, k])),
             "cv_alone": cv(alone[:, k]), "cv_ratio": cv(ratios[:, k]) if k != 1 else 0.0,
             "slowest_over_fastest_alone": float(alone[:, k].max() / alone[:, k].min()),
             "paired_over_alone": float(np.mean(paired[:, k] / alone[:, k]))} for k, arch in enumerate(NETWORKS)]
    console.print(table(f"Session-to-session variation over {len(alone)} sessions of {args.runs} runs "
                        f"({args.seconds:.0f} s, {backend.device_name()}, {space.spec}, input {shape}); reference: "
                        f"network 2, alternating in blocks of {args.block}",
                        ["architecture", "median alone (ms)", "CV alone", "CV of ratio to reference",
                         "slowest / fastest alone", "paired / alone"],
                        [[r["network"], f"{r['median_alone_ms']:.4f}", f"{r['cv_alone']:.1%}",
                          "(reference)" if k == 1 else f"{r['cv_ratio']:.1%}", f"{r['slowest_over_fastest_alone']:.2f}",
                          f"{r['paired_over_alone']:.3f}"] for k, r in enumerate(rows)]))
    out = {"command": "python bench/speed_reference.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                                    vars(args).items() if k != "out"),
           "device": backend.device_name(), "space": space.spec, "input_shape": shape, "sessions": len(alone),
           "runs_per_session": args.runs, "networks": rows}
    if args.fresh_sessions:
        out["fresh_sessions"] = fresh_sessions(console, space, backend, shape, reference, args.fresh_sessions)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    console.print(f"JSON: {args.out}")


def fresh_sessions(console, space, backend, shape, reference: SpeedReference, sessions: int) -> list[dict]:
    """Part 2: each network prepared afresh `sessions` times and judged once per session (thorough protocol)."""
    thorough = TimingProtocol.thorough()
    rows = []
    with console.status("judging fresh sessions against the reference"):
        for k, arch in enumerate(NETWORKS):
            if k == 1:
                continue  # the reference itself
            ratios, cis = [], []
            for _ in range(sessions):
                torch.manual_seed(0)  # the same weights: only the session differs
                run, sync = backend.prepare(space.build(space.from_string(arch), shape).eval(), shape, 1)
                verdict = reference.verdict(*time_paired(run, reference, thorough, sync))
                ratios.append(verdict["ratio"])
                cis.append(verdict["ratio_ci"] / verdict["ratio"])
            ratios = np.array(ratios)
            rows.append({"network": arch, "ratios": ratios.tolist(), "cv_between_sessions": float(ratios.std()
                                                                                                 / ratios.mean()),
                         "mean_relative_ci": float(np.mean(cis)), "max_over_min": float(ratios.max() / ratios.min())})
    console.print(table(f"Fresh sessions, each judged once (thorough) against the reference ({sessions} per network)",
                        ["architecture", "CV between sessions", "mean 95% CI of one verdict", "largest / smallest"],
                        [[r["network"], f"{r['cv_between_sessions']:.1%}", f"{r['mean_relative_ci']:.1%}",
                          f"{r['max_over_min']:.3f}"] for r in rows]))
    return rows


if __name__ == "__main__":
    main()
