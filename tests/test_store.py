import csv

import pytest

from hwnas import HwnasError, get_space
from hwnas.measurement import Measurement
from hwnas.store import Store


def make(arch: str, latency: float = 1.0, **kw) -> Measurement:
    base = {"arch": arch, "space": "nb201:C=16,N=5,classes=10", "device": "cpu-x", "backend": "onnxruntime-cpu",
                "input_shape": (3, 32, 32), "batch": 1, "latency_ms": latency, "latency_p10_ms": latency * 0.9,
                "latency_p90_ms": latency * 1.1, "latency_std_ms": 0.01, "runs": 20}
    base.update(kw)
    return Measurement(**base)


def test_one_row_per_key_and_replace(tmp_path):
    store = Store(tmp_path / "s.db")
    assert store.add(make("a", 1.0))
    assert not store.add(make("a", 2.0))  # the same key: kept as it was
    assert store.measurements()[0].latency_ms == 1.0
    assert store.add(make("a", 3.0), replace=True)
    assert [m.latency_ms for m in store.measurements()] == [3.0]
    assert store.add(make("a", 1.0, batch=8)) and store.add(make("a", 1.0, input_shape=(3, 64, 64)))
    assert store.count() == 3 and store.count(batch=8) == 1


def test_persists_across_connections_and_exports_csv(tmp_path):
    path = tmp_path / "nested" / "s.db"
    Store(path).add(make("a", 1.5, energy_mj=0.2, energy_method="rapl", versions={"torch": "x"}))
    store = Store(path)
    m = store.measurements(arch="a")[0]
    assert (m.latency_ms, m.energy_mj, m.energy_method, m.versions) == (1.5, 0.2, "rapl", {"torch": "x"})
    assert store.export_csv(tmp_path / "out.csv") == 1
    with open(tmp_path / "out.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["arch"] == "a" and rows[0]["input_shape"] == "3x32x32"


def test_bad_store_url_is_one_clear_line(tmp_path):
    with pytest.raises(HwnasError, match="cannot open the measurement store"):
        Store("nosuchdialect://x/y")


def test_import_published_table_and_bad_rows_store_nothing(tmp_path, nb201_data):
    space = get_space("nb201")
    lines = (nb201_data / "latency_ms.csv").read_text().splitlines()
    good = tmp_path / "good.csv"
    good.write_text("\n".join(lines[:21]) + "\n")
    store = Store(tmp_path / "s.db")
    check = lambda a: space.to_string(space.from_string(a))
    added = store.import_table(good, space.spec, columns=["pixel3", "gold_6226"], validate_arch=check)
    assert added == {"pixel3": 20, "gold_6226": 20}
    assert store.resolve_device("pixel3") == "imported:pixel3"
    assert store.import_table(good, space.spec, columns=["pixel3"], validate_arch=check) == {"pixel3": 0}
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines[:5] + [lines[5].replace("nor_conv", "norconv", 1).replace("avg_pool", "avgpool", 1)]) + "\n")
    before = store.count()
    with pytest.raises(HwnasError, match="line 6"):
        store.import_table(bad, space.spec, columns=["raspi4"], validate_arch=check)
    with pytest.raises(HwnasError, match="no column"):
        store.import_table(good, space.spec, columns=["nosuch"], validate_arch=check)
    # a bad cell in the first row of a device column fails the whole import (the column is not silently skipped)
    header, first = lines[0], lines[1].split(",")
    first[2] = "abc"
    bad_cell = tmp_path / "bad_cell.csv"
    bad_cell.write_text("\n".join([header, ",".join(first)] + lines[2:6]) + "\n")
    with pytest.raises(HwnasError, match="line 2: column '1080ti_1' holds 'abc'"):
        store.import_table(bad_cell, space.spec, validate_arch=check)
    assert store.count() == before
    with pytest.raises(HwnasError, match="no device 'nosuch'"):
        store.resolve_device("nosuch")


def test_a_reader_never_writes_and_never_creates_tables(tmp_path):
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE notes (text TEXT)")
    before = path.read_bytes()
    store = Store(path, readonly=True)
    assert store.devices() == [] and store.measurements() == [] and store.groups() == []
    with pytest.raises(HwnasError, match="opened read-only"):
        store.add(make("a"))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["other.db"]


@pytest.mark.parametrize("table", ["measurements (x INTEGER, y TEXT)", "devices (serial TEXT)"])
def test_a_foreign_schema_is_refused_before_anything_is_written(tmp_path, table):
    import sqlite3

    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as c:
        c.execute(f"CREATE TABLE {table}")
    before = path.read_bytes()
    for readonly in (True, False):
        with pytest.raises(HwnasError, match="is not a hwnas measurement store: its table"):
            Store(path, readonly=readonly)
    assert path.read_bytes() == before


def test_a_read_only_store_file_is_refused_when_opened_for_writing(tmp_path):
    import os

    path = tmp_path / "s.db"
    Store(path).add(make("a"))
    os.chmod(path, 0o444)
    before = path.read_bytes()
    with pytest.raises(HwnasError, match=f"the measurement store {path} is read-only"):
        Store(path)
    assert Store(path, readonly=True).count() == 1 and path.read_bytes() == before


@pytest.mark.parametrize("field, value, words", [
    ("latency_ms", float("nan"), "latency_ms holds nan"), ("latency_ms", float("inf"), "latency_ms holds inf"),
    ("latency_ms", -1.0, "latency_ms holds -1.0"), ("latency_ms", 0.0, "above 0"),
    ("energy_mj", float("nan"), "energy_mj holds nan"), ("latency_std_ms", -0.5, "latency_std_ms holds -0.5"),
    ("runs", 0, "runs holds 0"),
])
def test_values_are_checked_before_they_are_stored(tmp_path, field, value, words):
    store = Store(tmp_path / "s.db")
    with pytest.raises(HwnasError, match=words):
        store.add(make("a", **{field: value}))
    assert store.count() == 0


def test_import_refuses_one_architecture_with_two_values_and_keeps_identical_repeats_once(tmp_path):
    space = get_space("nb201:C=4,N=1")
    a, b = (space.to_string(space.arch_at(i)) for i in (0, 1))
    check = lambda x: space.to_string(space.from_string(x))
    path = tmp_path / "t.csv"
    path.write_text(f"arch,dev\n{a},1.5\n{b},2\n{a},1.5\n")
    store = Store(tmp_path / "s.db")
    assert store.import_table(path, space.spec, validate_arch=check) == {"dev": 2}
    path.write_text(f"arch,dev\n{b},1.5\n{a},2\n{b},3\n")
    other = Store(tmp_path / "o.db")
    with pytest.raises(HwnasError, match="lines 2 and 4: the same architecture"):
        other.import_table(path, space.spec, validate_arch=check)
    for bad in ("inf", "-2", "nan", ""):
        path.write_text(f"arch,dev\n{a},1.5\n{b},{bad}\n")
        with pytest.raises(HwnasError, match="line 3: column 'dev' holds"):
            other.import_table(path, space.spec, columns=["dev"], validate_arch=check)
    assert other.devices() == [] and other.count() == 0  # nor an empty device row
