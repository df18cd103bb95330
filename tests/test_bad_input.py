"""Every bad input of issue 8 item 8, through the real CLI: one line on stderr, exit 2 (1 for a failed validation),
no traceback, and every store and file byte-identical afterwards (nothing created either).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwnas.cli import MESSAGE_LIMIT, cli

SPACE = "nb201:C=4,N=1"
SHAPE = "3x16x16"
ARCH = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|avg_pool_3x3~2|"
ARCH2 = "|none~0|+|skip_connect~0|none~1|+|none~0|none~1|avg_pool_3x3~2|"
LONG = "|" + "x" * 96_000 + "|"


# --- shared, built once --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def seeded(tmp_path_factory) -> Path:
    """A small profiled store (3 architectures measured here) and a predictor CSV, shared by every case."""
    from hwnas.profilers import TimingProtocol, get_backend, profile_space
    from hwnas.spaces import get_space
    from hwnas.store import Store

    folder = tmp_path_factory.mktemp("seeded")
    fast = TimingProtocol(warmup_runs=1, min_runs=3, max_runs=5, target_rel_ci=0.5, max_seconds=0.1)
    profile_space(get_space(SPACE), get_backend("onnxruntime-cpu"), Store(folder / "m.db"), 3, seed=0,
                  input_shape=(3, 16, 16), protocol=fast)
    return folder


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bundle") / "b"
    result = CliRunner().invoke(cli, ["export", "--space", SPACE, "--arch", ARCH, "--input-shape", SHAPE, "--out",
                                      str(folder), "--protocol", "quick", "--json"])
    if result.exit_code != 0:
        pytest.skip(f"cannot export a bundle here: {result.output[-300:]}")
    return folder


# --- setups: each gets the case's own folder, holding a copy of the seeded store as m.db ----------------------
def write(name: str, text: str):
    return lambda d: (d / name).write_text(text)


def wide_csv(rows: list[tuple[str, str]], column: str = "dev") -> callable:
    return write("t.csv", f"arch,{column}\n" + "".join(f"{a},{v}\n" for a, v in rows))


def read_only_store(d: Path) -> None:
    os.chmod(d / "m.db", 0o444)


def foreign_schema(d: Path) -> None:
    with sqlite3.connect(d / "f.db") as c:
        c.execute("CREATE TABLE measurements (x INTEGER, y TEXT)")
        c.execute("INSERT INTO measurements VALUES (1, 'a')")


def foreign_devices(d: Path) -> None:
    with sqlite3.connect(d / "f.db") as c:
        c.execute("CREATE TABLE devices (serial TEXT)")


def manifest_edit(change):
    def setup(d: Path) -> None:
        path = d / "b" / "manifest.json"
        manifest = json.loads(path.read_text())
        change(manifest, d / "b")
        path.write_text(json.dumps(manifest))
    return setup


def outside_file(manifest: dict, folder: Path) -> None:
    files = manifest.get("files") or manifest.get("hashes") or {}
    if isinstance(files, dict):
        files["../../etc/hostname"] = "0" * 64
        files["/etc/hostname"] = "0" * 64


def bad_tolerance(manifest: dict, folder: Path) -> None:
    manifest["rtol"] = "lots"
    manifest.setdefault("tolerances", {})["rtol"] = "lots"
    manifest.setdefault("parity", {})["rtol"] = -1


def remove(name: str):
    return lambda d: (d / "b" / name).unlink()


def append_byte(d: Path) -> None:
    with open(d / "b" / "model.onnx", "ab") as f:
        f.write(b"\0")


@dataclass
class Case:
    args: list[str]
    words: str | None = None  # a phrase the one line must hold
    code: int = 2
    setup: callable = None
    bundle: bool = False
    env: dict = field(default_factory=dict)


S = ["--store", "{d}/m.db"]
CASES = [
    # Sizes (h1: estimate memory from the space before building; refuse what cannot fit, saying the limit).
    pytest.param(Case(["profile", "--space", "nb201:C=100000", "--samples", "1", *S]), id="size-C-1e5"),
    pytest.param(Case(["profile", "--space", "nb201:C=99999999999999999999999", "--samples", "1", *S]),
                 id="size-C-huge-int"),
    pytest.param(Case(["profile", "--space", "nb201:N=100000", "--samples", "1", *S]), id="size-N-1e5"),
    pytest.param(Case(["profile", "--space", SPACE, "--input-shape", "3x100000x100000", "--samples", "1", *S]),
                 id="size-input-shape"),
    pytest.param(Case(["profile", "--space", SPACE, "--batch", "100000000", "--samples", "1", *S]), id="size-batch"),
    pytest.param(Case(["export", "--space", SPACE, "--arch", "0", "--input-shape", "100000x32x32", "--out", "{d}/e"]),
                 id="size-export-input-shape"),
    pytest.param(Case(["profile", "--space", "nb201:C=0", *S], "nb201"), id="size-C-0"),
    # Stores.
    pytest.param(Case(["profile", "--space", SPACE, "--input-shape", SHAPE, "--arch", ARCH, *S], "read-only",
                      setup=read_only_store), id="store-read-only-profile"),
    pytest.param(Case(["measurements", "import", "--csv", "{d}/t.csv", "--space", SPACE, *S], "read-only",
                      setup=lambda d: (wide_csv([(ARCH, "1.5")])(d), read_only_store(d))), id="store-read-only-import"),
    pytest.param(Case(["measurements", "list", "--store", "{d}/f.db"], "not a hwnas measurement store",
                      setup=foreign_schema), id="store-foreign-measurements-list"),
    pytest.param(Case(["profile", "--space", SPACE, "--input-shape", SHAPE, "--arch", ARCH, "--store", "{d}/f.db"],
                      "not a hwnas measurement store", setup=foreign_schema), id="store-foreign-measurements-profile"),
    pytest.param(Case(["measurements", "import", "--csv", "{d}/t.csv", "--space", SPACE, "--store", "{d}/f.db"],
                      "not a hwnas measurement store", setup=lambda d: (foreign_devices(d), wide_csv([(ARCH, "1")])(d))),
                 id="store-foreign-devices-import"),
    pytest.param(Case(["fit", "--store", "{d}/f.db", "--out", "{d}/p.npz"], "not a hwnas measurement store",
                      setup=foreign_schema), id="store-foreign-fit"),
    pytest.param(Case(["measurements", "list", "--store", "{d}/n.db"], "file is not a database",
                      setup=write("n.db", "index,arch\n")), id="store-not-a-database"),
    pytest.param(Case(["measurements", "list", "--store", "{d}/none/m.db"], "no measurement store"),
                 id="store-missing-read"),
    pytest.param(Case(["measurements", "list", "--store", "nosuchdialect://x/y"], "cannot open the measurement store"),
                 id="store-bad-url"),
    # Values (import here; fit and search: h2).
    pytest.param(Case(["measurements", "import", "--csv", "{d}/t.csv", "--space", SPACE, *S], "line 3",
                      setup=wide_csv([(ARCH, "1.5"), (ARCH2, "inf")])), id="value-inf"),
    pytest.param(Case(["measurements", "import", "--csv", "{d}/t.csv", "--space", SPACE, *S], "above 0",
                      setup=wide_csv([(ARCH, "-1.5")])), id="value-negative"),
    pytest.param(Case(["measurements", "import", "--csv", "{d}/t.csv", "--space", SPACE, *S], "above 0",
                      setup=wide_csv([(ARCH, "0")])), id="value-zero"),
    pytest.param(Case(["measurements", "import", "--csv", "{d}/t.csv", "--space", SPACE, *S], "'nan'",
                      setup=wide_csv([(ARCH, "nan")])), id="value-nan-no-device-row"),
    pytest.param(Case(["measurements", "import", "--csv", "{d}/t.csv", "--space", SPACE, *S], "lines 2 and 4",
                      setup=wide_csv([(ARCH, "1.5"), (ARCH2, "2"), (ARCH, "9")])), id="value-duplicate-arch"),
    pytest.param(Case(["measurements", "import", "--csv", "{d}/t.csv", "--space", SPACE, *S], "not a latency",
                      setup=wide_csv([(ARCH, "1.5"), (ARCH2, "abc")], column="dev")), id="value-text"),
    pytest.param(Case(["measurements", "import", "--csv", "{d}/t.csv", "--space", SPACE, *S], "line 2",
                      setup=wide_csv([("|bogus~0|", "1")])), id="value-bad-arch"),
    pytest.param(Case(["fit", "--from-csv", "{d}/t.csv", "--target", "dev", "--space", SPACE, "--out", "{d}/p.npz"],
                      setup=wide_csv([(str(i), str(-1.0 - i)) for i in range(12)])), id="value-fit-negative"),
    pytest.param(Case(["search", "--space", SPACE, "--budget-ms", "inf", *S]), id="value-search-budget-inf"),
    pytest.param(Case(["search", "--space", SPACE, "--budget-ms", "nan", *S]), id="value-search-budget-nan"),
    # Writes: nothing partial, an existing file untouched (the disk-full ones are in test_disk_full_*).
    pytest.param(Case(["measurements", "export", "--csv", "{d}/m.db/x.csv", *S], "Not a directory"),
                 id="write-under-a-file"),
    # Bundles: a file missing or changed is a failed validation (exit 1); a malformed manifest is bad input (2).
    pytest.param(Case(["validate", "{d}/b", "--no-measure"], "weights.pt", code=1, setup=remove("weights.pt"),
                      bundle=True), id="bundle-missing-weights"),
    pytest.param(Case(["validate", "{d}/b", "--no-measure"], "outside", code=2, setup=manifest_edit(outside_file),
                      bundle=True), id="bundle-outside-path"),
    pytest.param(Case(["validate", "{d}/b", "--no-measure"], "changed since export", code=1, setup=append_byte, bundle=True),
                 id="bundle-appended-byte"),
    pytest.param(Case(["validate", "{d}/b", "--no-measure"], "tolerance", code=2, setup=manifest_edit(bad_tolerance),
                      bundle=True), id="bundle-bad-manifest-tolerance"),
    pytest.param(Case(["validate", "{d}/b", "--no-measure", "--rtol", "nan"], "rtol", bundle=True),
                 id="bundle-rtol-nan"),
    # Errors name their input, at most ~200 characters of it; the line is capped whatever it quotes.
    pytest.param(Case(["profile", "--space", SPACE, "--input-shape", SHAPE, "--arch", LONG, *S], "characters"),
                 id="long-arch"),
    pytest.param(Case(["measurements", "export", "--csv", "{d}/o.csv", "--device", "d" * 50_000, *S], "no device"),
                 id="long-device"),
    pytest.param(Case(["measurements", "import", "--csv", "{d}/t.csv", "--column", "c" * 50_000, *S], "no column",
                      setup=wide_csv([(ARCH, "1")])), id="long-column"),
    pytest.param(Case(["profile", "--space", "s" * 50_000, *S], "unknown search space"), id="long-space"),
    # Cases that passed before issue 8 as well.
    pytest.param(Case(["profile", "--space", "nosuch", *S], "unknown search space"), id="space-unknown"),
    pytest.param(Case(["profile", "--space", SPACE, "--input-shape", "3xAx3", *S], "malformed input shape"),
                 id="shape-malformed"),
    pytest.param(Case(["measurements", "import", "--csv", "{d}/missing.csv", *S], "no such CSV file"),
                 id="csv-missing"),
    pytest.param(Case(["measurements", "import", "--csv", "{d}/t.csv", *S], "no rows", setup=write("t.csv", "arch,x\n")),
                 id="csv-empty"),
]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (names and bytes): a created, changed or deleted file shows."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(stderr: str) -> str:
    """The one error line; `warning: ...` lines (e.g. the exporter's deprecation, said once) are not errors."""
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {stderr[-800:]}"
    return lines[0]


@pytest.fixture
def case_dir(tmp_path, seeded) -> Path:
    d = tmp_path / "case"
    d.mkdir()
    shutil.copy(seeded / "m.db", d / "m.db")
    return d


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_harms_nothing(case: Case, case_dir: Path, request, monkeypatch):
    if case.bundle:
        shutil.copytree(request.getfixturevalue("bundle"), case_dir / "b")
    if case.setup:
        case.setup(case_dir)
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    before = snapshot(case_dir)
    args = [a.replace("{d}", str(case_dir)) for a in case.args]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == case.code, result.output[-800:]
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    line = one_line(result.stderr)
    assert "Traceback" not in result.output and len(line) <= MESSAGE_LIMIT + len("Error: ")
    if case.words:
        assert case.words in line
    assert snapshot(case_dir) == before


# --- stores: reading never writes; locks and full disks are one line naming the store ------------------------
def test_listing_an_unrelated_sqlite_file_adds_nothing(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE notes (text TEXT)")
    before = path.read_bytes()
    result = CliRunner().invoke(cli, ["measurements", "list", "--store", str(path), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


@pytest.mark.parametrize("args", [
    ["measurements", "list"],
    ["measurements", "import", "--csv", "{d}/t.csv", "--space", SPACE],
    ["profile", "--space", SPACE, "--input-shape", SHAPE, "--arch", ARCH],
], ids=["list", "import", "profile"])
def test_a_store_locked_elsewhere_is_one_line_naming_it(case_dir, monkeypatch, args):
    wide_csv([(ARCH, "1.5")])(case_dir)
    store = case_dir / "m.db"
    monkeypatch.setenv("HWNAS_STORE_LOCK_TIMEOUT", "0.2")
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process mid-write
    try:
        before = snapshot(case_dir)
        result = CliRunner().invoke(cli, [*(a.replace("{d}", str(case_dir)) for a in args), "--store", str(store)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 2, result.output
    line = one_line(result.stderr)
    assert "locked" in line and str(store) in line
    assert snapshot(case_dir) == before


def _full_after_first_page(monkeypatch):
    """SQLite's own "database or disk is full": no page beyond those the file already has."""
    from sqlalchemy import event

    import hwnas.store

    original = hwnas.store.Store._engine

    def engine(self):
        e = original(self)

        @event.listens_for(e, "connect")
        def cap(dbapi, _):
            pages = dbapi.execute("PRAGMA page_count").fetchone()[0]
            dbapi.execute(f"PRAGMA max_page_count = {max(pages, 1)}")
        return e

    monkeypatch.setattr(hwnas.store.Store, "_engine", engine)


def test_a_full_disk_while_importing_is_one_line_naming_the_store(case_dir, monkeypatch, nb201_data):
    _full_after_first_page(monkeypatch)
    before = snapshot(case_dir)
    result = CliRunner().invoke(cli, ["measurements", "import", "--csv", str(nb201_data / "latency_ms.csv"),
                                      "--store", str(case_dir / "m.db")])
    assert result.exit_code == 2, result.output
    line = one_line(result.stderr)
    assert "full" in line and str(case_dir / "m.db") in line
    assert snapshot(case_dir) == before


def test_a_full_disk_while_exporting_csv_leaves_the_old_file(case_dir, monkeypatch):
    (case_dir / "o.csv").write_text("an earlier export\n")
    before = snapshot(case_dir)

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("hwnas.files.os.fsync", no_space)
    result = CliRunner().invoke(cli, ["measurements", "export", "--csv", str(case_dir / "o.csv"),
                                      "--store", str(case_dir / "m.db")])
    assert result.exit_code == 2
    assert "No space left" in one_line(result.stderr)
    assert snapshot(case_dir) == before  # the old file as it was, no temporary file left


# --- signals and concurrent writers: real processes ---------------------------------------------------------
def hwnas(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hwnas.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **env})


def test_ctrl_c_while_the_libraries_import_is_one_line_and_exit_130(case_dir):
    before = snapshot(case_dir)
    for delay in (0.4, 0.8, 1.6, 3.2):  # click is loaded, torch is not yet (later on a busy machine)
        proc = hwnas("profile", "--space", SPACE, "--input-shape", SHAPE, "--samples", "8", "--store",
                     str(case_dir / "m.db"))
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        if proc.returncode != -signal.SIGINT:  # -2: the signal beat Python's own start-up; try a little later
            break
    assert proc.returncode == 130 and one_line(err) == "interrupted" and "Traceback" not in err
    assert snapshot(case_dir) == before


def test_ctrl_c_while_importing_measurements_stores_nothing(case_dir, nb201_data):
    """The import is one transaction: interrupted at any point, the store is byte-identical."""
    before = snapshot(case_dir)
    proc = hwnas("measurements", "import", "--csv", str(nb201_data / "latency_ms.csv"), "--store",
                 str(case_dir / "m.db"))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not _has_open(proc, case_dir / "m.db"):
        time.sleep(0.02)  # once the store is open, it reads, checks and writes 15625 rows x 6 columns
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the import finished before the interrupt arrived")
    assert proc.returncode == 130 and one_line(err) == "interrupted" and "Traceback" not in err
    assert snapshot(case_dir) == before


def _has_open(proc: subprocess.Popen, path: Path) -> bool:
    """Whether the process has `path` open (Linux /proc; elsewhere: after a few seconds)."""
    folder = Path(f"/proc/{proc.pid}/fd")
    if not Path("/proc/self/fd").is_dir():
        time.sleep(5)
        return True
    try:
        return any(os.readlink(fd) == str(path) for fd in folder.iterdir())
    except OSError:
        return False


def test_ctrl_c_while_profiling_keeps_what_was_measured_and_exits_130(case_dir):
    from hwnas.store import Store

    store = case_dir / "m.db"
    proc = hwnas("profile", "--space", SPACE, "--input-shape", SHAPE, "--samples", "200", "--store", str(store))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and Store(store, readonly=True).count() < 5:  # 3 seeded
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and one_line(err) == "interrupted" and "Traceback" not in err  # no bar left
    assert 5 <= Store(store, readonly=True).count() < 200  # each committed as measured: a rerun resumes
    assert sorted(p.name for p in case_dir.iterdir()) == ["m.db"]  # no journal or partial file left


def test_two_concurrent_profilers_count_only_what_each_stored(tmp_path):
    from hwnas.store import Store

    store = tmp_path / "m.db"
    args = ["profile", "--space", SPACE, "--input-shape", SHAPE, "--samples", "6", "--store", str(store), "--json"]
    procs = [hwnas(*args), hwnas(*args)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    summaries = [json.loads(out) for out, _ in outs]
    assert Store(store, readonly=True).count() == 6
    # every stored row was inserted by exactly one of them: their measured-now counts add up to the rows stored
    assert sum(s["measured_now"] for s in summaries) == 6
