"""ReNAS (Xu et al., "ReNAS: Relativistic Evaluation of Neural Architecture Search", CVPR 2021): an accuracy
predictor trained only to order architectures, with a pairwise ranking loss, from a few evaluated ones.

It reads an architecture encoding, optionally followed by training-free proxy scores (hwnas.search.zero_cost):
`fit(X, y)` with X = [encoding | proxies]. Prediction accepts the same width, or the encoding alone (the proxy
columns are then filled with their training means, so the file works wherever an encoding is all there is, e.g.
`hwnas predict`). The ranking score is mapped to the target's units by a least-squares line fitted on the training
data, so predictions read as accuracies while their order is the ranker's.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hwnas.predictors.base import Predictor, register_predictor
from hwnas.predictors.mlp import relu_mlp
from hwnas.predictors.training import pairwise_ranking_loss


class RankNet(nn.Module):
    def __init__(self, in_dim: int, hidden: int, layers: int):
        super().__init__()
        self.net = relu_mlp(in_dim, hidden, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


@register_predictor("renas")
class ReNASPredictor(Predictor):
    """settings: hidden, layers, epochs, lr, weight_decay. Accuracy targets are fitted as given (no log)."""

    name = "renas"
    default_encoding = "features"
    default_log_target = False

    def __init__(self, log_target: bool | None = None, seed: int = 0, hidden: int = 64, layers: int = 2,
                 epochs: int = 200, lr: float = 3e-3, weight_decay: float = 1e-3, **settings):
        super().__init__(log_target, seed, hidden=hidden, layers=layers, epochs=epochs, lr=lr,
                         weight_decay=weight_decay, **settings)
        self.module: RankNet | None = None
        self.x_mean = self.x_std = self.line = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> ReNASPredictor:
        s = self.settings
        X = np.asarray(X, np.float64)
        t = self._to_target(y)
        self.x_mean = X.mean(0)
        self.x_std = np.where(X.std(0) > 1e-12, X.std(0), 1.0)
        torch.manual_seed(self.seed)
        g = torch.Generator().manual_seed(self.seed)
        X_t = torch.as_tensor((X - self.x_mean) / self.x_std, dtype=torch.float32)
        t_t = torch.as_tensor(t, dtype=torch.float32)
        self.module = RankNet(X_t.shape[1], s["hidden"], s["layers"])
        opt = torch.optim.AdamW(self.module.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
        batch = min(len(X_t), 128)
        self.module.train()
        for _ in range(s["epochs"]):
            order = torch.randperm(len(X_t), generator=g)
            for i in range(0, len(X_t), batch):
                idx = order[i:i + batch]
                loss = pairwise_ranking_loss(self.module(X_t[idx]), t_t[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.module.eval()
        with torch.no_grad():
            raw = self.module(X_t).double().numpy()
        slope, intercept = np.polyfit(raw, t, 1) if np.ptp(raw) > 0 else (0.0, float(np.mean(t)))
        self.line = np.array([slope, intercept])
        return self

    def _prepare(self, X: np.ndarray) -> torch.Tensor:
        X = np.asarray(X, np.float64)
        width = len(self.x_mean)
        if X.shape[1] < width:  # encoding only: the proxy columns at their training means
            X = np.hstack([X, np.broadcast_to(self.x_mean[X.shape[1]:], (len(X), width - X.shape[1]))])
        return torch.as_tensor((X - self.x_mean) / self.x_std, dtype=torch.float32)

    def rank_scores(self, X: np.ndarray) -> np.ndarray:
        """The ranker's raw scores (higher = more accurate)."""
        with torch.no_grad():
            return self.module(self._prepare(X)).double().numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self._from_target(self.line[0] * self.rank_scores(X) + self.line[1])

    def get_arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}
        return arrays | {"x_mean": self.x_mean, "x_std": self.x_std, "line": self.line}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        s = self.settings
        self.x_mean, self.x_std, self.line = arrays["x_mean"], arrays["x_std"], arrays["line"]
        self.module = RankNet(len(self.x_mean), s["hidden"], s["layers"])
        self.module.load_state_dict({k[4:]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith("net.")})
        self.module.eval()
