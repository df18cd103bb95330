"""`hwnas search` end to end through click: a real (tiny) search measured with ONNX Runtime, tabular mode on the
published NAS-Bench-201 tables, and one-line errors with exit code 2."""
import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hwnas.cli import cli as hwnas_cli

SPEC = "nb201:C=4,N=1"
torch.set_num_threads(1)  # tiny networks: threads only contend on a shared machine


@pytest.fixture(scope="module")
def cli():
    return hwnas_cli  # the real group: HwnasError -> one line, exit 2


def invoke(cli, *args):
    return CliRunner().invoke(cli, ["search", *map(str, args)])


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    return lines[0]


@pytest.fixture(scope="module")
def profiled_run(tmp_path_factory):
    """A run folder whose store holds 15 real ONNX Runtime measurements of the tiny space on digits' shape."""
    from hwnas.profilers import TimingProtocol, get_backend, profile_space
    from hwnas.spaces import get_space
    from hwnas.store import Store

    run_dir = tmp_path_factory.mktemp("run")
    space = get_space(SPEC, classes=10)
    backend = get_backend("onnxruntime-cpu", threads=1)
    store = Store(run_dir / "measurements.db")
    profile_space(space, backend, store, 15, "uniform", 0, (1, 8, 8), 1, TimingProtocol.quick())
    latencies = [m.latency_ms for m in store.measurements(space=space.spec)]
    return run_dir, float(np.percentile(latencies, 60))


def test_search_measures_and_reports_json(cli, profiled_run):
    run_dir, budget = profiled_run
    r = invoke(cli, "--budget-ms", budget, "--strategy", "single-level", "--space", SPEC, "--dataset", "digits",
               "--limit", 200, "--epochs", 2, "--retrain-epochs", 1, "--protocol", "quick", "--run-dir", run_dir, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["strategy"] == "single-level" and out["budgets"] == {"latency_ms": budget}
    chosen = [a for a in out["attempts"] if a["arch"] == out["arch"]]  # a climb may measure more and keep fewer
    assert chosen and out["measured"]["latency_ms"] == chosen[-1]["measured"]["latency_ms"]
    if out["within_budget"]:  # only ever claimed when measured within budget
        assert out["measured"]["latency_ms"] <= budget
    assert len(out["history"]) == 2 and {"loss", "accuracy", "cost", "multiplier"} <= set(out["history"][0])
    assert 0 <= out["test_accuracy"] <= 1
    assert (run_dir / "search_cost.png").is_file()
    assert json.loads((run_dir / "search.json").read_text())["arch"] == out["arch"]


def test_search_shows_progress_and_a_table(cli, profiled_run):
    run_dir, budget = profiled_run
    r = invoke(cli, "--budget-ms", budget, "--space", SPEC, "--limit", 120, "--epochs", 1, "--retrain-epochs", 0,
               "--protocol", "quick", "--run-dir", run_dir)
    assert r.exit_code == 0, r.output
    assert "epoch   1/1" in r.output and "λ" in r.output and "latency_ms" in r.output
    assert "Search (darts) under budget" in r.output and "within budget (measured)" in r.output


def test_bad_dataset_path_is_one_line_exit_2(cli, tmp_path, profiled_run):
    run_dir, budget = profiled_run
    line = one_error_line(invoke(cli, "--budget-ms", budget, "--space", SPEC, "--dataset", tmp_path / "no-cifar",
                                 "--run-dir", run_dir))
    assert "no CIFAR-10 data at" in line and "data_batch_1" in line
    line = one_error_line(invoke(cli, "--budget-ms", budget, "--dataset", tmp_path / "missing.npz", "--run-dir", run_dir))
    assert "missing.npz" in line


def test_other_bad_inputs_are_one_line_exit_2(cli, tmp_path, profiled_run):
    run_dir, _budget = profiled_run
    assert "give a budget" in one_error_line(invoke(cli, "--space", SPEC, "--run-dir", run_dir))
    line = one_error_line(invoke(cli, "--budget-ms", 1, "--space", SPEC, "--predictor", "gbtx", "--run-dir", run_dir))
    assert "accepted: a .npz" in line
    line = one_error_line(invoke(cli, "--budget-ms", 1, "--space", SPEC, "--run-dir", tmp_path / "empty"))
    assert "hwnas profile" in line  # nothing profiled in that store yet
    line = one_error_line(invoke(cli, "--tabular", "--budget-ms", 1))
    assert "--latency-csv" in line and "--accuracy-csv" in line
    r = invoke(cli, "--budget-ms", 1, "--strategy", "evolve")  # unknown: the choices are listed
    assert r.exit_code == 2 and "darts-2nd" in r.output


def test_tabular_json_on_nb201(cli, nb201_data):
    with open(nb201_data / "latency_ms.csv") as f:
        latency = np.array([float(r["fpga"]) for r in csv.DictReader(f)])
    budget = float(np.percentile(latency, 50))
    r = invoke(cli, "--tabular", "--latency-csv", nb201_data / "latency_ms.csv", "--latency-column", "fpga",
               "--accuracy-csv", nb201_data / "accuracy.csv", "--accuracy-column", "cifar10", "--budget-ms", budget,
               "--measurements", 40, "--seed", 1, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["arch"].startswith("|") and out["latency_ms"] <= budget and out["within_budget"]
    assert 0 < out["measurements"] <= 40 and 80 < out["accuracy"] <= 95
    line = one_error_line(invoke(cli, "--tabular", "--latency-csv", nb201_data / "latency_ms.csv", "--latency-column",
                                 "tpu", "--accuracy-csv", nb201_data / "accuracy.csv", "--budget-ms", 1))
    assert "no column 'tpu'" in line and "pixel3" in line


def test_saved_predictor_file_and_energy_budget(cli, profiled_run, tmp_path):
    from hwnas.predictors import fit_from_store
    from hwnas.profilers import get_backend
    from hwnas.spaces import get_space
    from hwnas.store import Store

    run_dir, budget = profiled_run
    space = get_space(SPEC, classes=10)
    backend = get_backend("onnxruntime-cpu", threads=1)
    store = Store(run_dir / "measurements.db")
    energy = [m.energy_mj for m in store.measurements(space=space.spec)]
    predictor, _ = fit_from_store(store, space, backend.device_id(), backend.name, (1, 8, 8), target="latency_ms",
                                  predictor="mlp", settings={"epochs": 100})
    path = predictor.save(tmp_path / "latency.npz")
    r = invoke(cli, "--budget-ms", budget, "--budget-mj", float(np.percentile(energy, 70)), "--predictor", path,
               "--space", SPEC, "--limit", 120, "--epochs", 1, "--retrain-epochs", 0, "--protocol", "quick",
               "--run-dir", run_dir, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert set(out["budgets"]) == {"latency_ms", "energy_mj"} and set(out["predicted"]) == {"latency_ms", "energy_mj"}
    if out["within_budget"]:
        assert all(out["measured"][t] <= b for t, b in out["budgets"].items())
    line = one_error_line(invoke(cli, "--budget-ms", budget, "--predictor", path, "--space", "nb201:C=8,N=1",
                                 "--run-dir", run_dir))
    assert "was fitted on space nb201:C=4,N=1,classes=10" in line


def test_tabular_found_nothing_and_energy_budget_are_one_line_exit_2(cli, nb201_data):
    tables = ("--tabular", "--latency-csv", nb201_data / "latency_ms.csv", "--latency-column", "pixel3",
              "--accuracy-csv", nb201_data / "accuracy.csv")
    line = one_error_line(invoke(cli, *tables, "--budget-ms", 0.001))
    assert "within the budget of 0.001 ms" in line and "the cheapest measured is" in line and "raise the budget" in line
    line = one_error_line(invoke(cli, *tables, "--budget-ms", 10, "--budget-mj", 0.0001))
    assert "--budget-mj is not accepted" in line


def _commands(command, path=()):
    """Every command and subcommand, through list_commands/get_command (the CLI loads its commands lazily)."""
    import click

    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            yield from _commands(command.get_command(ctx, name), (*path, name))


def test_every_option_of_every_command_has_help(cli):
    import click

    checked = 0
    for path, command in _commands(cli):
        r = CliRunner().invoke(cli, [*path, "--help"])
        assert r.exit_code == 0, (path, r.output)
        for option in command.params:
            if not isinstance(option, click.Option) or option.hidden:
                continue
            text = (option.help or "").strip()
            assert len(text) >= 10, f"hwnas {' '.join(path)} {option.opts[0]} has no help text"
            assert option.opts[0] in r.output, (path, option.opts[0])  # and --help shows it
            checked += 1
    assert {("search",), ("fit",), ("run",), ("measurements", "import")} <= {p for p, _ in _commands(cli)}
    assert checked > 60  # every command's options, not one string


@pytest.mark.parametrize("budget", ["inf", "nan", "0", "-1"])
def test_a_budget_that_is_not_finite_and_positive_is_one_line_and_stores_nothing(cli, tmp_path, budget):
    for flag in ("--budget-ms", "--budget-mj"):
        line = one_error_line(invoke(cli, f"{flag}={budget}", "--space", SPEC, "--run-dir", tmp_path))
        assert "give a finite positive number" in line
    line = one_error_line(invoke(cli, "--tabular", "--latency-csv", tmp_path / "l.csv", "--latency-column", "x",
                                 "--accuracy-csv", tmp_path / "a.csv", f"--budget-ms={budget}"))
    assert "give a finite positive number" in line
    assert list(tmp_path.iterdir()) == []


def test_search_with_nothing_profiled_leaves_no_store_behind(cli, tmp_path):
    run_dir = tmp_path / "empty"
    line = one_error_line(invoke(cli, "--budget-ms", 1, "--space", SPEC, "--limit", 50, "--run-dir", run_dir))
    assert "hwnas profile" in line
    assert not (run_dir / "measurements.db").exists() and not (tmp_path / "other.db").exists()
    line = one_error_line(invoke(cli, "--budget-ms", 1, "--space", SPEC, "--limit", 50, "--run-dir", run_dir,
                                 "--store", tmp_path / "other.db"))
    assert "hwnas profile" in line and not (tmp_path / "other.db").exists()
