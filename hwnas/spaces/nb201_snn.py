"""`nb201-snn`: the NAS-Bench-201 cell space converted to a spiking network (LIF neurons over T time steps).

Same cells, strings and indices as `nb201` (published tables join by either); every ReLU of the ReLU-Conv-BN
operations, the reduction blocks and the head becomes a LIF neuron layer (snnTorch `Leaky`), so every
convolution inside a cell reads spikes. The input image is presented at each of T steps (direct encoding) and
the logits are averaged over the steps. The supernet is converted the same way and trains with the surrogate
gradient, so differentiable strategies (darts, gumbel, ...) search this space as they search nb201.

Settings: those of nb201 plus `T` (time steps, default 4) and `beta` (membrane decay, default 0.5), e.g.
`nb201-snn:C=8,N=1,T=2` for CPU-sized runs."""
from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import nn

from hwnas.errors import HwnasError, quote
from hwnas.spaces.base import Arch, bounded_int
from hwnas.spaces.nb201 import NB201Space
from hwnas.spaces.registry import register_space
from hwnas.spaces.spiking import TimeLoop, relu_to_lif


class SpikingSupernet(TimeLoop):
    """The converted supernet over T steps; `forward(x, weights, active=None)` as NB201Supernet's."""

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.net.parameters())


@register_space("nb201-snn")
class NB201SpikingSpace(NB201Space):
    name = "nb201-snn"
    defaults: ClassVar[dict] = {**NB201Space.defaults, "T": 4, "beta": 0.5}
    bounds: ClassVar[dict[str, tuple[int, int]]] = {**NB201Space.bounds, "T": (1, 64)}

    def __init__(self, **params):
        beta = params.get("beta", self.defaults["beta"])
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < float(beta) <= 1:
            raise HwnasError(f"nb201-snn setting beta={quote(beta, 40)} is not accepted; accepted: a number in (0, 1]")
        super().__init__(**params)
        self.params["T"] = bounded_int("nb201-snn", "T", self.params["T"], *self.bounds["T"])
        self.params["beta"] = float(beta)

    def build(self, arch: Arch, input_shape: Sequence[int] | None = None) -> nn.Module:
        return TimeLoop(relu_to_lif(super().build(arch, input_shape), self.params["beta"]), self.params["T"])

    def supernet(self, input_shape: Sequence[int] | None = None) -> nn.Module:
        return SpikingSupernet(relu_to_lif(super().supernet(input_shape), self.params["beta"]), self.params["T"])

    def memory_estimate(self, arch: Arch | None, input_shape: Sequence[int] | None = None, batch: int = 1,
                        training: bool | None = None) -> float:
        """nb201's estimate, times T when training (backpropagation through time keeps every step's activations),
        doubled for inference (membrane potentials beside the activations)."""
        base = super().memory_estimate(arch, input_shape, batch, training)
        training = arch is None if training is None else training
        return base * (self.params["T"] if training else 2)
