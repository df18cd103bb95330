"""Datasets that need no download: digits, .npz files, CIFAR-10 python-format folders, and clear errors."""
import pickle

import numpy as np
import pytest
import torch

from hwnas.data import load_dataset
from hwnas.errors import HwnasError


def test_digits_is_split_stratified_and_standardised():
    d = load_dataset("digits", seed=0)
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    sizes = d.sizes()
    assert sum(sizes.values()) == 1797 and sizes["test"] == pytest.approx(0.2 * 1797, abs=1)
    assert set(d.y_val.tolist()) == set(range(10))
    assert abs(float(d.x_train.mean())) < 1e-3 and float(d.x_train.std()) == pytest.approx(1.0, abs=0.05)
    again = load_dataset("digits", seed=0)
    assert torch.equal(d.x_test, again.x_test)  # seeded
    assert not torch.equal(load_dataset("digits", seed=1).y_test, d.y_test)
    small = load_dataset("digits", seed=0, limit=100)
    assert small.sizes()["train"] == 100 and small.sizes()["val"] < sizes["val"]


def test_npz_with_and_without_a_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6, 6, 3)).astype(np.float32)  # channels last: transposed to (N, C, H, W)
    y = np.repeat(np.arange(4), 30)
    np.savez(tmp_path / "toy.npz", x=x, y=y)
    d = load_dataset(tmp_path / "toy.npz", seed=0)
    assert d.name == "toy" and d.input_shape == (3, 6, 6) and d.num_classes == 4
    assert sum(d.sizes().values()) == 120 and d.y_train.dtype == torch.int64
    np.savez(tmp_path / "split.npz", x=x[:, :, :, 0], y=y, x_test=x[:20, :, :, 0], y_test=y[:20])
    s = load_dataset(str(tmp_path / "split.npz"))
    assert s.input_shape == (1, 6, 6) and s.sizes()["test"] == 20 and s.sizes()["train"] + s.sizes()["val"] == 120


def test_npz_errors_name_what_is_wrong(tmp_path):
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((4, 1, 2, 2)))
    with pytest.raises(HwnasError, match="needs x .* and y"):
        load_dataset(tmp_path / "nolabels.npz")
    np.savez(tmp_path / "mismatch.npz", x=np.zeros((4, 1, 2, 2)), y=np.arange(3))
    with pytest.raises(HwnasError, match="x has 4 examples but y has 3"):
        load_dataset(tmp_path / "mismatch.npz")
    np.savez(tmp_path / "floaty.npz", x=np.zeros((4, 1, 2, 2)), y=np.array([0.5, 1, 0, 1]))
    with pytest.raises(HwnasError, match="integer class labels"):
        load_dataset(tmp_path / "floaty.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(HwnasError, match="exists but is not a readable .npz with arrays x and y"):
        load_dataset(tmp_path / "junk.npz")
    np.savez(tmp_path / "whole.npz", x=np.zeros((40, 1, 4, 4)), y=np.arange(40) % 2)
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:300])  # an interrupted copy
    with pytest.raises(HwnasError, match="truncated.npz exists but is not a readable .npz"):
        load_dataset(tmp_path / "truncated.npz")
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(HwnasError, match="is a folder"):
        load_dataset(tmp_path / "folder.npz")
    with pytest.raises(HwnasError, match="no dataset file at"):
        load_dataset(tmp_path / "missing.npz")


def write_fake_cifar(folder, per_batch=20):
    """CIFAR-10's python format: pickled dicts with b'data' (N, 3072) uint8 and b'labels' (list of ints)."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(v) for v in np.arange(per_batch) % 10]
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        data[:, :1024] = np.array(labels, np.uint8)[:, None] * 20  # red channel encodes the label
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": b"fake", b"labels": labels, b"data": data}, f)


def test_cifar10_python_folder(tmp_path):
    write_fake_cifar(tmp_path / "cifar-10-batches-py")
    d = load_dataset(tmp_path / "cifar-10-batches-py", seed=0)
    assert d.name == "cifar10" and d.input_shape == (3, 32, 32) and d.num_classes == 10
    assert d.sizes()["test"] == 20 and d.sizes()["train"] + d.sizes()["val"] == 100
    # the layout is (C, H, W) with the red plane first: it carries the label as written
    red = d.x_test[:, 0].mean(dim=(1, 2))
    assert torch.all(red[1:][d.y_test[1:] > d.y_test[:-1]] > red[:-1][d.y_test[1:] > d.y_test[:-1]])


def test_missing_cifar_folder_says_where_to_put_it(tmp_path):
    with pytest.raises(HwnasError) as e:
        load_dataset(tmp_path / "cifar10")
    message = str(e.value)
    assert str(tmp_path / "cifar10") in message and "data_batch_1" in message and "test_batch" in message
    assert "\n" not in message


def test_cifar_batch_refuses_foreign_pickles(tmp_path):
    write_fake_cifar(tmp_path / "c")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "c" / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f)
    with pytest.raises(HwnasError, match="refusing to load builtins.print"):
        load_dataset(tmp_path / "c")


def test_unknown_dataset_name_lists_accepted():
    with pytest.raises(HwnasError, match="accepted: 'digits'"):
        load_dataset("mnist")
