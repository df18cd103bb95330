"""`hwnas fit` (a latency or energy predictor, from the store or a CSV file) and `hwnas predict`."""
from __future__ import annotations

from pathlib import Path

import click

from hwnas.commands.common import (
    emit_json,
    json_option,
    open_store,
    parse_shape,
    results,
    run_dir_option,
    store_option,
    table,
)
from hwnas.errors import HwnasError, quote


def _figure(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)  # an undefined metric is saved as None


def _metrics_rows(metrics: dict) -> list[list]:
    if not metrics:
        return [["held-out metrics", "none (too few rows for a held-out share)"]]
    return [
        ["held-out rows", metrics.get("n")],
        ["MAPE %", metrics.get("mape")],
        ["within ±5% / ±10%", f"{_figure(metrics.get('within_5'), '.1%')} / {_figure(metrics.get('within_10'), '.1%')}"],
        ["Spearman / Kendall", f"{_figure(metrics.get('spearman'), '.4f')} / {_figure(metrics.get('kendall'), '.4f')}"],
        ["RMSE", metrics.get("rmse")],
        ["rows below the near-zero floor", f"{metrics.get('n_excluded')} (floor {metrics.get('floor', 0):.4g})"],
    ]


@click.command()
@click.option("--space", default="nb201", show_default=True, metavar="NAME[:K=V,...]",
              help="Search space the architectures belong to (as profiled, e.g. nb201:C=8,N=1,classes=10).")
@click.option("--device", default=None, help="Device name or id in the store. Default: the only device with "
              "measurements of this space, input shape and batch (and --backend, if given).")
@click.option("--backend", default=None, help="Backend whose measurements to fit (e.g. onnxruntime-cpu, imported). "
              "Default: the device's only one for this space, input shape and batch.")
@click.option("--input-shape", default=None, metavar="CxHxW",
              help="Input shape measured. Default: the one the store holds for --space, else the space's own.")
@click.option("--batch", default=None, type=click.IntRange(min=1),
              help="Batch size measured. Default: the one the store holds for --space, else 1.")
@click.option("--target", default="latency", show_default=True,
              help="From the store: latency or energy. With --from-csv: the CSV column to fit (e.g. pixel3).")
@click.option("--predictor", "predictor_name", default="auto", show_default=True,
              help="Regressor: auto (k-fold cross-validation of linear-cost, lookup, cost-gbt and, from 300 rows, "
              "mlp on these measurements; the best by Spearman and error near the budget is fitted and every "
              "candidate's scores are shown and saved), mlp (differentiable), linear-cost (best below ~50 samples), "
              "cost-gbt (best from ~50 samples), lookup, ridge, gbt, rf, gcn, hgp-sl (graph pooling), renas (pairwise ranking), layer-lut, ensemble, transfer (pretrains on "
              "the store's other devices).")
@click.option("--encoding", default=None,
              help="Architecture encoding: onehot, live-onehot, analytic, features, op-counts, cost, cost-features, graph. "
              "Default: the predictor's own.")
@click.option("--holdout", default=0.2, show_default=True, type=float,
              help="Share of rows held out to report metrics; the saved predictor is then refitted on every row.")
@click.option("--seed", default=0, show_default=True, help="Seed of the hold-out split and the training.")
@click.option("--from-csv", "csv_path", default=None, type=click.Path(dir_okay=False),
              help="Fit on a CSV file (one row an architecture) instead of the store.")
@click.option("--arch-column", default="arch", show_default=True,
              help="CSV column holding architecture strings or indices in the space (e.g. index).")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Predictor file to write (.npz). Default: RUN_DIR/predictor-<target>.npz.")
@click.option("--no-plot", is_flag=True, help="Do not write the predicted-vs-measured PNG beside the predictor.")
@run_dir_option
@store_option
@json_option
def fit(space, device, backend, input_shape, batch, target, predictor_name, encoding, holdout, seed, csv_path,
        arch_column, out, no_plot, run_dir, store_url, as_json):
    """Fit a latency or energy predictor and save it (parameters and metadata, no pickles).

    From the store: the measurements of one device, backend, space, input shape and batch (run `hwnas profile`
    or `hwnas measurements import` first). With --from-csv FILE --target COLUMN: every row of a table such as
    NAS-Bench-201's latency_ms.csv. Metrics are reported on a held-out share first (MAPE, within ±5%/±10%,
    Spearman, Kendall; rows below 5% of the median measurement are left out of the relative ones).
    """
    from hwnas.predictors.api import fit_from_csv, fit_from_store, pick_shape, save_predictor
    from hwnas.spaces import get_space

    s = get_space(space)
    if csv_path:
        shape = s.check_input_shape(parse_shape(input_shape) if input_shape else s.default_input_shape)
        predictor, metrics = fit_from_csv(csv_path, arch_column, target, s, predictor_name, encoding, holdout, seed,
                                          input_shape=shape)
    else:
        target, store = _store_for_fit(target, store_url, run_dir)
        shape, batch = pick_shape(store, s, input_shape, batch)
        predictor, metrics = fit_from_store(store, s, device, backend, shape, batch, target, predictor_name, encoding,
                                            holdout, seed)
    path = Path(out) if out else Path(run_dir) / f"predictor-{target}.npz"
    written = save_predictor(predictor, path, plot=not no_plot)
    meta = predictor.metadata
    if as_json:
        emit_json({**written, "predictor_name": predictor.name, "encoding": predictor.encoding,
                   "target": meta.get("target"), "device": meta.get("device"), "training_size": meta.get("training_size"),
                   "metrics": metrics, "auto": meta.get("auto"),
                   "transfer_body": meta.get("transfer_body")})
        return
    results.print(table(f"{predictor.name} predictor of {meta.get('target')} on {meta.get('device_name')}", ["", ""], [
        ["space", meta.get("space")], ["encoding", predictor.encoding], ["training rows", meta.get("training_size")],
        *_metrics_rows(metrics), *_auto_rows(meta.get("auto")), *_transfer_rows(meta.get("transfer_body")),
        ["predictor file", written["predictor"]],
        ["plot", written.get("plot", "")]]))


def _transfer_rows(body: dict | None) -> list[list]:
    if not body:
        return []
    how = "reused from the cache" if body["reused"] else "pretrained now"
    where = f", {body['file']}" if body.get("file") else " (not cached: the store is not an SQLite file)"
    return [["transfer body", f"{how} in {body['seconds']:.1f} s{where}"]]


def _auto_rows(auto: dict | None) -> list[list]:
    """One row per candidate `--predictor auto` cross-validated, the chosen one marked."""
    if not auto:
        return []
    rows = [["chosen by auto", (f"{auto['chosen']} ({auto['folds']}-fold CV on {auto['rows']} rows; score = "
                               "(Spearman + within ±10% near the budget) / 2)")]]
    for c in auto["scores"]:
        mark = " <- chosen" if c["predictor"] == auto["chosen"] else ""
        rows.append([f"  {c['predictor']} ({c['encoding']})",
                     (f"score {c['score']:.3f}, Spearman {_figure(c['spearman'], '.3f')}, within ±10% "
                     f"{_figure(c['within_10_near'], '.1%')}, {c['seconds']:.1f} s{mark}")])
    return rows


def _store_for_fit(target: str, store_url, run_dir):
    from hwnas.measurement import TARGET_ALIASES, check_target

    if target not in TARGET_ALIASES:
        raise HwnasError(f"unknown target {quote(target)} for store measurements; accepted: latency, energy "
                         "(a CSV column name needs --from-csv)")
    if store_url is None and not (Path(run_dir) / "measurements.db").is_file():
        raise HwnasError(f"no measurements in {run_dir} (no measurements.db): run `hwnas profile` or "
                         "`hwnas measurements import` first, or name a store with --store, or fit --from-csv")
    return check_target(target), open_store(store_url, run_dir, must_exist=True)


@click.command()
@click.argument("predictor_path", metavar="PREDICTOR", type=click.Path(dir_okay=False))
@click.option("--from-csv", "csv_path", default=None, type=click.Path(dir_okay=False),
              help="Predict for every row of this CSV file.")
@click.option("--arch-column", default="arch", show_default=True,
              help="CSV column holding architecture strings or indices in the space (e.g. index).")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="CSV file to write: the input's rows and columns plus predicted_<target>. Required with --from-csv.")
@click.option("--arch", "archs", multiple=True, metavar="ARCH",
              help="Predict for these architectures: canonical string or index in the space (repeatable).")
@json_option
def predict(predictor_path, csv_path, arch_column, out, archs, as_json):
    """Predict latency or energy with a saved predictor, for architectures or for every row of a CSV file."""
    from hwnas.predictors import load_predictor
    from hwnas.predictors.api import predict_archs, predict_csv
    from hwnas.spaces import get_space

    if bool(csv_path) == bool(archs):
        raise HwnasError("give either --from-csv FILE (with --out) or one or more --arch ARCH")
    if csv_path:
        if not out:
            raise HwnasError("--from-csv needs --out PREDICTIONS.csv, the file to write")
        rows = predict_csv(predictor_path, csv_path, arch_column, out)
        result = {"rows": rows, "out": str(Path(out).resolve())}
        if as_json:
            emit_json(result)
        else:
            results.print(f"wrote {rows} prediction(s) to {out}")
        return
    predictor = load_predictor(predictor_path)
    space = get_space(predictor.metadata.get("space") or "nb201")
    parsed = [space.parse(a) for a in archs]
    values = predict_archs(predictor, space, parsed)
    target = predictor.metadata.get("target") or "value"
    names = [space.to_string(a) for a in parsed]  # an index given is shown as its architecture string
    if as_json:
        emit_json({"target": target, "predictions": [{"arch": n, target: float(v)} for n, v in zip(names, values)]})
        return
    results.print(table(f"Predicted {target} ({predictor.name}, {predictor.metadata.get('device_name', '')})",
                        ["arch", target], [[n, float(v)] for n, v in zip(names, values)]))
