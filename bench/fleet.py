"""Fleet throughput: architectures measured per minute with 1, 2 and 4 loopback agents (one thread each), for the
thread and Ray executors; the overhead of a remote measurement against a local one (same protocol, same cells);
and whether remote and local medians agree (median |delta|).

    nice -n 10 .venv/bin/python bench/fleet.py --quick     # 12 cells of nb201:C=8,N=1 at 1x8x8
    nice -n 10 .venv/bin/python bench/fleet.py             # 40 cells of nb201:C=16,N=1 at 3x16x16

Loopback agents share the CPUs of this machine with the client: the scaling is bounded by the cores (and by the
client's own ONNX export, which runs one at a time), not only by the agents. Writes bench/results/fleet.json.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import httpx
import torch

from hwnas.profilers import TimingProtocol, get_backend, profile_fleet, profile_space, sample_archs
from hwnas.profilers.fleet import FleetAgent
from hwnas.spaces import get_space
from hwnas.store import Store

RESULTS = Path(__file__).parent / "results" / "fleet.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def agents(n: int, token_file: Path, logs: Path):
    procs, urls = [], []
    for i in range(n):
        port = free_port()
        with open(logs / f"agent{i}.log", "w") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "hwnas.cli", "agent", "serve", "--token-file",
                                           str(token_file), "--port", str(port), "--threads", "1"],
                                          stdout=log, stderr=subprocess.STDOUT))
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url in urls:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                        break
                time.sleep(0.3)
        yield urls
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def run_fleet(space, urls, token_file, cells, shape, protocol, executor, folder) -> tuple[float, list]:
    store = Store(folder / f"{executor}-{len(urls)}.db")
    fleet = [FleetAgent(f"a{i}", u, "loopback", str(token_file)) for i, u in enumerate(urls)]
    started = time.perf_counter()
    summary = profile_fleet(space, fleet, store, len(cells), archs=cells, input_shape=shape, protocol=protocol,
                            executor=executor)
    seconds = time.perf_counter() - started
    return seconds, store.measurements(device=summary.profile.device, backend="remote")


def start_ray(notes: list[str]) -> float | None:
    """Seconds to start a local Ray (num_cpus=2), or None (with a note) when it does not start: Ray gives its
    raylet 30 s, which a machine this loaded may not meet."""
    import ray

    for attempt in range(2):
        started = time.perf_counter()
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            return time.perf_counter() - started
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception on a start-up timeout
            ray.shutdown()
            notes.append(f"ray start attempt {attempt + 1} failed: {str(e).splitlines()[0][:160]}")
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--executors", default="threads,ray")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec, shape, n_cells = ("nb201:C=8,N=1", (1, 8, 8), 12) if args.quick else ("nb201:C=16,N=1", (3, 16, 16), 40)
    space, protocol = get_space(spec), TimingProtocol.quick()
    cells = sample_archs(space, n_cells, seed=0, input_shape=shape)
    folder = Path(tempfile.mkdtemp(prefix="hwnas-bench-fleet-"))
    token_file = folder / "token"
    token_file.write_text(secrets.token_urlsafe(32))
    token_file.chmod(0o600)

    executors = [e for e in args.executors.split(",") if e]
    rows, remote_ms, notes, ray_start_s = [], {}, [], None
    with agents(4, token_file, folder) as urls:
        for executor in executors:
            if executor == "ray":
                ray_start_s = start_ray(notes)
                if ray_start_s is None:
                    continue
            for n in (1, 2, 4):
                seconds, measured = run_fleet(space, urls[:n], token_file, cells, shape, protocol, executor, folder)
                rows.append({"executor": executor, "agents": n, "seconds": round(seconds, 2),
                             "archs_per_min": round(60 * n_cells / seconds, 1)})
                if executor == "threads" and n == 1:
                    remote_ms = {m.arch: m.latency_ms for m in measured}
                    remote_1_s = seconds
                print(rows[-1], flush=True)
        # local last, in a warm process, with the agents idle: the same cells and protocol as the 1-agent run
        local = get_backend("onnxruntime-cpu", threads=1)
        local_store = Store(folder / "local.db")
        started = time.perf_counter()
        profile_space(space, local, local_store, n_cells, archs=cells, input_shape=shape, protocol=protocol)
        local_s = time.perf_counter() - started
        local_ms = {m.arch: m.latency_ms for m in local_store.measurements()}
    for r in rows:
        one = next(x for x in rows if x["executor"] == r["executor"] and x["agents"] == 1)
        r["scaling_vs_1"] = round(r["archs_per_min"] / one["archs_per_min"], 2)
    delta = np.array([abs(remote_ms[a] - local_ms[a]) for a in local_ms])
    rel = np.array([abs(remote_ms[a] - local_ms[a]) / local_ms[a] for a in local_ms])
    out = {"space": spec, "input_shape": list(shape), "cells": n_cells, "protocol": "quick", "rows": rows,
           "local_seconds": round(local_s, 2), "local_archs_per_min": round(60 * n_cells / local_s, 1),
           "overhead_ms_per_measurement": round(1e3 * (remote_1_s - local_s) / n_cells, 1),
           "median_abs_delta_ms": round(float(np.median(delta)), 4), "median_rel_delta": round(float(np.median(rel)), 3),
           "local_median_ms": round(float(np.median(list(local_ms.values()))), 4),
           "ray_start_seconds": None if ray_start_s is None else round(ray_start_s, 1), "notes": notes,
           "cpus": os.cpu_count(), "note": "loopback agents share this machine's CPUs with the client and others"}
    print(f"\n{'executor':9} {'agents':>6} {'seconds':>8} {'archs/min':>10} {'scaling':>8}")
    for r in rows:
        print(f"{r['executor']:9} {r['agents']:>6} {r['seconds']:>8} {r['archs_per_min']:>10} {r['scaling_vs_1']:>8}")
    print(f"local (onnxruntime-cpu, 1 thread): {out['local_seconds']} s, {out['local_archs_per_min']} archs/min; "
          f"overhead per remote measurement: {out['overhead_ms_per_measurement']} ms")
    print(f"median |remote - local| latency: {out['median_abs_delta_ms']} ms ({100 * out['median_rel_delta']:.1f}% of "
          f"the median {out['local_median_ms']} ms)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
