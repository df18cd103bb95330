"""Subnets of a trained elastic supernet (Once-for-All, the `mbv3` space): the subnet's weights taken out of the
checkpoint, BatchNorm statistics recalibrated for that subnet, and optionally a short fine-tuning, so the result
is an ordinary `space.build(arch)` network that `export_bundle` exports and checks like any other."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.data import load_dataset
from hwnas.errors import HwnasError
from hwnas.export.network import calibrate_batchnorm
from hwnas.measurement import random_inputs

#: training samples BatchNorm statistics are recalibrated on
RECALIBRATION_SAMPLES = 512


def subnet_from_supernet(space, arch, checkpoint: str | Path, input_shape: Sequence[int] | None = None,
                         dataset: str | None = None, finetune_epochs: int = 0, seed: int = 0,
                         lr: float = 0.01) -> tuple[nn.Module, dict[str, Any]]:
    """(the subnet `arch` with the checkpoint's weights, what was done): BatchNorm recalibrated on `dataset`'s
    training split (random inputs without one), then `finetune_epochs` of SGD on it (needs `dataset`)."""
    space.require("elastic", "subnet extraction from a supernet checkpoint")
    arch = space.parse(arch)
    supernet, record = space.load_supernet(checkpoint)
    shape = tuple(input_shape or record["input_shape"])
    net = space.extract(supernet, arch, shape)
    if finetune_epochs and not dataset:
        raise HwnasError("fine-tuning a subnet needs a dataset (--dataset)")
    data = load_dataset(dataset, seed=seed) if dataset else None
    if data is not None and tuple(data.input_shape) != shape:
        raise HwnasError(f"the dataset's input shape {data.input_shape} differs from the export's {shape}")
    calib = data.x_train[:RECALIBRATION_SAMPLES] if data is not None else torch.as_tensor(
        random_inputs(64, shape, seed + 1))
    calibrate_batchnorm(net, calib)
    if finetune_epochs:
        finetune(net, data.x_train, data.y_train, finetune_epochs, seed, lr)
    info = {"supernet": str(Path(checkpoint).resolve()), "batchnorm_recalibrated_on": len(calib),
            "finetune_epochs": int(finetune_epochs), "supernet_info": record.get("info", {})}
    return net.eval(), info


def finetune(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int = 0, lr: float = 0.01,
             batch_size: int = 64) -> nn.Module:
    """A few epochs of SGD (cosine schedule) on (x, y); returns the net in eval mode."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=3e-5, nesterov=True)
    steps = max(1, len(y) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(y), generator=g)
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()
