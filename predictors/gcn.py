"""A graph convolutional predictor (BRP-NAS / HELP style) on the `graph` encoding: node features are one-hot
operations, messages follow the DAG's edges both ways, and the output node's embedding gives the prediction."""
from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from hwnas.predictors.base import Predictor, register_predictor
from hwnas.predictors.encodings import infer_graph_nodes, split_graph_code
from hwnas.predictors.training import standardise, train_regressor


class GCNModule(nn.Module):
    def __init__(self, nodes: int, vocabulary: int, hidden: int, layers: int):
        super().__init__()
        self.nodes = nodes
        dims = [vocabulary] + [hidden] * layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.head = nn.Linear(2 * hidden, 1)  # output node's embedding and the mean over nodes

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        n = self.nodes
        adjacency = codes[:, : n * n].reshape(-1, n, n)
        h = codes[:, n * n:].reshape(-1, n, self.layers[0].in_features)
        # Symmetric, self-looped, row-normalised propagation: each node averages itself and its neighbours.
        a = adjacency + adjacency.transpose(1, 2) + torch.eye(n, dtype=codes.dtype)
        a = a / a.sum(-1, keepdim=True)
        for layer in self.layers:
            h = torch.relu(a @ layer(h))
        return self.head(torch.cat([h[:, -1], h.mean(1)], dim=-1)).squeeze(-1)


class GraphRegressor(Predictor):
    """A graph network regressing the standardised target from the `graph` encoding: fit, predict and saving as
    arrays are shared; a subclass gives `_build(nodes, vocabulary)` and the weight whose input size is the
    vocabulary (read back when loading)."""

    default_encoding = "graph"
    minimal_encoding = "graph"  # every space has a graph (the base class gives a chain of decisions)
    vocabulary_weight = ""

    def _build(self, nodes: int, vocabulary: int) -> nn.Module:
        raise NotImplementedError

    def fit(self, X: np.ndarray, y: np.ndarray) -> GraphRegressor:
        s = self.settings
        torch.manual_seed(self.seed)
        X = np.asarray(X, np.float32)
        nodes = infer_graph_nodes(X)
        _, feats = split_graph_code(X, nodes)
        self.module = self._build(nodes, feats.shape[-1])
        t = self._to_target(y)
        self.y_mean, self.y_std = standardise(t)
        target = torch.as_tensor((t - self.y_mean) / self.y_std, dtype=torch.float32)
        train_regressor(self.module, self.module, torch.as_tensor(X), target, s["epochs"], s["lr"],
                        s["weight_decay"], self.seed, s.get("rank_weight", 0.0))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = self.module(torch.as_tensor(np.asarray(X, np.float32))).double().numpy()
        return self._from_target(t * self.y_std + self.y_mean)

    def get_arrays(self) -> dict[str, np.ndarray]:
        arrays = {k: v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}
        arrays["nodes"] = np.array(self.module.nodes)
        arrays["y_scale"] = np.array([self.y_mean, self.y_std])
        return arrays

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        arrays = dict(arrays)
        nodes = int(arrays.pop("nodes"))
        self.y_mean, self.y_std = (float(v) for v in arrays.pop("y_scale"))
        self.module = self._build(nodes, arrays[self.vocabulary_weight].shape[1])
        self.module.load_state_dict({k: torch.as_tensor(v) for k, v in arrays.items()})
        self.module.eval()


@register_predictor("gcn")
class GCNPredictor(GraphRegressor):
    """settings: hidden, layers, epochs, lr, weight_decay, rank_weight (ReNAS pairwise ranking loss)."""

    name = "gcn"
    vocabulary_weight = "layers.0.weight"

    def __init__(self, log_target: bool | None = None, seed: int = 0, hidden: int = 64, layers: int = 3,
                 epochs: int = 200, lr: float = 3e-3, weight_decay: float = 1e-4, rank_weight: float = 0.0, **settings):
        super().__init__(log_target, seed, hidden=hidden, layers=layers, epochs=epochs, lr=lr,
                         weight_decay=weight_decay, rank_weight=rank_weight, **settings)
        self.module: GCNModule | None = None
        self.y_mean, self.y_std = 0.0, 1.0

    def _build(self, nodes: int, vocabulary: int) -> GCNModule:
        return GCNModule(nodes, vocabulary, self.settings["hidden"], self.settings["layers"])

