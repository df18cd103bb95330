"""The store's promises on both databases it is used with, SQLite and PostgreSQL (one parametrised fixture,
`store_url`; the PostgreSQL side skips with the reason where no server is given, and fails under
HWNAS_REQUIRE_POSTGRES=1, as on CI)."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from hwnas.cli import cli
from hwnas.errors import HwnasError
from hwnas.spaces import get_space
from hwnas.store import Store

SPACE = "nb201:C=4,N=1"
SHAPE = "3x16x16"


def hwnas(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hwnas.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})


def count(url: str) -> int:
    try:
        return Store(url, readonly=True).count()
    except HwnasError:  # not created yet
        return 0


def snapshot(url: str) -> tuple:
    """Everything stored, compared whole: rows with every field, and devices."""
    store = Store(url, readonly=True)
    return [m.to_dict() for m in store.measurements()], store.devices()


def wide_csv(path, n: int = 30, bad: dict | None = None) -> str:
    """A published-style table: one row an nb201 architecture, one column a device (ms)."""
    space = get_space("nb201")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "pixel3"])
        for i in range(n):
            w.writerow([space.to_string(space.arch_at(i * 97)), (bad or {}).get(i, 1.0 + 0.01 * i + (i % 7) * 0.1)])
    return str(path)


def test_resume_after_kill_9_ends_with_exactly_n(store_url):
    args = ["profile", "--space", SPACE, "--input-shape", SHAPE, "--samples", "20", "--store", store_url, "--json"]
    proc = hwnas(*args)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and count(store_url) < 3:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted = count(store_url)
    assert 3 <= interrupted < 20, "the run should have been killed partway"
    done = subprocess.run([sys.executable, "-m", "hwnas.cli", *args], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    rows = Store(store_url, readonly=True).measurements()
    assert len(rows) == 20 and len({m.arch for m in rows}) == 20
    assert summary["already_stored"] == interrupted and summary["measured_now"] == 20 - interrupted


def test_two_concurrent_writers_count_only_what_each_stored(store_url):
    args = ["profile", "--space", SPACE, "--input-shape", SHAPE, "--samples", "6", "--store", store_url, "--json"]
    procs = [hwnas(*args), hwnas(*args)]  # both also create the (new) schema at the same moment
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    rows = Store(store_url, readonly=True).measurements()
    assert len(rows) == 6 and len({m.arch for m in rows}) == 6
    assert sum(json.loads(out)["measured_now"] for out, _ in outs) == 6  # each row inserted by exactly one


def test_import_and_export_round_trip(store_url, tmp_path):
    runner = CliRunner()
    table = wide_csv(tmp_path / "published.csv")
    first = runner.invoke(cli, ["measurements", "import", "--csv", table, "--store", store_url, "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["added"] == {"pixel3": 30}
    again = runner.invoke(cli, ["measurements", "import", "--csv", table, "--store", store_url, "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["added"] == {"pixel3": 0}
    out = tmp_path / "out.csv"
    exported = runner.invoke(cli, ["measurements", "export", "--csv", str(out), "--store", store_url, "--json"])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["rows"] == 30
    with open(table) as f:
        published = {r["arch"]: float(r["pixel3"]) for r in csv.DictReader(f)}
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert {r["arch"]: float(r["latency_ms"]) for r in rows} == published
    assert {r["device"] for r in rows} == {"imported:pixel3"}


def test_fit_from_the_store(store_url, tmp_path):
    runner = CliRunner()
    table = wide_csv(tmp_path / "published.csv", n=40)
    assert runner.invoke(cli, ["measurements", "import", "--csv", table, "--store", store_url]).exit_code == 0
    out = tmp_path / "p.npz"
    result = runner.invoke(cli, ["fit", "--store", store_url, "--predictor", "linear-cost", "--out", str(out),
                                 "--no-plot", "--run-dir", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert json.loads(result.stdout)["training_size"] == 40


def test_bad_input_leaves_the_store_unchanged(store_url, tmp_path):
    runner = CliRunner()
    good = wide_csv(tmp_path / "good.csv")
    assert runner.invoke(cli, ["measurements", "import", "--csv", good, "--store", store_url]).exit_code == 0
    before = snapshot(store_url)
    assert len(before[0]) == 30
    negative = wide_csv(tmp_path / "negative.csv", n=40, bad={35: -1.0})  # 10 new rows, one of them bad
    nan = wide_csv(tmp_path / "nan.csv", n=40, bad={39: "nan"})
    bad_arch = tmp_path / "bad_arch.csv"
    bad_arch.write_text(Path(good).read_text() + "|nor_conv_3x3~0|+|bogus~0|none~1|+|none~0|none~1|none~2|,1.5\n")
    for args, words in [
        (["measurements", "import", "--csv", negative], "above 0"),
        (["measurements", "import", "--csv", nan], "nan"),
        (["measurements", "import", "--csv", str(bad_arch)], "bogus"),
        (["profile", "--space", "nosuch"], "unknown search space"),
        (["profile", "--space", SPACE, "--arch", "15625"], "out of range"),
        (["measurements", "export", "--csv", str(tmp_path / "x.csv"), "--device", "nosuch"], "no device 'nosuch'"),
    ]:
        result = runner.invoke(cli, [*args, "--store", store_url])
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and words in lines[0].lower(), (args, result.output)
        assert snapshot(store_url) == before, args
