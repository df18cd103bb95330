"""Shared training loop of the neural predictors (MLP, GCN): MSE on standardised targets, optionally plus
ReNAS's pairwise ranking loss, which rewards getting the order of two architectures right."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn


def pairwise_ranking_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Logistic loss over all pairs in the batch whose targets differ: softplus(-sign(t_i - t_j) (p_i - p_j))."""
    dt = target[:, None] - target[None, :]
    dp = pred[:, None] - pred[None, :]
    mask = dt.abs() > 1e-8
    if not mask.any():
        return pred.sum() * 0.0
    return nn.functional.softplus(-torch.sign(dt[mask]) * dp[mask]).mean()


def train_regressor(module: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor,
                    target: torch.Tensor, epochs: int, lr: float, weight_decay: float, seed: int,
                    rank_weight: float = 0.0, batch: int = 256) -> None:
    """Fit `forward(X[idx]) ~ target[idx]` with AdamW and a cosine schedule (deterministic for a seed)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs))
    batch = max(1, min(batch, len(X)))
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), batch):
            idx = order[i:i + batch]
            pred = forward(X[idx])
            loss = nn.functional.mse_loss(pred, target[idx])
            if rank_weight > 0:
                loss = loss + rank_weight * pairwise_ranking_loss(pred, target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    module.eval()


def standardise(t: np.ndarray) -> tuple[float, float]:
    mean = float(np.mean(t))
    std = float(np.std(t)) if len(t) > 1 and float(np.std(t)) > 0 else 1.0
    return mean, std
