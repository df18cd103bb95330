"""Profiling on a fleet: every agent of one device type measures architectures from one shared queue into one store.

fleet.toml lists the agents:

    [[agent]]
    name = "pi-1"                       # optional; default: the address
    url = "http://10.0.0.11:8765"
    device_type = "rpi4"
    token_file = "tokens/pi-1.token"    # relative paths are relative to the fleet file

The architectures to measure are chosen as `profile_space` chooses them (sampler, seed, what is stored), then
handed out by an executor: "threads" (a thread per agent, each taking the next architecture from a shared queue
when it is free) or "ray" (one Ray actor per agent, the driver giving the next architecture to whichever actor
finishes; fleet_ray.py). Only the driver writes the store. An agent that stops answering (after its retries) is
dropped and the architecture it held goes back to the queue for the others; the store's unique key keeps one row
per architecture, so nothing is lost or stored twice. When every agent is gone the run stops with one line, and
rerunning the command measures only what is missing.
"""
from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tomllib
import torch

from hwnas.errors import HwnasError, quote
from hwnas.measurement import Measurement, check_measurement
from hwnas.profilers.agent_protocol import read_token
from hwnas.profilers.profile import ProfileSummary
from hwnas.profilers.remote import AgentUnreachable, RemoteBackend, check_agent_url
from hwnas.profilers.samplers import SAMPLERS
from hwnas.profilers.timing import TimingProtocol
from hwnas.registries import FLEET_EXECUTORS as EXECUTORS
from hwnas.reporting import Reporter, reporter_or_null
from hwnas.spaces import Arch, SearchSpace, get_space
from hwnas.store import Store, iter_unique

#: name -> function(workers, todo, job, on_result, on_lost, **options): hands `todo` out to the workers
register_executor = EXECUTORS.register
#: building a model seeds torch's global generator: one build at a time keeps the weights of an arch reproducible
_BUILD_LOCK = threading.Lock()


@dataclass(frozen=True)
class FleetAgent:
    name: str
    url: str
    device_type: str
    token_file: str


def load_fleet(path: str | os.PathLike) -> list[FleetAgent]:
    """The agents a fleet file lists; anything malformed is one line naming the file and the entry."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except OSError as e:
        raise HwnasError(f"cannot read the fleet file {quote(str(path))} ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise HwnasError(f"the fleet file {quote(str(path))} is not TOML ({e})") from None
    entries = data.get("agent")
    if not isinstance(entries, list) or not entries:
        raise HwnasError(f"the fleet file {quote(str(path))} lists no agents; accepted: [[agent]] tables with url, "
                         "device_type and token_file")
    agents = []
    for i, entry in enumerate(entries, 1):
        missing = [k for k in ("url", "device_type", "token_file") if not isinstance(entry.get(k), str) or not entry[k]]
        if missing:
            raise HwnasError(f"{quote(str(path))}: agent {i} lacks {', '.join(missing)} (text); each [[agent]] needs "
                             "url, device_type and token_file")
        token_file = Path(entry["token_file"]).expanduser()
        token_file = token_file if token_file.is_absolute() else p.parent / token_file
        url = check_agent_url(entry["url"])
        agents.append(FleetAgent(str(entry.get("name") or url), url, entry["device_type"], str(token_file)))
    names = [a.name for a in agents]
    if len(set(names)) != len(names):
        raise HwnasError(f"{quote(str(path))} names an agent twice ({', '.join(sorted({n for n in names if names.count(n) > 1}))})")
    return agents


def select_agents(agents: Sequence[FleetAgent], device_type: str | None) -> list[FleetAgent]:
    types = sorted({a.device_type for a in agents})
    if device_type is None:
        if len(types) > 1:
            raise HwnasError(f"the fleet holds several device types ({', '.join(types)}); choose one with --device-type")
        return list(agents)
    chosen = [a for a in agents if a.device_type == device_type]
    if not chosen:
        raise HwnasError(f"no agent of device type {quote(device_type)} in the fleet; it holds: {', '.join(types)}")
    return chosen


@dataclass
class Worker:
    """One agent as the executors see it: its address, token, connected backend and tally."""

    agent: FleetAgent
    backend: RemoteBackend
    token: str
    measured: int = 0
    state: str = "ok"

    @property
    def name(self) -> str:
        return self.agent.name


@dataclass(frozen=True)
class Job:
    """What every worker measures with: the space, input shape, batch and protocol."""

    space_spec: str
    input_shape: tuple[int, ...]
    batch: int
    protocol: TimingProtocol


def measure_one(backend: RemoteBackend, space: SearchSpace, arch: str, job: Job) -> Measurement:
    """Build `arch` (seeded as profile_space does), measure it on the agent, return the checked Measurement."""
    with _BUILD_LOCK:
        torch.manual_seed(0)
        model = space.build(space.from_string(arch), job.input_shape)
    m = backend.measure(model, job.input_shape, job.batch, job.protocol, label=arch)
    m.arch, m.space = arch, space.spec
    return check_measurement(m)


@dataclass
class FleetSummary:
    profile: ProfileSummary
    agents: list[dict[str, Any]]
    executor: str
    device_type: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "profile": self.profile.to_dict()}


def profile_fleet(
    space: SearchSpace,
    agents: Sequence[FleetAgent],
    store: Store,
    samples: int,
    sampler: str = "uniform",
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
    batch: int = 1,
    protocol: TimingProtocol | None = None,
    archs: Sequence[Arch] | None = None,
    reporter: Reporter | None = None,
    executor: str = "threads",
    threads: int = 1,
    retries: int = 3,
    backoff_s: float = 0.5,
    **executor_options: Any,
) -> FleetSummary:
    """`profile_space` over a fleet: the same choice of architectures (sampler, seed, what is stored; or `archs`),
    measured by every agent at once into `store` under the agents' common device id with backend "remote".
    Agents unreachable at the start are left out with a warning; a wrong token or an agent that is too old stops
    the run; agents that disagree on the device id are refused (they are not one device type). `executor_options`
    go to the executor (ray: `address`, `num_cpus`)."""
    if not archs and sampler not in SAMPLERS:
        raise HwnasError(f"unknown sampler {quote(sampler)}; accepted: {', '.join(SAMPLERS.names())}")
    run_executor = EXECUTORS.get(executor)
    shape = space.check_input_shape(input_shape or space.default_input_shape)
    store.require_writable()
    report = reporter_or_null(reporter)
    workers = _connect(agents, threads, retries, backoff_s, report)
    device = workers[0].backend
    key = {"device": device.device_id(), "backend": device.name, "space": space.spec, "input_shape": shape,
           "batch": batch}
    job = Job(space.spec, shape, int(batch), protocol or TimingProtocol.quick())
    started = time.perf_counter()
    stored = store.archs(**key)
    wanted = [space.to_string(a) for a in archs] if archs else None
    if wanted:
        samples = len(stored | set(wanted))
    already = min(len(stored), samples)
    tally = _Tally(store, device, workers)
    with report.progress(f"profiling {space.name} on {len(workers)} agent(s)", total=samples, completed=already) as task:
        tally.task, tally.report = task, report
        for todo in _rounds(space, sampler, seed, shape, batch, samples, stored, wanted, lambda: tally.measured(key)):
            run_executor([w for w in workers if w.state == "ok"], todo, job, tally.on_result, tally.on_lost,
                         **executor_options)
            stored |= set(todo)
    lat = [m.latency_ms for m in store.measurements(**key)]
    profile = ProfileSummary(
        device=device.device_id(), device_name=device.device_name(), backend=device.name, space=space.spec,
        input_shape=shape, batch=batch, requested=samples, measured_now=tally.inserted, already_stored=already,
        total_in_store=len(lat), seconds=round(time.perf_counter() - started, 2),
        latency_ms={"min": float(np.min(lat)), "median": float(np.median(lat)), "max": float(np.max(lat))} if lat else {})
    return FleetSummary(profile, [{"name": w.name, "url": w.agent.url, "measured": w.measured, "state": w.state}
                                  for w in workers], executor, agents[0].device_type)


def _connect(agents, threads, retries, backoff_s, report) -> list[Worker]:
    workers = []
    for a in agents:
        token = read_token(a.token_file)
        backend = RemoteBackend(threads, agent=a.url, token=token, retries=retries, backoff_s=backoff_s)
        try:
            backend.require()
        except AgentUnreachable as e:
            report.warning(f"agent {a.name} left out: {e}")
            continue
        except HwnasError as e:
            raise HwnasError(f"agent {a.name}: {e}") from None
        workers.append(Worker(a, backend, token))
    if not workers:
        raise AgentUnreachable(f"none of the {len(agents)} agent(s) of the fleet answers; start `hwnas agent serve` "
                               "on the devices, or check the addresses in the fleet file")
    ids = {w.name: w.backend.device_id() for w in workers}
    if len(set(ids.values())) > 1:
        raise HwnasError(f"the agents are not one device type: their device ids differ "
                         f"({', '.join(f'{n}: {d}' for n, d in ids.items())}); give them one device_type each")
    return workers


def _rounds(space, sampler_name, seed, shape, batch, samples, stored, wanted, measured):
    """The architectures to measure, a round at a time, as profile_space chooses them: the named list, or what the
    sampler offers (round 0 with the bare seed) that is not stored, until `samples` are stored."""
    if wanted is not None:
        todo = [s for s in iter_unique(wanted) if s not in stored]
        for s in todo:
            space.check_fits(shape, batch, space.from_string(s))
        if todo:
            yield todo
        return
    sampler = SAMPLERS.get(sampler_name)
    for round_no in itertools.count():
        need = samples - len(stored)
        if need <= 0:
            return
        rng = np.random.default_rng(seed if round_no == 0 else [seed, round_no])
        offered = [space.to_string(a) for a in sampler(space, samples, rng, shape, measured())]
        todo = [s for s in iter_unique(offered) if s not in stored][:need]
        if not todo:
            return
        for s in todo:  # the batch of inputs too, before anything is built or sent
            space.check_fits(shape, batch, space.from_string(s))
        yield todo


class _Tally:
    """The driver's side of a run: stores each result (one writer), counts per agent, shows progress."""

    def __init__(self, store: Store, device: RemoteBackend, workers: list[Worker]):
        self.store, self.device, self.workers = store, device, workers
        self.inserted, self.task, self.report = 0, None, Reporter()
        self._device_added = False

    def measured(self, key) -> dict:
        space = get_space(key["space"])
        return {space.from_string(m.arch): m.latency_ms for m in self.store.measurements(**key)}

    def on_result(self, worker: Worker, arch: str, m: Measurement) -> None:
        if not self._device_added:
            self.store.add_device(self.device.device_id(), self.device.device_name(), self.device.fingerprint())
            self._device_added = True
        self.inserted += int(self.store.add(m))  # False when the key is stored already: never two rows
        worker.measured += 1
        if self.task is not None:
            per_agent = "  ".join(f"{w.name}: {w.measured}{'' if w.state == 'ok' else ' (lost)'}" for w in self.workers)
            self.task.advance(1, f"{per_agent}  | {m.latency_ms:.3f} ms {arch[:40]}")

    def on_lost(self, worker: Worker, reason: str) -> None:
        worker.state = f"lost: {reason}"
        self.report.warning(f"agent {worker.name} lost after {worker.measured} measurement(s) ({reason}); its "
                            "unfinished architectures go to the other agents")


def _all_lost(remaining: int) -> HwnasError:
    return AgentUnreachable(f"every agent of the fleet was lost; {remaining} architecture(s) were not measured; "
                            "rerun the same command when agents answer again: it measures only what is missing")


@register_executor("threads")
def run_threads(workers: list[Worker], todo: list[str], job: Job, on_result: Callable, on_lost: Callable) -> None:
    """A thread per agent, each taking the next architecture from one queue when it is free (work-stealing)."""
    work: queue.Queue[str] = queue.Queue()
    for arch in todo:
        work.put(arch)
    done: queue.Queue = queue.Queue()
    stop = threading.Event()
    space = get_space(job.space_spec)
    for w in workers:
        threading.Thread(target=_serve, args=(w, work, done, stop, space, job), name=f"hwnas-fleet-{w.name}",
                         daemon=True).start()
    try:
        _collect(done, set(todo), {w.name for w in workers}, on_result, on_lost)
    finally:
        stop.set()  # a worker still measuring finishes that one and stops; its answer is not needed


def _serve(worker: Worker, work: queue.Queue, done: queue.Queue, stop: threading.Event, space, job: Job) -> None:
    """One agent's thread: measure what the queue holds until told to stop or the agent is lost."""
    while not stop.is_set():
        try:
            arch = work.get(timeout=0.05)
        except queue.Empty:
            continue
        try:
            done.put(("ok", worker, arch, measure_one(worker.backend, space, arch, job)))
        except AgentUnreachable as e:
            work.put(arch)  # back to the queue for the others
            done.put(("lost", worker, arch, str(e)))
            return
        except BaseException as e:  # noqa: BLE001 - handed to the driver thread, which raises it
            done.put(("error", worker, arch, e))
            return


def _collect(done: queue.Queue, remaining: set[str], live: set[str], on_result, on_lost) -> None:
    """The driver: take each answer as it comes until every architecture is measured or no agent is left."""
    while remaining and live:
        try:
            kind, worker, arch, payload = done.get(timeout=0.2)
        except queue.Empty:
            continue
        if kind == "ok":
            remaining.discard(arch)
            on_result(worker, arch, payload)
        elif kind == "lost":
            live.discard(worker.name)
            on_lost(worker, payload)
        else:
            raise payload
    if remaining:
        raise _all_lost(len(remaining))


__all__ = ["EXECUTORS", "FleetAgent", "FleetSummary", "Job", "Worker", "load_fleet", "measure_one", "profile_fleet",
           "register_executor", "select_agents"]
