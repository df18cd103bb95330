"""`hwnas search`: differentiable search under a latency/energy budget on this device, or (--tabular) a budgeted
search on published tables for benchmarking."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hwnas.choices import (
    CIRCUIT_TASKS,
    DEFAULT_COST_PREDICTOR,
    DEFAULT_SPACE,
    FORMS,
    MODES,
    PROTOCOL_NAMES,
    TRAINING_FREE_STRATEGIES,
    cost_predictor_names,
)
from hwnas.commands.common import emit_json, json_option, reporter, results, run_dir_option, store_option, table
from hwnas.commands.search_mo import mo_options, search_front
from hwnas.commands.search_tasks import TASKS, run_task
from hwnas.errors import HwnasError
from hwnas.registries import BACKENDS, MO_STRATEGIES, STRATEGIES


@click.command()
@click.option("--budget-ms", type=float, default=None,
              help="Latency budget in ms per inference (batch 1).")
@click.option("--budget-mj", type=float, default=None,
              help="Energy budget in mJ per inference; met together with --budget-ms when both are given.")
@click.option("--strategy", default=None,
              type=click.Choice(STRATEGIES.names() + MO_STRATEGIES.names() + list(TRAINING_FREE_STRATEGIES)),
              help="darts (bi-level, first order; the default), darts-2nd (second order), single-level, mean-shift, "
              "gumbel, growing (recurrent cells grown by network morphism; the default of --task forecast), dqas "
              "(circuits; the default there); nsga2 (Pareto front of --objectives), evolution (regularized, one "
              "objective), random; training-free / training-free-evolution (no training: FLOPs as the accuracy "
              "proxy, for spaces without a supernet such as snn-transformer).")
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
@click.option("--task", default="classify", show_default=True, type=click.Choice([*TASKS, *sorted(CIRCUIT_TASKS)]),
              help="classify: images (the rest of this help); forecast: a recurrent cell (rnn-cell) on statsmodels' "
              "macrodata against LSTM and GRU (test MSE); rl: RL-DARTS, a supernet encoder learned with PPO on "
              "MinAtar, retrained and compared with MinAtar's baseline encoder (return); ghz|maxcut|random-state: "
              "DQAS on --space circuit[:qubits=..,coupling=line|ring|heavy-hex,native=..,noise=..] under "
              "--budget-depth.")
@click.option("--env", default=None, help="--task rl: a MinAtar environment id (default MinAtar/Breakout-v1).")
@click.option("--steps", default=20_000, show_default=True, type=click.IntRange(min=64),
              help="--task rl: PPO steps of the search and of each retraining.")
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(min=1),
              help="--task forecast / rl: retraining seeds (0..N-1) of the found cell and of each baseline.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Random seed: data split, supernet initialisation and batches (tabular: the initial sample).")
@click.option("--budget-depth", type=float, default=None, help="Circuit search: routed depth budget (native layers).")
@mo_options
@run_dir_option
@store_option
@json_option
def search(budget_ms, budget_mj, strategy, space, dataset, limit, epochs, retrain_epochs, backend, threads, protocol, predictor,
           energy_predictor, cost_form, budget_mode, tabular, latency_csv, latency_column, accuracy_csv, accuracy_column, measurements,
           accuracy_signal, task, env, steps, seeds, seed, objectives, trials, workers, executor, population,
           accuracy_source, study_storage, budget_depth, run_dir, store_url, as_json):
    """Search for the most accurate architecture within a latency (and/or energy) budget.

    The supernet search adds a differentiable predicted cost with a multiplier adapted by dual ascent, so the
    search settles at the budget; the derived architecture is moved to a predicted-feasible neighbour if
    needed, then measured on this device: over budget, the measurement is stored, the predictor refitted and
    the architecture repaired. Only a measured result is reported within budget. Each epoch shows loss, accuracy
    and per budget the relaxed (mixture) cost, the derived architecture's predicted cost, the budget and the
    multiplier with the cost it follows; RUN_DIR/search_cost.png plots cost and multiplier.

    With --tabular: no training and no device; see --latency-csv and friends. With --task forecast|rl: a
    recurrent cell or an RL encoder (see --task). With --task ghz|maxcut|random-state (or --space circuit): a quantum
    circuit search (DQAS) on the circuit space under a routed-depth budget.

    With --strategy nsga2|evolution|random: the Pareto front of --objectives under the budgets (constraints),
    saved as RUN_DIR/front.json, front.csv, front.png and front/K.json (`hwnas export --from-search
    RUN_DIR/front/K.json` exports point K)."""
    if task in CIRCUIT_TASKS or space.split(":")[0] == "circuit":
        _circuit(task if task in CIRCUIT_TASKS else None, space, budget_depth, strategy or "dqas", epochs, seed,
                 run_dir, as_json)
        return
    if strategy in MO_STRATEGIES:
        search_front(locals())
        return
    if task != "classify":
        common = {"epochs": epochs, "retrain_epochs": retrain_epochs, "budget_ms": budget_ms, "backend": backend,
                  "threads": threads, "protocol": protocol, "predictor": predictor, "seed": seed, "run_dir": run_dir,
                  "store_url": store_url}
        run_task(task, None if space == DEFAULT_SPACE else space, strategy, env, steps, seeds, common, as_json)
        return
    from hwnas.search.api import SearchOptions, search_device
    from hwnas.search.training_free import search_training_free

    if tabular:
        _tabular(budget_ms, budget_mj, latency_csv, latency_column, accuracy_csv, accuracy_column, measurements, seed,
                 predictor, accuracy_signal, as_json)
        return
    options = SearchOptions(budget_ms=budget_ms, budget_mj=budget_mj, space=space, dataset=dataset, limit=limit,
                            strategy=strategy or "darts", epochs=epochs, retrain_epochs=retrain_epochs, backend=backend,
                            threads=threads, protocol=protocol, predictor=predictor or DEFAULT_COST_PREDICTOR,
                            energy_predictor=energy_predictor, cost_form=cost_form, budget_mode=budget_mode, seed=seed,
                            run_dir=run_dir, store_url=store_url)
    run_search = search_training_free if strategy in TRAINING_FREE_STRATEGIES else search_device
    r = run_search(options, reporter(quiet=as_json))
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
    if r.get("speed_reference"):
        ref = r["speed_reference"]
        rows.append(["latency verdicts timed against", f"{ref['arch']} (nominal {ref['nominal_ms']:.4g} ms)"])
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


def _circuit(task, space, budget_depth, strategy, epochs, seed, run_dir, as_json) -> None:
    from hwnas.search.quantum import CircuitSearchOptions, search_circuit_run

    if task is None or budget_depth is None:
        raise HwnasError("a circuit search needs --task and --budget-depth (e.g. --space circuit --task ghz "
                         "--budget-depth 4)")
    if strategy != "dqas":
        raise HwnasError(f"circuits are searched with --strategy dqas, not {strategy}")
    r = search_circuit_run(space, task, {"depth": budget_depth}, CircuitSearchOptions(epochs=epochs, seed=seed),
                           run_dir, reporter(quiet=as_json))
    if as_json:
        emit_json(r)
        return
    rows = [["task", r["task"]], ["space", r["space"]], ["chosen circuit", r["arch"]], ["score", f"{r['score']:.4f}"],
            ["routed depth", f"{r['depth']:g} (budget {budget_depth:g})"], ["two-qubit gates", f"{r['two_qubit_gates']:g}"],
            ["duration", f"{r['duration_ns']:g} ns"], ["within budget", r["within_budget"]], ["success", r["success"]]]
    rows += [[f"baseline {b['name']}", f"score {b['score']:.4f}, depth {b['depth']:g}, 2q {b['two_qubit_gates']:g}"]
             for b in r["baselines"]]
    rows.append(["result", str(Path(run_dir) / "search.json")])
    results.print(table("Circuit search (dqas) under a depth budget", ["", "value"], rows))
