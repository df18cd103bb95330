"""The `spiking` backend: energy of a spiking network from its counted spikes and synaptic operations, as the
spiking-NAS literature estimates it (Spikformer, Zhou et al. ICLR 2023; AutoST, Wang et al. 2023), and its
wall-clock latency on the CPU.

At measurement the network (as built, untrained: "at initialisation") runs once on a real batch (`COUNT_SAMPLES`
images of scikit-learn's digits, resized to the input shape) with forward hooks that count, per layer (BatchNorm
layers normalise with the batch's statistics: an untrained network's running statistics are the defaults, mean 0
and variance 1, which would leave its deeper layers nearly silent, unlike a trained one):
- spikes of every LIF layer, which give its firing rate (spikes / neuron / time step);
- the operations of every linear layer, convolution and spike matrix product: when one operand is spikes (only
  0 and 1), each multiply-accumulate becomes an accumulate done only where a spike arrives, so it contributes
  MACs x the spike operand's firing rate synaptic operations (SOPs); otherwise (the first layer, reading the
  image, or a layer reading averaged or summed spikes) its MACs count in full.

Energy per inference = E_MAC x MACs + E_AC x SOPs with E_MAC = 4.6 pJ and E_AC = 0.9 pJ (32-bit float, 45 nm:
M. Horowitz, ISSCC 2014; hwnas.profilers.energy.PJ_PER_MAC / PJ_PER_AC), stored with method `spike-ops`.
Neuron updates, BatchNorm (folded into the preceding layer at inference) and memory traffic are not counted, as in
those papers. Firing rates, MACs and SOPs go into `Measurement.extra`. Latency is timed like torch-cpu."""
from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.data import load_dataset
from hwnas.measurement import Measurement
from hwnas.profilers.base import register_backend
from hwnas.profilers.energy import PJ_PER_AC, PJ_PER_MAC, EnergyMeter, register_energy_meter
from hwnas.profilers.timing import TimingProtocol, time_runs
from hwnas.profilers.torch_backend import TorchCPU
from hwnas.spaces.spiking import LIF, SpikeMatMul, snntorch_unavailable

#: images in the batch the spikes are counted on
COUNT_SAMPLES = 16
METHOD = "spike-ops"


@dataclass
class SpikeCounts:
    """Operations of one inference (per sample) and the firing rate of every LIF layer."""

    macs: float = 0.0  # multiply-accumulates on real-valued inputs (E_MAC each)
    sops: float = 0.0  # synaptic operations: accumulates triggered by spikes (E_AC each)
    dense_macs: float = 0.0  # what the spiking layers would cost as MACs (for the sparsity figure)
    firing_rates: dict[str, float] = field(default_factory=dict)
    samples: int = 0

    @property
    def energy_mj(self) -> float:
        return (self.macs * PJ_PER_MAC + self.sops * PJ_PER_AC) * 1e-9

    def mean_firing_rate(self) -> float:
        return float(np.mean(list(self.firing_rates.values()))) if self.firing_rates else 0.0

    def to_extra(self) -> dict[str, Any]:
        return {"macs_non_spiking": self.macs, "synaptic_ops": self.sops, "spiking_layer_macs": self.dense_macs,
                "mean_firing_rate": round(self.mean_firing_rate(), 5), "count_samples": self.samples,
                "firing_rates": {k: round(v, 5) for k, v in self.firing_rates.items()},
                "pj_per_mac": PJ_PER_MAC, "pj_per_ac": PJ_PER_AC}


def _is_spikes(t: torch.Tensor) -> bool:
    return bool(torch.all((t == 0) | (t == 1)))


def _rate(t: torch.Tensor) -> float:
    return float(torch.count_nonzero(t)) / max(1, t.numel())


def _layer_macs(module: nn.Module, inputs, output: torch.Tensor) -> float:
    if isinstance(module, nn.Conv2d):
        return output.numel() * module.kernel_size[0] * module.kernel_size[1] * (module.in_channels // module.groups)
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return float(output.numel() * inputs[0].shape[-1])  # SpikeMatMul: each output sums over the shared dimension


def count_spike_ops(model: nn.Module, x: torch.Tensor) -> SpikeCounts:
    """Run `model` once on the batch `x` and count MACs, synaptic operations and firing rates (per sample)."""
    counts = SpikeCounts(samples=len(x))
    spikes: dict[str, list[float]] = {}

    def on_layer(module, inputs, output):
        macs = _layer_macs(module, inputs, output)
        spiking = [t for t in inputs if isinstance(t, torch.Tensor) and _is_spikes(t)]
        if spiking:  # the first spike operand gates the accumulates
            counts.sops += macs * _rate(spiking[0])
            counts.dense_macs += macs
        else:
            counts.macs += macs

    def on_lif(name):
        def hook(module, inputs, output):
            s = spikes.setdefault(name, [0.0, 0.0])
            s[0] += float(output.sum())
            s[1] += output.numel()
        return hook

    model = copy.deepcopy(model).eval()  # the caller's model keeps its BatchNorm statistics
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()  # normalise with the batch's statistics: see the module docstring
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, SpikeMatMul)):
            handles.append(m.register_forward_hook(on_layer))
        elif isinstance(m, LIF):
            handles.append(m.register_forward_hook(on_lif(name)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    n = max(1, len(x))
    counts.macs, counts.sops, counts.dense_macs = counts.macs / n, counts.sops / n, counts.dense_macs / n
    counts.firing_rates = {k: s / max(1.0, total) for k, (s, total) in spikes.items()}
    return counts


@functools.lru_cache(maxsize=8)
def real_batch(input_shape: tuple[int, ...], samples: int = COUNT_SAMPLES, dataset: str = "digits") -> torch.Tensor:
    """`samples` real images (the dataset's first test images, standardised) resized to `input_shape`: bilinear
    to the height and width, the channels averaged or repeated to the count."""
    data = load_dataset(dataset, seed=0)
    x = data.x_test[:samples].float()
    c, h, w = input_shape
    if x.shape[-2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    if x.shape[1] != c:
        x = x.mean(1, keepdim=True).repeat(1, c, 1, 1)
    return x.contiguous()


@register_energy_meter("spike-ops")
class SpikeOpsMeter(EnergyMeter):
    """Spiking networks: E_MAC 4.6 pJ x MACs + E_AC 0.9 pJ x counted synaptic operations (45 nm; backend spiking)."""

    method = METHOD
    counter = False

    def available(self) -> bool:
        return self.why_unavailable() is None

    def why_unavailable(self) -> str | None:
        return snntorch_unavailable()

    def read_mj(self) -> float:
        raise NotImplementedError("spike-ops is an estimate from counted operations, not a counter: use count_spike_ops")


@register_backend("spiking")
class SpikingCPU(TorchCPU):
    """Spiking networks on the CPU: energy from counted spikes and synaptic operations (method spike-ops), latency
    timed as torch-cpu. A network without spiking neurons is counted too (all its operations are MACs)."""

    libraries = ("torch", "snntorch")
    energy_meters = ()
    times_against_reference = False  # its measure counts spikes; latency is judged alone

    def why_unavailable(self) -> str | None:
        return snntorch_unavailable()

    def measure(self, model: nn.Module, input_shape: Sequence[int], batch: int = 1,
                protocol: TimingProtocol | None = None) -> Measurement:
        self.require()
        protocol = protocol or TimingProtocol()
        shape = tuple(int(s) for s in input_shape)
        model = model.eval()
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            counts = count_spike_ops(model, real_batch(shape, COUNT_SAMPLES, self.options.get("dataset", "digits")))
        finally:
            torch.set_num_threads(previous)
        run, _ = self.prepare(model, shape, int(batch))
        times = time_runs(run, protocol)
        return self._record(times, model, shape, batch, protocol, (int(batch) * counts.energy_mj, METHOD),
                            {"threads": self.threads, **counts.to_extra()})
