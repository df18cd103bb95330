"""`hwnas search --strategy nsga2|evolution|random`: the multi-objective part of `hwnas search` (options are
declared in hwnas.commands.search; `mo_options` adds the ones only this part reads)."""
from __future__ import annotations

from typing import Any

import click

from hwnas.choices import OBJECTIVE_NAMES
from hwnas.commands.common import emit_json, reporter, results, table
from hwnas.registries import WORKER_EXECUTORS as EXECUTORS


def mo_options(f):
    """The options of multi-objective search, on `hwnas search`."""
    options = [
        click.option("--objectives", default="accuracy,latency_ms", show_default=True, metavar="NAME[,NAME...]",
                     help=f"nsga2/evolution/random: what to optimise, from {', '.join(OBJECTIVE_NAMES)} (evolution: "
                     "one; budgets are constraints)."),
        click.option("--trials", default=100, show_default=True, type=click.IntRange(min=1),
                     help="nsga2/evolution/random: architectures to evaluate (more on a resumed study)."),
        click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
                     help="nsga2/evolution/random: worker processes searching one study together."),
        click.option("--executor", default=None, type=click.Choice(EXECUTORS.names()),
                     help="nsga2/evolution/random: how workers run (default: inline for one, process for more; ray: "
                     "Ray tasks on one study, which needs --study-storage a URL every worker can open)."),
        click.option("--population", default=20, show_default=True, type=click.IntRange(min=2),
                     help="nsga2/evolution: population size."),
        click.option("--accuracy", "accuracy_source", default="train", show_default=True, metavar="train|proxy:NAME|PATH",
                     help="nsga2/evolution/random (device mode): accuracy objective from a short training (--epochs "
                     "on --dataset), zero-cost proxies (proxy:naswot, proxy:synflow+naswot, ...), an accuracy .csv "
                     "table (nb201) or an accuracy predictor file."),
        click.option("--study-storage", default=None, metavar="URL",
                     help="nsga2/evolution/random: Optuna storage of the study (sqlite:///FILE or a PostgreSQL URL; "
                     "default sqlite:///RUN_DIR/study.db)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def search_front(params: dict[str, Any]) -> None:
    """Run the multi-objective search from `hwnas search`'s parameters and print the front."""
    from hwnas.search.mo_api import MultiObjectiveOptions, search_multi_objective

    p = params
    options = MultiObjectiveOptions(
        objectives=[o.strip() for o in p["objectives"].split(",") if o.strip()], strategy=p["strategy"],
        trials=p["trials"], workers=p["workers"], executor=p["executor"], population=p["population"], budget_ms=p["budget_ms"],
        budget_mj=p["budget_mj"], space="nb201" if p["tabular"] else p["space"], tabular=p["tabular"],
        latency_csv=p["latency_csv"], latency_column=p["latency_column"], accuracy_csv=p["accuracy_csv"],
        accuracy_column=p["accuracy_column"], accuracy=p["accuracy_source"], dataset=p["dataset"], limit=p["limit"],
        epochs=p["epochs"], backend=p["backend"], threads=p["threads"], predictor=p["predictor"] or "lookup",
        energy_predictor=p["energy_predictor"], seed=p["seed"], run_dir=p["run_dir"], store_url=p["store_url"],
        storage=p["study_storage"])
    r = search_multi_objective(options, reporter(quiet=p["as_json"]))
    if p["as_json"]:
        emit_json(r)
        return
    objectives = r["objectives"]
    rows = [[k, *(pt["values"][n] for n in objectives), pt["trial"], pt["arch"]] for k, pt in enumerate(r["front"])]
    budgets = ", ".join(f"{k} <= {v:g}" for k, v in r["constraints"].items()) or "none"
    results.print(table(f"Pareto front ({r['strategy']}): {len(r['front'])} points of {r['trials']} trials "
                        f"({r['feasible_trials']} feasible); budgets: {budgets}",
                        ["#", *objectives, "trial", "arch"], rows))
    results.print(f"front: {r['files']['json']}, {r['files']['csv']}, {r['files'].get('plot', '')}; export point K "
                  f"with: hwnas export --from-search {p['run_dir']}/front/K.json", markup=False, soft_wrap=True)
