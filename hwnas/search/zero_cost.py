"""Training-free (zero-cost) proxies: one registry, one front door `score(model, batch, proxies=[...])`.

Every proxy maps an untrained (or weight-inherited) network plus one batch to a number where higher means "more
likely accurate". Definitions are pinned in each proxy's docstring with the paper and the implementation they
follow, because published implementations disagree (GraSP scores 0.51 in one and 0.01 in another on
NAS-Bench-201). Proxies that share work share it: one forward pass of the batch with hooks feeds NASWOT, AZ-NAS,
grad_norm, snip, fisher, grasp and jacob_cov; synflow, zen-score, GeNAS flatness and dynamical isometry run on
copies, so the caller's model is never changed.

Data: the data-dependent proxies read the batch given (the benchmark and `hwnas search --strategy zero-cost` use
real CIFAR-10 images, `cifar_batch`); everything is seeded and deterministic on CPU for a seed.

Combinations: `vote` (zero-shot rank aggregation, AZ-NAS's sum of log relative ranks) and
`LearnedCombination` (fitted from k labelled architectures with scikit-learn).
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn

from hwnas.data import _read_cifar_batch
from hwnas.errors import HwnasError
from hwnas.registries import PROXIES
from hwnas.spaces import get_space
from hwnas.spaces.analysis import profile_model


@dataclass(frozen=True)
class Proxy:
    name: str
    compute: Callable[[ProxyContext], float]
    needs_data: bool  # reads the batch's images (and labels) rather than synthetic inputs
    citation: str


def register_proxy(name: str, needs_data: bool, citation: str):
    def decorator(fn: Callable[[ProxyContext], float]) -> Callable[[ProxyContext], float]:
        PROXIES.register(name)(Proxy(name, fn, needs_data, citation))
        return fn

    return decorator


def proxy_names() -> list[str]:
    return PROXIES.names()


# --- the shared pass ------------------------------------------------------------------------------------------
def _weighted_layers(model: nn.Module) -> list[nn.Module]:
    """The layers zero-cost-nas scores ("prunable" layers): Conv2d and Linear."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The network's stages in order, for AZ-NAS's block features: the top-level children, with ModuleLists
    (NAS-Bench-201's cells) opened up."""
    blocks: list[nn.Module] = []
    for child in model.children():
        blocks.extend(child if isinstance(child, nn.ModuleList) else [child])
    return blocks


@dataclass
class ForwardRecord:
    logits: torch.Tensor
    loss: torch.Tensor
    relu_kernel: torch.Tensor | None  # NASWOT's K (batch x batch), float64
    layer_outputs: list[torch.Tensor]  # conv/linear outputs (for fisher)
    block_features: list[torch.Tensor]  # 4-D block outputs with spatial extent > 1 (for AZ-NAS)


@dataclass
class ProxyContext:
    """One model and batch; computes the shared forward pass and gradients once, on first use."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    seed: int = 0
    wanted: frozenset[str] = frozenset()
    options: dict[str, Any] = field(default_factory=dict)
    _forward: ForwardRecord | None = None
    _grads: dict[str, Any] | None = None
    _input: torch.Tensor | None = None  # the batch's images as a leaf that requires grad (jacob_cov)

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1000 + offset)

    @property
    def forward(self) -> ForwardRecord:
        if self._forward is None:
            self._forward = self._run_forward()
        return self._forward

    def _run_forward(self) -> ForwardRecord:
        model = self.model
        model.train()  # batch statistics, as in every cited implementation
        kernel: list[torch.Tensor] = []
        layer_outputs: list[torch.Tensor] = []
        features: list[torch.Tensor] = []

        def relu_hook(module, inputs, output):
            codes = (inputs[0].detach().reshape(len(inputs[0]), -1) > 0).double()
            k = codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T
            kernel.append(k)

        def layer_hook(module, inputs, output):
            layer_outputs.append(output)

        def block_hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[2] * output.shape[3] > 1:
                features.append(output)

        handles = [m.register_forward_hook(relu_hook) for m in model.modules() if isinstance(m, nn.ReLU)]
        handles += [m.register_forward_hook(layer_hook) for m in _weighted_layers(model)]
        handles += [m.register_forward_hook(block_hook) for m in _blocks(model)]
        x = self.x.clone().requires_grad_(True)
        try:
            logits = model(x)
        finally:
            for h in handles:
                h.remove()
        self._input = x
        loss = F.cross_entropy(logits, self.y)
        relu_kernel = torch.stack(kernel).sum(0) if kernel else None
        return ForwardRecord(logits, loss, relu_kernel, layer_outputs, features)

    @property
    def grads(self) -> dict[str, Any]:
        """All backward passes over the shared forward graph, in one place so the graph is freed once."""
        if self._grads is None:
            self._grads = self._run_backward()
        return self._grads

    def _run_backward(self) -> dict[str, Any]:
        rec = self.forward
        out: dict[str, Any] = {}
        if "az_trainability" in self.wanted:
            out["az_trainability"] = _az_trainability(rec.block_features, self.generator(7))
        if "jacob_cov" in self.wanted:
            out["input_grad"] = torch.autograd.grad(rec.logits.sum(), self._input, retain_graph=True)[0]
        layers = _weighted_layers(self.model)
        weights = [m.weight for m in layers]
        hessian = "grasp" in self.wanted
        acts = rec.layer_outputs if "fisher" in self.wanted else []
        g = torch.autograd.grad(rec.loss, weights + acts, create_graph=hessian, retain_graph=hessian,
                                allow_unused=True)
        gw = [torch.zeros_like(w) if gi is None else gi for w, gi in zip(weights, g[:len(weights)])]
        out["weights"] = [w.detach() for w in weights]
        out["weight_grads"] = [gi.detach() for gi in gw]
        out["act_grads"] = [(a.detach(), gi.detach()) for a, gi in zip(acts, g[len(weights):]) if gi is not None]
        if hessian:
            z = sum((gi * gi.detach()).sum() for gi in gw if gi.requires_grad)
            hg = torch.autograd.grad(z, weights, allow_unused=True) if isinstance(z, torch.Tensor) else []
            out["hessian_grad"] = [torch.zeros_like(w) if h is None else h for w, h in zip(weights, hg)]
        return out


# --- data -----------------------------------------------------------------------------------------------------
CIFAR_MEAN = (125.3, 123.0, 113.9)
CIFAR_STD = (63.0, 62.1, 66.7)


def cifar_batch(folder: str | Path, batch_size: int = 64, seed: int = 0, split: str = "data_batch_1"
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` real CIFAR-10 images (seeded choice from one python-format batch file), standardised with
    CIFAR-10's usual channel statistics; only the one file is needed (the shared 1,000-image subset works)."""
    path = Path(folder).expanduser() / split
    if not path.is_file():
        raise HwnasError(f"no CIFAR-10 batch at {path}; the zero-cost proxies need a folder in CIFAR-10's python "
                         f"format with {split} (e.g. ../shared/data/cifar10/cifar-10-batches-py)")
    x, y = _read_cifar_batch(path)
    if batch_size > len(y):
        raise HwnasError(f"batch size {batch_size} is larger than the {len(y)} images in {path}")
    idx = np.random.default_rng(seed).choice(len(y), size=batch_size, replace=False)
    mean = np.array(CIFAR_MEAN, np.float32)[:, None, None]
    std = np.array(CIFAR_STD, np.float32)[:, None, None]
    return torch.as_tensor((x[idx] - mean) / std), torch.as_tensor(y[idx])


# --- the front door -------------------------------------------------------------------------------------------
DEFAULT_PROXIES = ("naswot", "synflow", "snip", "grasp", "fisher", "grad_norm", "jacob_cov", "zen",
                   "az_expressivity", "az_progressivity", "az_trainability", "genas_flatness", "isometry",
                   "flops", "params")


#: proxies that read the shared forward pass, and those that also read its backward passes
SHARED_FORWARD = frozenset({"naswot", "az_expressivity", "az_progressivity", "az_trainability", "grad_norm", "snip",
                            "fisher", "grasp", "jacob_cov"})
SHARED_BACKWARD = frozenset({"az_trainability", "grad_norm", "snip", "fisher", "grasp", "jacob_cov"})


def score(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], proxies: Sequence[str] | None = None,
          seed: int = 0, timings: dict[str, float] | None = None, **options: Any) -> dict[str, float]:
    """Score one network with each named proxy (default: all registered); higher is better for every proxy.

    `batch` is (images (B, C, H, W), labels (B,)); the model is copied first, so it is left unchanged.
    Options: `genas_steps` (SGD steps before the flatness probe, default 1; 0 for inherited weights),
    `genas_samples` and `isometry_samples` (images of the batch those two use, default 8 and 2).
    `timings`, when given, receives seconds per proxy, plus "shared_forward" and "shared_backward" for the
    passes several proxies share (paid once)."""
    names = list(dict.fromkeys(proxies)) if proxies else list(DEFAULT_PROXIES)
    chosen = [PROXIES.get(n) for n in names]
    torch.manual_seed(seed)
    x, y = batch
    ctx = ProxyContext(copy.deepcopy(model), x, y, seed, frozenset(names), dict(options))
    clock = timings if timings is not None else {}
    # Untrained networks (GeNAS's SGD step, none-heavy cells) produce denormal floats, which run up to 10x slower
    # on CPUs; flushing them to zero changes no ranking. torch has no getter: the default (off) is restored.
    torch.set_flush_denormal(True)
    try:
        if SHARED_FORWARD & set(names):
            _timed(clock, "shared_forward", lambda: ctx.forward)
        if SHARED_BACKWARD & set(names):
            _timed(clock, "shared_backward", lambda: ctx.grads)
        result: dict[str, float] = {}
        for proxy in chosen:
            value = float(_timed(clock, proxy.name, lambda p=proxy: p.compute(ctx)))
            result[proxy.name] = value if math.isfinite(value) else float("-inf") if value < 0 else float("nan")
    finally:
        torch.set_flush_denormal(False)
    return result


def _timed(clock: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    value = fn()
    clock[name] = time.perf_counter() - start
    return value


# --- proxies --------------------------------------------------------------------------------------------------
@register_proxy("naswot", True, "Mellor et al., ICML 2021; github.com/BayesWatch/nas-without-training")
def naswot(ctx: ProxyContext) -> float:
    """NASWOT: log|K| with K_ij = sum over ReLUs of the number of units where samples i and j agree on being
    active (codes c, K = c c^T + (1-c)(1-c)^T), as in the authors' implementation (hooks on every ReLU input)."""
    k = ctx.forward.relu_kernel
    if k is None:
        return float("nan")
    return float(torch.linalg.slogdet(k)[1])


@register_proxy("grad_norm", True, "Abdelfattah et al., ICLR 2021; github.com/SamsungLabs/zero-cost-nas")
def grad_norm(ctx: ProxyContext) -> float:
    """Sum over Conv2d/Linear layers of the L2 norm of dLoss/dW (cross-entropy on the batch)."""
    return float(sum(g.norm() for g in ctx.grads["weight_grads"]))


@register_proxy("snip", True, "Lee et al., ICLR 2019; as in github.com/SamsungLabs/zero-cost-nas")
def snip(ctx: ProxyContext) -> float:
    """SNIP saliency summed over Conv2d/Linear weights: sum |W * dLoss/dW|."""
    return float(sum((w * g).abs().sum() for w, g in zip(ctx.grads["weights"], ctx.grads["weight_grads"])))


@register_proxy("grasp", True, "Wang et al., ICLR 2020; as in github.com/SamsungLabs/zero-cost-nas")
def grasp(ctx: ProxyContext) -> float:
    """GraSP: sum over Conv2d/Linear weights of -W * (H g), g = dLoss/dW, H the Hessian (Hessian-gradient
    product by double backward, same batch for g and Hg); zero-cost-nas's sign convention."""
    return float(sum((-w * h).sum() for w, h in zip(ctx.grads["weights"], ctx.grads["hessian_grad"])))


@register_proxy("fisher", True, "Theis et al. 2018, Turner et al., ICLR 2020; as in SamsungLabs/zero-cost-nas")
def fisher(ctx: ProxyContext) -> float:
    """Fisher: for every Conv2d/Linear output a with gradient g, per channel 0.5 * mean over the batch of
    (sum over positions of a*g)^2, summed over channels and layers."""
    total = 0.0
    for a, g in ctx.grads["act_grads"]:
        per = (a * g).sum(dim=(2, 3)) if a.dim() == 4 else a * g
        total += float(0.5 * per.pow(2).mean(0).sum())
    return total


@register_proxy("jacob_cov", True, "Mellor et al. 2020 (NASWOT v1); as in SamsungLabs/zero-cost-nas")
def jacob_cov(ctx: ProxyContext) -> float:
    """Jacobian covariance: J = d(sum of logits)/d(input) per image, flattened; v = eigenvalues of corrcoef(J);
    score = -sum(log(v + k) + 1/(v + k)), k = 1e-5."""
    j = ctx.grads["input_grad"].reshape(len(ctx.x), -1).double().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):  # an image with a zero gradient: undefined, NaN
        corr = np.corrcoef(j)
    if not np.all(np.isfinite(corr)):
        return float("nan")
    v = np.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


@register_proxy("synflow", False, "Tanaka et al., NeurIPS 2020; as in SamsungLabs/zero-cost-nas (bn=False)")
def synflow(ctx: ProxyContext) -> float:
    """SynFlow: on a float64 copy with BatchNorm removed and every parameter replaced by its absolute value, the
    sum of the outputs for an all-ones input (batch 1); score = sum over Conv2d/Linear weights of |W * dR/dW|."""
    model = copy.deepcopy(ctx.model)
    _replace_batchnorm(model)
    model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    out = model(torch.ones((1, *ctx.x.shape[1:]), dtype=torch.float64))
    weights = [m.weight for m in _weighted_layers(model)]
    grads = torch.autograd.grad(out.sum(), weights, allow_unused=True)
    return float(sum((w.detach() * g).abs().sum() for w, g in zip(weights, grads) if g is not None))


def _replace_batchnorm(model: nn.Module) -> None:
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, nn.Identity())
        else:
            _replace_batchnorm(child)


@register_proxy("zen", False, "Lin et al., ICCV 2021 (Zen-NAS); github.com/idstcv/ZenNAS")
def zen(ctx: ProxyContext) -> float:
    """Zen-score: on a copy with Gaussian weights (N(0,1) convs/linears, BN affine 1/0, batch statistics), for
    Gaussian inputs x and x + 0.01 eps (batch as given), log E|f(x) - f(x + 0.01 eps)|_1 over the feature map
    before global pooling, plus the sum over BatchNorm layers of log sqrt(mean batch variance)."""
    model = copy.deepcopy(ctx.model).train()
    g = ctx.generator(11)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                m.weight.fill_(1.0)
                m.bias.zero_()
    pools = [m for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    if not pools:
        return float("nan")
    features: list[torch.Tensor] = []
    log_bn = [0.0]
    hooks = [pools[-1].register_forward_hook(lambda m, i, o: features.append(i[0]))]

    def bn_hook(module, inputs, output):
        var = inputs[0].transpose(0, 1).reshape(inputs[0].shape[1], -1).var(dim=1, unbiased=False)
        log_bn[0] += float(torch.log(torch.sqrt(var.mean()) + 1e-12))

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    x = torch.randn(ctx.x.shape, generator=g)
    eps = torch.randn(ctx.x.shape, generator=g)
    with torch.no_grad():
        model(x + 0.01 * eps)
        hooks += [m.register_forward_hook(bn_hook) for m in bns]
        model(x)
    for h in hooks:
        h.remove()
    delta = (features[1] - features[0]).abs().sum(dim=(1, 2, 3)).mean()
    return float(torch.log(delta + 1e-12)) + log_bn[0]


def _az_expressivity_scores(features: list[torch.Tensor]) -> np.ndarray:
    scores = []
    for f in features:
        b, c, h, w = f.shape
        feat = f.detach().permute(0, 2, 3, 1).reshape(b * h * w, c).double()
        feat = feat - feat.mean(0, keepdim=True)
        sigma = feat.T @ feat / len(feat)
        s = torch.linalg.eigvalsh(sigma).clamp(min=0)
        p = s / s.sum().clamp(min=1e-12)
        scores.append(float((-p * torch.log(p + 1e-8)).sum()))
    return np.array(scores)


@register_proxy("az_expressivity", True, "Lee & Ham, CVPR 2024 (AZ-NAS); github.com/cvlab-yonsei/AZ-NAS")
def az_expressivity(ctx: ProxyContext) -> float:
    """AZ-NAS expressivity: for each block's output (positions x channels), the entropy of the normalised
    eigenvalues of its channel covariance; summed over blocks."""
    return float(_az_expressivity_scores(ctx.forward.block_features).sum())


@register_proxy("az_progressivity", True, "Lee & Ham, CVPR 2024 (AZ-NAS); github.com/cvlab-yonsei/AZ-NAS")
def az_progressivity(ctx: ProxyContext) -> float:
    """AZ-NAS progressivity: the smallest increase of the block expressivity from one block to the next."""
    s = _az_expressivity_scores(ctx.forward.block_features)
    return float(np.min(s[1:] - s[:-1])) if len(s) > 1 else float("nan")


def _az_trainability(features: list[torch.Tensor], g: torch.Generator) -> float:
    """AZ-NAS's official trainability: per consecutive block pair (last first), a Rademacher vector v at the
    output, u = v^T J by backward; inputs of a higher resolution are pixel-unshuffled to the output's; the
    matrix M = u^T v / (B H W) (input channels x output channels); score -(s + 1/(s + 1e-6)) + 2 with s the
    largest singular value of M, averaged over pairs. A block whose Jacobian is the identity scores -inf."""
    scores = []
    for i in reversed(range(1, len(features))):
        f_in, f_out = features[i - 1], features[i]
        v = torch.randint(0, 2, f_out.shape, generator=g).to(f_out.dtype) * 2 - 1
        (u,) = torch.autograd.grad(f_out, f_in, grad_outputs=v, retain_graph=True, allow_unused=True)
        if u is None:
            continue
        if u.shape == v.shape and torch.equal(u, v):
            scores.append(-math.inf)
            continue
        if u.shape[2] != v.shape[2] or u.shape[3] != v.shape[3]:
            u = F.pixel_unshuffle(u, u.shape[2] // v.shape[2])
        n = v.shape[0] * v.shape[2] * v.shape[3]
        mat = u.permute(0, 2, 3, 1).reshape(n, u.shape[1]).T @ v.permute(0, 2, 3, 1).reshape(n, v.shape[1]) / n
        s = float(torch.linalg.svdvals(mat).max())
        scores.append(-s - 1.0 / (s + 1e-6) + 2.0)
    return float(np.mean(scores)) if scores else float("nan")


@register_proxy("az_trainability", True, "Lee & Ham, CVPR 2024 (AZ-NAS); github.com/cvlab-yonsei/AZ-NAS")
def az_trainability(ctx: ProxyContext) -> float:
    """AZ-NAS trainability: how far each block's Jacobian is from norm-preserving, -(s + 1/s - 2) with s its
    gain estimated from one random Rademacher backward, averaged over consecutive block pairs."""
    return float(ctx.grads["az_trainability"])


@register_proxy("genas_flatness", True, "Jeong et al., IJCAI 2023 (GeNAS); filter-wise noise as Li et al. 2018")
def genas_flatness(ctx: ProxyContext) -> float:
    """GeNAS flatness: after `genas_steps` SGD steps on the batch (0 with inherited weights), the loss change
    sum over sigma in (0.01, 0.05) of |L(W + sigma |W| eps) - L(W)| (eps Gaussian, relative to each weight);
    returned negated, so flatter (smaller change) scores higher."""
    model = copy.deepcopy(ctx.model).train()
    steps = int(ctx.options.get("genas_steps", 1))
    n = min(int(ctx.options.get("genas_samples", 8)), len(ctx.x))
    x, y = ctx.x[:n], ctx.y[:n]
    if steps:
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    g = ctx.generator(13)
    with torch.no_grad():
        base = float(F.cross_entropy(model(x), y))
        originals = [p.detach().clone() for p in model.parameters()]
        change = 0.0
        for sigma in (0.01, 0.05):
            for p, p0 in zip(model.parameters(), originals):
                p.copy_(p0 + sigma * p0.abs() * torch.randn(p.shape, generator=g))
            change += abs(float(F.cross_entropy(model(x), y)) - base)
    return -change


@register_proxy("isometry", True, "Pennington, Schoenholz & Ganguli, NeurIPS 2017 (dynamical isometry)")
def isometry(ctx: ProxyContext) -> float:
    """Dynamical isometry: the input-output Jacobian (logits x pixels) of each of the first `isometry_samples`
    images (train-mode BN over that sub-batch); score = -std of the log singular values, pooled over images
    (0 when every singular value is equal, i.e. perfect isometry)."""
    n = min(int(ctx.options.get("isometry_samples", 2)), len(ctx.x))
    model = ctx.model.train()
    x = ctx.x[:n].clone().requires_grad_(True)
    logits = model(x)
    rows = [torch.autograd.grad(logits[:, c].sum(), x, retain_graph=c < logits.shape[1] - 1)[0].reshape(n, -1)
            for c in range(logits.shape[1])]
    jac = torch.stack(rows, dim=1).double()  # (n, classes, pixels)
    s = torch.linalg.svdvals(jac)
    log_s = torch.log(s.clamp(min=1e-30))
    return -float(log_s.std())


@register_proxy("flops", False, "multiply-accumulates at batch 1 (hwnas.spaces.analysis.profile_model)")
def flops(ctx: ProxyContext) -> float:
    """MACs per image of the built network (the "full" convention of hwnas.spaces.analysis)."""
    return float(profile_model(ctx.model, tuple(ctx.x.shape[1:])).macs)


@register_proxy("params", False, "parameter count")
def params(ctx: ProxyContext) -> float:
    """Number of parameters."""
    return float(sum(p.numel() for p in ctx.model.parameters()))


# --- combinations ---------------------------------------------------------------------------------------------
def ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n (ties averaged; NaN ranks lowest)."""
    v = np.asarray(values, np.float64)
    v = np.where(np.isfinite(v), v, -np.inf)
    return rankdata(v, method="average")


def vote(scores: dict[str, Sequence[float]], proxies: Sequence[str] | None = None) -> np.ndarray:
    """Zero-shot rank aggregation over a pool of architectures (AZ-NAS's non-linear ranking): per proxy the rank
    r in 1..n (n best), summed log(r / n); a low rank on any proxy pulls an architecture down."""
    names = list(proxies) if proxies else list(scores)
    if not names:
        raise HwnasError("the vote needs at least one proxy")
    n = len(np.asarray(scores[names[0]]))
    return np.sum([np.log(ranks(scores[name]) / n) for name in names], axis=0)


class LearnedCombination:
    """Proxy scores -> accuracy, fitted from k labelled architectures (scikit-learn).

    Features are each proxy's quantile within a `pool` of scored, unlabelled architectures (labels are what is
    scarce, scores are free), so scales and infinities do not matter. Methods: "ridge" (RidgeCV), "gbr"
    (gradient-boosted trees), "pairwise" (logistic regression on feature differences of labelled pairs, a
    RankSVM-style order model: predicts a score, not an accuracy)."""

    METHODS = ("ridge", "gbr", "pairwise")

    def __init__(self, method: str = "ridge", seed: int = 0):
        if method not in self.METHODS:
            raise HwnasError(f"unknown learned combination {method!r}; accepted: {', '.join(self.METHODS)}")
        self.method, self.seed = method, seed
        self.pool: np.ndarray | None = None
        self.model = None

    def _features(self, X: np.ndarray) -> np.ndarray:
        X = np.where(np.isfinite(X), X, np.where(X > 0, np.inf, -np.inf))
        cols = [np.searchsorted(self.pool[:, j], X[:, j], side="right") / len(self.pool)
                for j in range(X.shape[1])]
        return np.column_stack(cols)

    def fit(self, X: np.ndarray, y: np.ndarray, pool: np.ndarray | None = None) -> LearnedCombination:
        X = np.asarray(X, np.float64)
        y = np.asarray(y, np.float64)
        base = np.asarray(X if pool is None else pool, np.float64)
        base = np.where(np.isnan(base), -np.inf, base)
        self.pool = np.sort(base, axis=0)
        F_ = self._features(X)
        if self.method == "ridge":
            from sklearn.linear_model import RidgeCV

            self.model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(F_, y)
        elif self.method == "gbr":
            from sklearn.ensemble import GradientBoostingRegressor

            self.model = GradientBoostingRegressor(n_estimators=200, max_depth=2, learning_rate=0.05,
                                                   subsample=0.8, random_state=self.seed).fit(F_, y)
        else:
            from sklearn.linear_model import LogisticRegression

            i, j = np.triu_indices(len(y), 1)
            keep = y[i] != y[j]
            diff = F_[i[keep]] - F_[j[keep]]
            label = (y[i[keep]] > y[j[keep]]).astype(int)
            diff, label = np.vstack([diff, -diff]), np.concatenate([label, 1 - label])
            self.model = LogisticRegression(C=1.0, fit_intercept=False, max_iter=2000).fit(diff, label)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        F_ = self._features(np.asarray(X, np.float64))
        if self.method == "pairwise":
            return F_ @ self.model.coef_.ravel()
        return self.model.predict(F_)


@dataclass
class ProxyMetric:
    """A picklable `arch -> float` for multi-objective search (an accuracy objective without training): the sum of
    the named proxies of the architecture's freshly built network (seeded). `data`: a CIFAR-10 python-format folder
    (None: seeded Gaussian images of the space's default input shape, labels 0..9). For several proxies on
    different scales prefer one proxy per objective, or `vote` over a pool."""

    space: str
    proxies: tuple[str, ...] = ("az_expressivity",)
    data: str | None = None
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        for name in self.proxies:
            PROXIES.get(name)
        self._cache: tuple[Any, tuple[torch.Tensor, torch.Tensor]] | None = None

    def _loaded(self):
        if self._cache is None:
            space = get_space(self.space)
            if self.data is not None:
                batch = cifar_batch(self.data, self.batch_size, self.seed)
            else:
                g = torch.Generator().manual_seed(self.seed)
                shape = (self.batch_size, *space.default_input_shape)
                batch = (torch.randn(shape, generator=g), torch.arange(self.batch_size) % 10)
            self._cache = (space, batch)
        return self._cache

    def __call__(self, arch) -> float:
        space, batch = self._loaded()
        arch = space.from_string(arch) if isinstance(arch, str) else arch
        torch.manual_seed(self.seed)
        model = space.build(arch, tuple(batch[0].shape[1:]))
        return float(sum(score(model, batch, self.proxies, seed=self.seed).values()))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = None
        return state
