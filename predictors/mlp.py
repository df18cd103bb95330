"""An MLP on architecture encodings (latency-aware differentiable NAS's regressor): differentiable, so a
relaxed encoding (softmax of architecture parameters) gets a predicted cost with a gradient."""
from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from hwnas.predictors.base import Predictor, register_predictor
from hwnas.predictors.training import standardise, train_regressor


def relu_mlp(in_dim: int, hidden: int, layers: int) -> nn.Sequential:
    """`layers` Linear+ReLU blocks of width `hidden`, then a Linear to one output."""
    dims = [in_dim] + [hidden] * layers
    blocks: list[nn.Module] = []
    for a, b in itertools.pairwise(dims):
        blocks += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*blocks, nn.Linear(dims[-1], 1))


class MLPModule(nn.Module):
    """Maps encodings (B, D) to predictions in the target's own units (ms, mJ): normalisation inside."""

    def __init__(self, in_dim: int, hidden: int, layers: int, log_target: bool):
        super().__init__()
        self.net = relu_mlp(in_dim, hidden, layers)
        self.log_target = log_target
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))

    def normalised(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.normalised(x) * self.y_std + self.y_mean
        return torch.exp(t) if self.log_target else t


@register_predictor("mlp")
class MLPPredictor(Predictor):
    """settings: hidden, layers, epochs, lr, weight_decay; rank_weight > 0 adds ReNAS's pairwise ranking loss."""

    name = "mlp"
    differentiable = True

    def __init__(self, log_target: bool | None = None, seed: int = 0, hidden: int = 128, layers: int = 3,
                 epochs: int = 300, lr: float = 3e-3, weight_decay: float = 1e-4, rank_weight: float = 0.0, **settings):
        super().__init__(log_target, seed, hidden=hidden, layers=layers, epochs=epochs, lr=lr,
                         weight_decay=weight_decay, rank_weight=rank_weight, **settings)
        self.module: MLPModule | None = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> MLPPredictor:
        s = self.settings
        torch.manual_seed(self.seed)
        X_t = torch.as_tensor(np.asarray(X, np.float32))
        t = self._to_target(y)
        self.module = MLPModule(X_t.shape[1], s["hidden"], s["layers"], self.log_target)
        mean, std = standardise(t)
        self.module.y_mean.fill_(mean)
        self.module.y_std.fill_(std)
        target = torch.as_tensor((t - mean) / std, dtype=torch.float32)
        train_regressor(self.module, self.module.normalised, X_t, target, s["epochs"], s["lr"], s["weight_decay"],
                        self.seed, s.get("rank_weight", 0.0))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.module(torch.as_tensor(np.asarray(X, np.float32))).double().numpy()

    def torch_module(self) -> nn.Module:
        return self.module

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        s = self.settings
        self.module = MLPModule(arrays["net.0.weight"].shape[1], s["hidden"], s["layers"], self.log_target)
        self.module.load_state_dict({k: torch.as_tensor(v) for k, v in arrays.items()})
        self.module.eval()
