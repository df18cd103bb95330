"""The store's schema carries a version: an older store is upgraded in place when opened for writing (and read as
it is, without a byte written, when opened read-only); a newer one is refused with one line."""
import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine

import hwnas.store as store_module
from hwnas.cli import cli
from hwnas.errors import HwnasError
from hwnas.store import SCHEMA_VERSION, Store

#: a store written by hwnas before schema versions (main at 4bb4353: `hwnas profile --space nb201:C=4,N=1
#: --samples 3`): the same tables, no version table
SCHEMA0 = Path(__file__).parent / "data" / "store_schema0.db"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def old_store(tmp_path) -> Path:
    path = tmp_path / "old.db"
    shutil.copy(SCHEMA0, path)
    return path


def test_a_new_store_carries_todays_version(store_url):
    assert Store(store_url).schema_version() == SCHEMA_VERSION


def test_an_old_store_is_read_as_it_is_without_a_byte_written(old_store):
    before = digest(old_store)
    store = Store(old_store, readonly=True)
    assert store.schema_version() == 0 and store.count() == 3
    result = CliRunner().invoke(cli, ["measurements", "list", "--store", str(old_store), "--json"])
    assert result.exit_code == 0, result.output
    assert digest(old_store) == before


def test_an_old_store_is_upgraded_in_place_when_opened_for_writing(old_store):
    rows = [m.to_dict() for m in Store(old_store, readonly=True).measurements()]
    result = CliRunner().invoke(cli, ["profile", "--space", "nb201:C=4,N=1", "--input-shape", "3x16x16", "--samples",
                                      "1", "--store", str(old_store), "--json"])
    assert result.exit_code == 0, result.output
    store = Store(old_store, readonly=True)
    assert store.schema_version() == SCHEMA_VERSION
    assert [m.to_dict() for m in store.measurements()] == [*rows, store.measurements()[-1].to_dict()]
    assert store.count() == 4
    with sqlite3.connect(old_store) as db:
        assert db.execute("SELECT version_num FROM hwnas_schema_version").fetchall() == [(str(SCHEMA_VERSION),)]


def test_an_old_schema_on_either_database_is_upgraded(store_url):
    engine = create_engine(store_url)
    store_module._Base.metadata.create_all(engine)  # today's tables without a version: schema 0
    engine.dispose()
    assert Store(store_url, readonly=True).schema_version() == 0
    assert Store(store_url).schema_version() == SCHEMA_VERSION


def _stamp(path: Path, version: str) -> None:
    Store(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE hwnas_schema_version SET version_num = ?", (version,))


@pytest.mark.parametrize("version", [str(SCHEMA_VERSION + 1), "ae1027a6acf"])
@pytest.mark.parametrize("readonly", [False, True])
def test_a_store_written_by_a_newer_hwnas_is_refused_with_one_line(tmp_path, version, readonly):
    path = tmp_path / "new.db"
    _stamp(path, version)
    before = digest(path)
    with pytest.raises(HwnasError, match="written by a newer hwnas") as e:
        Store(path, readonly=readonly)
    assert "upgrade hwnas" in str(e.value) and "\n" not in str(e.value)
    assert digest(path) == before


def test_the_cli_refuses_a_newer_store_with_one_line_and_exit_2(tmp_path):
    path = tmp_path / "new.db"
    _stamp(path, str(SCHEMA_VERSION + 1))
    before = digest(path)
    for args in (["measurements", "list"], ["profile", "--space", "nb201:C=4,N=1", "--samples", "1"]):
        result = CliRunner().invoke(cli, [*args, "--store", str(path)])
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and "written by a newer hwnas" in lines[0], result.output
    assert digest(path) == before


def test_an_upgrade_a_reader_cannot_do_without_says_how(old_store, monkeypatch):
    """A future step whose older schema cannot be read as it is: a reader refuses (it never writes) and names the
    fix; a writer runs the step, in order, and stamps the version."""
    ran = []
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(store_module, "UPGRADES", [
        (0, lambda ops: ran.append(0), True),
        (1, lambda ops: ran.append(1) or ops.add_column("measurements", store_module.Column("note", store_module.String(20))),
         False),
    ])
    before = digest(old_store)
    with pytest.raises(HwnasError, match="open it once with a writing command") as e:
        Store(old_store, readonly=True)
    assert "\n" not in str(e.value) and digest(old_store) == before and not ran
    store = Store(old_store)
    assert ran == [0, 1] and store.schema_version() == 2 and store.count() == 3
    with sqlite3.connect(old_store) as db:
        assert "note" in [c[1] for c in db.execute("PRAGMA table_info(measurements)")]
