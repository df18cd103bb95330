"""Few-shot transfer to a new device (in the spirit of HELP, with a much smaller model).

Pretraining fits one MLP body with one output per source device (each output predicts that device's
standardised log cost), on all the measurements of the devices already profiled. Adapting to a new device fits
only a linear head on the body's outputs, by ridge with a leave-one-out chosen penalty, from k = 5..20 of the
new device's measurements: the new device is described as a blend of the known ones. The whole map stays
differentiable (body, head and exp), so a transferred predictor can drive a differentiable search.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.files import atomic_write
from hwnas.predictors.base import Predictor, load_predictor, register_predictor
from hwnas.predictors.linear import ALPHAS, _fit_ridge
from hwnas.predictors.training import standardise


class TransferModule(nn.Module):
    def __init__(self, in_dim: int, sources: int, hidden: int, layers: int, log_target: bool):
        super().__init__()
        dims = [in_dim] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*blocks, nn.Linear(dims[-1], sources))  # standardised log cost per source device
        self.head = nn.Linear(sources, 1)
        self.log_target = log_target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.head(self.body(x)).squeeze(-1)
        return torch.exp(t) if self.log_target else t


@register_predictor("transfer")
class TransferPredictor(Predictor):
    """settings: hidden, layers, steps, batch, lr, weight_decay (of the pretrained body), sources (their names).

    Pretraining runs a fixed number of minibatch steps (default 1000 of 512 rows), whatever the number of source
    rows: six NAS-Bench-201 devices' 93,750 measurements pretrain in seconds, not the half hour that epochs over
    every row took, for the same transfer accuracy (bench/predictors.py)."""

    name = "transfer"
    differentiable = True
    #: onehot + live-onehot + analytic features transfer best (mean Spearman 0.970 against 0.965 for onehot with
    #: k=10 on the six NAS-Bench-201 devices); pass encoding="onehot" to drive a differentiable search with it.
    default_encoding = "features"

    def __init__(self, log_target: bool | None = None, seed: int = 0, hidden: int = 128, layers: int = 3,
                 steps: int = 1000, batch: int = 512, lr: float = 3e-3, weight_decay: float = 1e-4, sources=(),
                 **settings):
        settings.pop("epochs", None)  # files before `steps` trained by epochs; only the body's shape matters now
        super().__init__(log_target, seed, hidden=hidden, layers=layers, steps=steps, batch=batch, lr=lr,
                         weight_decay=weight_decay, sources=list(sources), **settings)
        self.module: TransferModule | None = None

    def pretrain(self, datasets: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> TransferPredictor:
        """Fit the body on measurements from source devices: {device name: (encodings, values)}."""
        if not datasets:
            raise HwnasError("transfer pretraining needs measurements from at least one source device")
        s = self.settings
        names = list(datasets)
        X = np.concatenate([np.asarray(datasets[n][0], np.float32) for n in names])
        device = np.concatenate([np.full(len(datasets[n][0]), i) for i, n in enumerate(names)])
        t = np.concatenate([self._standardised(self._to_target(datasets[n][1])) for n in names])
        torch.manual_seed(self.seed)
        g = torch.Generator().manual_seed(self.seed)
        self.module = TransferModule(X.shape[1], len(names), s["hidden"], s["layers"], self.log_target)
        self.settings["sources"] = names
        X_t, d_t, t_t = torch.as_tensor(X), torch.as_tensor(device), torch.as_tensor(t, dtype=torch.float32)
        opt = torch.optim.AdamW(self.module.body.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, s["steps"]))
        batch = max(1, min(int(s["batch"]), len(X_t)))
        order, at = torch.randperm(len(X_t), generator=g), 0
        for _ in range(int(s["steps"])):
            if at + batch > len(order):  # a fresh shuffle each pass over the rows
                order, at = torch.randperm(len(X_t), generator=g), 0
            idx = order[at:at + batch]
            at += batch
            pred = self.module.body(X_t[idx]).gather(1, d_t[idx, None]).squeeze(1)  # each row's own device
            loss = nn.functional.mse_loss(pred, t_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        self.module.eval()
        # Until adapted, the head predicts the mean of the sources (in standardised units).
        with torch.no_grad():
            self.module.head.weight.fill_(1.0 / len(names))
            self.module.head.bias.zero_()
        return self

    @staticmethod
    def _standardised(t: np.ndarray) -> np.ndarray:
        mean, std = standardise(t)
        return (t - mean) / std

    def source_outputs(self, X: np.ndarray) -> np.ndarray:
        """(n, sources): the pretrained body's standardised predictions for each source device."""
        self._require_pretrained()
        with torch.no_grad():
            return self.module.body(torch.as_tensor(np.asarray(X, np.float32))).double().numpy()

    def fit(self, X: np.ndarray, y: np.ndarray) -> TransferPredictor:
        """Adapt to the new device: fit the linear head on its few measurements (the body stays as pretrained)."""
        Z = self.source_outputs(X)
        t = self._to_target(y)
        if len(t) < 2:
            raise HwnasError("adapting a transfer predictor needs at least 2 measurements of the new device")
        coef, intercept = _fit_ridge(Z, t, ALPHAS)
        with torch.no_grad():
            self.module.head.weight.copy_(torch.as_tensor(coef[None, :], dtype=torch.float32))
            self.module.head.bias.fill_(intercept)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        self._require_pretrained()
        with torch.no_grad():
            return self.module(torch.as_tensor(np.asarray(X, np.float32))).double().numpy()

    def torch_module(self) -> nn.Module:
        self._require_pretrained()
        return self.module

    def _require_pretrained(self) -> None:
        if self.module is None:
            raise HwnasError("a transfer predictor must be pretrained on source devices first "
                             "(TransferPredictor.pretrain or pretrain_transfer)")

    def get_arrays(self) -> dict[str, np.ndarray]:
        self._require_pretrained()
        return {k: v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        s = self.settings
        self.module = TransferModule(arrays["body.0.weight"].shape[1], arrays["head.weight"].shape[1], s["hidden"],
                                     s["layers"], self.log_target)
        self.module.load_state_dict({k: torch.as_tensor(v) for k, v in arrays.items()})
        self.module.eval()


def pretrain_transfer(datasets: Mapping[str, tuple[np.ndarray, np.ndarray]], seed: int = 0,
                      **settings) -> TransferPredictor:
    """A transfer predictor pretrained on {source device: (encodings, values)}; then `.fit(X_k, y_k)` adapts it."""
    return TransferPredictor(seed=seed, **settings).pretrain(datasets)


def transfer_cache_key(rows: Mapping[str, int], **context) -> str:
    """What a pretrained body depends on: the source devices and their row counts ({name: rows}), plus `context`
    (space, input shape, batch, target, encoding, seed, settings): a short hash, the body's file name."""
    described = {"sources": sorted((name, int(n)) for name, n in rows.items()),
                 **context}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_pretrain(sources: Callable[[], Mapping[str, tuple[np.ndarray, np.ndarray]]], cache_dir: str | Path | None,
                    key: str, seed: int = 0, metadata: Mapping | None = None, encoding: str | None = None,
                    **settings) -> TransferPredictor:
    """A transfer predictor pretrained on `sources()` (called only when needed: encoding thousands of
    architectures takes a while), read from `cache_dir/transfer-body-<key>.npz` when that file exists, else
    pretrained now and saved there (atomically; `encoding` names the sources' encoding); `cache_dir` None pretrains without caching.
    `.metadata["transfer_body"]` says which: {"file", "reused", "seconds"}."""
    path = Path(cache_dir) / f"transfer-body-{key}.npz" if cache_dir is not None else None
    started = time.perf_counter()
    if path is not None and path.is_file():
        body = load_predictor(path)
        if isinstance(body, TransferPredictor):
            body.metadata["transfer_body"] = {"file": str(path), "reused": True,
                                              "seconds": round(time.perf_counter() - started, 2)}
            return body
    body = TransferPredictor(seed=seed, **settings).pretrain(sources())
    body.encoding = encoding or body.encoding  # what the sources' codes are (the saved file records it)
    body.metadata = dict(metadata or {})
    if path is not None:
        with atomic_write(path, "wb") as f:
            body.save(f.name)
    body.metadata["transfer_body"] = {"file": None if path is None else str(path), "reused": False,
                                      "seconds": round(time.perf_counter() - started, 2)}
    return body
