"""`hwnas run`: every stage with defaults, ending with one table."""
from __future__ import annotations

import click

from hwnas.commands.common import console, emit_json, json_option, run_dir_option, store_option, table
from hwnas.pipeline import DEFAULT_SPACE, run_pipeline
from hwnas.predictors import PREDICTORS
from hwnas.profilers import BACKENDS
from hwnas.search.strategy import STRATEGIES


@click.command()
@click.option("--space", default=DEFAULT_SPACE, show_default=True, metavar="NAME[:K=V,...]",
              help="Search space and its settings (classes follow the dataset).")
@click.option("--dataset", default="digits", show_default=True,
              help="digits (scikit-learn, no download), synthetic, a CIFAR-10 python folder, or an .npz with x and y.")
@click.option("--backend", default="onnxruntime-cpu", show_default=True, type=click.Choice(BACKENDS.names()))
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--samples", default=100, show_default=True, type=click.IntRange(min=5),
              help="Architectures to profile (stored ones are reused).")
@click.option("--budget-ms", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Latency budget in ms. Default: the --budget-percentile of the profiled latencies.")
@click.option("--budget-percentile", default=40.0, show_default=True, type=click.FloatRange(1, 99))
@click.option("--budget-mj", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Energy budget in mJ per inference, met together with the latency budget.")
@click.option("--predictor", default="mlp", show_default=True,
              type=click.Choice([n for n in PREDICTORS.names() if PREDICTORS.get(n).differentiable]),
              help="Differentiable latency predictor used as the search's cost term.")
@click.option("--strategy", default="darts", show_default=True, type=click.Choice(STRATEGIES.names()))
@click.option("--search-epochs", default=15, show_default=True, type=click.IntRange(min=1))
@click.option("--retrain-epochs", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True)
@run_dir_option
@store_option
@json_option
def run(space, dataset, backend, threads, samples, budget_ms, budget_percentile, budget_mj, predictor, strategy,
        search_epochs, retrain_epochs, seed, run_dir, store_url, as_json):
    """Profile this device, fit a latency predictor, search under the budget, retrain, export to ONNX and
    measure the exported model against the budget. Rerunning reuses stored measurements."""
    r = run_pipeline(run_dir, store_url, space, dataset, backend, threads, samples, budget_ms, budget_percentile,
                     budget_mj, predictor, strategy, search_epochs, retrain_epochs, seed, progress=not as_json)
    if as_json:
        emit_json(r)
        return
    h = r["predictor_holdout"]
    rows = [
        ["device", f"{r['device']} [{r['device_id']}], {r['backend']}"],
        ["architectures profiled", r["architectures_profiled"]],
        ["predictor held-out error", f"MAPE {h['mape']:.1f}%, within ±10% {100 * h['within_10']:.0f}%, "
                                     f"Spearman {h['spearman']:.3f} (n={h['n']})"],
    ]
    for target, budget in r["budgets"].items():
        unit = "ms" if target == "latency_ms" else "mJ"
        measured = r["measured_exported"].get(target)
        rows += [[f"budget ({target})", f"{budget:.4g} {unit}"],
                 [f"predicted / measured ({target})",
                  f"{r['predicted'].get(target, float('nan')):.4g} / {measured if measured is None else f'{measured:.4g}'} {unit}"]]
    rows += [
        ["chosen architecture", r["arch"]],
        ["within budget (measured)", "yes" if r["within_budget"] else "NO"],
        [f"{r['dataset']} test accuracy", f"{100 * r['test_accuracy']:.2f}%"],
        ["ONNX file", r["onnx"]],
        ["seconds", f"{r['seconds']} ({', '.join(f'{k} {v}' for k, v in r['stage_seconds'].items())})"],
    ]
    console.print(table("hwnas run", ["", ""], rows))
