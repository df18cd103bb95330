"""The spine's promises from the command line: resume after a kill, one clear line and exit 2 on bad input."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwnas.cli import cli
from hwnas.store import Store

SPACE = "nb201:C=4,N=1"


def hwnas(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hwnas.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_profile_killed_partway_then_rerun_ends_with_exactly_n(tmp_path):
    store_path = tmp_path / "m.db"
    args = ["profile", "--space", SPACE, "--input-shape", "3x16x16", "--samples", "50", "--store", str(store_path), "--json"]
    proc = hwnas(*args)
    deadline = time.time() + 120
    partial = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if store_path.exists():
            partial = Store(store_path).count()
            if partial >= 5:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted = Store(store_path).count()
    assert 5 <= interrupted < 50, "the run should have been killed partway"
    done = subprocess.run([sys.executable, "-m", "hwnas.cli", *args], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    store = Store(store_path)
    rows = store.measurements()
    assert len(rows) == 50 and len({m.arch for m in rows}) == 50
    assert summary["already_stored"] == interrupted and summary["measured_now"] == 50 - interrupted


@pytest.mark.parametrize("args, words", [
    (["profile", "--space", "nosuch"], "unknown search space 'nosuch'; known: "),
    (["profile", "--space", SPACE, "--input-shape", "3x30x30"], "cannot be built by nb201"),
    (["profile", "--space", SPACE, "--input-shape", "3xAx3"], "malformed input shape"),
    (["profile", "--space", SPACE, "--arch", "|nor_conv_3x3~0|+|bogus~0|none~1|+|none~0|none~1|none~2|"],
     "unknown operation 'bogus'"),
    (["measurements", "export", "--csv", "out.csv", "--device", "nosuch"], "no device 'nosuch'"),
    (["measurements", "import", "--csv", "missing.csv"], "no such CSV file"),
    (["profile", "--space", SPACE, "--arch", "15625"], "index 15625 is out of range for nb201:C=4,N=1,classes=10; accepted: an index 0..15624"),
    (["measurements", "export", "--csv", "m.db/x.csv"], "cannot use m.db/x.csv: Not a directory"),
])
def test_bad_input_is_one_line_exit_2_and_store_unchanged(tmp_path, args, words):
    store_path = tmp_path / "m.db"
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        seeded = runner.invoke(cli, ["profile", "--space", SPACE, "--input-shape", "3x16x16", "--samples", "2",
                                     "--store", str(store_path), "--json"])
        assert seeded.exit_code == 0, seeded.output
        before = [(m.arch, m.latency_ms) for m in Store(store_path).measurements()]
        (Path.cwd() / "m.db").write_text("a file, so that m.db/x.csv cannot be created")
        result = runner.invoke(cli, [*args, "--store", str(store_path)])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.output
    assert [(m.arch, m.latency_ms) for m in Store(store_path).measurements()] == before


def test_devices_json_lists_every_backend_with_a_reason():
    result = CliRunner().invoke(cli, ["devices", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    names = {b["backend"] for b in data["backends"]}
    assert {"onnxruntime-cpu", "torch-cpu", "torch-cuda"} <= names
    assert all(b["available"] or b["why"] for b in data["backends"])


def test_measurements_export_writes_the_stored_rows(tmp_path):
    runner = CliRunner()
    store = str(tmp_path / "m.db")
    assert runner.invoke(cli, ["profile", "--space", SPACE, "--input-shape", "3x16x16", "--samples", "3", "--store", store,
                               "--json"]).exit_code == 0
    result = runner.invoke(cli, ["measurements", "export", "--csv", str(tmp_path / "o.csv"), "--store", store, "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["rows"] == 3
    assert len((tmp_path / "o.csv").read_text().splitlines()) == 4


def test_a_store_that_is_not_a_database_is_one_line_and_left_alone(tmp_path):
    not_db = tmp_path / "notes.db"
    not_db.write_text("index,arch\n")
    result = CliRunner().invoke(cli, ["measurements", "list", "--store", str(not_db)])
    assert result.exit_code == 2 and "file is not a database" in result.stderr
    assert not_db.read_text() == "index,arch\n"


def test_profile_takes_architectures_by_index(tmp_path):
    result = CliRunner().invoke(cli, ["profile", "--space", SPACE, "--input-shape", "3x16x16", "--arch", "0",
                                      "--store", str(tmp_path / "m.db"), "--json"])
    assert result.exit_code == 0, result.output
    from hwnas.spaces import get_space

    [row] = Store(tmp_path / "m.db").measurements()
    assert row.arch == get_space(SPACE).to_string(get_space(SPACE).arch_at(0))


def test_reading_a_store_that_does_not_exist_creates_nothing(tmp_path):
    missing = tmp_path / "nowhere" / "m.db"
    result = CliRunner().invoke(cli, ["measurements", "list", "--store", str(missing)])
    assert result.exit_code == 2 and "no measurement store at" in result.stderr
    assert not missing.parent.exists()


def test_samples_is_a_total_and_more_measures_beyond_it(tmp_path):
    """--samples is what the store should hold; a rerun at the same total says plainly that it measured nothing;
    --more N measures N beyond what is stored."""
    base = ["profile", "--space", SPACE, "--input-shape", "1x8x8", "--protocol", "quick", "--store", str(tmp_path / "m.db")]
    first = CliRunner().invoke(cli, [*base, "--samples", "3", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["measured_now"] == 3
    again = CliRunner().invoke(cli, [*base, "--samples", "3"])
    assert again.exit_code == 0 and "nothing measured" in again.stderr and "--more" in again.stderr
    more = CliRunner().invoke(cli, [*base, "--more", "2", "--json"])
    assert more.exit_code == 0, more.output
    summary = json.loads(more.stdout)
    assert summary["measured_now"] == 2 and summary["total_in_store"] == 5 and Store(tmp_path / "m.db").count() == 5


def test_speed_reference_times_every_architecture_against_one_network(tmp_path):
    """--speed-reference: one reference network (the sampled one at the median of FLOPs) for the whole run; every
    row names it, keeps its raw median, and is learnt at the reference's nominal speed; the JSON and the table say
    which network it was."""
    base = ["profile", "--space", SPACE, "--input-shape", "1x8x8", "--protocol", "quick", "--store", str(tmp_path / "m.db"),
            "--speed-reference"]
    done = CliRunner().invoke(cli, [*base, "--samples", "4", "--json"])
    assert done.exit_code == 0, done.output
    reference = json.loads(done.stdout)["speed_reference"]
    rows = Store(tmp_path / "m.db").measurements()
    assert len(rows) == 4 and reference["nominal_ms"] > 0
    for m in rows:
        speed = m.extra["speed_reference"]
        assert speed["arch"] == reference["arch"] and speed["nominal_ms"] == reference["nominal_ms"]
        assert m.learnt("latency_ms") == pytest.approx(speed["ratio"] * reference["nominal_ms"])
    table = CliRunner().invoke(cli, [*base, "--more", "1"])
    assert table.exit_code == 0 and "timed alternately with" in table.stdout and reference["arch"] in table.stdout
