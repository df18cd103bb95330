"""`hwnas search`: differentiable search under a latency/energy budget on this device, or (--tabular) a budgeted
search on published tables for benchmarking."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from hwnas.commands.common import emit_json, json_option, open_store, results, run_dir_option, store_option, table
from hwnas.errors import HwnasError
from hwnas.measurement import budgets_from
from hwnas.pipeline import DEFAULT_SPACE
from hwnas.profilers import BACKENDS, PROTOCOL_NAMES, TimingProtocol
from hwnas.search.cost import FORMS, MODES
from hwnas.search.strategy import STRATEGIES


def run_search_command(space: str = DEFAULT_SPACE, dataset: str = "digits", budget_ms: float | None = None,
                       budget_mj: float | None = None, strategy: str = "darts", epochs: int = 10,
                       retrain_epochs: int = 20, backend: str = "onnxruntime-cpu", threads: int = 1,
                       predictor: str = "lookup", cost_form: str = "dual", limit: int | None = None, seed: int = 0,
                       run_dir: str | Path = "runs/default", store_url: str | None = None, protocol: str = "default",
                       energy_predictor: str | None = None, progress: bool = True,
                       budget_mode: str = "target") -> dict[str, Any]:
    """What `hwnas search` does, as a function: load the data, get a predictor per budget (a saved predictor
    file, or fit one of the named kind on the store's measurements of this device; `predictor` for latency,
    `energy_predictor` for energy, which defaults to `predictor` when that is a name, else mlp), search, verify on the
    device, retrain the chosen architecture and report its test accuracy. Writes RUN_DIR/search.json and
    RUN_DIR/search_cost.png; returns the result as a JSON-ready dict."""
    from hwnas.data import load_dataset
    from hwnas.profilers import get_backend
    from hwnas.search import search_under_budget, train_arch
    from hwnas.spaces import get_space

    budgets = budgets_from(budget_ms, budget_mj)
    if not budgets:
        raise HwnasError("give a budget: --budget-ms and/or --budget-mj")
    run_dir = Path(run_dir)
    data = load_dataset(dataset, seed=seed, limit=limit)
    s = get_space(space, classes=data.num_classes)
    shape = s.check_input_shape(data.input_shape)
    device = get_backend(backend, threads=threads)
    store = open_store(store_url, run_dir)
    if energy_predictor is None:
        energy_predictor = "lookup" if Path(predictor).suffix == ".npz" else predictor
    kinds = {"latency_ms": predictor, "energy_mj": energy_predictor}
    predictors = {target: _predictor(kinds[target], target, s, shape, device, store, seed) for target in budgets}
    result = search_under_budget(s, data, predictors, budgets, strategy=strategy, epochs=epochs, backend=device,
                                 store=store, input_shape=shape, seed=seed, progress=progress, out_dir=run_dir,
                                 cost_form=cost_form, protocol=TimingProtocol.named(protocol), budget_mode=budget_mode)
    if retrain_epochs > 0:
        _, result.test_accuracy = train_arch(s, result.arch, data, epochs=retrain_epochs, seed=seed, progress=progress)
    out = result.to_dict()
    out.update(dataset=data.name, device=device.device_name(), device_id=device.device_id(), backend=device.name,
               retrain_epochs=retrain_epochs, store=store.url)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "search.json").write_text(json.dumps(out, indent=2, default=str))
    return out


def _predictor(spec: str, target: str, space, shape, device, store, seed: int):
    """A saved predictor file (checked against the space and target), else fit the named kind from the store."""
    from hwnas.predictors import PREDICTORS, fit_from_store, load_predictor

    if Path(spec).suffix == ".npz" or Path(spec).exists():
        p = load_predictor(spec)
        meta = p.metadata
        if meta.get("space") and meta["space"] != space.spec:
            raise HwnasError(f"{spec} was fitted on space {meta['space']}, but the search runs on {space.spec}")
        if meta.get("target") and meta["target"] != target:
            raise HwnasError(f"{spec} predicts {meta['target']}, but the {target} budget needs a {target} predictor")
        return p
    if spec not in PREDICTORS.names():
        raise HwnasError(f"--predictor {spec!r} is neither a predictor file nor a predictor name; "
                         f"accepted: a .npz from `hwnas fit`, or one of {', '.join(PREDICTORS.names())}")
    fitted, _ = fit_from_store(store, space, device.device_id(), device.name, input_shape=shape, target=target,
                               predictor=spec, seed=seed)
    return fitted


@click.command()
@click.option("--budget-ms", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Latency budget in ms per inference (batch 1).")
@click.option("--budget-mj", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Energy budget in mJ per inference; met together with --budget-ms when both are given.")
@click.option("--strategy", default="darts", show_default=True, type=click.Choice(STRATEGIES.names()),
              help="darts (bi-level, first order), darts-2nd (second order), single-level, mean-shift, gumbel.")
@click.option("--space", default=DEFAULT_SPACE, show_default=True, metavar="NAME[:K=V,...]",
              help="Search space and its settings (classes follow the dataset).")
@click.option("--dataset", default="digits", show_default=True,
              help="digits (scikit-learn, no download), synthetic, a CIFAR-10 python folder, or an .npz with x and y.")
@click.option("--limit", type=click.IntRange(min=10), default=None, help="Use at most this many training examples.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1), help="Search epochs.")
@click.option("--retrain-epochs", default=20, show_default=True, type=click.IntRange(min=0),
              help="Epochs to retrain the chosen architecture from scratch (0: skip; no test accuracy).")
@click.option("--backend", "--device", "backend", default="onnxruntime-cpu", show_default=True,
              type=click.Choice(BACKENDS.names()), help="Backend the chosen architecture is measured with.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1),
              help="Fixed intra-op thread count of the backend (part of the device identity).")
@click.option("--protocol", default="default", show_default=True, type=click.Choice(PROTOCOL_NAMES),
              help="Timing protocol for measuring the chosen architecture (quick, default, thorough).")
@click.option("--predictor", default=None, metavar="PATH|NAME",
              help="A predictor file from `hwnas fit`, or a predictor name fitted now on the store's measurements "
              "of this device (default: lookup, the additive per-operation table; tabular mode: ridge).")
@click.option("--energy-predictor", default=None, metavar="PATH|NAME",
              help="Like --predictor, for the --budget-mj cost (default: --predictor's kind, or mlp).")
@click.option("--cost-form", default="dual", show_default=True, type=click.Choice(FORMS),
              help="dual: multiplier adapted by dual ascent; proxyless: task loss x (cost/budget)^beta.")
@click.option("--budget-mode", default="target", show_default=True, type=click.Choice(MODES),
              help="target: the search lands at the budget (a cost under it is pulled up); cap: the budget is only "
              "an upper limit.")
@click.option("--tabular", is_flag=True,
              help="Benchmark mode on published tables: a latency column is the device, an accuracy column the oracle.")
@click.option("--latency-csv", type=click.Path(), default=None, help="Tabular: latency table (arch + one column per device).")
@click.option("--latency-column", default=None, help="Tabular: the device column of --latency-csv.")
@click.option("--accuracy-csv", type=click.Path(), default=None, help="Tabular: accuracy table (arch + columns).")
@click.option("--accuracy-column", default="cifar10", show_default=True, help="Tabular: the accuracy column.")
@click.option("--measurements", default=50, show_default=True, type=click.IntRange(min=2),
              help="Tabular: most device measurements (table latency reads) allowed.")
@click.option("--accuracy-signal", default="oracle", show_default=True, type=click.Choice(["oracle", "surrogate"]),
              help="Tabular: rank by the accuracy table (oracle) or by an accuracy predictor fitted on 200 archs.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Random seed: data split, supernet initialisation and batches (tabular: the initial sample).")
@run_dir_option
@store_option
@json_option
def search(budget_ms, budget_mj, strategy, space, dataset, limit, epochs, retrain_epochs, backend, threads, protocol, predictor,
           energy_predictor, cost_form, budget_mode, tabular, latency_csv, latency_column, accuracy_csv, accuracy_column, measurements,
           accuracy_signal, seed, run_dir, store_url, as_json):
    """Search for the most accurate architecture within a latency (and/or energy) budget.

    The supernet search adds a differentiable predicted cost with a multiplier adapted by dual ascent, so the
    search settles at the budget; the derived architecture is moved to a predicted-feasible neighbour if
    needed, then measured on this device: over budget, the measurement is stored, the predictor refitted and
    the architecture repaired. Only a measured result is reported within budget. Progress shows epoch, loss,
    accuracy, predicted cost and multiplier; RUN_DIR/search_cost.png plots cost and multiplier.

    With --tabular: no training and no device; see --latency-csv and friends."""
    if tabular:
        missing = [n for n, v in (("--latency-csv", latency_csv), ("--latency-column", latency_column),
                                  ("--accuracy-csv", accuracy_csv), ("--budget-ms", budget_ms)) if v is None]
        if missing:
            raise HwnasError(f"--tabular needs {', '.join(missing)}")
        if budget_mj is not None:
            raise HwnasError("tabular mode has latency tables only; --budget-mj is not accepted (give --budget-ms)")
        from hwnas.search.tabular import tabular_search

        r = tabular_search(latency_csv, latency_column, accuracy_csv, accuracy_column, budget_ms=budget_ms,
                           measurements=measurements, seed=seed, predictor=predictor or "ridge",
                           accuracy_signal=accuracy_signal)
        if r["arch"] is None:  # a found-nothing result is an error, as for an impossible budget in device search
            raise HwnasError(f"no architecture measured on {r['device']} is within the budget of {r['budget_ms']:g} "
                             f"ms ({r['measurements']} of {r['measurement_limit']} measurements used); the cheapest "
                             f"measured is {r['cheapest_measured_ms']:.4g} ms ({r['cheapest_measured_arch']}); "
                             "raise the budget")
        if as_json:
            emit_json(r)
            return
        rows = [["device column", r["device"]], ["budget", f"{r['budget_ms']:.4g} ms"], ["chosen", r["arch"]],
                ["latency (table)", r["latency_ms"]], ["accuracy", r["accuracy"]], ["within budget", r["within_budget"]],
                ["budget used", r["budget_used"]], ["regret (points)", r["regret"]],
                ["measurements", f"{r['measurements']} of {r['measurement_limit']}"], ["seconds", r["seconds"]]]
        results.print(table("Tabular search under budget", ["", "value"], rows))
        return
    r = run_search_command(space, dataset, budget_ms, budget_mj, strategy, epochs, retrain_epochs, backend, threads,
                           predictor or "lookup", cost_form, limit, seed, run_dir, store_url, protocol,
                           energy_predictor, progress=not as_json, budget_mode=budget_mode)
    if as_json:
        emit_json(r)
        return
    rows = []
    for target, budget in r["budgets"].items():
        measured = (r["measured"] or {}).get(target)
        rows.append([f"{target} (budget {budget:.4g})", (f"predicted {r['predicted'][target]:.4g}, measured "
                     f"{'-' if measured is None else f'{measured:.4g}'}")])
    rows += [["chosen architecture", r["arch"]], ["within budget (measured)", r["within_budget"]],
             ["device measurements made", r["measurements_used"]], ["test accuracy (retrained)", r["test_accuracy"]],
             ["search seconds", r["search_seconds"]], ["plot", r["plot"]], ["result", str(Path(run_dir) / "search.json")]]
    if r["note"]:
        rows.append(["note", r["note"]])
    results.print(table(f"Search ({r['strategy']}) under budget", ["", "value"], rows))
    results.print(f"chosen: {r['arch']}", markup=False, soft_wrap=True)
