"""PyTorch eager backends: what a model costs before export, on the CPU or a CUDA GPU."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hwnas.profilers.base import Backend, random_input, register_backend


def gpu_hardware() -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {}
    props = torch.cuda.get_device_properties(0)
    return {"gpu": props.name, "gpu_memory_gb": round(props.total_memory / 2**30, 1),
            "compute_capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda}


@register_backend("torch-cpu")
class TorchCPU(Backend):
    libraries = ("torch",)

    def why_unavailable(self) -> str | None:
        return None

    def prepare(self, model: nn.Module, input_shape: Sequence[int], batch: int):
        x = torch.from_numpy(random_input(input_shape, batch))

        def run():
            # Thread count is process-wide in torch: set it for each call, put it back after.
            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                with torch.inference_mode():
                    return model(x)
            finally:
                torch.set_num_threads(previous)

        return run, None


@register_backend("torch-cuda")
class TorchCUDA(Backend):
    kind = "gpu"
    energy_meters = ("nvml",)
    libraries = ("torch",)

    def why_unavailable(self) -> str | None:
        if not torch.cuda.is_available():
            return "torch sees no CUDA GPU" + ("" if torch.version.cuda else " (this torch is a CPU-only build)")
        return None

    def hardware(self) -> dict[str, Any]:
        return {**super().hardware(), **gpu_hardware()}

    def device_name(self) -> str:
        return gpu_hardware().get("gpu", "CUDA GPU")

    def prepare(self, model: nn.Module, input_shape: Sequence[int], batch: int):
        model = model.cuda()
        x = torch.from_numpy(random_input(input_shape, batch)).cuda()

        def run():
            with torch.inference_mode():
                return model(x)

        return run, torch.cuda.synchronize
