"""A small ragged toy space for tests: four decisions with 2, 3, 4 and 3 options, a tiny conv net on 3x8x8.

It declares only the minimum (no capabilities): every predictor must work on it through the one-hot code (or the
base class's chain graph), and asking for more (analytic or live encodings) must be refused in one line.
Importing this module registers it as "toy-ragged" (once).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from hwnas.errors import HwnasError, quote
from hwnas.spaces.base import Arch, SearchSpace
from hwnas.spaces.registry import SPACES, register_space

KERNELS = (1, 3)
WIDTHS = (4, 8, 12)
OPS = ("none", "skip", "conv3x3", "avgpool")
ACTS = ("relu", "tanh", "identity")
LABELS = (tuple(f"k{k}" for k in KERNELS), tuple(f"w{w}" for w in WIDTHS), OPS, ACTS)
_FORM = re.compile(r"^(k\d+)-(w\d+)-([a-z0-9]+)-([a-z]+)$")
EXAMPLE = "k3-w8-conv3x3-relu"


def make_op(name: str, channels: int) -> nn.Module:
    if name == "conv3x3":
        return nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    if name == "avgpool":
        return nn.AvgPool2d(3, stride=1, padding=1)
    return nn.Identity()  # skip; "none" is handled by the caller (multiplied by 0)


def make_act(name: str) -> nn.Module:
    return {"relu": nn.ReLU(), "tanh": nn.Tanh(), "identity": nn.Identity()}[name]


class ToyNet(nn.Module):
    def __init__(self, in_channels: int, classes: int, choices: Sequence[int]):
        super().__init__()
        k, w, op, act = choices
        self.stem = nn.Conv2d(in_channels, WIDTHS[w], KERNELS[k], padding=KERNELS[k] // 2)
        self.op, self.none = make_op(OPS[op], WIDTHS[w]), OPS[op] == "none"
        self.act = make_act(ACTS[act])
        self.classifier = nn.Linear(WIDTHS[w], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = h + (h.mul(0.0) if self.none else self.op(h))
        return self.classifier(self.act(h).mean(dim=(2, 3)))


class ToySupernet(nn.Module):
    """forward(x, weights, active=None): weights (4, 4), zero where a decision has no option."""

    def __init__(self, in_channels: int, classes: int):
        super().__init__()
        wmax = max(WIDTHS)
        self.stems = nn.ModuleList(nn.Conv2d(in_channels, wmax, k, padding=k // 2) for k in KERNELS)
        self.register_buffer("width_masks", torch.stack([(torch.arange(wmax) < w).float() for w in WIDTHS]))
        self.ops = nn.ModuleList(make_op(name, wmax) for name in OPS)
        self.acts = nn.ModuleList(make_act(name) for name in ACTS)
        self.classifier = nn.Linear(wmax, classes)

    @staticmethod
    def _mix(weights: torch.Tensor, outputs, active: int | None) -> torch.Tensor:
        if active is None:
            return sum(w * f() for w, f in zip(weights, outputs))
        return sum(weights[i] * f() if i == active else weights[i] for i, f in enumerate(outputs))

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[int] | None = None) -> torch.Tensor:
        a = [None] * 4 if active is None else [int(i) for i in active]
        h = self._mix(weights[0], [lambda s=s: s(x) for s in self.stems], a[0])
        mask = (weights[1][: len(WIDTHS), None] * self.width_masks).sum(0)
        h = h * mask[None, :, None, None]
        ops = [lambda: h.mul(0.0)] + [lambda o=o: o(h) for o in self.ops[1:]]
        h = h + self._mix(weights[2], ops, a[2])
        h = self._mix(weights[3][: len(ACTS)], [lambda f=f: f(h) for f in self.acts], a[3])
        return self.classifier(h.mean(dim=(2, 3)))


class RaggedToySpace(SearchSpace):
    name = "toy-ragged"
    defaults: ClassVar[dict[str, int]] = {"classes": 10}
    default_input_shape = (3, 8, 8)

    def options_per_decision(self) -> tuple[int, ...]:
        return tuple(len(labels) for labels in LABELS)

    def option_labels(self, decision: int) -> tuple[str, ...]:
        return LABELS[decision]

    def none_options(self) -> frozenset[tuple[int, int]]:
        return frozenset({(2, 0)})

    def to_string(self, arch: Arch) -> str:
        return "-".join(LABELS[d][c] for d, c in enumerate(arch.choices))

    def from_string(self, text: str) -> Arch:
        m = _FORM.match(str(text).strip())
        if not m or any(part not in LABELS[d] for d, part in enumerate(m.groups())):
            raise HwnasError(f"malformed toy-ragged architecture {quote(text)}; expected e.g. {EXAMPLE}")
        return Arch(self.name, tuple(LABELS[d].index(part) for d, part in enumerate(m.groups())))

    def build(self, arch: Arch, input_shape: Sequence[int] | None = None) -> nn.Module:
        shape = self.check_input_shape(input_shape or self.default_input_shape)
        return ToyNet(shape[0], self.params["classes"], arch.choices)

    def supernet(self, input_shape: Sequence[int] | None = None) -> nn.Module:
        shape = self.check_input_shape(input_shape or self.default_input_shape)
        return ToySupernet(shape[0], self.params["classes"])


if "toy-ragged" not in SPACES:
    register_space("toy-ragged")(RaggedToySpace)
