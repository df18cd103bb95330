"""Introspectability as a search objective, and attribution maps for a report.

The surrogate follows the seed's NSGA-II + XAI framing: a network is easier for an expert to read when the
activation patterns of its last layers separate by class. We take the features entering the last linear layer
(the classifier's input) on the test split and compute

    separation = B / (B + W)

where B is the mean pairwise Euclidean distance between the class-mean feature vectors and W the mean distance of
a sample to its own class mean. It is scale-free (multiplying the features by a constant changes nothing), lies
in [0, 1), is 0 when every class has the same mean and tends to 1 when classes collapse onto distinct points.
It is computed after a short training (`short_training_metrics`) or on any model with trained or inherited
weights (`introspectability(model, x, y)`).

`attribution_maps` renders captum Integrated Gradients maps (moo extra) of a few test images for several
architectures side by side (the front's extremes in `hwnas search` reports).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwnas.data import load_dataset
from hwnas.errors import HwnasError
from hwnas.files import atomic_write
from hwnas.search.train import train_arch
from hwnas.spaces import get_space


def class_separation(features: torch.Tensor, labels: torch.Tensor) -> float:
    """B / (B + W) of the module docstring for features (samples x dims) and integer labels; 0.0 with fewer than
    two classes present."""
    f = features.detach().reshape(len(features), -1).double()
    classes = torch.unique(labels)
    if len(classes) < 2:
        return 0.0
    means = torch.stack([f[labels == c].mean(0) for c in classes])
    between = torch.pdist(means).mean()
    within = torch.cat([(f[labels == c] - m).norm(dim=1) for c, m in zip(classes, means)]).mean()
    total = between + within
    return 0.0 if float(total) == 0.0 else float(between / total)


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last nn.Linear (its classifier)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise HwnasError(f"{type(model).__name__} has no linear classifier; introspectability reads its input")
    return linears[-1]


def penultimate_features(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The features entering the last linear layer for inputs `x` (eval mode, no gradients)."""
    captured: list[torch.Tensor] = []
    handle = last_linear(model).register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach()))
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                model(x[i:i + batch_size])
    finally:
        handle.remove()
    return torch.cat(captured)


def introspectability(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Class separation of the last layer's features of `model` on (x, y)."""
    return class_separation(penultimate_features(model, x), y)


@functools.lru_cache(maxsize=4)
def _dataset(name: str, seed: int, limit: int | None):
    return load_dataset(name, seed=seed, limit=limit)


@functools.lru_cache(maxsize=4096)
def short_training_metrics(space: str, arch: str, dataset: str = "digits", epochs: int = 3, limit: int | None = None,
                           seed: int = 0) -> dict[str, float]:
    """Train `arch` (a string of `space`) for `epochs` on `dataset` (train + val) and return its test
    {"accuracy", "introspectability"}; cached per process, so one training serves both objectives."""
    torch.set_num_threads(1)
    data = _dataset(dataset, seed, limit)
    sp = get_space(space, classes=data.num_classes)
    model, accuracy = train_arch(sp, sp.parse(arch), data, epochs=epochs, seed=seed)
    return {"accuracy": float(accuracy), "introspectability": introspectability(model, data.x_test, data.y_test)}


def attribution_maps(space: str, archs: Sequence[tuple[str, str]], out_png: str | Path, dataset: str = "digits",
                     epochs: int = 3, limit: int | None = None, samples: int = 4, seed: int = 0) -> str:
    """Train each (label, arch string) briefly and draw captum Integrated Gradients attributions (summed over
    channels, absolute) for the first `samples` test images, one row per architecture; returns the PNG path."""
    try:
        from captum.attr import IntegratedGradients
    except ImportError:
        raise HwnasError("attribution maps need captum: pip install 'hwnas[moo]'") from None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = _dataset(dataset, seed, limit)
    sp = get_space(space, classes=data.num_classes)
    x, y = data.x_test[:samples], data.y_test[:samples]
    fig, axes = plt.subplots(len(archs) + 1, samples, figsize=(1.8 * samples, 1.9 * (len(archs) + 1)), squeeze=False)
    for j in range(samples):
        axes[0, j].imshow(_image(x[j]), cmap="gray")
        axes[0, j].set_title(f"class {int(y[j])}", fontsize=8)
    for i, (label, arch) in enumerate(archs, start=1):
        model, acc = train_arch(sp, sp.parse(arch), data, epochs=epochs, seed=seed)
        model.eval()
        maps = IntegratedGradients(model).attribute(x.clone().requires_grad_(True), target=y, n_steps=16)
        maps = maps.detach().abs().sum(1).numpy()
        for j in range(samples):
            axes[i, j].imshow(maps[j], cmap="inferno")
        axes[i, 0].set_ylabel(f"{label}\nacc {acc:.2f}", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Integrated Gradients (captum), |attribution| summed over channels", fontsize=8)
    fig.tight_layout()
    with atomic_write(out_png, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return str(out_png)


def _image(x: torch.Tensor) -> np.ndarray:
    a = x.detach().numpy()
    a = a.mean(0) if a.shape[0] != 3 else np.transpose(a, (1, 2, 0))
    return (a - a.min()) / max(1e-9, float(a.max() - a.min()))
