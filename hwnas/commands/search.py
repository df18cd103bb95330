"""`hwnas search`: differentiable search under a latency/energy budget on this device, or (--tabular) a budgeted
search on published tables for benchmarking."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hwnas.commands.common import emit_json, json_option, reporter, results, run_dir_option, store_option, table
from hwnas.errors import HwnasError
from hwnas.profilers import BACKENDS, PROTOCOL_NAMES
from hwnas.search.api import DEFAULT_COST_PREDICTOR, DEFAULT_SPACE, SearchOptions, cost_predictor_names, search_device
from hwnas.search.cost import FORMS, MODES
from hwnas.search.strategy import STRATEGIES


@click.command()
@click.option("--budget-ms", type=float, default=None,
              help="Latency budget in ms per inference (batch 1).")
@click.option("--budget-mj", type=float, default=None,
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
              f"of this device: {', '.join(cost_predictor_names())} (default: auto, "
              "cross-validated on this device's measurements, the most accurate judging discrete architectures and "
              "the best differentiable one driving the cost term; tabular mode: any predictor, default ridge).")
@click.option("--energy-predictor", default=None, metavar="PATH|NAME",
              help="Like --predictor, for the --budget-mj cost (default: --predictor's kind, or lookup when that is a "
              "file).")
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
    the architecture repaired. Only a measured result is reported within budget. Each epoch shows loss, accuracy
    and per budget the relaxed (mixture) cost, the derived architecture's predicted cost, the budget and the
    multiplier with the cost it follows; RUN_DIR/search_cost.png plots cost and multiplier.

    With --tabular: no training and no device; see --latency-csv and friends."""
    if tabular:
        _tabular(budget_ms, budget_mj, latency_csv, latency_column, accuracy_csv, accuracy_column, measurements, seed,
                 predictor, accuracy_signal, as_json)
        return
    options = SearchOptions(budget_ms=budget_ms, budget_mj=budget_mj, space=space, dataset=dataset, limit=limit,
                            strategy=strategy, epochs=epochs, retrain_epochs=retrain_epochs, backend=backend,
                            threads=threads, protocol=protocol, predictor=predictor or DEFAULT_COST_PREDICTOR,
                            energy_predictor=energy_predictor, cost_form=cost_form, budget_mode=budget_mode, seed=seed,
                            run_dir=run_dir, store_url=store_url)
    r = search_device(options, reporter(quiet=as_json))
    if as_json:
        emit_json(r)
        return
    _print_search(r, run_dir)


def _print_search(r: dict[str, Any], run_dir) -> None:
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


def _tabular(budget_ms, budget_mj, latency_csv, latency_column, accuracy_csv, accuracy_column, measurements, seed,
             predictor, accuracy_signal, as_json) -> None:
    from hwnas.search.tabular import TabularOptions, tabular_search

    missing = [n for n, v in (("--latency-csv", latency_csv), ("--latency-column", latency_column),
                              ("--accuracy-csv", accuracy_csv), ("--budget-ms", budget_ms)) if v is None]
    if missing:
        raise HwnasError(f"--tabular needs {', '.join(missing)}")
    if budget_mj is not None:
        raise HwnasError("tabular mode has latency tables only; --budget-mj is not accepted (give --budget-ms)")
    options = TabularOptions(latency_csv, latency_column, accuracy_csv, accuracy_column, budget_ms=budget_ms,
                             measurements=measurements, seed=seed, predictor=predictor or "ridge",
                             accuracy_signal=accuracy_signal)
    r = tabular_search(options, reporter(quiet=as_json))
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
