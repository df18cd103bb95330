"""Latency/energy predictors on real published NAS-Bench-201 latencies: accuracy against a baseline, files that
round-trip without pickles, clear errors, ranking loss, few-shot transfer, the near-zero metric rule."""
import csv
import json
import zipfile

import numpy as np
import pytest
import torch

from hwnas.errors import HwnasError
from hwnas.predictors import (
    FORMAT_VERSION,
    PREDICTORS,
    encode_archs,
    fit_from_store,
    get_predictor,
    load_predictor,
    pretrain_transfer,
    regression_metrics,
    select_active,
)
from hwnas.predictors.encodings import cost_block_width
from hwnas.predictors.trees import GradientBoostingPredictor, RandomForestPredictor
from hwnas.profilers import lookup_from_profiling
from hwnas.spaces import get_space

torch.set_num_threads(1)
SPACE = get_space("nb201")
#: small settings so every neural predictor trains in well under a second here
FAST = {"mlp": {"epochs": 40}, "gcn": {"epochs": 15, "hidden": 32}, "gbt": {"n_estimators": 60},
        "hgp-sl": {"epochs": 15, "hidden": 32},
        "rf": {"n_estimators": 30}, "cost-gbt": {"n_estimators": 40}, "transfer": {"steps": 150, "hidden": 32},
        "ensemble": {"members": ["ridge", {"predictor": "gbt", "settings": {"n_estimators": 40}},
                                 {"predictor": "mlp", "settings": {"epochs": 20}}]}}


@pytest.fixture(scope="module")
def table(nb201_data):
    """(archs, {device: latencies}) for a fixed random 3000 of the 15,625 rows."""
    with open(nb201_data / "latency_ms.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keep = np.random.default_rng(0).permutation(len(rows))[:3000]
    rows = [rows[i] for i in keep]
    devices = [c for c in rows[0] if c not in ("index", "arch")]
    return [SPACE.from_string(r["arch"]) for r in rows], {d: np.array([float(r[d]) for r in rows]) for d in devices}


def encoded(table, encoding, rows=slice(None)):
    archs, _ = table
    return encode_archs(SPACE, archs[rows], encoding)


def fitted(name, table, device="1080ti_1", n=80):
    p = get_predictor(name, seed=0, **FAST.get(name, {}))
    X = encoded(table, p.encoding, slice(0, n))
    y = table[1][device][:n]
    if name == "transfer":
        sources = {d: (encoded(table, p.encoding, slice(0, 400)), v[:400]) for d, v in table[1].items() if d != device}
        p.pretrain(sources)
    return p.fit(X, y)


@pytest.mark.parametrize("name", PREDICTORS.names())
def test_every_predictor_round_trips_through_its_file_without_pickles(name, table, tmp_path):
    p = fitted(name, table)
    X = encoded(table, p.encoding, slice(2000, 2200))
    before = p.predict(X)
    assert np.all(np.isfinite(before)) and before.shape == (200,)
    path = p.save(tmp_path / f"{name}.npz", {"device": "1080ti_1", "training_size": 80})
    with np.load(path, allow_pickle=False) as z:  # would raise if anything were pickled
        assert all(z[k].dtype != object for k in z.files)
    q = load_predictor(path)
    assert type(q) is type(p) and q.encoding == p.encoding and q.metadata["training_size"] == 80
    assert "scikit-learn" in q.metadata["versions"] and "torch" in q.metadata["versions"]
    np.testing.assert_allclose(q.predict(X), before, rtol=1e-6)


@pytest.mark.parametrize("cls", [GradientBoostingPredictor, RandomForestPredictor])
def test_tree_walker_reproduces_scikit_learn(cls, table):
    p = cls(seed=1, n_estimators=30)
    X, y = encoded(table, p.encoding, slice(0, 200)), table[1]["gold_6226"][:200]
    estimator = p._estimator().fit(X, p._to_target(y))
    p._take(estimator)
    X_new = encoded(table, p.encoding, slice(2000, 2500))
    np.testing.assert_allclose(np.log(p.predict(X_new)), estimator.predict(X_new), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name, device", [("linear-cost", "1080ti_1"), ("linear-cost", "pixel3"), ("mlp", "gold_6226"),
                                          ("gbt", "raspi4"), ("lookup", "fpga"), ("cost-gbt", "pixel3")])
def test_fit_on_100_rows_beats_the_mean_predictor(name, device, table):
    p = fitted(name, table, device, n=100)
    X, y = encoded(table, p.encoding, slice(1000, 3000)), table[1][device][1000:3000]
    ours = regression_metrics(y, p.predict(X))
    baseline = regression_metrics(y, np.full(len(y), table[1][device][:100].mean()) + 1e-9 * np.arange(len(y)))
    assert ours["mape"] < 0.6 * baseline["mape"]
    assert ours["spearman"] > 0.9


def test_linear_cost_on_100_rows_is_accurate_on_a_gpu(table):
    # The figure the benchmark tracks (bench/predictors.py), checked loosely here: GPUs are near-additive.
    p = fitted("linear-cost", table, "1080ti_1", n=100)
    m = regression_metrics(table[1]["1080ti_1"][1000:], p.predict(encoded(table, "cost", slice(1000, None))))
    assert m["within_10"] > 0.97 and m["spearman"] > 0.97


def test_cost_gbt_applies_its_trees_in_proportion_to_the_rows(table, tmp_path):
    """Few rows: the trees fit the device's noise too, so only rows / FULL_CORRECTION_ROWS of their correction is
    applied; the share travels with the file, and a file saved before it applies all of the correction."""
    from hwnas.predictors.boosted import FULL_CORRECTION_ROWS

    few, many = fitted("cost-gbt", table, "pixel3", n=50), fitted("cost-gbt", table, "pixel3", n=FULL_CORRECTION_ROWS)
    assert few.shrink == pytest.approx(50 / FULL_CORRECTION_ROWS) and many.shrink == 1.0
    X = encoded(table, few.encoding, slice(1000, 1200))
    full = few._base(X) * np.exp(few.trees.predict(X))
    assert not np.allclose(few.predict(X), full)  # the correction is really shrunk
    path = few.save(tmp_path / "p.npz")
    np.testing.assert_allclose(load_predictor(path).predict(X), few.predict(X))
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "shrink"}
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    np.testing.assert_allclose(load_predictor(path).predict(X), full)


def test_saved_file_from_a_newer_format_is_a_clear_error(table, tmp_path):
    path = fitted("ridge", table).save(tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    meta["format_version"] = FORMAT_VERSION + 1
    with open(path, "wb") as f:
        np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(HwnasError, match=f"predictor format {FORMAT_VERSION + 1}.*reads formats 1..{FORMAT_VERSION}"):
        load_predictor(path)


def test_corrupt_or_foreign_files_are_clear_errors(table, tmp_path):
    good = fitted("gbt", table).save(tmp_path / "good.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:300])
    text = tmp_path / "notes.npz"
    text.write_text("index,arch\n")
    missing_array = tmp_path / "missing.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(missing_array, "w") as dst:
        for item in src.namelist():
            if item != "threshold.npy":
                dst.writestr(item, src.read(item))
    for path, words in [(truncated, "not an hwnas predictor file"), (text, "not an hwnas predictor file"),
                        (missing_array, "damaged predictor file"), (tmp_path / "absent.npz", "no predictor file")]:
        with pytest.raises(HwnasError, match=words):
            load_predictor(path)


@pytest.mark.parametrize("name, key", [("ridge", "coef"), ("lookup", "table"), ("gbt", "threshold"), ("gbt", "feature"),
                                       ("cost-gbt", "trees/left"), ("mlp", "net.0.weight"), ("ensemble", "m0/center")])
def test_files_with_cut_or_edited_arrays_fail_at_load_time(name, key, table, tmp_path):
    path = fitted(name, table, n=60).save(tmp_path / "p.npz", {"space": SPACE.spec})
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if key == "feature":  # a split on a feature the encoding does not have: only some rows would ever reach it
        arrays[key] = np.where(arrays[key] >= 0, arrays[key] + 10_000, arrays[key])
    else:
        arrays[key] = arrays[key][: max(1, len(arrays[key]) // 6)]
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(HwnasError, match=r"p\.npz is a damaged predictor file \(.*\); refit it with `hwnas fit`"):
        load_predictor(path)


def test_architectures_by_string_or_index():
    tiny = get_space("nb201:C=4,N=1")
    arch = tiny.arch_at(6111)
    assert tiny.parse(6111) == tiny.parse(" 6111") == tiny.parse(tiny.to_string(arch)) == arch
    for bad in (-1, "15625"):
        with pytest.raises(HwnasError, match=f"index {int(bad)} is out of range for nb201:C=4,N=1,classes=10; "
                                             "accepted: an index 0..15624 or an architecture string"):
            tiny.parse(bad)
    with pytest.raises(HwnasError, match="malformed nb201 architecture"):
        tiny.parse("|conv~0|")


def test_pairwise_ranking_loss_changes_training(table):
    X, y = encoded(table, "onehot", slice(0, 100)), table[1]["pixel3"][:100]
    plain = get_predictor("mlp", epochs=40).fit(X, y)
    ranked = get_predictor("mlp", epochs=40, rank_weight=1.0).fit(X, y)
    X_new = encoded(table, "onehot", slice(1000, 2000))
    a, b = plain.predict(X_new), ranked.predict(X_new)
    assert np.max(np.abs(np.log(a / b))) > 1e-3
    assert regression_metrics(table[1]["pixel3"][1000:2000], b)["spearman"] > 0.8


def test_mlp_torch_module_is_differentiable_and_matches_predict(table):
    p = fitted("mlp", table)
    X = encoded(table, "onehot", slice(100, 110))
    module = p.torch_module()
    np.testing.assert_allclose(module(torch.as_tensor(X)).detach().numpy(), p.predict(X), rtol=1e-5)
    alpha = torch.zeros(SPACE.alpha_shape, requires_grad=True)
    value = module(SPACE.relax(alpha).reshape(1, -1)).sum()
    value.backward()
    assert value.item() > 0 and alpha.grad is not None and alpha.grad.abs().sum() > 0


def test_transfer_with_10_samples_beats_training_from_scratch(table):
    lat = table[1]
    target = "gold_6226"
    transfer = pretrain_transfer({d: (encoded(table, "features", slice(0, 1500)), v[:1500])
                                  for d, v in lat.items() if d != target}, seed=0, epochs=15)
    X_new, y_new = encoded(table, "features", slice(1500, None)), lat[target][1500:]
    shots = slice(2900, 2910)  # 10 measurements of the new device, outside the evaluation rows
    X_k, y_k = encoded(table, "features", shots), lat[target][shots]
    adapted = regression_metrics(y_new, transfer.fit(X_k, y_k).predict(X_new))
    scratch = regression_metrics(y_new, get_predictor("mlp", encoding="features", epochs=100).fit(X_k, y_k).predict(X_new))
    assert adapted["spearman"] > scratch["spearman"] + 0.05 and adapted["spearman"] > 0.9
    assert adapted["mape"] < scratch["mape"]


def test_ensemble_gives_a_mean_and_a_spread(table):
    p = fitted("ensemble", table)
    X = encoded(table, p.encoding, slice(1000, 1100))
    mean, spread = p.predict_with_std(X)
    members = p.member_predictions(X)
    assert members.shape == (3, 100) and np.all(spread > 0)
    assert np.all(mean >= members.min(0) - 1e-9) and np.all(mean <= members.max(0) + 1e-9)


def test_metrics_leave_near_zero_measurements_out_of_relative_errors_only():
    y = np.array([10.0, 12.0, 8.0, 11.0, 0.003])  # the last: a cell with no input-output path on pixel3
    p = np.array([11.0, 12.0, 8.3, 11.0, 0.5])
    m = regression_metrics(y, p)
    assert m["n"] == 5 and m["n_excluded"] == 1 and m["floor"] == pytest.approx(0.05 * 10.0)
    assert m["mape"] == pytest.approx(100 * np.mean([0.1, 0.0, 0.0375, 0.0]))
    assert m["within_5"] == 0.75 and m["within_10"] == 1.0
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((p - y) ** 2)))  # every row, the near-zero one included
    assert regression_metrics(y, p, floor=0)["n_excluded"] == 0
    with pytest.raises(HwnasError, match="pair up"):
        regression_metrics(y, p[:3])


def test_encodings_see_dead_edges_and_the_built_network():
    dead = SPACE.from_string("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|")
    # Edge 0->1 feeds node 1, but node 1's only consumer (1->3) is none: its conv is dead.
    partly = SPACE.from_string("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|none~1|skip_connect~2|")
    live = encode_archs(SPACE, [dead, partly], "live-onehot").reshape(2, 6, 5)
    assert live[0, :, 1:].sum() == 3 and live[1, :, 1:].sum() == 2 and live[1, 0, 0] == 1
    analytic = encode_archs(SPACE, [dead, partly], "analytic")
    assert analytic[0, 0] == pytest.approx(np.log(SPACE.profile(dead).macs), rel=1e-6)
    assert list(analytic[:, 4]) == [3, 2] and list(analytic[:, 6]) == [1, 1]
    counts = encode_archs(SPACE, [partly], "op-counts")[0]
    assert counts[:5].sum() == 6 and counts[5:].sum() == 6 and counts[5 + 3] == 0  # its 3x3 conv is dead
    assert encode_archs(SPACE, [dead], "graph").shape == (1, 8 * 8 + 8 * 7)
    both = encode_archs(SPACE, [dead, partly], "cost-features")
    assert cost_block_width(both) == 2 * 5 + 7 and both.shape[1] == 17 + 67
    np.testing.assert_array_equal(both[:, :17], encode_archs(SPACE, [dead, partly], "cost"))
    with pytest.raises(HwnasError, match="not 'cost-features'"):
        cost_block_width(encode_archs(SPACE, [dead, partly], "features"))
    with pytest.raises(HwnasError, match="unknown encoding 'nosuch'"):
        encode_archs(SPACE, [dead], "nosuch")


def test_fit_from_store_reports_metrics_and_records_metadata(nb201_data, tmp_path):
    from hwnas.store import Store

    subset = tmp_path / "subset.csv"
    with open(nb201_data / "latency_ms.csv", newline="") as f:
        lines = f.readlines()[:121]
    subset.write_text("".join(lines))
    store = Store(tmp_path / "m.db")
    store.import_table(subset, SPACE.spec, columns=["pixel3", "gold_6226"])
    predictor, metrics = fit_from_store(store, "nb201", "pixel3", "imported", (3, 32, 32), 1, "latency_ms",
                                        "linear-cost", seed=0)
    assert {"mape", "within_10", "spearman", "kendall", "n", "n_train"} <= set(metrics)
    assert metrics["n"] == 24 and metrics["n_train"] == 96 and metrics["spearman"] > 0.8
    loaded = load_predictor(predictor.save(tmp_path / "p.npz"))
    meta = loaded.metadata
    assert meta["space"] == SPACE.spec and meta["target"] == "latency_ms" and meta["training_size"] == 120
    assert meta["device"] == "imported:pixel3" and meta["device_fingerprint"] and meta["heldout_metrics"] == metrics
    with pytest.raises(HwnasError, match="batch 8 on device 'pixel3'; nb201:C=16,N=5,classes=10 was measured with input 3x32x32 batch 1"):
        fit_from_store(store, "nb201", "pixel3", "imported", (3, 32, 32), 8, "latency_ms", "ridge")
    with pytest.raises(HwnasError, match="name the device with --device; .*: gold_6226 \\(120\\), pixel3 \\(120\\)"):
        fit_from_store(store, "nb201", predictor="ridge")
    with pytest.raises(HwnasError, match="backend 'torch-cpu'; backends with measurements of it: imported"):
        fit_from_store(store, "nb201", "pixel3", "torch-cpu", predictor="ridge")
    with pytest.raises(HwnasError, match="no measurements of nb201:C=8,N=1,classes=10; measured: nb201:C=16,N=5"):
        fit_from_store(store, "nb201:C=8,N=1", predictor="ridge")
    few = tmp_path / "few.csv"
    few.write_text("".join(lines[:4]))
    store.import_table(few, get_space("nb201:C=4,N=1").spec, columns=["raspi4"])
    with pytest.raises(HwnasError, match="3 latency_ms measurement.*at least 5"):  # only raspi4 has that space: picked
        fit_from_store(store, "nb201:C=4,N=1", predictor="ridge")
    with pytest.raises(HwnasError, match="unknown target"):
        fit_from_store(store, "nb201", "pixel3", "imported", target="power")


def test_select_active_picks_new_distinct_candidates_deterministically(table):
    archs, lat = table
    measured, values, candidates = archs[:20], lat["pixel3"][:20], archs[:300]
    first = select_active(SPACE, candidates, measured, values, 6, seed=3)
    assert len(first) == 6 == len(set(first)) and not set(first) & set(measured) and set(first) <= set(candidates)
    assert select_active(SPACE, candidates, measured, values, 6, seed=3) == first
    with pytest.raises(HwnasError, match="k >= 1"):
        select_active(SPACE, candidates, measured, values, 0)


def test_lookup_table_from_per_operation_profiling(tmp_path):
    from hwnas.profilers import TimingProtocol, get_backend
    from hwnas.store import Store

    tiny = get_space("nb201:C=4,N=1")
    store = Store(tmp_path / "m.db")
    table = lookup_from_profiling(tiny, get_backend("torch-cpu", threads=1), (3, 16, 16),
                                  protocol=TimingProtocol.quick(), store=store)
    assert store.count() == 1 + 6 * 4  # the all-none cell and every single-operation variant, each stored
    base, per_op = table.table_for(tiny)
    assert base > 0 and per_op.shape == (6, 5) and np.all(per_op[:, 0] == 0)
    conv3 = tiny.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert table.predict(tiny.encode_many([conv3]))[0] == pytest.approx(base + per_op[0, 3])


def test_lookup_table_for_needs_one_entry_per_decision_and_option(table):
    _, per_op = fitted("lookup", table).table_for(SPACE)  # the onehot encoding: one entry each
    assert per_op.shape == (6, 5)
    X = encoded(table, "op-counts", slice(0, 50))
    counts = get_predictor("lookup", encoding="op-counts").fit(X, table[1]["fpga"][:50])
    with pytest.raises(HwnasError, match=rf"has {X.shape[1]} entries, not one per decision and option \(30 for nb201\)"):
        counts.table_for(SPACE)
