"""Architecture encodings: how an arch becomes the feature vector a predictor reads.

Each encoding is a function `(space, archs, input_shape) -> float32 array (n, D)` registered by name; a predictor
file records its encoding's name (and the input shape), so `hwnas predict` re-encodes arch strings the same way.

- `onehot`: the space's own one-hot code (decisions x options), the layout `space.relax(alpha)` produces, so a
  differentiable predictor fitted on it accepts relaxed architectures during search.
- `live-onehot`: the same code after edges that cannot carry data from input to output are set to `none`
  (compilers such as TFLite's drop that dead work on phones and boards).
- `analytic`: features computed from the built network: log MACs, log parameters, log memory traffic, layer
  count, the number of live operations and live convolutions, and whether any input-output path exists.
- `features`: onehot + live-onehot + analytic, the default for trees and ridge.
- `op-counts`: how many decisions chose each option, over all decisions and over live ones only. In NAS-Bench-201
  every edge of a cell sees the same tensor shape, so an operation costs the same on any edge: counts are the
  per-operation lookup table with its entries tied across edges (5x fewer unknowns, which few samples can fit).
- `cost`: op-counts + the analytic quantities in linear units (MACs in millions, parameters in millions, memory
  traffic in MB, layers, live operations, live convolutions, path flag): a linear model on it, in the target's own
  units, is a roofline-style cost model (time ~ a*MACs + b*bytes + per-operation overheads), the `linear-cost`
  predictor's default.
- `cost-features`: cost followed by features, for `cost-gbt` (a linear cost model on the first block, trees on all).
- `graph`: the flattened adjacency matrix followed by the flattened one-hot node features of `space.graph(arch)`
  (for the GCN, which infers the node count from the codes).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from hwnas.errors import HwnasError
from hwnas.registry import Registry
from hwnas.spaces.base import Arch, SearchSpace

ENCODINGS: Registry = Registry("encoding")
register_encoding = ENCODINGS.register
Encoder = Callable[[SearchSpace, Sequence[Arch], Sequence[int] | None], np.ndarray]


def encode_archs(space: SearchSpace, archs: Sequence[Arch], encoding: str = "onehot",
                 input_shape: Sequence[int] | None = None) -> np.ndarray:
    """Encode architectures with a registered encoding (HwnasError naming the known ones if unknown)."""
    return np.asarray(ENCODINGS.get(encoding)(space, list(archs), input_shape), np.float32)


@register_encoding("onehot")
def onehot(space: SearchSpace, archs: Sequence[Arch], input_shape=None) -> np.ndarray:
    return space.encode_many(list(archs))


def _live_mask(space: SearchSpace, archs: Sequence[Arch]) -> np.ndarray:
    if not hasattr(space, "live_edges"):
        raise HwnasError(f"space {space.name!r} has no live_edges(); use the 'onehot' encoding")
    return np.array([space.live_edges(a) for a in archs], bool).reshape(len(archs), -1)


@register_encoding("live-onehot")
def live_onehot(space: SearchSpace, archs: Sequence[Arch], input_shape=None) -> np.ndarray:
    archs = list(archs)
    live = _live_mask(space, archs)
    pruned = [Arch(a.space, tuple(c if keep else 0 for c, keep in zip(a.choices, row))) for a, row in zip(archs, live)]
    return space.encode_many(pruned)


#: operations that do arithmetic on their input (their count tracks compute on every device)
_CONV_WORDS = ("conv",)


@register_encoding("analytic")
def analytic(space: SearchSpace, archs: Sequence[Arch], input_shape=None) -> np.ndarray:
    archs = list(archs)
    if not hasattr(space, "profile"):
        raise HwnasError(f"space {space.name!r} has no profile(); use the 'onehot' encoding")
    shape = input_shape or space.default_input_shape
    live = _live_mask(space, archs)
    ops = getattr(space, "ops", None)
    rows = []
    for a, row in zip(archs, live):
        p = space.profile(a, shape)
        convs = sum(1 for c, keep in zip(a.choices, row) if keep and ops and any(w in ops[c] for w in _CONV_WORDS))
        rows.append([np.log(max(p.macs, 1.0)), np.log(max(p.params, 1)), np.log(max(p.activation_bytes, 1.0)),
                     p.layers / 100.0, row.sum(), convs, float(row.any())])
    return np.array(rows, np.float32).reshape(len(archs), 7)


@register_encoding("op-counts")
def op_counts(space: SearchSpace, archs: Sequence[Arch], input_shape=None) -> np.ndarray:
    archs = list(archs)
    rows, cols = space.alpha_shape
    every = onehot(space, archs).reshape(len(archs), rows, cols).sum(axis=1)
    live = live_onehot(space, archs).reshape(len(archs), rows, cols).sum(axis=1)
    return np.hstack([every, live])


@register_encoding("cost")
def cost(space: SearchSpace, archs: Sequence[Arch], input_shape=None) -> np.ndarray:
    archs = list(archs)
    a = analytic(space, archs, input_shape).astype(np.float64)
    # Back to linear units (MACs and parameters in millions, memory traffic in MB): costs add up in these.
    linear = np.hstack([np.exp(a[:, :3]) / 1e6, a[:, 3:]])
    return np.hstack([op_counts(space, archs), linear])


@register_encoding("features")
def features(space: SearchSpace, archs: Sequence[Arch], input_shape=None) -> np.ndarray:
    archs = list(archs)
    return np.hstack([onehot(space, archs), live_onehot(space, archs), analytic(space, archs, input_shape)])


@register_encoding("cost-features")
def cost_features(space: SearchSpace, archs: Sequence[Arch], input_shape=None) -> np.ndarray:
    archs = list(archs)
    return np.hstack([cost(space, archs, input_shape), features(space, archs, input_shape)])


def cost_block_width(codes: np.ndarray) -> int:
    """Width of the leading `cost` block of `cost-features` codes. With c options and r decisions the codes are
    [counts over all decisions (c), over live ones (c), 7 linear, onehot (r*c), live-onehot (r*c), 7 analytic];
    the first c columns of every row add up to r."""
    codes = np.asarray(codes)
    length = codes.shape[1]
    for c in range(1, length):
        r, rest = divmod(length - 14 - 2 * c, 2 * c)
        if r >= 1 and not rest and np.allclose(codes[:, :c].sum(axis=1), r):
            return 2 * c + 7
    raise HwnasError(f"codes of length {length} are not 'cost-features' encodings")


@register_encoding("graph")
def graph(space: SearchSpace, archs: Sequence[Arch], input_shape=None) -> np.ndarray:
    codes = []
    for a in archs:
        g = space.graph(a)
        codes.append(np.concatenate([np.asarray(g.adjacency, np.float32).reshape(-1), g.features().reshape(-1)]))
    return np.stack(codes) if codes else np.zeros((0, 0), np.float32)


def split_graph_code(codes: np.ndarray, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Undo `graph`: (n, nodes*nodes + nodes*vocab) -> adjacency (n, nodes, nodes), features (n, nodes, vocab)."""
    n = codes.shape[0]
    adjacency = codes[:, : nodes * nodes].reshape(n, nodes, nodes)
    return adjacency, codes[:, nodes * nodes:].reshape(n, nodes, -1)


def infer_graph_nodes(codes: np.ndarray) -> int:
    """Node count of graph codes: the n for which every node's feature row is one-hot (n*n + n*vocab = length)."""
    codes = np.asarray(codes)
    length = codes.shape[1]
    for n in range(2, int(np.sqrt(length)) + 1):
        if (length - n * n) % n or length == n * n:
            continue
        _, feats = split_graph_code(codes, n)
        if np.allclose(feats.sum(-1), 1.0) and np.all((feats == 0) | (feats == 1)):
            return n
    raise HwnasError(f"codes of length {length} are not 'graph' encodings (adjacency then one-hot node features)")
