"""`hwnas run`: every stage with defaults, ending with one table."""
from __future__ import annotations

import click

from hwnas.choices import (
    DEFAULT_COST_PREDICTOR,
    DEFAULT_SPACE,
    MODES,
    RUN_RETRAIN_EPOCHS,
    RUN_SAMPLES,
    RUN_SEARCH_EPOCHS,
    RUN_STRATEGY,
    cost_predictor_names,
)
from hwnas.commands.common import emit_json, json_option, reporter, results, run_dir_option, store_option, table
from hwnas.registries import BACKENDS, STRATEGIES


@click.command()
@click.option("--space", default=DEFAULT_SPACE, show_default=True, metavar="NAME[:K=V,...]",
              help="Search space and its settings (classes follow the dataset).")
@click.option("--dataset", default="digits", show_default=True,
              help="digits (scikit-learn, no download), synthetic, a CIFAR-10 python folder, or an .npz with x and y.")
@click.option("--backend", default="onnxruntime-cpu", show_default=True, type=click.Choice(BACKENDS.names()),
              help="How models are run and measured; `hwnas devices` says which work here.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1),
              help="Fixed intra-op thread count for measuring (part of the device's identity).")
@click.option("--samples", default=RUN_SAMPLES, show_default=True, type=click.IntRange(min=5),
              help="Architectures to profile (stored ones are reused).")
@click.option("--budget-ms", type=float, default=None,
              help="Latency budget in ms. Default: the --budget-percentile of the profiled latencies.")
@click.option("--budget-percentile", default=40.0, show_default=True, type=click.FloatRange(1, 99),
              help="Without --budget-ms: the budget is this percentile of the profiled latencies.")
@click.option("--budget-mj", type=float, default=None,
              help="Energy budget in mJ per inference, met together with the latency budget.")
@click.option("--predictor", default=DEFAULT_COST_PREDICTOR, show_default=True,
              type=click.Choice(cost_predictor_names()),
              help="Latency predictor: auto (cross-validated on the profiled measurements; the most accurate judges "
                   "discrete architectures, the best differentiable one drives the cost term), a differentiable one "
                   "on one-hot codes (mlp) or the additive per-operation table (lookup).")
@click.option("--strategy", default=RUN_STRATEGY, show_default=True, type=click.Choice(STRATEGIES.names()),
              help="Differentiable search strategy; all share one supernet (see `hwnas search --help`).")
@click.option("--budget-mode", default="target", show_default=True, type=click.Choice(MODES),
              help="target: the search lands at the budget (a cost under it is pulled up); cap: only an upper limit.")
@click.option("--search-epochs", default=RUN_SEARCH_EPOCHS, show_default=True, type=click.IntRange(min=1),
              help="Supernet search epochs.")
@click.option("--retrain-epochs", default=RUN_RETRAIN_EPOCHS, show_default=True, type=click.IntRange(min=1),
              help="Epochs to train the chosen architecture from scratch before export.")
@click.option("--seed", default=0, show_default=True, help="Seed for sampling, data splits and training.")
@run_dir_option
@store_option
@json_option
def run(space, dataset, backend, threads, samples, budget_ms, budget_percentile, budget_mj, predictor, strategy,
        budget_mode, search_epochs, retrain_epochs, seed, run_dir, store_url, as_json):
    """Profile this device, fit a latency predictor, search under the budget, retrain, export to ONNX and
    measure the exported model against the budget. Rerunning reuses stored measurements."""
    from hwnas.pipeline import PipelineOptions, run_pipeline

    options = PipelineOptions(run_dir=run_dir, store_url=store_url, space=space, dataset=dataset, backend=backend,
                              threads=threads, samples=samples, budget_ms=budget_ms, budget_percentile=budget_percentile,
                              budget_mj=budget_mj, predictor=predictor, strategy=strategy, budget_mode=budget_mode,
                              search_epochs=search_epochs, retrain_epochs=retrain_epochs, seed=seed)
    r = run_pipeline(options, reporter(quiet=as_json))
    if as_json:
        emit_json(r)
        return
    rows = [
        ["device", f"{r['device']} [{r['device_id']}], {r['backend']}"],
        ["architectures profiled", r["architectures_profiled"]],
        ["predictor", f"{r['predictor']}: {r.get('predictor_used', '')}"],
        ["predictor held-out error", _holdout(r["predictor_holdout"])],
    ]
    for target, budget in r["budgets"].items():
        unit = "ms" if target == "latency_ms" else "mJ"
        measured = r["measured_exported"].get(target)
        rows += [[f"budget ({target})", f"{budget:.4g} {unit}"],
                 [f"predicted / measured ({target})",
                  f"{r['predicted'].get(target, float('nan')):.4g} / {measured if measured is None else f'{measured:.4g}'} {unit}"]]
    speed = r["measured_exported"].get("speed_reference")
    if speed:  # the latency above is at the reference's nominal speed; say so, with the raw figure
        rows.append(["latency judged against", (
            f"{speed['arch']} timed alternately: {speed['ratio']:.3f}x its nominal {speed['nominal_ms']:.4g} ms; "
            f"{r['measured_exported']['latency_raw_ms']:.4g} ms as timed, the machine at {speed['slowdown']:.2f}x "
            "the reference's nominal time")])
    rows += [
        ["chosen architecture", r["arch"]],
        ["within budget (measured)", "yes" if r["within_budget"] else "NO"],
        [f"{r['dataset']} test accuracy", f"{100 * r['test_accuracy']:.2f}%"],
        ["ONNX file", r["onnx"]],
        ["seconds", f"{r['seconds']} ({', '.join(f'{k} {v}' for k, v in r['stage_seconds'].items())})"],
    ]
    results.print(table("hwnas run", ["result", "value"], rows))


def _holdout(h: dict) -> str:
    if not h:
        return "none (too few rows for a held-out share)"

    def figure(key: str, spec: str, scale: float = 1.0) -> str:
        return "-" if h.get(key) is None else format(scale * h[key], spec)

    return (f"MAPE {figure('mape', '.1f')}%, within ±10% {figure('within_10', '.0f', 100)}%, "
            f"Spearman {figure('spearman', '.3f')} (n={h.get('n')})")
