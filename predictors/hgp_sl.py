"""HGP-SL (Zhang et al., 2019, "Hierarchical Graph Pooling with Structure Learning") as a predictor encoder on the
`graph` encoding, beside the GCN: it works on any space's `graph(arch)`.

Each block is a GCN layer, a readout (mean and max over the kept nodes, summed over blocks) and, between blocks,
a pooling step: nodes are ranked by their information score, the L1 norm of h_i minus the mean of its neighbours
(D^-1 A H; a node its neighbours already describe carries little information), the top `ratio` are kept, and
their edges are re-learnt by structure learning: E_ij = sigmoid(a . [h_i || h_j]) + lambda * A_ij, normalised
row-wise by sparsemax, so each node attends to a sparse set of others (edges lost by pooling can come back).

The graphs of one space all have the same node count (a space's graph encoding has a fixed length), so the
implementation is dense and batched in plain PyTorch: on graphs of a few dozen nodes dense matrix products are
faster than torch-geometric's scatter-based sparse layers, and no extra library is needed.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from hwnas.predictors.base import register_predictor
from hwnas.predictors.gcn import GraphRegressor


def sparsemax(z: torch.Tensor) -> torch.Tensor:
    """Sparsemax over the last dimension (Martins & Astudillo, 2016): the Euclidean projection onto the simplex,
    a softmax whose small entries are exactly 0."""
    sorted_z, _ = torch.sort(z, dim=-1, descending=True)
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    cumulative = sorted_z.cumsum(-1)
    support = (1 + k * sorted_z) > cumulative
    size = support.sum(-1, keepdim=True).clamp_min(1)
    tau = (cumulative.gather(-1, size - 1) - 1) / size.to(z.dtype)
    return torch.clamp(z - tau, min=0.0)


def gcn_propagate(adjacency: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """D^-1/2 (A + I) D^-1/2 h for a batch of weighted adjacency matrices (batch, n, n)."""
    a = adjacency + torch.eye(adjacency.shape[-1], dtype=h.dtype)
    d = a.sum(-1).clamp_min(1e-9).rsqrt()
    return d[..., :, None] * a * d[..., None, :] @ h


def information_score(adjacency: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """||h_i - (D^-1 A h)_i||_1 per node: (batch, n)."""
    degree = adjacency.sum(-1, keepdim=True).clamp_min(1e-9)
    return (h - (adjacency @ h) / degree).abs().sum(-1)


class HGPSLModule(nn.Module):
    def __init__(self, nodes: int, vocabulary: int, hidden: int, blocks: int, ratio: float, lamb: float):
        super().__init__()
        self.nodes, self.ratio, self.lamb = nodes, float(ratio), float(lamb)
        self.convs = nn.ModuleList(nn.Linear(vocabulary if i == 0 else hidden, hidden) for i in range(blocks))
        self.attention = nn.ModuleList(nn.Linear(2 * hidden, 1) for _ in range(blocks - 1))
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def pool(self, i: int, adjacency: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the most informative nodes, then learn their edges with sparse attention."""
        n = h.shape[1]
        keep = max(1, math.ceil(self.ratio * n))
        index = information_score(adjacency, h).topk(keep, dim=-1).indices.sort(-1).values  # (batch, keep)
        h = h.gather(1, index[..., None].expand(-1, -1, h.shape[-1]))
        rows = adjacency.gather(1, index[..., None].expand(-1, -1, n))
        adjacency = rows.gather(2, index[:, None, :].expand(-1, keep, -1))
        a = self.attention[i]
        half = a.in_features // 2
        # a . [h_i || h_j] = a_left . h_i + a_right . h_j
        left = h @ a.weight[0, :half]
        right = h @ a.weight[0, half:]
        scores = torch.sigmoid(left[..., :, None] + right[..., None, :] + a.bias) + self.lamb * adjacency
        eye = torch.eye(keep, dtype=torch.bool)
        return sparsemax(scores.masked_fill(eye, float("-inf")) if keep > 1 else scores), h

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        n = self.nodes
        adjacency = codes[:, : n * n].reshape(-1, n, n)
        adjacency = ((adjacency + adjacency.transpose(1, 2)) > 0).to(codes.dtype)  # edges both ways, as the GCN
        h = codes[:, n * n:].reshape(-1, n, self.convs[0].in_features)
        readout = 0.0
        for i, conv in enumerate(self.convs):
            h = torch.relu(gcn_propagate(adjacency, conv(h)))
            readout = readout + torch.cat([h.mean(1), h.max(1).values], dim=-1)
            if i < len(self.attention):
                adjacency, h = self.pool(i, adjacency, h)
        return self.head(readout).squeeze(-1)


@register_predictor("hgp-sl")
class HGPSLPredictor(GraphRegressor):
    """settings: hidden, blocks (GCN layers; a pooling step between each two), ratio (nodes kept per pooling),
    lamb (weight of the original edges in structure learning), epochs, lr, weight_decay, rank_weight."""

    name = "hgp-sl"
    vocabulary_weight = "convs.0.weight"

    def __init__(self, log_target: bool | None = None, seed: int = 0, hidden: int = 32, blocks: int = 3,
                 ratio: float = 0.5, lamb: float = 1.0, epochs: int = 100, lr: float = 3e-3,
                 weight_decay: float = 1e-4, rank_weight: float = 0.0, **settings):
        super().__init__(log_target, seed, hidden=hidden, blocks=blocks, ratio=ratio, lamb=lamb, epochs=epochs, lr=lr,
                         weight_decay=weight_decay, rank_weight=rank_weight, **settings)
        self.module: HGPSLModule | None = None
        self.y_mean, self.y_std = 0.0, 1.0

    def _build(self, nodes: int, vocabulary: int) -> HGPSLModule:
        s = self.settings
        return HGPSLModule(nodes, vocabulary, s["hidden"], s["blocks"], s["ratio"], s["lamb"])
