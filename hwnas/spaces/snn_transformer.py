"""`snn-transformer`: spiking-transformer blocks as searched by AutoST (Wang et al., "AutoST: Training-free
neural architecture search for spiking transformers", ICASSP 2024), on a Spikformer-style network (Zhou et al.,
ICLR 2023) with spike-driven ordering (Yao et al., NeurIPS 2023: LIF before every linear layer, so every
linear layer and attention product reads spikes).

Decisions: depth (1..`depth` blocks), embedding dimension (`embed_min`..`embed_max` in `embed_step`s), and per
block: heads (4 or 8) and MLP ratio (3, 4 or 5). The defaults are AutoST's "tiny" space: depth 1-10, embedding
192-384 in steps of 48. Blocks beyond the depth are inactive: their strings drop them and `sample` sets them to
option 0, so one network has one canonical architecture.

Network: spiking patch splitting (`patch`x`patch` convolution, stride `patch`, BN, over the image: the one layer
that reads real values), then per block spiking self-attention (Q, K, V = BN(Linear(LIF(x))); Q K^T V with
spike operands, scaled; output projection) and a spiking MLP, both residual; mean over tokens, LIF-free linear
head. Run for `T` time steps on the same image (direct encoding), logits averaged. No positional embedding.

CPU-sized settings (`CPU_SMALL`): `snn-transformer:depth=2,embed_min=16,embed_max=32,embed_step=8,T=2` on 8x8
digits. There is no weight-sharing supernet: search this space training-free (`hwnas search --strategy
training-free`, FLOPs as the accuracy proxy) or by evolution; nb201-snn has a supernet for differentiable search.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError, quote
from hwnas.spaces.base import Arch, SearchSpace, bounded_int
from hwnas.spaces.registry import register_space
from hwnas.spaces.spiking import LIF, SpikeMatMul, TimeLoop

HEADS = (4, 8)
MLP_RATIOS = (3, 4, 5)
#: settings for CPU-sized versions (tests, benchmarks on this machine)
CPU_SMALL = "snn-transformer:depth=2,embed_min=16,embed_max=32,embed_step=8,T=2"
_STRING = re.compile(r"^e(\d+)((?:-h\d+m\d+)+)$")
_BLOCK = re.compile(r"-h(\d+)m(\d+)")


class LinearBN(nn.Sequential):
    """LIF -> Linear -> BatchNorm over tokens (x: batch, tokens, features); BN folds into the linear layer."""

    def __init__(self, d_in: int, d_out: int, beta: float):
        super().__init__()
        self.lif, self.linear, self.bn = LIF(beta), nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(self.lif(x)).transpose(1, 2)).transpose(1, 2)


class SpikingSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, beta: float):
        super().__init__()
        self.heads, self.scale = heads, 0.125  # Spikformer's fixed scale: no softmax over spike products
        self.q, self.k, self.v = (LinearBN(dim, dim, beta) for _ in range(3))
        self.q_lif, self.k_lif, self.v_lif = LIF(beta), LIF(beta), LIF(beta)
        self.qk, self.av = SpikeMatMul(), SpikeMatMul()
        self.proj = LinearBN(dim, dim, beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t):
            return t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.q_lif(self.q(x))), split(self.k_lif(self.k(x))), split(self.v_lif(self.v(x)))
        out = self.av(self.qk(q, k.transpose(-2, -1)), v) * self.scale
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class SpikingBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int, beta: float):
        super().__init__()
        self.attn = SpikingSelfAttention(dim, heads, beta)
        self.mlp = nn.Sequential(LinearBN(dim, dim * mlp_ratio, beta), LinearBN(dim * mlp_ratio, dim, beta))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class SpikingTransformer(nn.Module):
    """One time step of the network (TimeLoop runs T of them)."""

    def __init__(self, in_channels: int, patch: int, dim: int, blocks: Sequence[tuple[int, int]], classes: int,
                 beta: float):
        super().__init__()
        self.patch = nn.Sequential(nn.Conv2d(in_channels, dim, patch, stride=patch, bias=False), nn.BatchNorm2d(dim))
        self.blocks = nn.Sequential(*(SpikingBlock(dim, h, r, beta) for h, r in blocks))
        self.head_lif = LIF(beta)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # (batch, tokens, dim)
        x = self.blocks(x)
        return self.head(self.head_lif(x).mean(1))


@register_space("snn-transformer")
class SpikingTransformerSpace(SearchSpace):
    name = "snn-transformer"
    defaults: ClassVar[dict] = {"depth": 10, "embed_min": 192, "embed_max": 384, "embed_step": 48, "T": 4, "patch": 4,
                                "classes": 10, "beta": 0.5}
    bounds: ClassVar[dict[str, tuple[int, int]]] = {"depth": (1, 32), "embed_min": (8, 4096), "embed_max": (8, 4096),
                                                    "embed_step": (1, 4096), "T": (1, 64), "patch": (1, 64),
                                                    "classes": (1, 100_000)}
    default_input_shape = (3, 32, 32)
    capabilities = frozenset({"index"})

    def __init__(self, **params):
        super().__init__(**params)
        for key, (low, high) in self.bounds.items():
            self.params[key] = bounded_int(self.name, key, self.params[key], low, high)
        beta = self.params["beta"]
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < float(beta) <= 1:
            raise HwnasError(f"{self.name} setting beta={quote(beta, 40)} is not accepted; accepted: a number in (0, 1]")
        self.params["beta"] = float(beta)
        p = self.params
        if p["embed_max"] < p["embed_min"]:
            raise HwnasError(f"{self.name}: embed_max={p['embed_max']} is below embed_min={p['embed_min']}")
        self.embeds = tuple(range(p["embed_min"], p["embed_max"] + 1, p["embed_step"]))
        bad = [e for e in self.embeds if any(e % h for h in HEADS)]
        if bad:
            raise HwnasError(f"{self.name}: embedding dimension(s) {bad} are not divisible by every head count "
                             f"{HEADS}; accepted: embed_min and embed_step multiples of 8")

    # --- decisions: depth, embedding, then (heads, mlp ratio) per block ---------------------------------------
    def options_per_decision(self) -> tuple[int, ...]:
        return (self.params["depth"], len(self.embeds)) + (len(HEADS), len(MLP_RATIOS)) * self.params["depth"]

    def option_labels(self, decision: int) -> tuple[str, ...]:
        if decision == 0:
            return tuple(f"depth{d}" for d in range(1, self.params["depth"] + 1))
        if decision == 1:
            return tuple(f"embed{e}" for e in self.embeds)
        return tuple(f"heads{h}" for h in HEADS) if decision % 2 == 0 else tuple(f"mlp{r}" for r in MLP_RATIOS)

    def canonical(self, arch: Arch) -> Arch:
        """`arch` with the choices of inactive blocks (beyond the depth) set to option 0."""
        depth = arch.choices[0] + 1
        return Arch(self.name, tuple(arch.choices[: 2 + 2 * depth]) + (0,) * (2 * (self.params["depth"] - depth)))

    def sample(self, rng: np.random.Generator) -> Arch:
        return self.canonical(super().sample(rng))

    def neighbours(self, arch: Arch) -> list[Arch]:
        seen, out = {self.canonical(arch)}, []
        for n in super().neighbours(arch):
            c = self.canonical(n)
            if c not in seen:
                seen.add(c)
                out.append(c)
        return out

    def derive(self, alpha: torch.Tensor) -> Arch:
        return self.canonical(super().derive(alpha))

    def size(self) -> int:
        per_block = len(HEADS) * len(MLP_RATIOS)
        return len(self.embeds) * sum(per_block ** d for d in range(1, self.params["depth"] + 1))

    # --- index: shallow first, then embedding, then the blocks' choices as mixed-radix digits ------------------
    def _offset(self, depth: int) -> int:
        per_block = len(HEADS) * len(MLP_RATIOS)
        return len(self.embeds) * sum(per_block ** d for d in range(1, depth))

    def index(self, arch: Arch) -> int:
        depth = arch.choices[0] + 1
        per_depth = (len(HEADS) * len(MLP_RATIOS)) ** depth
        digits = 0
        for b in range(depth):
            digits = digits * len(HEADS) * len(MLP_RATIOS) + arch.choices[2 + 2 * b] * len(MLP_RATIOS) \
                + arch.choices[3 + 2 * b]
        return self._offset(depth) + arch.choices[1] * per_depth + digits

    def arch_at(self, index: int) -> Arch:
        i = int(index)
        if not 0 <= i < self.size():
            raise HwnasError(f"{self.name} index {index} is out of range; accepted: 0..{self.size() - 1}")
        depth = max(d for d in range(1, self.params["depth"] + 1) if self._offset(d) <= i)
        rest = i - self._offset(depth)
        per_block = len(HEADS) * len(MLP_RATIOS)
        embed, digits = divmod(rest, per_block ** depth)
        blocks: list[int] = []
        for _ in range(depth):
            digits, pair = divmod(digits, per_block)
            blocks = [pair // len(MLP_RATIOS), pair % len(MLP_RATIOS)] + blocks
        return self.canonical(Arch(self.name, (depth - 1, embed, *blocks) + (0,) * (2 * self.params["depth"])))

    def all_archs(self) -> list[Arch]:
        """Every architecture in index order; refused above 200,000 (sample instead)."""
        if self.size() > 200_000:
            raise HwnasError(f"{self.spec} holds {self.size():,} architectures, too many to list; sample from it")
        return [self.arch_at(i) for i in range(self.size())]

    def blocks(self, arch: Arch) -> tuple[int, list[tuple[int, int]]]:
        """(embedding dimension, [(heads, mlp ratio) per active block])."""
        self.check_choices(arch)
        depth = arch.choices[0] + 1
        pairs = [(HEADS[arch.choices[2 + 2 * b]], MLP_RATIOS[arch.choices[3 + 2 * b]]) for b in range(depth)]
        return self.embeds[arch.choices[1]], pairs

    # --- naming: e<embed>-h<heads>m<ratio> per block, e.g. e24-h4m3-h8m5 -------------------------------------
    def to_string(self, arch: Arch) -> str:
        embed, pairs = self.blocks(arch)
        return f"e{embed}" + "".join(f"-h{h}m{r}" for h, r in pairs)

    def from_string(self, text: str) -> Arch:
        s = str(text).strip()
        hint = (f"expected e<embed>-h<heads>m<mlp ratio> per block, e.g. e{self.embeds[0]}-h4m3-h8m5; embed in "
                f"{list(self.embeds)}, heads in {list(HEADS)}, mlp ratio in {list(MLP_RATIOS)}, 1..{self.params['depth']} blocks")
        m = _STRING.match(s)
        if not m:
            raise HwnasError(f"malformed {self.name} architecture {quote(s)}; {hint}")
        embed, blocks = int(m.group(1)), [(int(h), int(r)) for h, r in _BLOCK.findall(m.group(2))]
        if embed not in self.embeds or len(blocks) > self.params["depth"] or any(
                h not in HEADS or r not in MLP_RATIOS for h, r in blocks):
            raise HwnasError(f"{self.name} architecture {quote(s)} is outside {self.spec}; {hint}")
        choices = [len(blocks) - 1, self.embeds.index(embed)]
        for h, r in blocks:
            choices += [HEADS.index(h), MLP_RATIOS.index(r)]
        return self.canonical(Arch(self.name, tuple(choices) + (0,) * (2 * (self.params["depth"] - len(blocks)))))

    # --- networks -----------------------------------------------------------------------------------------
    def check_input_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(s) for s in input_shape)
        p = self.params["patch"]
        if len(shape) != 3 or shape[0] < 1 or any(s < p or s % p for s in shape[1:]):
            raise HwnasError(f"input shape {'x'.join(map(str, shape))} cannot be built by {self.spec}; accepted: "
                             f"(channels, height, width) with height and width multiples of the patch size {p}")
        return shape

    def build(self, arch: Arch, input_shape: Sequence[int] | None = None) -> nn.Module:
        shape = self.check_input_shape(input_shape or self.default_input_shape)
        embed, pairs = self.blocks(arch)
        p = self.params
        return TimeLoop(SpikingTransformer(shape[0], p["patch"], embed, pairs, p["classes"], p["beta"]), p["T"])

    def supernet(self, input_shape: Sequence[int] | None = None) -> nn.Module:
        raise HwnasError(f"space {self.name!r} has no weight-sharing supernet for differentiable strategies; search "
                         "it with --strategy training-free (FLOPs as the accuracy proxy), or search nb201-snn "
                         "differentiably")
