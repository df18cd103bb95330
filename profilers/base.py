"""The backend contract (nn-Meter style: one subclass per way of running a model on a device)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from hwnas.errors import HwnasError
from hwnas.measurement import Measurement, random_inputs
from hwnas.profilers.energy import AnalyticalMeter, best_meter
from hwnas.profilers.fingerprint import device_id, host_fingerprint
from hwnas.profilers.speed import SpeedReference, time_sessions
from hwnas.profilers.timing import TimingProtocol, summarise, time_runs
from hwnas.registries import BACKENDS
from hwnas.spaces.analysis import profile_model
from hwnas.versions import library_versions


def register_backend(name: str):
    """Register a Backend subclass under `name`, which also becomes its `name` attribute."""

    def decorator(cls):
        cls.name = name
        return BACKENDS.register(name)(cls)

    return decorator


class Backend(ABC):
    name: str = ""
    #: "cpu" or "gpu": which hardware the device id describes
    kind: str = "cpu"
    #: energy meters to try, in order; the analytical estimate is used when none is readable
    energy_meters: tuple[str, ...] = ("rapl",)
    #: Python distributions whose versions go into every measurement
    libraries: tuple[str, ...] = ()
    #: True when `measure_onnx` times an exported ONNX file as deployed; False for backends that run PyTorch
    #: modules only (validating a bundle on those would time the wrong thing, so it is refused instead).
    runs_onnx: bool = False
    #: True when `measure` (and `measure_onnx`) can time alternately with a SpeedReference prepared on this backend
    #: (a local runner that `prepare` returns); remote and event-timed backends time alone
    times_against_reference: bool = False

    def __init__(self, threads: int = 1, **options: Any):
        if int(threads) < 1:
            raise HwnasError(f"threads={threads} is not accepted; give a positive thread count")
        self.threads = int(threads)
        self.options = options

    # --- what a backend must say about itself -------------------------------------------------------------
    def available(self) -> bool:
        return self.why_unavailable() is None

    @abstractmethod
    def why_unavailable(self) -> str | None:
        """None when the backend works here, else a short reason ("onnxruntime has no CUDA provider")."""

    def hardware(self) -> dict[str, Any]:
        """What determines speed: the host and the thread count (GPU backends add the GPU)."""
        return {**host_fingerprint(), "threads": self.threads}

    def fingerprint(self) -> dict[str, Any]:
        return {**self.hardware(), "backend": self.name, "versions": library_versions(*self.libraries)}

    def device_id(self) -> str:
        return device_id(self.kind, self.hardware())

    def device_name(self) -> str:
        return f"{host_fingerprint()['cpu']} ({self.threads} thread{'s' if self.threads > 1 else ''})"

    # --- measuring -------------------------------------------------------------------------------------------
    @abstractmethod
    def prepare(self, model: nn.Module, input_shape: Sequence[int], batch: int):
        """Return (run, sync): `run()` performs one inference on a fixed input; `sync()` waits for the device
        (None for synchronous backends)."""

    def measure(
        self, model: nn.Module, input_shape: Sequence[int], batch: int = 1, protocol: TimingProtocol | None = None,
        reference: SpeedReference | None = None,
    ) -> Measurement:
        """Time `model`; with a `reference` (hwnas.profilers.speed, backends with `times_against_reference`),
        alternately with it, and `extra["speed_reference"]` holds the latency at the reference's nominal speed."""
        self.require()
        sessions = (protocol or TimingProtocol()).sessions if reference is not None else 1
        (run, sync), *more = self.prepare_sessions(model.eval(), tuple(input_shape), int(batch), sessions)
        return self._time(run, sync, model, input_shape, batch, protocol, reference=reference, more=more)

    def prepare_sessions(self, model: nn.Module, input_shape: Sequence[int], batch: int, sessions: int) -> list:
        """`sessions` (run, sync) pairs of `model`, each a fresh session where the backend has sessions (ONNX
        Runtime overrides this to export once); here, `prepare` that many times."""
        return [self.prepare(model, input_shape, batch) for _ in range(max(1, sessions))]

    def _time(self, run, sync, model, input_shape, batch, protocol, extra=None, reference=None,
              more=()) -> Measurement:
        """Time `run` under `protocol`; the energy meter (the first readable of `energy_meters`) reads over the
        same runs, with the idle power measured just before subtracted (`extra["energy"]` says so). With a
        `reference`, the runs alternate with the reference's (a meter then reads a separate session of `run`
        alone, which the reference's runs would otherwise add to)."""
        protocol = protocol or TimingProtocol()
        extra = {"threads": self.threads, **(extra or {})}
        meter = best_meter(self.energy_meters)
        paired = None
        if reference is not None:  # over `more` sessions too (TimingProtocol.sessions)
            paired = time_sessions([(run, sync), *more], reference, protocol)
            extra["speed_reference"] = {**reference.verdict(*paired), "sessions": 1 + len(more)}
        if meter is None:
            times = paired[0] if paired is not None else time_runs(run, protocol, sync)
            return self._record(times, model, input_shape, batch, protocol, None, extra)
        times, reading = meter.measure(lambda: time_runs(run, protocol, sync))
        extra["energy"] = reading.per_run(len(times))
        return self._record(paired[0] if paired is not None else times, model, input_shape, batch, protocol,
                            (reading.energy_mj / len(times), meter.method), extra)

    def _record(self, times, model, input_shape, batch, protocol, energy=None, extra=None) -> Measurement:
        """A Measurement from timed runs. `energy` is (mJ per inference, method) from a meter; without one the
        analytical estimate from the model's MACs and memory traffic is used, so every device has an energy target."""
        if energy is None and model is not None:
            prof = profile_model(model, input_shape)
            energy = (AnalyticalMeter().estimate_mj(prof.macs, prof.activation_bytes, batch), AnalyticalMeter.method)
        energy_mj, method = energy or (None, None)
        return Measurement(
            arch="", space="", device=self.device_id(), backend=self.name, input_shape=tuple(input_shape),
            batch=int(batch), energy_mj=energy_mj, energy_method=method, versions=library_versions(*self.libraries),
            extra={"protocol": protocol.__dict__, **(extra or {})}, **summarise(times),
        )

    def measure_onnx(self, onnx_path, input_shape: Sequence[int], batch: int = 1,
                     protocol: TimingProtocol | None = None, model: nn.Module | None = None,
                     reference: SpeedReference | None = None) -> Measurement:
        """Time an exported ONNX file as deployed. `model` (the PyTorch original) only feeds the analytical energy
        estimate when no meter is readable. Backends with `runs_onnx = False` refuse with the ones that can."""
        able = [n for n in BACKENDS.names() if BACKENDS.get(n).runs_onnx]
        raise HwnasError(f"backend {self.name!r} runs PyTorch modules, not exported ONNX files; to time an exported "
                         f"file use one of: {', '.join(able)}")

    def require(self) -> None:
        why = self.why_unavailable()
        if why:
            raise HwnasError(f"backend {self.name!r} is not available here: {why}; see `hwnas devices`")


def get_backend(name: str, threads: int = 1, require: bool = True, **options: Any) -> Backend:
    import hwnas.profilers  # noqa: F401  (registers the built-in backends)

    backend = BACKENDS.get(name)(threads=threads, **options)
    if require:
        backend.require()
    return backend


def available_backends() -> list[dict[str, Any]]:
    """Every registered backend with whether it works here and, if not, why."""
    import hwnas.profilers  # noqa: F401

    out = []
    for name in BACKENDS.names():
        backend = BACKENDS.get(name)()
        why = backend.why_unavailable()
        out.append({"backend": name, "available": why is None, "why": why,
                    "device": backend.device_name() if why is None else None,
                    "device_id": backend.device_id() if why is None else None})
    return out


def random_input(input_shape: Sequence[int], batch: int, seed: int = 0) -> np.ndarray:
    """The fixed input a backend times: `batch` seeded samples (hwnas.measurement.random_inputs)."""
    return random_inputs(batch, input_shape, seed)
