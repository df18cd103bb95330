"""The "ray" fleet executor: one Ray actor per agent; the driver hands the next architecture to whichever actor
finishes first (work-stealing) and stores every result itself. Ray (the `distributed` extra) is imported when the
executor runs: `ray.init(address=...)` joins an existing cluster, no address starts a local instance (stopped
again at the end). An actor that dies, or whose agent stops answering, is dropped and its architecture goes back to
the queue."""
from __future__ import annotations

import collections
import os
from collections.abc import Callable
from typing import Any

from hwnas.errors import HwnasError
from hwnas.profilers.agent_protocol import measurement_from_json
from hwnas.profilers.fleet import Job, Worker, _all_lost, measure_one, register_executor
from hwnas.profilers.remote import AgentUnreachable, RemoteBackend
from hwnas.spaces import get_space


class FleetActor:
    """Runs in a Ray worker process: builds and exports each architecture and has its agent measure it. Answers
    ("ok", measurement dict), ("lost", why) when the agent stops answering, or ("error", why)."""

    def __init__(self, url: str, token: str, threads: int, retries: int, backoff_s: float, job: Job):
        import torch

        torch.set_num_threads(1)
        self.backend = RemoteBackend(threads, agent=url, token=token, retries=retries, backoff_s=backoff_s)
        self.space, self.job = get_space(job.space_spec), job

    def measure(self, arch: str) -> tuple[str, Any]:
        try:
            return "ok", measure_one(self.backend, self.space, arch, self.job).to_dict()
        except AgentUnreachable as e:
            return "lost", str(e)
        except HwnasError as e:
            return "error", str(e)


def _ray():
    try:
        import ray
    except ImportError as e:
        raise HwnasError(f"--executor ray needs Ray ({e}); pip install 'hwnas[distributed]'") from None
    return ray


@register_executor("ray")
def run_ray(workers: list[Worker], todo: list[str], job: Job, on_result: Callable, on_lost: Callable,
            address: str | None = None, num_cpus: int | None = None) -> None:
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        local = {} if address else {"num_cpus": num_cpus or max(1, min(os.cpu_count() or 1, len(workers)))}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}}, **local)
    # an actor waits on its agent, not on a CPU of the Ray node: it reserves none, so a 2-CPU node serves 4 agents
    actor_class = ray.remote(num_cpus=0, max_restarts=0)(FleetActor)
    actors = {w.name: actor_class.remote(w.agent.url, w.token, w.backend.threads, w.backend.retries,
                                         w.backend.backoff_s, job) for w in workers}
    try:
        _drive(ray, {w.name: w for w in workers}, actors, todo, on_result, on_lost)
    finally:
        for actor in actors.values():
            ray.kill(actor)
        if started_here:
            ray.shutdown()


def _drive(ray, workers: dict[str, Worker], actors: dict, todo: list[str], on_result, on_lost) -> None:
    waiting, remaining = collections.deque(todo), set(todo)
    idle, in_flight = list(workers), {}
    while remaining:
        while idle and waiting:
            name, arch = idle.pop(0), waiting.popleft()
            in_flight[actors[name].measure.remote(arch)] = (name, arch)
        if not in_flight:
            raise _all_lost(len(remaining))
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
        for ref in ready:
            name, arch = in_flight.pop(ref)
            try:
                kind, payload = ray.get(ref)
            except ray.exceptions.RayActorError as e:
                kind, payload = "lost", f"its Ray actor died ({str(e).splitlines()[0][:120]})"
            if kind == "ok":
                remaining.discard(arch)
                on_result(workers[name], arch, measurement_from_json(payload))
                idle.append(name)
            elif kind == "lost":
                waiting.appendleft(arch)
                on_lost(workers[name], payload)
            else:
                raise HwnasError(payload)


__all__ = ["FleetActor", "run_ray"]
