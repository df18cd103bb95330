"""Spiking building blocks shared by the spiking spaces: LIF neurons (snnTorch's `Leaky`), a time loop that runs a
network over T steps, spiking conversion of a ReLU network, and a matrix product module the spike counter sees.

snnTorch (extra `spiking`) is imported only when a neuron is built, so `import hwnas` never needs it. Inputs are
directly encoded: the same (static) image is presented at every step, as in Spikformer and AutoST; the output is
the logits averaged over the T steps."""
from __future__ import annotations

import torch
from torch import nn

from hwnas.errors import HwnasError


def snntorch_unavailable() -> str | None:
    """None when snnTorch imports, else why not."""
    try:
        import snntorch  # noqa: F401
    except ImportError as e:
        return f"snntorch is not installed ({e.__class__.__name__}); install the spiking extra: pip install '.[spiking]'"
    return None


class LIF(nn.Module):
    """Leaky integrate-and-fire neurons (snnTorch `Leaky`: membrane decay `beta`, threshold 1, reset by
    subtraction, arctan surrogate gradient so a spiking supernet trains). The membrane is kept across the time
    steps of one forward pass and cleared by `reset()` (TimeLoop calls it before each pass)."""

    def __init__(self, beta: float = 0.5, threshold: float = 1.0):
        super().__init__()
        why = snntorch_unavailable()
        if why:
            raise HwnasError(f"spiking networks need snnTorch: {why}")
        import snntorch as snn
        from snntorch import surrogate

        self.neuron = snn.Leaky(beta=beta, threshold=threshold, spike_grad=surrogate.atan(), init_hidden=False)
        self.mem: torch.Tensor | None = None

    def reset(self) -> None:
        self.mem = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mem is None or self.mem.shape != x.shape:
            self.mem = torch.zeros_like(x)
        spikes, self.mem = self.neuron(x, self.mem)
        return spikes


class SpikeMatMul(nn.Module):
    """`a @ b` as a module, so that the spike counter sees its operands (attention products of spike tensors)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


class TimeLoop(nn.Module):
    """Run `net` for `steps` time steps on the same input and average its outputs; LIF states are cleared first.
    Extra arguments (a supernet's mixing weights) are passed through."""

    def __init__(self, net: nn.Module, steps: int):
        super().__init__()
        self.net, self.steps = net, int(steps)

    def reset(self) -> None:
        for m in self.net.modules():
            if isinstance(m, LIF):
                m.reset()

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        self.reset()
        out = self.net(x, *args, **kwargs)
        for _ in range(self.steps - 1):
            out = out + self.net(x, *args, **kwargs)
        return out / self.steps


def relu_to_lif(net: nn.Module, beta: float = 0.5) -> nn.Module:
    """Spiking conversion in place: every nn.ReLU of `net` becomes a LIF neuron layer; returns `net`."""
    for name, child in list(net.named_children()):
        if isinstance(child, nn.ReLU):
            setattr(net, name, LIF(beta))
        else:
            relu_to_lif(child, beta)
    return net
