"""Datasets that need no download: scikit-learn's digits, a synthetic task, a local CIFAR-10 folder, any .npz.

`load_dataset(name_or_path)` returns a `Dataset` with train / val / test tensors (images as float32
(N, C, H, W), standardised with the training split's statistics; labels as int64). The val split is what a
bi-level search uses for the architecture step; `train_arch` retrains on train + val and reports test accuracy.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from hwnas.errors import HwnasError

ACCEPTED = ("'digits' (scikit-learn, 8x8, built in), 'synthetic', a CIFAR-10 folder in its python format "
            "(data_batch_1..5 and test_batch), or an .npz file with arrays x and y")
CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x_train.shape[1:])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def load_dataset(name_or_path: str | Path = "digits", seed: int = 0, val_fraction: float = 0.25,
                 test_fraction: float = 0.2, limit: int | None = None) -> Dataset:
    """Load a dataset by name or path.

    `limit` keeps at most that many training examples (val and test shrink in proportion), for quick runs.
    Splits are stratified and seeded; datasets that come with a test split (CIFAR-10, an .npz with x_test and
    y_test) keep it.
    """
    text = str(name_or_path)
    if text == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = d.images.astype(np.float32)[:, None], d.target.astype(np.int64)
        return _split("digits", x, y, None, None, seed, val_fraction, test_fraction, limit)
    if text.startswith("synthetic"):
        return _synthetic(seed, val_fraction, test_fraction, limit)
    path = Path(text).expanduser()
    if path.suffix == ".npz":
        return _load_npz(path, seed, val_fraction, test_fraction, limit)
    if path.is_dir() or text.lower().startswith("cifar") or "/" in text:
        return _load_cifar10(path, seed, val_fraction, limit)
    raise HwnasError(f"unknown dataset {text!r}; accepted: {ACCEPTED}")


def _synthetic(seed: int, val_fraction: float, test_fraction: float, limit: int | None) -> Dataset:
    """Ten classes of 1x8x8 images: a class-specific pattern plus noise. Learnable in a few epochs."""
    rng = np.random.default_rng(1234)  # the patterns are fixed; `seed` only changes the split
    patterns = rng.normal(size=(10, 1, 8, 8)).astype(np.float32)
    y = np.repeat(np.arange(10), 120)
    x = patterns[y] + rng.normal(scale=1.0, size=(len(y), 1, 8, 8)).astype(np.float32)
    return _split("synthetic", x, y.astype(np.int64), None, None, seed, val_fraction, test_fraction, limit)


def _load_npz(path: Path, seed: int, val_fraction: float, test_fraction: float, limit: int | None) -> Dataset:
    if path.is_dir():
        raise HwnasError(f"{path} is a folder, not an .npz file with arrays x (N, C, H, W) and y (N,) labels")
    if not path.is_file():
        raise HwnasError(f"no dataset file at {path}; put an .npz there with arrays x (N, C, H, W) and y (N,) labels")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - zipfile.BadZipFile, EOFError (truncated), ValueError (not an archive, or object arrays)
        reason = "pickled objects or not an .npz archive" if "pickle" in str(e) else f"{type(e).__name__}: {e}"
        raise HwnasError(f"{path} exists but is not a readable .npz with arrays x and y ({reason}); "
                         "write it with numpy.savez(path, x=images, y=labels)") from None
    if "x" not in arrays or "y" not in arrays:
        raise HwnasError(f"{path} holds arrays {', '.join(arrays) or 'none'}; it needs x (N, C, H, W) and y (N,)")
    x, y = _images(arrays["x"], path), _labels(arrays["y"], path)
    if len(x) != len(y):
        raise HwnasError(f"{path}: x has {len(x)} examples but y has {len(y)}")
    test = None
    if "x_test" in arrays and "y_test" in arrays:
        test = (_images(arrays["x_test"], path), _labels(arrays["y_test"], path))
    return _split(path.stem, x, y, *(test or (None, None)), seed, val_fraction, test_fraction, limit)


def _images(x: np.ndarray, path: Path) -> np.ndarray:
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.number):
        raise HwnasError(f"{path}: x has dtype {x.dtype}; it must be numeric")
    if x.ndim == 3:  # (N, H, W): one channel
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):  # channels last
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4:
        raise HwnasError(f"{path}: x has shape {x.shape}; accepted: (N, C, H, W), (N, H, W, C) or (N, H, W) images")
    return x.astype(np.float32)


def _labels(y: np.ndarray, path: Path) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise HwnasError(f"{path}: y must hold non-negative integer class labels (it has dtype {y.dtype})")
    return y.astype(np.int64)


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR-10's python format is pickled dicts of numpy arrays: allow those classes and nothing else."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
        data, labels = d[b"data"], d[b"labels"]
    except Exception as e:  # noqa: BLE001 - UnpicklingError, KeyError, EOFError...: not a CIFAR-10 batch
        raise HwnasError(f"{path} is not a CIFAR-10 python-format batch ({type(e).__name__}: {e})") from None
    return np.asarray(data, np.float32).reshape(-1, 3, 32, 32), np.asarray(labels, np.int64)


def _load_cifar10(folder: Path, seed: int, val_fraction: float, limit: int | None) -> Dataset:
    missing = [f for f in CIFAR_FILES if not (folder / f).is_file()]
    if missing:
        raise HwnasError(
            f"no CIFAR-10 data at {folder} (missing {', '.join(missing)}); hwnas downloads nothing: unpack "
            f"cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) so that {folder}/data_batch_1 .. "
            f"data_batch_5 and {folder}/test_batch exist, and pass that folder as the dataset"
        )
    parts = [_read_cifar_batch(folder / f) for f in CIFAR_FILES[:5]]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    x_test, y_test = _read_cifar_batch(folder / "test_batch")
    return _split("cifar10", x, y, x_test, y_test, seed, val_fraction, 0.0, limit)


def _split(name: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray | None, y_test: np.ndarray | None, seed: int,
           val_fraction: float, test_fraction: float, limit: int | None) -> Dataset:
    from sklearn.model_selection import train_test_split

    if len(np.unique(y)) < 2:
        raise HwnasError(f"dataset {name!r} has {len(np.unique(y))} class(es); at least 2 are needed")
    if x_test is None:
        x, x_test, y, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=val_fraction, random_state=seed, stratify=y)
    if limit is not None and limit < len(y_train):
        keep = np.random.default_rng(seed).permutation(len(y_train))[:limit]
        ratio = limit / len(y_train)
        x_train, y_train = x_train[keep], y_train[keep]
        n_val, n_test = max(1, int(len(y_val) * ratio)), max(1, int(len(y_test) * ratio))
        x_val, y_val, x_test, y_test = x_val[:n_val], y_val[:n_val], x_test[:n_test], y_test[:n_test]
    # Standardise per channel with the training split's statistics.
    mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
    std = x_train.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    t = lambda a: torch.as_tensor((a - mean) / std, dtype=torch.float32)
    classes = int(max(y.max(), y_test.max())) + 1
    return Dataset(name, t(x_train), torch.as_tensor(y_train), t(x_val), torch.as_tensor(y_val), t(x_test),
                   torch.as_tensor(y_test), classes)
