"""`hwnas export` and `hwnas validate`: a deployable bundle, checked against PyTorch and measured on the device."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hwnas.choices import EXPORTERS, INT8_MODES, PROTOCOL_NAMES, TENSORRT_PRECISIONS
from hwnas.cli import one_line
from hwnas.commands.common import (
    emit_json,
    fmt,
    json_option,
    open_store,
    reporter,
    results,
    run_dir_option,
    store_option,
    table,
)
from hwnas.errors import HwnasError
from hwnas.registries import BACKENDS


def budget_options(f):
    f = click.option("--budget-mj", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Energy budget in mJ per inference.")(f)
    f = click.option("--budget-ms", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Latency budget in ms (median, batch 1 unless --batch).")(f)
    return f


def check_options(f):
    f = click.option("--atol", type=click.FloatRange(min=0), default=None,
                     help="Absolute tolerance of ONNX vs PyTorch outputs [export: 1e-4; validate: the bundle's].")(f)
    f = click.option("--rtol", type=click.FloatRange(min=0), default=None,
                     help="Relative tolerance (element passes when |diff| <= atol + rtol*|reference|) "
                          "[export: 1e-3; validate: the bundle's].")(f)
    f = click.option("--protocol", default="default", show_default=True, type=click.Choice(PROTOCOL_NAMES),
                     help="Timing protocol of the measurement.")(f)
    f = click.option("--threads", default=None, type=click.IntRange(min=1),
                     help="Intra-op threads of the backend [export: 1; validate: the bundle's].")(f)
    return f


@click.command()
@click.option("--space", default=None, metavar="NAME[:K=V,...]",
              help="Search space, e.g. nb201:C=8,N=1,classes=10 [default: the search result's, else nb201].")
@click.option("--arch", default=None, metavar="ARCH", help="Architecture: canonical string or index in the space.")
@click.option("--from-search", "from_search", type=click.Path(dir_okay=False), default=None, metavar="RESULT.json",
              help="Take space, architecture, budgets, predicted cost and accuracy from a search result "
                   "(`hwnas search --json` output); --space/--arch/--budget-* override. A `search --tabular` "
                   "result is refused: its budget and accuracy are the published table's, not this device's.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, metavar="WEIGHTS.pt",
              help="Trained state_dict (torch.save) of the architecture. Default: the search result's retrained "
                   "weights, else random init with BatchNorm statistics calibrated on the inputs, enough to check "
                   "the export, not to deploy.")
@click.option("--supernet", type=click.Path(dir_okay=False), default=None, metavar="SUPERNET.pt",
              help="Take the architecture's weights out of this elastic supernet checkpoint (mbv3, from `hwnas run "
                   "--space mbv3`), BatchNorm recalibrated on --dataset's training split (random inputs without it).")
@click.option("--finetune-epochs", default=0, show_default=True, type=click.IntRange(min=0),
              help="With --supernet: fine-tune the extracted subnet this many epochs on --dataset's training split.")
@click.option("--input-shape", default=None, metavar="CxHxW",
              help="Input of one sample, e.g. 3x32x32 [default: the dataset's, else the space's].")
@click.option("--dataset", default=None, metavar="NAME|PATH",
              help="Real samples (digits, synthetic, a CIFAR-10 folder, an .npz with x and y): parity inputs, int8 "
                   "calibration and int8 accuracy change. Default: seeded random inputs only.")
@click.option("--exporter", default="auto", show_default=True, type=click.Choice(EXPORTERS),
              help="ONNX exporter: auto (TorchScript, deprecated in recent torch; dynamo where it fails or is gone), "
                   "torchscript or dynamo. The manifest records the one that ran and its opset.")
@click.option("--int8", type=click.Choice(INT8_MODES), is_flag=False, flag_value="static", default=None,
              help="Also write model.int8.onnx with ONNX Runtime quantisation: static (calibrated, QDQ; the default "
                   "when --int8 has no value) or dynamic.")
@click.option("--tensorrt", is_flag=True,
              help="Also build a TensorRT engine (needs an NVIDIA GPU and TensorRT 10; skipped with the reason otherwise).")
@click.option("--tensorrt-precision", default="fp16", show_default=True, type=click.Choice(TENSORRT_PRECISIONS),
              help="Engine precision; int8 is built from the static int8 model (needs --int8 static).")
@budget_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Bundle folder [default: RUN_DIR/export]. An existing bundle there is replaced once the new one is complete.")
@click.option("--backend", "backend_name", default="onnxruntime-cpu", show_default=True,
              type=click.Choice(BACKENDS.names()), help="Backend that measures the exported model; see `hwnas devices`.")
@check_options
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1), help="Batch size measured.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random weights and parity inputs.")
@run_dir_option
@store_option
@json_option
def export(space, arch, from_search, weights, supernet, finetune_epochs, input_shape, dataset, exporter, int8, tensorrt,
           tensorrt_precision, budget_ms,
           budget_mj, out_dir, backend_name, threads, protocol, rtol, atol, batch, seed, run_dir, store_url, as_json):
    """Export an architecture as a deployable bundle: ONNX (optionally int8 and a TensorRT engine), weights,
    parity inputs and a manifest with SHA-256 hashes, the exporter that ran, parity figures, predicted vs
    measured latency/energy and budget pass/fail on this device.

    Exit status: 0 when parity and every budget pass, 1 when one fails (the bundle is still written, with
    the failure in its manifest), 2 on bad input (nothing written). With --store the measurement of the
    exported model is also kept in the store."""
    from hwnas.export import (
        ExportOptions,
        check_output_dir,
        export_bundle,
        load_samples,
        load_weights_into,
        read_search_result,
        sample_shape,
        subnet_from_supernet,
    )
    from hwnas.measurement import budgets_from
    from hwnas.profilers import TimingProtocol
    from hwnas.spaces import get_space

    out_dir = check_output_dir(out_dir or Path(run_dir) / "export")  # before any work
    result = read_search_result(from_search) if from_search else {}
    s = get_space(space or result.get("space") or "nb201")
    if arch is None and result.get("arch") is None:
        raise HwnasError("no architecture given; pass --arch ARCH (canonical string or index) or --from-search RESULT.json")
    arch = s.parse(arch if arch is not None else result["arch"])  # canonical string or index
    weights = weights or result.get("weights")  # a device search saves the retrained weights beside its result
    data = load_samples(dataset) if dataset else (None, None)
    shape = sample_shape(s, input_shape, data[0], f"--dataset {dataset}")
    options = ExportOptions(
        input_shape=shape, exporter=exporter, int8=int8 or False, tensorrt=tensorrt, tensorrt_precision=tensorrt_precision,
        predicted=result.get("predicted") or {}, accuracy=result.get("test_accuracy"),
        budgets={**(result.get("budgets") or {}), **budgets_from(budget_ms, budget_mj)}, backend=backend_name,
        threads=threads or 1, batch=batch, rtol=1e-3 if rtol is None else rtol, atol=1e-4 if atol is None else atol,
        protocol=TimingProtocol.named(protocol), seed=seed)
    if supernet and weights:
        raise HwnasError("give either --weights or --supernet, not both")
    model = load_weights_into(s, arch, shape, weights) if weights else None
    if supernet:
        model = subnet_from_supernet(s, arch, supernet, shape, dataset, finetune_epochs, seed)[0]
    manifest = export_bundle(s, arch, out_dir, options, model=model,
                             inputs=data[0], labels=data[1], store=open_store(store_url, run_dir) if store_url else None,
                             reporter=reporter(as_json))
    _print_report(f"Bundle {out_dir.resolve()}", {"bundle": str(out_dir.resolve()), **manifest}, as_json)


@click.command()
@click.argument("bundle_dir", type=click.Path())
@click.option("--backend", "backend_name", default=None, type=click.Choice(BACKENDS.names()),
              help="Backend that re-measures the model [default: the bundle's if it works here, else onnxruntime-cpu].")
@check_options
@budget_options
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1), help="Batch size measured.")
@click.option("--no-measure", is_flag=True, help="Check hashes and parity only; do not time the model.")
@click.option("--allow-missing-weights", is_flag=True,
              help="Accept a deployed copy without weights.pt: parity then uses the outputs recorded at export.")
@json_option
def validate(bundle_dir, backend_name, threads, protocol, rtol, atol, budget_ms, budget_mj, batch, no_measure,
             allow_missing_weights, as_json):
    """Re-check a bundle written by `hwnas export`, here and now: file hashes (before any file is parsed), the
    ONNX checker, ONNX Runtime against PyTorch (rebuilt from weights.pt) on the bundle's parity inputs, and a
    fresh measurement of the exported file against the budgets (the bundle's, or --budget-ms/--budget-mj).

    Exit status: 0 when everything passes, 1 when a check fails (a file missing or changed since export, parity,
    a budget), 2 when the bundle cannot be checked at all (missing or malformed manifest, a manifest naming
    files outside the bundle, a corrupt ONNX file, bad tolerances, a backend not available here or one that
    cannot run ONNX files)."""
    from hwnas.export import validate_bundle
    from hwnas.measurement import budgets_from
    from hwnas.profilers import TimingProtocol

    budgets = budgets_from(budget_ms, budget_mj) or None
    report = validate_bundle(bundle_dir, backend=backend_name, threads=threads, batch=batch, rtol=rtol, atol=atol,
                             budgets=budgets, protocol=TimingProtocol.named(protocol), measure=not no_measure,
                             require_weights=not allow_missing_weights)
    _print_report(f"Validated {report['bundle']}", report, as_json)


def _print_report(title: str, report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(report)
    else:
        results.print(_summary_table(title, report))
    if not report["passed"]:  # the table says it all; stderr gets one line a script can log
        failures = report.get("failures") or ["see the report"]
        click.echo(one_line(f"validation FAILED: {'; '.join(failures)}"), err=True)
        raise SystemExit(1)


def _int8_latency_rows(fp32: dict[str, Any], int8: dict[str, Any]) -> list[list[Any]]:
    """int8 latency beside fp32's, saying plainly when int8 is the slower one (common on CPUs without VNNI)."""
    if int8.get("latency_ms") is None or not fp32.get("latency_ms"):
        return []
    ratio = int8["latency_ms"] / fp32["latency_ms"]
    verdict = f"{ratio:.2f}x fp32: int8 is SLOWER here" if ratio > 1 else f"{1 / ratio:.2f}x faster than fp32"
    return [["measured int8", f"{fmt(int8['latency_ms'])} ms vs fp32 {fmt(fp32['latency_ms'])} ms ({verdict})"]]


def _summary_table(title: str, r: dict[str, Any]):
    rows: list[list[Any]] = [["architecture", f"{r['arch']} ({r['space']})"]]
    if r.get("exporter"):
        note = f"; {r['exporter_note']}" if r.get("exporter_note") else ""
        rows.append(["ONNX exporter", f"{r['exporter']} (opset {r.get('opset')}){note}"])
    parity = r.get("parity") or {}
    for kind in ("random", "smooth", "real"):
        if kind in parity:
            p = parity[kind]
            rows.append([f"ONNX vs PyTorch ({kind}, {p['samples']})",
                         (f"{'ok' if p['passed'] else 'FAIL'}: max abs {p['max_abs_error']:.2g}, max rel "
                         f"{p['max_rel_error']:.2g}, top-1 agree {100 * p['top1_agreement']:.0f}% "
                         f"({p['reference_top1_classes']} class{'' if p['reference_top1_classes'] == 1 else 'es'} predicted)")])
    q = r.get("int8_parity")
    if q:
        delta = "" if q.get("accuracy_delta") is None else f", accuracy change {100 * q['accuracy_delta']:+.1f} points"
        if q.get("trained") is False:
            delta = ", accuracy not compared (untrained weights)"
        rows.append([f"int8 ({q['mode']})", f"top-1 agreement with float {100 * q['top1_agreement']:.0f}%{delta}"])
    trt = r.get("tensorrt_parity") or r.get("tensorrt")
    if trt and trt.get("skipped"):
        rows.append(["TensorRT", f"skipped: {trt['skipped']}"])
    elif r.get("tensorrt_parity"):
        t = r["tensorrt_parity"]
        rows.append([f"TensorRT ({t.get('precision')})", (f"max abs vs ONNX {t['max_abs_error']:.2g}, "
                                                          f"top-1 agree {100 * t['top1_agreement']:.0f}%")])
    m = r.get("measured") or {}
    if m:
        rows.append([f"measured ({m['backend']}, {m['device_name']})",
                     f"{fmt(m['latency_ms'])} ms, {fmt(m['energy_mj'])} mJ ({m['energy_method']})"])
        speed = m.get("speed_reference")
        if speed:
            rows.append(["speed reference", (
                f"timed alternately with {speed['arch']}: {speed['ratio']:.3f}x its time, which is "
                f"{fmt(speed['reference_ms'])} ms now against {fmt(speed['nominal_ms'])} ms nominal "
                f"({speed['slowdown']:.2f}x); {fmt(m['latency_raw_ms'])} ms as timed")])
        rows += _int8_latency_rows(m, r.get("measured_int8") or {})
    for key, b in (r.get("budget_check") or {}).items():
        pe = (r.get("prediction_error") or {}).get(key)
        pred = "" if not pe or pe.get("error_pct") is None else f" (predicted {pe['predicted']:.4g}, {pe['error_pct']:+.0f}%)"
        rows.append([f"budget {key}", f"{'ok' if b['passed'] else 'OVER'}: measured {fmt(b['measured'])}, budget {b['budget']:g}{pred}"])
    changed = {n: s for n, s in (r.get("hashes") or {}).items() if s != "ok"}
    if "hashes" in r:
        rows.append(["file hashes", "ok" if not changed else ", ".join(f"{n} {s}" for n, s in changed.items())])
    rows.append(["result", "PASSED" if r["passed"] else "FAILED: " + "; ".join(r["failures"])])
    return table(title, ["check", "result"], rows)
