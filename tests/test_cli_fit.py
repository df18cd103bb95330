"""`hwnas fit` / `hwnas predict` from the command line (and `hwnas profile --strategy active`, which uses the
predictors): real files, a real SQLite store, real measurements of a tiny space on this machine."""
import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from hwnas.cli import cli
from hwnas.predictors import load_predictor
from hwnas.predictors.api import predict_archs
from hwnas.store import Store

group = cli  # the real `hwnas` group: HwnasError -> one line, exit 2
TINY = "nb201:C=4,N=1"


@pytest.fixture(scope="module")
def subset(nb201_data, tmp_path_factory):
    """The first 150 rows of the published latency table, with an extra text column that must survive."""
    with open(nb201_data / "latency_ms.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:150]
    path = tmp_path_factory.mktemp("data") / "subset.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*rows[0], "note"])
        w.writeheader()
        for i, r in enumerate(rows):
            w.writerow({**r, "note": f"row {i}"})
    return path


def run(*args):
    result = CliRunner().invoke(group, list(args))
    return result


def test_help_texts_are_real():
    for command in ("fit", "predict"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "--json" in result.output and "--from-csv" in result.output
    assert "held-out" in run("fit", "--help").output


def test_fit_from_csv_then_predict_keeps_every_column(subset, tmp_path):
    out = tmp_path / "pixel3.npz"
    result = run("fit", "--from-csv", str(subset), "--target", "pixel3", "--predictor", "linear-cost",
                 "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["predictor"] == str(out) and summary["plot"].endswith("pixel3.png")
    assert summary["training_size"] == 150 and summary["metrics"]["n"] == 30 and summary["metrics"]["spearman"] > 0.8

    predictions = tmp_path / "predictions.csv"
    result = run("predict", str(out), "--from-csv", str(subset), "--out", str(predictions), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 150
    with open(subset, newline="") as f:
        original = list(csv.DictReader(f))
    with open(predictions, newline="") as f:
        written = list(csv.DictReader(f))
    assert list(written[0]) == [*original[0], "predicted_pixel3"]
    assert [{k: r[k] for k in original[0]} for r in written] == original
    predictor = load_predictor(out)
    expected = predict_archs(predictor, "nb201", [r["arch"] for r in original])
    np.testing.assert_allclose([float(r["predicted_pixel3"]) for r in written], expected, rtol=1e-5)


def test_fit_from_store_and_predict_named_archs(subset, tmp_path):
    store = tmp_path / "m.db"
    Store(store).import_table(subset, "nb201:C=16,N=5,classes=10", columns=["gold_6226", "raspi4"])
    out = tmp_path / "gold.npz"
    result = run("fit", "--store", str(store), "--device", "gold_6226", "--predictor", "ridge", "--out", str(out),
                 "--no-plot", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["device"] == "imported:gold_6226" and summary["target"] == "latency_ms" and "plot" not in summary
    with open(subset, newline="") as f:
        arch = next(csv.DictReader(f))["arch"]
    result = run("predict", str(out), "--arch", arch, "--json")
    assert result.exit_code == 0, result.output
    value = json.loads(result.stdout)["predictions"][0]["latency_ms"]
    assert 1.0 < value < 100.0


def test_profile_active_then_fit_end_to_end(tmp_path):
    store = tmp_path / "m.db"
    result = CliRunner().invoke(cli, ["profile", "--space", TINY, "--input-shape", "3x16x16", "--strategy", "active",
                                      "--samples", "14", "--protocol", "quick", "--store", str(store), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    rows = Store(store).measurements()
    assert summary["measured_now"] == 14 and len(rows) == 14 and len({m.arch for m in rows}) == 14
    result = run("fit", "--space", TINY, "--input-shape", "3x16x16", "--store", str(store), "--predictor", "ridge",
                 "--out", str(tmp_path / "p.npz"), "--json")
    assert result.exit_code == 0, result.output
    meta = load_predictor(tmp_path / "p.npz").metadata
    assert meta["training_size"] == 14 and meta["space"].startswith("nb201:C=4,N=1") and meta["device_fingerprint"]


@pytest.mark.parametrize("args, words", [
    (["fit", "--from-csv", "{subset}", "--target", "nosuch"], "no column 'nosuch'"),
    (["fit", "--from-csv", "{subset}", "--target", "arch"], "accepted: a finite number above 0"),
    (["fit", "--from-csv", "{subset}", "--target", "pixel3", "--predictor", "nosuch"], "unknown predictor 'nosuch'"),
    (["fit", "--from-csv", "{subset}", "--target", "pixel3", "--encoding", "nosuch"], "unknown encoding 'nosuch'"),
    (["fit", "--from-csv", "{subset}", "--target", "pixel3", "--holdout", "1.5"], "holdout 1.5"),
    (["fit", "--target", "power"], "unknown target 'power'"),
    (["fit", "--device", "nosuch"], "no measurements in"),
    (["predict", "{subset}", "--arch", "x"], "not an hwnas predictor file"),
    (["predict", "{tmp}/absent.npz", "--arch", "x"], "no predictor file"),
    (["predict", "{tmp}/absent.npz"], "give either --from-csv"),
    (["predict", "{tmp}/absent.npz", "--from-csv", "{subset}"], "needs --out"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, words, subset, tmp_path):
    args = [a.format(subset=subset, tmp=tmp_path) for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(*args, "--run-dir", str(tmp_path)) if args[0] == "fit" else run(*args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_predict_takes_indices_like_export(subset, tmp_path):
    out = tmp_path / "pixel3.npz"
    assert run("fit", "--from-csv", str(subset), "--target", "pixel3", "--predictor", "ridge", "--out", str(out),
               "--no-plot").exit_code == 0
    with open(subset, newline="") as f:
        first = next(csv.DictReader(f))
    by_index = run("predict", str(out), "--arch", first["index"], "--json")
    by_string = run("predict", str(out), "--arch", first["arch"], "--json")
    assert by_index.exit_code == 0 and json.loads(by_index.stdout) == json.loads(by_string.stdout)
    assert json.loads(by_index.stdout)["predictions"][0]["arch"] == first["arch"]
    result = run("predict", str(out), "--from-csv", str(subset), "--arch-column", "index", "--out",
                 str(tmp_path / "p.csv"), "--json")  # a CSV column of indices works too
    assert result.exit_code == 0 and json.loads(result.stdout)["rows"] == 150
    result = run("predict", str(out), "--arch", "15625")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("Error: architecture index 15625 is out of range for nb201:C=16,N=5,classes=10; "
                                     "accepted: an index 0..15624 or an architecture string")


def test_cut_predictor_file_is_one_line_exit_2(subset, tmp_path):
    out = tmp_path / "r.npz"
    assert run("fit", "--from-csv", str(subset), "--target", "pixel3", "--predictor", "ridge", "--out", str(out),
               "--no-plot").exit_code == 0
    with np.load(out, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["coef"] = arrays["coef"][:5]
    with open(out, "wb") as f:
        np.savez(f, **arrays)
    result = run("predict", str(out), "--arch", "0")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith(f"Error: {out} is a damaged predictor file (ValueError: ")
    assert result.stderr.strip().endswith("refit it with `hwnas fit`")


def test_fit_from_store_names_what_is_measured_and_picks_the_only_device(subset, tmp_path):
    store = Store(tmp_path / "m.db")
    store.import_table(subset, "nb201:C=16,N=5,classes=10", columns=["gold_6226", "raspi4"])
    store.import_table(subset, "nb201:C=4,N=1,classes=10", columns=["pixel3"])
    base = ["fit", "--store", str(tmp_path / "m.db"), "--predictor", "ridge", "--no-plot", "--json"]

    def error(*args):
        result = run(*base, *args, "--out", str(tmp_path / "never.npz"))
        assert result.exit_code == 2 and not (tmp_path / "never.npz").exists(), result.output
        return result.stderr.strip()

    # only pixel3 measured this space: picked without --device, though the store has three devices
    result = run(*base, "--space", TINY, "--out", str(tmp_path / "p.npz"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["device"] == "imported:pixel3"
    assert error("--space", "nb201:C=8,N=1") == (
        "Error: no measurements of nb201:C=8,N=1,classes=10; measured: nb201:C=16,N=5,classes=10 (input 3x32x32 batch 1), "
        "nb201:C=4,N=1,classes=10 (input 3x32x32 batch 1); pass one of these with --space, or run `hwnas profile` first")
    assert "no measurements of nb201:C=4,N=1,classes=10 on device 'raspi4'; measured: nb201:C=16,N=5" in error(
        "--space", TINY, "--device", "raspi4")
    assert error("--space", TINY, "--backend", "nosuch") == (
        "Error: no measurements of nb201:C=4,N=1,classes=10, input 3x32x32, batch 1 with backend 'nosuch'; "
        "backends with measurements of it: imported")
    assert error("--space", TINY, "--input-shape", "1x8x8").endswith(
        "was measured with input 3x32x32 batch 1; pass that shape with --input-shape / --batch")
    assert error().endswith("devices with measurements of nb201:C=16,N=5,classes=10, input 3x32x32, batch 1: "
                            "gold_6226 (150), raspi4 (150)")


@pytest.mark.parametrize("value", ["-0.5", "0", "inf", "nan"])
def test_fit_from_csv_refuses_targets_that_are_not_positive_and_finite(subset, tmp_path, value):
    with open(subset, newline="") as f:
        rows = list(csv.DictReader(f))
    rows[7]["pixel3"] = value
    bad = tmp_path / "bad.csv"
    with open(bad, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "p.npz"
    result = run("fit", "--from-csv", str(bad), "--target", "pixel3", "--predictor", "ridge", "--out", str(out))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "line 9" in lines[0] and "Traceback" not in result.output, result.output
    assert "accepted: a finite number above 0" in lines[0]
    assert not out.exists()


def test_saved_metrics_are_finite_json(subset, tmp_path):
    import math

    with open(subset, newline="") as f:
        rows = list(csv.DictReader(f))[:12]
    const = tmp_path / "const.csv"
    with open(const, "w", newline="") as f:  # every latency equal: the rank correlations are undefined
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**r, "pixel3": "2.5"} for r in rows)
    out = tmp_path / "c.npz"
    result = run("fit", "--from-csv", str(const), "--target", "pixel3", "--predictor", "ridge", "--out", str(out),
                 "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))["metrics"]
    assert metrics["spearman"] is None and metrics["n"] == 2
    saved = load_predictor(out).metadata["heldout_metrics"]
    assert saved == metrics and all(v is None or not isinstance(v, float) or math.isfinite(v) for v in saved.values())


def test_a_failed_save_leaves_the_earlier_predictor_file_as_it_was(subset, tmp_path, monkeypatch):
    from hwnas.predictors.api import fit_from_csv, save_predictor

    out = tmp_path / "p.npz"
    predictor, _ = fit_from_csv(subset, "arch", "pixel3", "nb201", "ridge")
    save_predictor(predictor, out, plot=False)
    before = out.read_bytes()

    def disk_full():
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(predictor, "get_arrays", disk_full)
    with pytest.raises(OSError):
        save_predictor(predictor, out, plot=False)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["p.npz"]


def test_fit_batch_picks_that_batch_or_says_what_was_measured(subset, tmp_path):
    from hwnas.predictors.api import pick_shape

    db = tmp_path / "m.db"
    store = Store(db)
    store.import_table(subset, TINY, columns=["pixel3"])  # batch 1, input 3x32x32
    base = ["fit", "--store", str(db), "--space", TINY, "--predictor", "ridge", "--no-plot", "--json"]
    result = run(*base, "--batch", "8", "--out", str(tmp_path / "never.npz"))
    assert result.exit_code == 2 and not (tmp_path / "never.npz").exists(), result.output
    assert result.stderr.strip() == ("Error: no measurements of nb201:C=4,N=1,classes=10 with batch 8; it was measured "
                                     "with input 3x32x32 batch 1; pass one of these batches with --batch (and its "
                                     "shape with --input-shape)")
    store.import_table(subset, TINY, columns=["pixel3"], input_shape=(3, 16, 16), batch=8)
    result = run(*base, "--batch", "8", "--out", str(tmp_path / "b8.npz"))
    assert result.exit_code == 0, result.output
    assert load_predictor(tmp_path / "b8.npz").metadata["batch"] == 8
    assert load_predictor(tmp_path / "b8.npz").metadata["input_shape"] == [3, 16, 16]
    assert pick_shape(store, TINY, batch=1) == ((3, 32, 32), 1)
    assert pick_shape(store, TINY) == ((3, 32, 32), 1)  # two measured kinds and none asked: the space's default
    assert pick_shape(store, TINY, "3x16x16", 8) == ((3, 16, 16), 8)
