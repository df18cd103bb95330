"""`hwnas devices`, `hwnas profile` and `hwnas measurements ...`."""
from __future__ import annotations

from pathlib import Path

import click

from hwnas.choices import PROTOCOL_NAMES
from hwnas.commands.agent import agent_options, print_fleet, remote_settings
from hwnas.commands.common import (
    console,
    emit_json,
    json_option,
    open_store,
    parse_shape,
    reporter,
    results,
    run_dir_option,
    store_option,
    table,
)
from hwnas.registries import BACKENDS, SAMPLERS
from hwnas.threads import training_threads

# torch, ONNX Runtime and the profilers are imported inside the commands, so that `--help` stays fast


@click.command()
@json_option
def devices(as_json: bool) -> None:
    """Which backends and energy meters work on this machine, and why the others don't."""
    from hwnas.profilers import available_backends
    from hwnas.profilers.energy import meter_report

    backends = available_backends()
    meters = meter_report()
    threads, why = training_threads()
    if as_json:
        emit_json({"backends": backends, "energy_meters": meters,
                   "threads": {"training": threads, "training_why": why, "timing": "each backend's --threads"}})
        return
    results.print(table("Backends", ["backend", "works here", "device", "device id / why not"],
                        [[b["backend"], "yes" if b["available"] else "no", b["device"] or "",
                          b["device_id"] if b["available"] else b["why"]] for b in backends]))
    results.print(table("Energy meters (counters first; without one a backend stores the analytical-45nm estimate)",
                        ["meter", "method", "works here", "what it measures / why not"],
                        [[m["meter"], m["method"], "yes" if m["available"] else "no", m["why"] or m["what"]]
                         for m in meters]))
    results.print(table("Threads", ["work", "threads", "why"],
                        [["training (search, retraining)", threads, f"{why} (set $HWNAS_TRAIN_THREADS to change)"],
                         ["timing (profile, measure)", "--threads (default 1)", "fixed, part of the device's identity"]]))


def space_options(f):
    f = click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1), help="Batch size measured.")(f)
    f = click.option("--input-shape", default=None, metavar="CxHxW",
                     help="Input shape of one sample, e.g. 3x32x32. Default: the space's own (nb201: 3x32x32).")(f)
    f = click.option("--space", default="nb201", show_default=True, metavar="NAME[:K=V,...]",
                     help="Search space, with optional settings, e.g. nb201:C=8,N=1,classes=10.")(f)
    return f


def backend_options(f):
    f = click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1),
                     help="Fixed intra-op thread count (part of the device identity).")(f)
    f = click.option("--backend", "backend_name", default="onnxruntime-cpu", show_default=True,
                     type=click.Choice(BACKENDS.names()), help="How models are run; see `hwnas devices`.")(f)
    return f


@click.command()
@space_options
@backend_options
@click.option("--samples", default=50, show_default=True, type=click.IntRange(min=1),
              help="How many distinct architectures the store should hold for this device, space, input and "
                   "batch: the total, already stored ones included (a rerun measures only what is missing).")
@click.option("--more", default=None, type=click.IntRange(min=1), metavar="N",
              help="Measure N architectures beyond those already stored (instead of --samples).")
@click.option("--strategy", default="uniform", show_default=True, type=click.Choice(SAMPLERS.names()),
              help="Registered sampler. uniform: at random; flops: spread over FLOPs quantiles; active: where a "
              "predictor ensemble is least sure.")
@click.option("--seed", default=0, show_default=True, help="Sampling seed; the same seed resumes the same list.")
@click.option("--arch", "archs", multiple=True, metavar="ARCH",
              help="Measure these architectures (canonical strings or indices, repeatable) instead of sampling.")
@click.option("--protocol", default="quick", show_default=True, type=click.Choice(PROTOCOL_NAMES),
              help="Timing protocol: quick (profiling many), default, thorough (validating one).")
@click.option("--speed-reference", is_flag=True,
              help="Time each architecture alternately with one reference network (the sampled one at the median of "
                   "FLOPs), so that predictors learn figures at one nominal speed however the machine's speed drifts "
                   "(backends that time alone ignore it).")
@agent_options
@run_dir_option
@store_option
@json_option
def profile(space, input_shape, batch, backend_name, threads, samples, more, strategy, seed, archs, protocol,
            speed_reference, agent_url, token_file, fleet_file, device_type, executor, ray_address, run_dir, store_url,
            as_json):
    """Measure architectures of a space on this device and keep every measurement in the store.

    Each architecture is committed as soon as it is measured; rerunning the same command after an interruption
    measures only what is missing."""
    from hwnas.profilers import TimingProtocol, get_backend, load_fleet, profile_fleet, profile_space
    from hwnas.profilers.fleet import select_agents
    from hwnas.spaces import get_space

    s = get_space(space)
    shape = s.check_input_shape(parse_shape(input_shape) if input_shape else s.default_input_shape)
    chosen = [s.parse(a) for a in archs]  # parse all first: a bad string stops before anything is measured
    if fleet_file:  # every agent of one device type, one store (hwnas.profilers.fleet)
        agents = select_agents(load_fleet(fleet_file), device_type)
        summary = profile_fleet(s, agents, open_store(store_url, run_dir), len(chosen) or samples, strategy, seed, shape,
                                batch, TimingProtocol.named(protocol), archs=chosen or None, reporter=reporter(as_json),
                                executor=executor, threads=threads, **({"address": ray_address} if ray_address else {}))
        return print_fleet(summary, as_json)
    backend = get_backend(backend_name, threads=threads, **remote_settings(backend_name, agent_url, token_file))
    store = open_store(store_url, run_dir)
    if more is not None:  # --samples is a total; --more counts from what is stored for this key
        samples = more + len(store.measurements(device=backend.device_id(), backend=backend.name, space=s.spec,
                                                input_shape=shape, batch=batch))
    reference = None
    if speed_reference:
        from hwnas.profilers.speed import profiling_reference

        reference = profiling_reference(s, backend, shape, batch, seed=seed)
        if reference is None and not as_json:
            console.print(f"--speed-reference ignored: backend {backend.name} times each network alone", markup=False)
    summary = profile_space(s, backend, store, len(chosen) or samples, strategy, seed, shape, batch,
                            TimingProtocol.named(protocol), archs=chosen or None, reporter=reporter(as_json),
                            reference=reference)
    if as_json:
        emit_json(summary.to_dict())
        return
    lat = summary.latency_ms
    if not summary.measured_now and not chosen:  # say it plainly, not only in a count
        console.print(f"nothing measured: the store already holds {summary.total_in_store} architectures for this key "
                      f"(--samples {samples} is a total); use --more N to measure N more", markup=False)
    results.print(table("Profile", ["", ""], [
        ["device", f"{summary.device_name} [{summary.device}]"], ["backend", summary.backend], ["space", summary.space],
        ["input", "x".join(map(str, summary.input_shape)) + f", batch {summary.batch}"],
        ["measured now / already stored", f"{summary.measured_now} / {summary.already_stored}"],
        ["latency ms min / median / max", f"{lat.get('min', 0):.3f} / {lat.get('median', 0):.3f} / {lat.get('max', 0):.3f}"],
        *([["timed alternately with", f"{reference.arch} (nominal {reference.nominal_ms:.4g} ms)"]]
          if reference is not None else []),
        ["seconds", summary.seconds], ["store", store.url]]))


@click.group()
def measurements() -> None:
    """List, export and import stored measurements."""


@measurements.command("list")
@run_dir_option
@store_option
@json_option
def list_measurements(run_dir, store_url, as_json):
    """Devices in the store and how many measurements each has."""
    store = open_store(store_url, run_dir, must_exist=True)
    devs = store.devices()
    if as_json:
        emit_json(devs)
        return
    results.print(table(f"Devices in {store.url}", ["id", "name", "measurements"],
                        [[d["id"], d["name"], d["measurements"]] for d in devs]))


@measurements.command("export")
@click.option("--csv", "csv_path", required=True, type=click.Path(dir_okay=False), help="File to write.")
@click.option("--device", default=None, help="Only this device (name or id).")
@click.option("--backend", default=None, help="Only this backend.")
@click.option("--space", default=None, help="Only this space spec (e.g. nb201:C=16,N=5,classes=10).")
@run_dir_option
@store_option
@json_option
def export_measurements(csv_path, device, backend, space, run_dir, store_url, as_json):
    """Write stored measurements as CSV (one row a measurement, every field)."""
    from hwnas.spaces import get_space

    store = open_store(store_url, run_dir, must_exist=True)
    device_id = store.resolve_device(device) if device else None
    space_spec = get_space(space).spec if space else None
    n = store.export_csv(csv_path, device=device_id, backend=backend, space=space_spec)
    if as_json:
        emit_json({"rows": n, "csv": str(Path(csv_path).resolve())})
    else:
        results.print(f"wrote {n} measurement(s) to {csv_path}")


@measurements.command("import")
@click.option("--csv", "csv_path", required=True, type=click.Path(dir_okay=False),
              help="A wide table: one row an architecture, one column a device (ms), like nb201/latency_ms.csv.")
@click.option("--arch-column", default="arch", show_default=True,
              help="Column holding the architectures (canonical strings of --space).")
@click.option("--column", "columns", multiple=True, help="Device column(s) to load (repeatable). Default: all numeric ones.")
@space_options
@click.option("--backend", default="imported", show_default=True, help="Backend label for these rows.")
@run_dir_option
@store_option
@json_option
def import_measurements(csv_path, arch_column, columns, space, input_shape, batch, backend, run_dir, store_url, as_json):
    """Load published latencies into the store, one device per column (device id `imported:<column>`).

    Every row is checked first (architecture strings, numbers): a bad file stores nothing."""
    from hwnas.spaces import get_space

    s = get_space(space)
    shape = s.check_input_shape(parse_shape(input_shape) if input_shape else s.default_input_shape)
    store = open_store(store_url, run_dir)
    added = store.import_table(csv_path, s.spec, arch_column, columns or None, shape, batch, backend,
                               validate_arch=lambda a: s.to_string(s.from_string(a)))
    if as_json:
        emit_json({"added": added, "store": store.url})
    else:
        results.print(table("Imported", ["device", "new rows"], [[k, v] for k, v in added.items()]))
