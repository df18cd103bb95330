"""Retraining a chosen architecture from scratch (train + val splits) and reporting its test accuracy."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.reporting import Reporter, reporter_or_null
from hwnas.threads import training_layout, training_threads_context


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / max(1, len(y))


def train_arch(space, arch, dataset, epochs: int = 30, seed: int = 0, batch_size: int = 64, lr: float = 0.05,
               weight_decay: float = 5e-4, reporter: Reporter | None = None) -> tuple[nn.Module, float]:
    """Build `arch` for the dataset's input shape, train it from scratch on train + val with SGD (momentum,
    cosine schedule) and return (model in eval mode, test accuracy in [0, 1]). About five epoch lines go to
    `reporter` (default: silent). Trains on `hwnas.threads.training_threads()` threads."""
    with training_threads_context():
        return _train_arch(space, arch, dataset, epochs, seed, batch_size, lr, weight_decay, reporter)


def _train_arch(space, arch, dataset, epochs, seed, batch_size, lr, weight_decay, reporter) -> tuple[nn.Module, float]:
    report = reporter_or_null(reporter)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    space.check_fits(dataset.input_shape, batch_size, arch, training=True)  # before anything is built
    model = training_layout(space.build(arch, dataset.input_shape))
    x = torch.cat([dataset.x_train, dataset.x_val])
    y = torch.cat([dataset.y_train, dataset.y_val])
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    steps_per_epoch = max(1, len(y) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=g)
        total = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            total += float(loss.detach())
        if epoch + 1 == epochs or (epoch + 1) % max(1, epochs // 5) == 0:
            report.message(f"retrain: epoch {epoch + 1:>3}/{epochs}  loss {total / steps_per_epoch:.3f}")
    accuracy = evaluate(model, dataset.x_test, dataset.y_test)
    model.to(memory_format=torch.contiguous_format)  # the exporters and other callers expect the usual layout
    model.eval()
    return model, accuracy
