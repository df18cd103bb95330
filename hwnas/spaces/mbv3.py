"""MobileNetV3 / Once-for-All macro space: stages of inverted-residual blocks with an elastic depth (2, 3 or 4
blocks per stage), and per block an elastic depthwise kernel (3, 5 or 7) and expand ratio (3, 4 or 6); squeeze-
excite and h-swish sit where MobileNetV3-Large places them. Optionally the input resolution is a decision too.

Settings (`mbv3:width=0.5,stages=3,classes=10,res=0,stem=1`): `width` multiplies MobileNetV3's channel counts
(rounded to multiples of 8), `stages` takes the first 1..5 of its stages, `res` is 0 (no decision) or the
resolutions to choose from, e.g. `res=24/28/32` (the network resizes its input, so any input size builds), `stem`
is the stem's stride (1 for small inputs such as 8x8 digits or 32x32 CIFAR).

Canonical strings list the blocks of each stage, stages separated by `|`, e.g. `k3e4,k5e6|k7e3,k3e3,k5e4|k3e6,k3e6`
(depth is the number of blocks), prefixed by `r28:` when the resolution is a decision. Decisions, in `encode`
order: [resolution], then per stage its depth and, for each of the 4 block slots, kernel and expand. Slots past a
stage's depth are inactive and held at option 0 (`canonical`), so one string is one `Arch`.

`supernet()` is the Once-for-All elastic network: one set of weights at the largest setting (kernel 7, expand 6,
depth 4); a kernel of 5 is the centre of the 7x7 kernel through a learned 25x25 transform, 3 the centre of that
through a 9x9 one; an expand ratio takes the first channels (`sort_channels` orders them by importance); a depth
runs the first blocks. Its `forward(x, weights, active=None)` takes mixing weights (decisions x options): one-hot
weights give exactly the subnet (`extract` copies its weights into `build(arch)`), soft ones a differentiable
mixture (kernels mixed as one zero-padded 7x7 kernel, expand ratios as channel masks, depths as a weighted sum of
the stage's outputs), so DARTS- and Gumbel-style strategies run on it.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import HwnasError, quote
from hwnas.files import atomic_write
from hwnas.spaces.base import Arch, Graph, SearchSpace
from hwnas.spaces.registry import register_space

KERNELS = (3, 5, 7)
EXPANDS = (3, 4, 6)
DEPTHS = (2, 3, 4)
MAX_DEPTH = max(DEPTHS)
#: MobileNetV3-Large's stages after the first block (as Once-for-All): channels, stride, activation, squeeze-excite
STAGES = ((24, 2, "relu", False), (40, 2, "relu", True), (80, 2, "hswish", False), (112, 1, "hswish", True),
          (160, 2, "hswish", True))
STEM_CHANNELS = 16
HEAD_EXPAND = 6
#: decisions per stage: depth, then kernel and expand of each block slot
PER_STAGE = 1 + 2 * MAX_DEPTH
CHECKPOINT_FORMAT = 1
_BLOCK = re.compile(r"^k(\d+)e(\d+)$")
EXAMPLE = "k3e4,k5e6|k7e3,k3e3,k5e4|k3e6,k3e6"


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: the nearest multiple of `divisor`, never more than 10% below `value`."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


def activation(name: str) -> nn.Module:
    return nn.Hardswish() if name == "hswish" else nn.ReLU()


# --- the standalone (discrete) network ---------------------------------------------------------------------
class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.reduce(x.mean(dim=(2, 3), keepdim=True)))
        return x * F.hardsigmoid(self.expand(s))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, kxk depthwise (stride), optional squeeze-excite, 1x1 project."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expand: int, stride: int, se: bool, act: str):
        super().__init__()
        mid = make_divisible(c_in * expand)
        self.expand = nn.Conv2d(c_in, mid, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(mid)
        self.depthwise = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(mid)
        self.se = SqueezeExcite(mid, make_divisible(mid // 4)) if se else None
        self.project = nn.Conv2d(mid, c_out, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(c_out)
        self.act = activation(act)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.expand_bn(self.expand(x)))
        h = self.act(self.depthwise_bn(self.depthwise(h)))
        if self.se is not None:
            h = self.se(h)
        h = self.project_bn(self.project(h))
        return x + h if self.residual else h


def stem(in_channels: int, channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False), nn.BatchNorm2d(channels),
                         nn.Hardswish())


def head(c_in: int, c_head: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_head, 1, bias=False), nn.BatchNorm2d(c_head), nn.Hardswish(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


class Resize(nn.Module):
    """Bilinear resize of the input to the chosen resolution (the resolution decision)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)


class MBV3Net(nn.Module):
    def __init__(self, layout: dict[str, Any], in_channels: int,
                 blocks: Sequence[tuple[int, int, int, int, int, bool, str]],
                 resolution: int | None):
        super().__init__()
        self.resize = Resize(resolution) if resolution else nn.Identity()
        self.stem = stem(in_channels, layout["stem"], layout["stem_stride"])
        self.blocks = nn.ModuleList(MBConv(*b) for b in blocks)
        self.head = head(layout["widths"][-1], layout["head"])
        self.classifier = nn.Linear(layout["head"], layout["classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(self.resize(x))
        for block in self.blocks:
            h = block(h)
        return self.classifier(self.head(h))


# --- the elastic supernet ----------------------------------------------------------------------------------
class ElasticMBConv(nn.Module):
    """MBConv at kernel 7 and expand 6 whose smaller settings share its weights (see the module doc)."""

    def __init__(self, c_in: int, c_out: int, stride: int, se: bool, act: str):
        super().__init__()
        self.mids = [make_divisible(c_in * e) for e in EXPANDS]
        mid = max(self.mids)
        self.reduced = [make_divisible(m // 4) for m in self.mids]
        self.stride, self.c_out = stride, c_out
        self.expand = nn.Conv2d(c_in, mid, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(mid)
        self.depthwise = nn.Conv2d(mid, mid, max(KERNELS), stride, max(KERNELS) // 2, groups=mid, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(mid)
        self.se = SqueezeExcite(mid, max(self.reduced)) if se else None
        self.project = nn.Conv2d(mid, c_out, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(c_out)
        self.act = activation(act)
        self.residual = stride == 1 and c_in == c_out
        # Once-for-All's kernel transforms: 7x7 centre 5x5 -> 5x5, then its centre 3x3 -> 3x3 (identity at start)
        self.transform_5 = nn.Parameter(torch.eye(25))
        self.transform_3 = nn.Parameter(torch.eye(9))
        masks = torch.stack([(torch.arange(mid) < m).float() for m in self.mids])
        self.register_buffer("mid_masks", masks, persistent=False)
        if se:
            r = max(self.reduced)
            self.register_buffer("se_masks", torch.stack([(torch.arange(r) < m).float() for m in self.reduced]),
                                 persistent=False)

    def kernels(self) -> list[torch.Tensor]:
        """The depthwise weights of kernels 3, 5 and 7, all channels."""
        w7 = self.depthwise.weight
        c = w7.shape[0]
        w5 = F.linear(w7[:, :, 1:6, 1:6].reshape(c, 25), self.transform_5).reshape(c, 1, 5, 5)
        w3 = F.linear(w5[:, :, 1:4, 1:4].reshape(c, 9), self.transform_3).reshape(c, 1, 3, 3)
        return [w3, w5, w7]

    def forward(self, x: torch.Tensor, kernel_w: torch.Tensor, expand_w: torch.Tensor) -> torch.Tensor:
        pad = max(KERNELS) // 2
        weight = sum(w * F.pad(k, [pad - k.shape[-1] // 2] * 4) for w, k in zip(kernel_w, self.kernels()))
        h = self.act(self.expand_bn(self.expand(x)))
        h = F.conv2d(h, weight, None, self.stride, pad, groups=h.shape[1])
        mask = (expand_w[:, None] * self.mid_masks).sum(0)[None, :, None, None]
        h = self.act(self.depthwise_bn(h)) * mask
        if self.se is not None:
            s = F.relu(self.se.reduce(h.mean(dim=(2, 3), keepdim=True)))
            s = s * (expand_w[:, None] * self.se_masks).sum(0)[None, :, None, None]
            h = h * F.hardsigmoid(self.se.expand(s))
        h = self.project_bn(self.project(h))
        return x + h if self.residual else h

    def forward_subnet(self, x: torch.Tensor, kernel: int, expand: int) -> torch.Tensor:
        """One setting (option indices) with sliced weights: the cheap path for training one subnet at a time."""
        mid, k = self.mids[expand], KERNELS[kernel]
        h = self.act(_sliced_bn(self.expand_bn, F.conv2d(x, self.expand.weight[:mid]), mid))
        h = F.conv2d(h, self.kernels()[kernel][:mid], None, self.stride, k // 2, groups=mid)
        h = self.act(_sliced_bn(self.depthwise_bn, h, mid))
        if self.se is not None:
            r = self.reduced[expand]
            pooled = h.mean(dim=(2, 3), keepdim=True)
            s = F.relu(F.conv2d(pooled, self.se.reduce.weight[:r, :mid], self.se.reduce.bias[:r]))
            h = h * F.hardsigmoid(F.conv2d(s, self.se.expand.weight[:mid, :r], self.se.expand.bias[:mid]))
        h = self.project_bn(F.conv2d(h, self.project.weight[:, :mid]))
        return x + h if self.residual else h

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Order the expanded channels (and squeeze-excite's reduced ones) by importance, the L1 norm of their
        outgoing weights, so a smaller expand ratio keeps the most important ones; the full block is unchanged."""
        order = self.project.weight.abs().sum(dim=(0, 2, 3)).argsort(descending=True)
        for module in (self.expand, self.depthwise):
            module.weight.copy_(module.weight[order])
        for bn in (self.expand_bn, self.depthwise_bn):
            _permute_bn(bn, order)
        self.project.weight.copy_(self.project.weight[:, order])
        if self.se is not None:
            se = self.se
            se.reduce.weight.copy_(se.reduce.weight[:, order])
            se.expand.weight.copy_(se.expand.weight[order])
            se.expand.bias.copy_(se.expand.bias[order])
            inner = se.expand.weight.abs().sum(dim=(0, 2, 3)).argsort(descending=True)
            se.reduce.weight.copy_(se.reduce.weight[inner])
            se.reduce.bias.copy_(se.reduce.bias[inner])
            se.expand.weight.copy_(se.expand.weight[:, inner])

    @torch.no_grad()
    def subnet_state(self, kernel: int, expand: int) -> dict[str, torch.Tensor]:
        """The weights of the standalone MBConv with this kernel and expand option (indices)."""
        mid = self.mids[expand]
        out = {"expand.weight": self.expand.weight[:mid],
               "depthwise.weight": self.kernels()[kernel][:mid],
               "project.weight": self.project.weight[:, :mid]}
        for name, bn, c in (("expand_bn", self.expand_bn, mid), ("depthwise_bn", self.depthwise_bn, mid),
                            ("project_bn", self.project_bn, self.c_out)):
            out.update({f"{name}.{k}": v[:c] if v.ndim else v for k, v in bn.state_dict().items()})
        if self.se is not None:
            r = self.reduced[expand]
            out.update({"se.reduce.weight": self.se.reduce.weight[:r, :mid], "se.reduce.bias": self.se.reduce.bias[:r],
                        "se.expand.weight": self.se.expand.weight[:mid, :r],
                        "se.expand.bias": self.se.expand.bias[:mid]})
        return {k: v.detach().clone() for k, v in out.items()}


def _sliced_bn(bn: nn.BatchNorm2d, x: torch.Tensor, c: int) -> torch.Tensor:
    """BatchNorm over the first `c` channels of `bn` (its running statistics are updated in place when training)."""
    return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c],
                        bn.training, 0.1 if bn.momentum is None else bn.momentum, bn.eps)


def _permute_bn(bn: nn.BatchNorm2d, order: torch.Tensor) -> None:
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        t.copy_(t[order])


class MBV3Supernet(nn.Module):
    """`forward(x, weights, active=None)`: weights (decisions x options) as in `encode`'s order; `active` (the chosen
    option per decision, as Gumbel sampling gives) skips the blocks and resolutions it does not choose."""

    def __init__(self, layout: dict[str, Any], in_channels: int):
        super().__init__()
        self.layout = layout
        self.resolutions = tuple(layout["resolutions"])
        self.stem = stem(in_channels, layout["stem"], layout["stem_stride"])
        stages, c_in = [], layout["stem"]
        for (_, stride, act, se), width in zip(layout["stages"], layout["widths"]):
            stages.append(nn.ModuleList(ElasticMBConv(c_in if b == 0 else width, width, stride if b == 0 else 1, se,
                                                      act)
                                        for b in range(MAX_DEPTH)))
            c_in = width
        self.stages = nn.ModuleList(stages)
        self.head = head(layout["widths"][-1], layout["head"])
        self.classifier = nn.Linear(layout["head"], layout["classes"])

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[int] | None = None) -> torch.Tensor:
        if not self.resolutions:
            return self._forward(x, weights, active, 0)
        out = 0.0
        for r, size in enumerate(self.resolutions):
            if active is not None and int(active[0]) != r:
                out = out + weights[0, r]  # zero in the forward pass (straight-through), keeps the weight's gradient
            else:
                xr = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
                out = out + weights[0, r] * self._forward(xr, weights, active, 1)
        return out

    def _forward(self, x: torch.Tensor, weights: torch.Tensor, active, first: int) -> torch.Tensor:
        h = self.stem(x)
        for s, blocks in enumerate(self.stages):
            d = first + s * PER_STAGE
            depth = None if active is None else DEPTHS[int(active[d])]
            outputs = []
            for b, block in enumerate(blocks):
                if depth is not None and b >= depth:
                    break
                h = block(h, weights[d + 1 + 2 * b, :len(KERNELS)], weights[d + 2 + 2 * b, :len(EXPANDS)])
                if b + 1 in DEPTHS:
                    outputs.append(h)
            mixed = 0.0
            for o in range(len(DEPTHS)):
                mixed = mixed + (weights[d, o] * outputs[o] if o < len(outputs) else weights[d, o])
            h = mixed
        return self.classifier(self.head(h))

    def forward_subnet(self, x: torch.Tensor, choices: Sequence[int]) -> torch.Tensor:
        """The subnet of these choices (an `Arch`'s) alone, with sliced weights: equal to `forward` with one-hot
        weights, cheaper (what progressive shrinking trains)."""
        first = 0
        if self.resolutions:
            size = self.resolutions[int(choices[0])]
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            first = 1
        h = self.stem(x)
        for s, blocks in enumerate(self.stages):
            d = first + s * PER_STAGE
            for b in range(DEPTHS[int(choices[d])]):
                h = blocks[b].forward_subnet(h, int(choices[d + 1 + 2 * b]), int(choices[d + 2 + 2 * b]))
        return self.classifier(self.head(h))

    def sort_channels(self) -> None:
        for blocks in self.stages:
            for block in blocks:
                block.sort_channels()

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())


@register_space("mbv3")
class MBV3Space(SearchSpace):
    name = "mbv3"
    defaults: ClassVar[dict[str, Any]] = {"width": 0.5, "stages": 3, "classes": 10, "res": 0, "stem": 1}
    default_input_shape = (3, 32, 32)
    capabilities = frozenset({"layers", "elastic"})

    def __init__(self, **params):
        super().__init__(**params)
        p = self.params
        width = p["width"]
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0.05 <= float(width) <= 4:
            raise HwnasError(f"mbv3 setting width={quote(width, 40)} is not accepted; accepted: a number 0.05..4")
        for key, (low, high) in {"stages": (1, len(STAGES)), "classes": (1, 100_000), "stem": (1, 2)}.items():
            value = p[key]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= int(value) <= high:
                raise HwnasError(f"mbv3 setting {key}={quote(value, 40)} is not accepted; accepted: an integer "
                                 f"{low}..{high}")
        self.resolutions = _parse_resolutions(p["res"])
        stages = STAGES[: int(p["stages"])]
        widths = [make_divisible(c * float(width)) for c, *_ in stages]
        self.layout = {"stem": make_divisible(STEM_CHANNELS * float(width)), "stem_stride": int(p["stem"]),
                       "stages": stages, "widths": widths, "head": make_divisible(HEAD_EXPAND * widths[-1]),
                       "classes": int(p["classes"]), "resolutions": self.resolutions}
        self._first = 1 if self.resolutions else 0

    # --- decisions ------------------------------------------------------------------------------------------
    @property
    def stages(self) -> int:
        return len(self.layout["stages"])

    def options_per_decision(self) -> tuple[int, ...]:
        per_stage = (len(DEPTHS),) + (len(KERNELS), len(EXPANDS)) * MAX_DEPTH
        return ((len(self.resolutions),) if self.resolutions else ()) + per_stage * self.stages

    def option_labels(self, decision: int) -> tuple[str, ...]:
        if self.resolutions and decision == 0:
            return tuple(f"r{r}" for r in self.resolutions)
        k = (decision - self._first) % PER_STAGE
        if k == 0:
            return tuple(f"d{d}" for d in DEPTHS)
        return tuple(f"k{v}" for v in KERNELS) if k % 2 else tuple(f"e{v}" for v in EXPANDS)

    def decode(self, arch: Arch) -> tuple[int | None, list[list[tuple[int, int]]]]:
        """(resolution or None, per stage the (kernel, expand) of each active block), as numbers."""
        c = arch.choices
        res = self.resolutions[c[0]] if self.resolutions else None
        stages = []
        for s in range(self.stages):
            d = self._first + s * PER_STAGE
            stages.append([(KERNELS[c[d + 1 + 2 * b]], EXPANDS[c[d + 2 + 2 * b]]) for b in range(DEPTHS[c[d]])])
        return res, stages

    def canonical(self, arch: Arch) -> Arch:
        """The same network with the block slots past each stage's depth at option 0."""
        c = list(arch.choices)
        for s in range(self.stages):
            d = self._first + s * PER_STAGE
            for b in range(DEPTHS[c[d]], MAX_DEPTH):
                c[d + 1 + 2 * b] = c[d + 2 + 2 * b] = 0
        return Arch(self.name, tuple(c))

    def sample(self, rng: np.random.Generator) -> Arch:
        return self.canonical(Arch(self.name, tuple(int(rng.integers(0, n)) for n in self.options_per_decision())))

    def derive(self, alpha: torch.Tensor) -> Arch:
        return self.canonical(super().derive(alpha))

    def neighbours(self, arch: Arch) -> list[Arch]:
        arch = self.canonical(arch)
        return [a for a in dict.fromkeys(self.canonical(n) for n in super().neighbours(arch)) if a != arch]

    def onehot_weights(self, arch: Arch) -> torch.Tensor:
        """Mixing weights (alpha_shape) that select exactly `arch` in the supernet."""
        return torch.as_tensor(self.table_from_code(self.encode(arch)))

    # --- naming ---------------------------------------------------------------------------------------------
    def to_string(self, arch: Arch) -> str:
        res, stages = self.decode(arch)
        body = "|".join(",".join(f"k{k}e{e}" for k, e in blocks) for blocks in stages)
        return body if res is None else f"r{res}:{body}"

    def from_string(self, text: str) -> Arch:
        s = str(text).strip()
        example = self.to_string(self.example())
        hint = (f"expected {self.stages} stage(s) separated by '|', each 2-4 blocks 'k<kernel>e<expand>' separated by "
                f"',' (kernels {'/'.join(map(str, KERNELS))}, expands {'/'.join(map(str, EXPANDS))}), e.g. {example}")
        choices: list[int] = []
        if self.resolutions:
            m = re.match(r"^r(\d+):(.*)$", s)
            if not m or int(m.group(1)) not in self.resolutions:
                raise HwnasError(f"malformed mbv3 architecture {quote(s)}: it must start with the resolution, one of "
                                 f"{', '.join(f'r{r}:' for r in self.resolutions)}; {hint}")
            choices.append(self.resolutions.index(int(m.group(1))))
            s = m.group(2)
        stages = s.split("|")
        if len(stages) != self.stages:
            raise HwnasError(f"malformed mbv3 architecture {quote(text)}: {len(stages)} stage(s), {self.spec} has "
                             f"{self.stages}; {hint}")
        for stage in stages:
            choices.extend(self._parse_stage(text, stage, hint))
        return Arch(self.name, tuple(choices))

    def _parse_stage(self, text: str, stage: str, hint: str) -> list[int]:
        blocks = stage.split(",")
        if len(blocks) not in DEPTHS:
            raise HwnasError(f"malformed mbv3 architecture {quote(text)}: stage {quote(stage, 60)} has {len(blocks)} "
                             f"block(s); {hint}")
        out = [DEPTHS.index(len(blocks))]
        for block in blocks:
            m = _BLOCK.match(block.strip())
            if not m or int(m.group(1)) not in KERNELS or int(m.group(2)) not in EXPANDS:
                raise HwnasError(f"malformed mbv3 architecture {quote(text)}: block {quote(block, 40)} is not "
                                 f"accepted; {hint}")
            out += [KERNELS.index(int(m.group(1))), EXPANDS.index(int(m.group(2)))]
        return out + [0, 0] * (MAX_DEPTH - len(blocks))

    def graph(self, arch: Arch) -> Graph:
        """A chain: input, [resize], one node per active block labelled by its kernel and expand, output."""
        res, stages = self.decode(self.canonical(arch))
        blocks = [f"k{k}e{e}" for stage in stages for k, e in stage]
        ops = ["input"] + ([f"r{res}"] if res else []) + blocks + ["output"]
        vocabulary = ("input",) + tuple(f"r{r}" for r in self.resolutions) + tuple(
            f"k{k}e{e}" for k in KERNELS for e in EXPANDS) + ("output",)
        return Graph(ops=tuple(ops), adjacency=np.eye(len(ops), k=1, dtype=np.float32), op_vocabulary=vocabulary)

    # --- networks -------------------------------------------------------------------------------------------
    def check_input_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or shape[0] < 1 or min(shape[1:]) < 1 or max(shape) > 4096:
            raise HwnasError(f"input shape {'x'.join(map(str, shape))} cannot be built by mbv3; accepted: (channels, "
                             "height, width), each 1..4096, e.g. 3x32x32 or 1x8x8")
        return shape

    def block_specs(self, arch: Arch) -> list[tuple[int, int, int, int, int, bool, str]]:
        """(c_in, c_out, kernel, expand, stride, se, activation) of every active block, in order."""
        _, stages = self.decode(arch)
        out, c_in = [], self.layout["stem"]
        for (_, stride, act, se), width, blocks in zip(self.layout["stages"], self.layout["widths"], stages):
            for b, (k, e) in enumerate(blocks):
                out.append((c_in, width, k, e, stride if b == 0 else 1, se, act))
                c_in = width
        return out

    def build(self, arch: Arch, input_shape: Sequence[int] | None = None) -> nn.Module:
        shape = self.check_input_shape(input_shape or self.default_input_shape)
        arch = self.canonical(self.parse(arch))
        res, _ = self.decode(arch)
        return MBV3Net(self.layout, shape[0], self.block_specs(arch), res)

    def supernet(self, input_shape: Sequence[int] | None = None) -> MBV3Supernet:
        shape = self.check_input_shape(input_shape or self.default_input_shape)
        return MBV3Supernet(self.layout, shape[0])

    def example(self) -> Arch:
        """A readable example for messages: EXAMPLE's stages, repeated as needed, at the highest resolution."""
        stages = (EXAMPLE.split("|") * self.stages)[: self.stages]
        prefix = f"r{self.resolutions[-1]}:" if self.resolutions else ""
        choices: list[int] = [len(self.resolutions) - 1] if self.resolutions else []
        for stage in stages:
            choices += self._parse_stage(prefix, stage, "")
        return Arch(self.name, tuple(choices))

    def largest(self) -> Arch:
        """The largest network (kernel 7, expand 6, depth 4 everywhere; the highest resolution)."""
        res = [len(self.resolutions) - 1] if self.resolutions else []
        stage = [len(DEPTHS) - 1] + [len(KERNELS) - 1, len(EXPANDS) - 1] * MAX_DEPTH
        return Arch(self.name, tuple(res + stage * self.stages))

    def extract(self, supernet: MBV3Supernet, arch: Arch, input_shape: Sequence[int] | None = None) -> nn.Module:
        """`build(arch)` with the supernet's shared weights: its output equals the supernet's with that setting."""
        arch = self.canonical(self.parse(arch))
        in_channels = supernet.stem[0].in_channels  # the build's only use of the input shape
        net = self.build(arch, (in_channels, *tuple(input_shape or self.default_input_shape)[1:]))
        state = {f"stem.{k}": v for k, v in supernet.stem.state_dict().items()}
        state.update({f"head.{k}": v for k, v in supernet.head.state_dict().items()})
        state.update({f"classifier.{k}": v for k, v in supernet.classifier.state_dict().items()})
        c = arch.choices
        i = 0
        for s, blocks in enumerate(supernet.stages):
            d = self._first + s * PER_STAGE
            for b in range(DEPTHS[c[d]]):
                sub = blocks[b].subnet_state(c[d + 1 + 2 * b], c[d + 2 + 2 * b])
                state.update({f"blocks.{i}.{k}": v for k, v in sub.items()})
                i += 1
        net.load_state_dict(state)
        return net.eval()

    # --- checkpoints: state dicts, never pickled modules ----------------------------------------------------
    def save_supernet(self, supernet: MBV3Supernet, path: str | Path, input_shape: Sequence[int],
                      info: dict[str, Any] | None = None) -> Path:
        record = {"format": CHECKPOINT_FORMAT, "space": self.spec, "input_shape": list(input_shape),
                  "info": dict(info or {}), "state_dict": supernet.state_dict()}
        with atomic_write(path, "wb") as f:
            torch.save(record, f)
        return Path(path)

    def load_supernet(self, path: str | Path) -> tuple[MBV3Supernet, dict[str, Any]]:
        """(the supernet with the checkpoint's weights, the checkpoint's record without the weights)."""
        p = Path(path)
        if not p.is_file():
            raise HwnasError(f"no supernet checkpoint at {quote(str(path))}; train one with hwnas run --space mbv3")
        try:
            record = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch.load raises many types for one meaning
            raise HwnasError(f"{p} is not a readable supernet checkpoint ({type(e).__name__})") from None
        if not isinstance(record, dict) or record.get("format") != CHECKPOINT_FORMAT or "state_dict" not in record:
            raise HwnasError(f"{p} is not an mbv3 supernet checkpoint (format {CHECKPOINT_FORMAT})")
        if record.get("space") != self.spec:
            raise HwnasError(f"{p} holds a supernet of {quote(record.get('space'))}, not of {self.spec}; give the "
                             "space it was trained for")
        net = self.supernet(record["input_shape"])
        try:
            net.load_state_dict(record["state_dict"])
        except RuntimeError as e:
            raise HwnasError(f"{p} does not fit {self.spec} ({str(e).splitlines()[0][:160]})") from None
        return net.eval(), {k: v for k, v in record.items() if k != "state_dict"}

    # --- layers, for per-layer latency tables ---------------------------------------------------------------
    def layers(self, arch: Arch, input_shape: Sequence[int] | None = None) -> list[tuple[str, tuple[int, ...]]]:
        """Each layer of the network as (its own description, its input shape): what a per-layer latency table is
        keyed by. Blocks read `mbconv-<C>x<H>x<W>-o<out>-k<kernel>-e<expand>-s<stride>-se<0|1>-<act>`."""
        shape = self.check_input_shape(input_shape or self.default_input_shape)
        arch = self.canonical(self.parse(arch))
        res, _ = self.decode(arch)
        out = []
        c, h, w = shape
        if res:
            out.append((f"resize-{c}x{h}x{w}-r{res}", (c, h, w)))
            h = w = res
        out.append((f"stem-{c}x{h}x{w}-o{self.layout['stem']}-s{self.layout['stem_stride']}", (c, h, w)))
        h, w = _strided(h, self.layout["stem_stride"]), _strided(w, self.layout["stem_stride"])
        for c_in, c_out, k, e, stride, se, act in self.block_specs(arch):
            out.append((f"mbconv-{c_in}x{h}x{w}-o{c_out}-k{k}-e{e}-s{stride}-se{int(se)}-{act}", (c_in, h, w)))
            h, w = _strided(h, stride), _strided(w, stride)
        c_last = self.layout["widths"][-1]
        out.append((f"head-{c_last}x{h}x{w}-o{self.layout['head']}-c{self.layout['classes']}", (c_last, h, w)))
        return out

    def layer_module(self, key: str) -> nn.Module:
        """A standalone module for one layer description of `layers` (what the table profiles)."""
        kind, *parts = key.split("-")
        c = int(parts[0].split("x")[0])
        if kind == "resize":
            return Resize(int(parts[1][1:]))
        if kind == "stem":
            return stem(c, int(parts[1][1:]), int(parts[2][1:]))
        if kind == "head":
            return nn.Sequential(head(c, int(parts[1][1:])), nn.Linear(int(parts[1][1:]), int(parts[2][1:])))
        if kind == "mbconv":
            out, k, e, s = (int(p[1:]) for p in parts[1:5])
            return MBConv(c, out, k, e, s, parts[5] == "se1", parts[6])
        raise HwnasError(f"unknown mbv3 layer description {quote(key)}")


def _strided(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


def _parse_resolutions(value: Any) -> tuple[int, ...]:
    if value in (0, "0", "", None):
        return ()
    text = str(value)
    try:
        sizes = tuple(sorted({int(v) for v in text.split("/")}))
    except ValueError:
        sizes = ()
    if not sizes or any(not 4 <= s <= 4096 for s in sizes):
        raise HwnasError(f"mbv3 setting res={quote(text, 40)} is not accepted; accepted: 0 (no resolution decision) "
                         "or sizes 4..4096 separated by '/', e.g. res=24/28/32")
    return sizes
