"""Analytic cost of a built network: multiply-accumulates, parameters and memory traffic, by forward hooks.

Two operation counts: `macs` (the "full" convention: convolutions and linear layers without bias, plus BatchNorm,
pooling and global pooling) and `benchmark_flops` (NAS-Bench-201's: Conv2d and Linear only, bias included)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModelProfile:
    macs: float  # multiply-accumulates per inference at batch 1
    params: int
    activation_bytes: float  # bytes read and written by layers (float32), a memory-traffic estimate
    layers: int  # layers that do arithmetic (conv, linear, pooling, normalisation)
    #: NAS-Bench-201's FLOPs: Conv2d and Linear multiply-accumulates with the bias, nothing else
    benchmark_flops: float = 0.0


def profile_model(model: nn.Module, input_shape: Sequence[int]) -> ModelProfile:
    macs = 0.0
    benchmark = 0.0
    traffic = 0.0
    layers = 0

    def hook(module: nn.Module, inputs, output) -> None:
        nonlocal macs, benchmark, traffic, layers
        if not isinstance(output, torch.Tensor):  # e.g. a spiking neuron's (spikes, membrane): no arithmetic counted
            return
        x = inputs[0]
        out_elems = sum(o.numel() for o in output) if isinstance(output, tuple) else output.numel()  # LSTM: (h, c)
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * (module.in_channels // module.groups)
            macs += out_elems * k
            benchmark += out_elems * (k + (module.bias is not None))
        elif isinstance(module, nn.Linear):
            macs += out_elems * module.in_features
            benchmark += out_elems * (module.in_features + (module.bias is not None))
        elif isinstance(module, nn.RNNCellBase):  # LSTM / GRU / RNN cells: every gate's input and hidden maps
            gate_macs = x.shape[0] * (module.weight_ih.numel() + module.weight_hh.numel())
            macs += gate_macs
            benchmark += gate_macs + x.shape[0] * 2 * module.weight_ih.shape[0] * module.bias
        elif isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
            ks = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
            macs += out_elems * ks * ks
        elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d, nn.AdaptiveAvgPool2d)):
            macs += x.numel()
        else:
            return
        layers += 1
        weight_elems = sum(p.numel() for p in module.parameters(recurse=False))
        traffic += 4.0 * (x.numel() + out_elems + weight_elems)

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return ModelProfile(macs=macs, params=params, activation_bytes=traffic, layers=layers, benchmark_flops=benchmark)
