"""NVIDIA GPU energy through NVML (`nvidia-ml-py`, imported as pynvml; importing this module never needs it).

Two meters, tried in this order by the GPU backends:
- `nvml` (method `nvml-counter`): the total-energy counter (millijoules since the driver loaded; Volta and newer),
  read before and after the span. The driver refreshes it every few milliseconds, so backends read it over a span
  of many runs (see cuda_timing.energy_per_run).
- `nvml-power` (method `nvml-power`): for GPUs without the counter, power (`nvmlDeviceGetPowerUsage`, mW) sampled
  on a thread every `SAMPLE_SECONDS` and integrated over time (trapezoids). On Ampere and newer that reading is a
  ~1 s moving average, so spans shorter than a few seconds are smeared: prefer the counter where there is one.

Both subtract the idle power measured just before the span by default (`EnergyMeter.measure`) and say so in the
reading, which backends keep in `Measurement.extra["energy"]`. `gpu_state()` gives the clocks, power limit and
temperature recorded in a GPU device's fingerprint."""
from __future__ import annotations

import threading
import time
from typing import Any

from hwnas.profilers.energy import EnergyMeter, register_energy_meter

#: seconds between two power samples of the sampling meter
SAMPLE_SECONDS = 0.005


def _pynvml():
    """pynvml initialised, or (None, why not)."""
    try:
        import pynvml
    except ImportError:
        return None, "pynvml is not installed (pip install nvidia-ml-py, or .[energy])"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return None, f"NVML is not usable ({e}); is an NVIDIA driver loaded?"
    return pynvml, None


def find_handle(pynvml, device: int | None = None):
    """The NVML handle of `device` (an NVML index), default the GPU torch uses (matched by UUID), else index 0."""
    if device is not None:
        return pynvml.nvmlDeviceGetHandleByIndex(int(device))
    try:  # CUDA and NVML may number GPUs differently (CUDA_VISIBLE_DEVICES); the UUID is unambiguous
        import torch

        if torch.cuda.is_available():
            uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
            return pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
    except (AttributeError, RuntimeError, pynvml.NVMLError):
        pass
    return pynvml.nvmlDeviceGetHandleByIndex(0)


def gpu_state(device: int | None = None) -> dict[str, Any]:
    """Driver, clocks (current and maximum, MHz), power limit (W), temperature (C) and power draw of the GPU, or
    {"nvml": why not}. What NVML cannot report on this GPU is left out."""
    pynvml, why = _pynvml()
    if pynvml is None:
        return {"nvml": why}
    h = find_handle(pynvml, device)
    queries = {
        "driver": lambda: pynvml.nvmlSystemGetDriverVersion(),
        "gpu_name": lambda: pynvml.nvmlDeviceGetName(h),
        "sm_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
        "memory_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
        "max_sm_clock_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
        "max_memory_clock_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM),
        "power_limit_w": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1e3,
        "power_draw_w": lambda: pynvml.nvmlDeviceGetPowerUsage(h) / 1e3,
        "temperature_c": lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
        "persistence_mode": lambda: pynvml.nvmlDeviceGetPersistenceMode(h),
    }
    out: dict[str, Any] = {}
    for key, query in queries.items():
        try:
            value = query()
        except pynvml.NVMLError:
            continue
        out[key] = value.decode() if isinstance(value, bytes) else value
    return out


class _NvmlMeter(EnergyMeter):
    def __init__(self, device: int | None = None):
        """`device`: NVML index of the GPU; default the GPU torch uses (matched by UUID), else index 0."""
        self.device = device
        self._handle = None
        self._why: str | None = None
        self._opened = False

    def _open(self) -> None:
        if self._opened:
            return
        self._opened = True
        pynvml, self._why = _pynvml()
        if pynvml is None:
            return
        try:
            handle = find_handle(pynvml, self.device)
            self._probe(pynvml, handle)
        except pynvml.NVMLError_NotSupported:
            self._why = self.not_supported
            return
        except pynvml.NVMLError as e:
            self._why = f"NVML is not usable ({e}); is an NVIDIA driver loaded?"
            return
        self._handle = handle

    not_supported = ""

    def _probe(self, pynvml, handle) -> None:
        raise NotImplementedError

    def available(self) -> bool:
        return self.why_unavailable() is None

    def why_unavailable(self) -> str | None:
        self._open()
        return self._why


@register_energy_meter("nvml")
class NvmlMeter(_NvmlMeter):
    """NVIDIA GPU total-energy counter through NVML (Volta and newer), read around the timed span."""

    method = "nvml-counter"
    not_supported = "this GPU has no NVML energy counter (it needs a Volta or newer GPU); nvml-power samples power"

    def _probe(self, pynvml, handle) -> None:
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)

    def read_mj(self) -> float:
        import pynvml

        self._open()
        if self._handle is None:
            raise RuntimeError(f"NVML energy counter is not available: {self._why}")
        return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))


@register_energy_meter("nvml-power")
class NvmlPowerMeter(_NvmlMeter):
    """NVIDIA GPU power sampled on a thread and integrated over time (for GPUs without the energy counter)."""

    method = "nvml-power"
    not_supported = "this GPU does not report its power draw through NVML"

    def __init__(self, device: int | None = None, interval_s: float = SAMPLE_SECONDS):
        super().__init__(device)
        self.interval_s = float(interval_s)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._total_mj = 0.0
        self._last: tuple[float, float] | None = None  # (time, watts) of the last sample

    def _probe(self, pynvml, handle) -> None:
        pynvml.nvmlDeviceGetPowerUsage(handle)

    def _sample(self) -> None:
        """Add the trapezoid from the last sample to now."""
        import pynvml

        watts, now = pynvml.nvmlDeviceGetPowerUsage(self._handle) / 1e3, time.perf_counter()
        with self._lock:
            if self._last is not None:
                t, w = self._last
                self._total_mj += (w + watts) / 2 * (now - t) * 1e3
            self._last = (now, watts)

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval_s):
            self._sample()

    def start(self) -> None:
        self._open()
        if self._handle is None:
            raise RuntimeError(f"NVML power is not available: {self._why}")
        if self._thread is None:
            self._stopping.clear()
            self._sample()
            self._thread = threading.Thread(target=self._loop, name="nvml-power", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping.set()
            self._thread.join()
            self._thread = None

    def read_mj(self) -> float:
        if self._thread is None:
            self.start()
        self._sample()  # up to now, not to the last tick
        with self._lock:
            return self._total_mj
