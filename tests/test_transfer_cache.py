"""Transfer in seconds: the body pretrained on the store's other devices is cached beside the store, keyed by the
source devices and their row counts, and reused by the next fit without pretraining again."""
import numpy as np
import pytest
import torch

from hwnas.predictors import fit_from_store, predict_archs
from hwnas.predictors.transfer import TransferPredictor
from hwnas.spaces import get_space

torch.set_num_threads(1)
SPACE = get_space("nb201")
SMALL = {"steps": 40, "hidden": 16, "layers": 2}


@pytest.fixture
def store(nb201_data, tmp_path):
    from hwnas.store import Store

    with open(nb201_data / "latency_ms.csv", newline="") as f:
        lines = f.readlines()[:41]
    (tmp_path / "subset.csv").write_text("".join(lines))
    s = Store(tmp_path / "m.db")
    s.import_table(tmp_path / "subset.csv", SPACE.spec, columns=["pixel3", "raspi4", "gold_6226"])
    return s


def fit(store, **kw):
    return fit_from_store(store, SPACE, "pixel3", "imported", (3, 32, 32), predictor="transfer", encoding="onehot",
                          settings=SMALL, seed=0, **kw)[0]


def test_a_cached_body_is_reused_without_a_second_pretraining(store, tmp_path):
    first = fit(store)
    body = first.metadata["transfer_body"]
    assert body["reused"] is False and body["file"] and (tmp_path / body["file"].split("/")[-1]).is_file()
    assert sorted(first.metadata["sources"]) == ["gold_6226", "raspi4"]
    stamp = (tmp_path / body["file"].split("/")[-1]).stat().st_mtime_ns

    second = fit(store)
    assert second.metadata["transfer_body"] == {**second.metadata["transfer_body"], "file": body["file"], "reused": True}
    assert (tmp_path / body["file"].split("/")[-1]).stat().st_mtime_ns == stamp  # read, not written again
    archs = [SPACE.from_string(m.arch) for m in store.measurements(device="imported:pixel3")][:5]
    np.testing.assert_allclose(predict_archs(second, SPACE, archs), predict_archs(first, SPACE, archs), rtol=1e-6)
    assert isinstance(second, TransferPredictor)


def test_more_source_rows_make_a_new_body(store, nb201_data, tmp_path):
    first = fit(store).metadata["transfer_body"]
    with open(nb201_data / "latency_ms.csv", newline="") as f:
        lines = f.readlines()
    (tmp_path / "more.csv").write_text("".join([lines[0], *lines[41:51]]))
    store.import_table(tmp_path / "more.csv", SPACE.spec, columns=["raspi4"])  # a source gained 10 rows
    again = fit(store).metadata["transfer_body"]
    assert again["reused"] is False and again["file"] != first["file"]
