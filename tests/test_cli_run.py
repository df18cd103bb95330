"""`hwnas run` end to end on a tiny space: profile -> fit -> search under budget -> retrain -> export -> report,
with a real SQLite store, real ONNX Runtime measurements and a real exported file."""
import json

import pytest
import torch
from click.testing import CliRunner

from hwnas.cli import cli
from hwnas.store import Store

torch.set_num_threads(1)  # tiny networks: threads only contend on a shared machine
TINY = ["--space", "nb201:C=4,N=1", "--samples", "12", "--search-epochs", "1", "--retrain-epochs", "2"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    result = CliRunner().invoke(cli, ["run", *TINY, "--run-dir", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    return run_dir, json.loads(result.stdout)


def test_run_reports_every_stage_and_keeps_its_files(first_run):
    run_dir, r = first_run
    assert r["architectures_profiled"] == 12
    assert set(r["predictor_holdout"]) >= {"mape", "within_10", "spearman", "n"}
    assert r["budgets"]["latency_ms"] > 0
    measured = r["measured_exported"]["latency_ms"]
    assert measured > 0 and r["within_budget"] == (measured <= r["budgets"]["latency_ms"])
    assert r["measured_in_search"]["latency_ms"] <= r["budgets"]["latency_ms"]  # only a measured pass is reported
    assert 0.0 <= r["test_accuracy"] <= 1.0
    assert (run_dir / "export" / "model.onnx").is_file() and (run_dir / "export" / "manifest.json").is_file()
    assert (run_dir / "predictor-latency_ms.npz").is_file() and (run_dir / "search_cost.png").is_file()
    manifest = json.loads((run_dir / "export" / "manifest.json").read_text())
    assert manifest["arch"] == r["arch"]
    # every measurement, including the search's and the export's, is in the run's SQLite store
    stored = {m.arch for m in Store(run_dir / "measurements.db").measurements()}
    assert r["arch"] in stored and len(stored) >= 12
    # the percentile budget is a profiled architecture's latency at its nominal speed, and the search's verdicts and
    # the exported file's were timed against that architecture
    speed = r["measured_exported"]["speed_reference"]
    assert r["speed_reference"]["arch"] == speed["arch"] in stored
    assert r["budgets"]["latency_ms"] == r["speed_reference"]["nominal_ms"] == speed["nominal_ms"]
    assert measured == pytest.approx(speed["ratio"] * speed["nominal_ms"])
    # profiling timed every architecture alternately with one network too: rows not replaced by a verdict name it,
    # and what predictors learn from a row is its figure at that reference's nominal speed
    rows = Store(run_dir / "measurements.db").measurements()
    references = {m.extra["speed_reference"]["arch"] for m in rows if "speed_reference" in (m.extra or {})}
    assert len(rows) >= 12 and all("speed_reference" in (m.extra or {}) for m in rows)
    assert 1 <= len(references - {speed["arch"]}) <= 1
    assert all(m.learnt("latency_ms") == pytest.approx(m.extra["speed_reference"]["ratio"]
                                                      * m.extra["speed_reference"]["nominal_ms"]) for m in rows)


def test_the_exported_bundle_validates_without_remeasuring(first_run):
    run_dir, _ = first_run
    result = CliRunner().invoke(cli, ["validate", str(run_dir / "export"), "--no-measure", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["passed"] is True


def test_rerun_reuses_the_stored_profile(first_run):
    run_dir, _ = first_run
    before = Store(run_dir / "measurements.db").count()
    result = CliRunner().invoke(cli, ["run", *TINY, "--run-dir", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["architectures_profiled"] == before  # nothing profiled again (the first search's picks count too)


def test_bad_space_is_one_line_and_exit_2(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--space", "nb999", "--run-dir", str(tmp_path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "nb999" in lines[0]


@pytest.mark.parametrize("budget", ["inf", "nan", "0", "-1"])
def test_a_budget_that_is_not_finite_and_positive_is_one_line_and_writes_nothing(tmp_path, budget):
    for flag in ("--budget-ms", "--budget-mj"):
        result = CliRunner().invoke(cli, ["run", f"{flag}={budget}", "--run-dir", str(tmp_path / "run")])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and "give a finite positive number" in lines[0], result.output
    assert list(tmp_path.iterdir()) == []
