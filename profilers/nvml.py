"""NVIDIA GPU energy from NVML's total-energy counter (millijoules since the driver loaded; Volta and newer).

The counter is refreshed by the driver every few milliseconds, so energy per inference is only meaningful over
a timed span of many runs, which is how backends use it (difference of two reads / runs). pynvml comes from
the `nvidia-ml-py` package; importing this module never needs it."""
from __future__ import annotations

from hwnas.profilers.energy import EnergyMeter, register_energy_meter


@register_energy_meter("nvml")
class NvmlMeter(EnergyMeter):
    method = "nvml-counter"

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
        try:
            import pynvml
        except ImportError:
            self._why = "pynvml is not installed (pip install nvidia-ml-py)"
            return
        try:
            pynvml.nvmlInit()
            handle = self._find_handle(pynvml)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except pynvml.NVMLError_NotSupported:
            self._why = "this GPU has no NVML energy counter (it needs a Volta or newer GPU)"
            return
        except pynvml.NVMLError as e:
            self._why = f"NVML is not usable ({e}); is an NVIDIA driver loaded?"
            return
        self._handle = handle

    def _find_handle(self, pynvml):
        if self.device is not None:
            return pynvml.nvmlDeviceGetHandleByIndex(int(self.device))
        try:  # CUDA and NVML may number GPUs differently (CUDA_VISIBLE_DEVICES); the UUID is unambiguous
            import torch

            if torch.cuda.is_available():
                uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
                return pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        except (AttributeError, RuntimeError, pynvml.NVMLError):
            pass
        return pynvml.nvmlDeviceGetHandleByIndex(0)

    def available(self) -> bool:
        return self.why_unavailable() is None

    def why_unavailable(self) -> str | None:
        self._open()
        return self._why

    def read_mj(self) -> float:
        import pynvml

        self._open()
        if self._handle is None:
            raise RuntimeError(f"NVML energy counter is not available: {self._why}")
        return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
