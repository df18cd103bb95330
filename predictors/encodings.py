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

Each encoding declares the space capabilities it `needs` (see hwnas.spaces.base.CAPABILITIES); `onehot` and
`graph` need none, so every space has them. Asking for an encoding a space lacks is one HwnasError; a predictor
whose default encoding a space lacks falls back to its declared `minimal_encoding` (see `encoding_for`).
Ragged spaces (decisions with different option counts) work throughout: the one-hot code is decision after
decision, each over its own options; counts are over option positions.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from hwnas.errors import HwnasError
from hwnas.registries import ENCODINGS
from hwnas.spaces.base import Arch, SearchSpace

Encoder = Callable[[SearchSpace, Sequence[Arch], Sequence[int] | None], np.ndarray]
#: what each registered encoding needs from a space (capability names)
NEEDS: dict[str, frozenset[str]] = {}
_LIVE = frozenset({"live_edges"})
_ANALYTIC = frozenset({"profile", "live_edges"})


def register_encoding(name: str, needs: frozenset[str] | set[str] = frozenset()) -> Callable[[Encoder], Encoder]:
    """Register an encoding with the space capabilities it needs."""
    NEEDS[name] = frozenset(needs)
    return ENCODINGS.register(name)


def encoding_needs(encoding: str) -> frozenset[str]:
    ENCODINGS.get(encoding)  # unknown: one line naming the known ones
    return NEEDS.get(encoding, frozenset())


def supports(space: SearchSpace, encoding: str) -> bool:
    return encoding_needs(encoding) <= space.capabilities


def require_encoding(space: SearchSpace, encoding: str) -> None:
    """One line when `space` lacks what `encoding` needs, naming the spaces that have it."""
    for capability in sorted(encoding_needs(encoding)):
        space.require(capability, f"the {encoding!r} encoding (use 'onehot', which every space has)")


def encoding_for(predictor, space: SearchSpace, requested: str | None = None) -> str:
    """The encoding a predictor reads on `space`: `requested` if given (refused in one line if the space lacks
    what it needs), else the predictor's default if the space has what it needs, else its `minimal_encoding`."""
    if requested is not None:
        require_encoding(space, requested)
        return requested
    if supports(space, predictor.default_encoding):
        return predictor.default_encoding
    return predictor.minimal_encoding


def encode_archs(space: SearchSpace, archs: Sequence[Arch], encoding: str = "onehot",
                 input_shape: Sequence[int] | None = None) -> np.ndarray:
    """Encode architectures with a registered encoding (HwnasError naming the known ones if unknown, or saying
    what the space lacks)."""
    require_encoding(space, encoding)
    return np.asarray(ENCODINGS.get(encoding)(space, list(archs), input_shape), np.float32)


@register_encoding("onehot")
def onehot(space: SearchSpace, archs: Sequence[Arch], input_shape=None) -> np.ndarray:
    return space.encode_many(list(archs))


def _live_mask(space: SearchSpace, archs: Sequence[Arch]) -> np.ndarray:
    space.require("live_edges", "live-edge encodings")
    return np.array([space.live_edges(a) for a in archs], bool).reshape(len(archs), -1)


@register_encoding("live-onehot", _LIVE)
def live_onehot(space: SearchSpace, archs: Sequence[Arch], input_shape=None) -> np.ndarray:
    """One-hot with dead decisions set to their `none` option (or left all-zero where a decision has none)."""
    archs = list(archs)
    live = _live_mask(space, archs)
    none_of = dict(sorted(space.none_options(), reverse=True))  # decision -> its (lowest) none option
    codes = space.encode_many(archs)
    offsets = space.code_offsets
    for i, row in enumerate(live):
        for d in np.flatnonzero(~row):
            codes[i, offsets[d]:offsets[d + 1]] = 0.0
            if d in none_of:
                codes[i, offsets[d] + none_of[d]] = 1.0
    return codes


#: operations that do arithmetic on their input (their count tracks compute on every device)
_CONV_WORDS = ("conv",)


@register_encoding("analytic", _ANALYTIC)
def analytic(space: SearchSpace, archs: Sequence[Arch], input_shape=None) -> np.ndarray:
    archs = list(archs)
    space.require("profile", "analytic encodings")
    shape = input_shape or space.default_input_shape
    live = _live_mask(space, archs)
    rows = []
    for a, row in zip(archs, live):
        p = space.profile(a, shape)
        convs = sum(1 for d, (c, keep) in enumerate(zip(a.choices, row))
                    if keep and any(w in space.option_labels(d)[c] for w in _CONV_WORDS))
        rows.append([np.log(max(p.macs, 1.0)), np.log(max(p.params, 1)), np.log(max(p.activation_bytes, 1.0)),
                     p.layers / 100.0, row.sum(), convs, float(row.any())])
    return np.array(rows, np.float32).reshape(len(archs), 7)


@register_encoding("op-counts", _LIVE)
def op_counts(space: SearchSpace, archs: Sequence[Arch], input_shape=None) -> np.ndarray:
    archs = list(archs)
    every = space.table_from_code(onehot(space, archs)).sum(axis=1)
    live = space.table_from_code(live_onehot(space, archs)).sum(axis=1)
    return np.hstack([every, live])


@register_encoding("cost", _ANALYTIC)
def cost(space: SearchSpace, archs: Sequence[Arch], input_shape=None) -> np.ndarray:
    archs = list(archs)
    a = analytic(space, archs, input_shape).astype(np.float64)
    # Back to linear units (MACs and parameters in millions, memory traffic in MB): costs add up in these.
    linear = np.hstack([np.exp(a[:, :3]) / 1e6, a[:, 3:]])
    return np.hstack([op_counts(space, archs), linear])


@register_encoding("features", _ANALYTIC)
def features(space: SearchSpace, archs: Sequence[Arch], input_shape=None) -> np.ndarray:
    archs = list(archs)
    return np.hstack([onehot(space, archs), live_onehot(space, archs), analytic(space, archs, input_shape)])


@register_encoding("cost-features", _ANALYTIC)
def cost_features(space: SearchSpace, archs: Sequence[Arch], input_shape=None) -> np.ndarray:
    archs = list(archs)
    return np.hstack([cost(space, archs, input_shape), features(space, archs, input_shape)])


def cost_block_width(codes: np.ndarray) -> int:
    """Width of the leading `cost` block of `cost-features` codes. With c option positions, r decisions and a
    one-hot code of length D the codes are [counts over all decisions (c), over live ones (c), 7 linear,
    onehot (D), live-onehot (D), 7 analytic]; the first c columns of every row and its onehot block both add up
    to r (D = r*c unless the space is ragged)."""
    codes = np.asarray(codes)
    length = codes.shape[1]
    for c in range(1, length):
        d, rest = divmod(length - 14 - 2 * c, 2)
        if d < 1 or rest:
            continue
        counts = codes[:, :c].sum(axis=1)
        block = codes[:, 2 * c + 7: 2 * c + 7 + d].sum(axis=1)
        if np.all(counts >= 1) and np.allclose(counts, counts[0]) and np.allclose(block, counts):
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
