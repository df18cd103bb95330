"""Benchmark: how fast the CLI answers and how long `hwnas run` takes, on a quiet machine and with a core kept busy.

Part 1, `--help`: wall seconds of `hwnas --help` and of every command's `--help` (best of 3, fresh processes; goal:
under 0.5 s each, no torch imported).

Part 2, `hwnas run` on its defaults, in a fresh folder each time (a subprocess, as a user runs it): wall seconds,
seconds per stage, budget used by the exported model as measured, within budget or not, test accuracy. --runs
quiet runs (seeds 0, 1, ...), then one run of seed 0 while another process keeps one core busy (goal: at most 2.5x
the quiet run's seconds; the training threads leave a core free for exactly this).

    python bench/run_speed.py                  # 3 quiet runs and 1 busy run, JSON to bench/results/run_speed.json
    python bench/run_speed.py --runs 1 --skip-busy
    python bench/run_speed.py --quick          # --help only
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELP_COMMANDS = ("", "devices", "profile", "agent", "measurements", "fit", "predict", "search", "export", "validate",
                 "run")
HELP_GOAL_S, BUSY_GOAL = 0.5, 2.5


def hwnas(*args: str) -> list[str]:
    """The installed `hwnas` entry point beside this Python (what a user types), else `python -m hwnas.cli`."""
    script = Path(sys.executable).with_name("hwnas")
    return [str(script), *args] if script.is_file() else [sys.executable, "-c", "from hwnas.cli import main; main()",
                                                         *args]


def help_part(console) -> dict:
    from hwnas.commands.common import table

    out = {}
    for name in HELP_COMMANDS:
        args = [name, "--help"] if name else ["--help"]
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run(hwnas(*args), check=True, capture_output=True)
            best = min(best, time.perf_counter() - started)
        out[name or "(none)"] = best
    console.print(table(f"hwnas --help and every command's --help (best of 3 wall seconds; goal < {HELP_GOAL_S} s)",
                        ["command", "seconds", "goal met"],
                        [[f"hwnas {k} --help".replace("(none) ", ""), f"{v:.2f}", v < HELP_GOAL_S]
                         for k, v in out.items()]))
    return {"seconds": out, "slowest": max(out.values()), "goal_s": HELP_GOAL_S}


def _spin(stop_at: float) -> None:
    """Keep one core busy until `stop_at` (time.time())."""
    x = 0
    while time.time() < stop_at:
        x += 1


def one_run(seed: int, busy: bool, keep: Path | None) -> dict:
    """`hwnas run --seed SEED --json` in a fresh folder (one core kept busy by another process when `busy`)."""
    folder = Path(tempfile.mkdtemp(prefix="hwnas-run-speed-"))
    spinner = None
    if busy:
        spinner = multiprocessing.Process(target=_spin, args=(time.time() + 3600,), daemon=True)
        spinner.start()
    try:
        started = time.perf_counter()
        done = subprocess.run(hwnas("run", "--seed", str(seed), "--json"), cwd=folder, capture_output=True, text=True,
                              check=False)
        seconds = time.perf_counter() - started
    finally:
        if spinner is not None:
            spinner.terminate()
            spinner.join()
    if done.returncode != 0:
        return {"seed": seed, "busy": busy, "seconds": seconds, "error": done.stderr.strip().splitlines()[-1:]}
    report = json.loads(done.stdout)
    if keep is not None:
        shutil.copytree(folder, keep / f"seed{seed}{'-busy' if busy else ''}", dirs_exist_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    budget = report["budgets"]["latency_ms"]
    measured = (report.get("measured_exported") or {}).get("latency_ms")
    return {"seed": seed, "busy": busy, "seconds": round(seconds, 1), "stage_seconds": report["stage_seconds"],
            "budget_ms": budget, "measured_ms": measured, "budget_used": measured / budget if measured else None,
            "measured_in_search_ms": (report.get("measured_in_search") or {}).get("latency_ms"),
            "within_budget": report["within_budget"], "test_accuracy": report["test_accuracy"],
            "predictor": report["predictor_used"], "arch": report["arch"]}


def run_part(args, console) -> dict:
    from hwnas.commands.common import table

    keep = Path(args.keep) if args.keep else None
    runs = []
    for seed in range(args.runs):
        console.print(f"hwnas run --seed {seed} (quiet) ...")
        runs.append(one_run(seed, False, keep))
    if not args.skip_busy:
        console.print("hwnas run --seed 0 with one core kept busy ...")
        runs.append(one_run(0, True, keep))
    console.print(table("hwnas run on its defaults, fresh folder each (wall seconds; goals: < 90 s quiet, >= 95% of "
                        "the budget used, within budget, busy core <= 2.5x)",
                        ["seed", "core busy", "seconds", "profile / fit / search / retrain+export", "budget used",
                         "within budget", "test accuracy"],
                        [[r["seed"], r["busy"], r["seconds"], _stages(r), _share(r), r.get("within_budget", "-"),
                          "-" if "test_accuracy" not in r else f"{r['test_accuracy']:.2%}"] for r in runs]))
    quiet = [r for r in runs if not r["busy"] and "error" not in r]
    busy = [r for r in runs if r["busy"] and "error" not in r]
    summary = {
        "quiet_seconds_mean": _mean([r["seconds"] for r in quiet]),
        "quiet_budget_used_mean": _mean([r["budget_used"] for r in quiet]),
        "quiet_within_budget": sum(bool(r["within_budget"]) for r in quiet), "quiet_runs": len(quiet),
        "busy_slowdown": busy[0]["seconds"] / quiet[0]["seconds"] if busy and quiet and quiet[0]["seed"] == 0 else None,
    }
    console.print(f"quiet: {summary['quiet_runs']} runs, mean {summary['quiet_seconds_mean']} s, budget used "
                  f"{_pct(summary['quiet_budget_used_mean'])}, within budget {summary['quiet_within_budget']}; "
                  f"one core busy: {_ratio(summary['busy_slowdown'])} the quiet run (goal <= {BUSY_GOAL}x)")
    return {"runs": runs, "summary": summary}


def _stages(r: dict) -> str:
    s = r.get("stage_seconds")
    return "error: " + " ".join(r.get("error", [])) if not s else " / ".join(
        str(s.get(k, "-")) for k in ("profile", "fit", "search", "retrain+export"))


def _share(r: dict) -> str:
    return _pct(r.get("budget_used"))


def _pct(v) -> str:
    return "-" if v is None else f"{v:.1%}"


def _ratio(v) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 3) if values else None


def main() -> None:
    from rich.console import Console

    console = Console(stderr=True, width=170)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="quiet `hwnas run`s (seeds 0..runs-1)")
    p.add_argument("--skip-busy", action="store_true", help="no run with a core kept busy")
    p.add_argument("--quick", action="store_true", help="--help timings only")
    p.add_argument("--keep", default=None, help="copy each run's folder here")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "run_speed.json"))
    args = p.parse_args()
    out: dict = {"command": "python bench/run_speed.py " + " ".join(sys.argv[1:]), "cores": os.cpu_count(),
                 "load_average_before": os.getloadavg()}
    out["help"] = help_part(console)
    if not args.quick:
        out["run"] = run_part(args, console)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str))
    console.print(f"saved {path}")


if __name__ == "__main__":
    main()
