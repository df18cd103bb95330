"""The measurement store: SQLAlchemy, an SQLite file by default, any database URL (PostgreSQL...) by `--store`.

One row per (device, backend, space, arch, input shape, batch), committed as each is measured, so an
interrupted profiling run keeps what it measured and a rerun skips it.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Integer, String, UniqueConstraint, create_engine, func, select
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from hwnas.errors import HwnasError
from hwnas.measurement import Measurement, shape_from_str, shape_to_str


class _Base(DeclarativeBase):
    pass


class DeviceRow(_Base):
    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MeasurementRow(_Base):
    __tablename__ = "measurements"
    __table_args__ = (UniqueConstraint("device", "backend", "space", "arch", "input_shape", "batch", name="one_per_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device: Mapped[str] = mapped_column(String(64), index=True)
    backend: Mapped[str] = mapped_column(String(64))
    space: Mapped[str] = mapped_column(String(200))
    arch: Mapped[str] = mapped_column(String(500))
    input_shape: Mapped[str] = mapped_column(String(64))
    batch: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    latency_p10_ms: Mapped[float] = mapped_column(Float)
    latency_p90_ms: Mapped[float] = mapped_column(Float)
    latency_std_ms: Mapped[float] = mapped_column(Float)
    runs: Mapped[int] = mapped_column(Integer)
    energy_mj: Mapped[float | None] = mapped_column(Float, nullable=True)
    energy_method: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    versions: Mapped[dict] = mapped_column(JSON)
    extra: Mapped[dict] = mapped_column(JSON)


CSV_COLUMNS = [
    "device", "backend", "space", "arch", "input_shape", "batch", "latency_ms", "latency_p10_ms", "latency_p90_ms",
    "latency_std_ms", "runs", "energy_mj", "energy_method", "created_at", "versions", "extra",
]


def store_url(location: str | Path) -> str:
    """A database URL as given, or a path turned into an SQLite URL (its folder is created)."""
    text = str(location)
    if "://" in text:
        return text
    path = Path(text).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class Store:
    def __init__(self, location: str | Path):
        self.url = store_url(location)
        try:
            self.engine = create_engine(self.url)
            _Base.metadata.create_all(self.engine)
        except (ArgumentError, DatabaseError, ImportError) as e:  # DatabaseError: e.g. "file is not a database"
            reason = str(e).splitlines()[0]
            raise HwnasError(
                f"cannot open the measurement store {self.url!r} ({reason}); accepted: a file path or a database URL "
                "such as sqlite:///runs/x.db or postgresql+psycopg://user@host/db"
            ) from None

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # --- devices ------------------------------------------------------------------------------------------
    def add_device(self, device_id: str, name: str, fingerprint: dict[str, Any]) -> str:
        with Session(self.engine) as s:
            if s.get(DeviceRow, device_id) is None:
                s.add(DeviceRow(id=device_id, name=name, fingerprint=fingerprint, created_at=datetime.now(timezone.utc)))
                s.commit()
        return device_id

    def devices(self) -> list[dict[str, Any]]:
        with Session(self.engine) as s:
            counts = dict(s.execute(select(MeasurementRow.device, func.count()).group_by(MeasurementRow.device)).all())
            return [
                {"id": d.id, "name": d.name, "fingerprint": d.fingerprint, "measurements": counts.get(d.id, 0)}
                for d in s.scalars(select(DeviceRow).order_by(DeviceRow.created_at))
            ]

    def resolve_device(self, name_or_id: str) -> str:
        """A device id from its id or its name (names come from fingerprints or imported CSV columns)."""
        devices = self.devices()
        for d in devices:
            if name_or_id in (d["id"], d["name"]):
                return d["id"]
        known = ", ".join(f"{d['name']} ({d['id']})" for d in devices) or "none yet; run `hwnas profile` first"
        raise HwnasError(f"no device {name_or_id!r} in the store {self.url}; known: {known}")

    # --- measurements -------------------------------------------------------------------------------------
    def add(self, m: Measurement, replace: bool = False) -> bool:
        """Store one measurement and commit. Returns False (and changes nothing) if its key is already stored,
        unless `replace`, which overwrites it (used when a result is re-measured)."""
        row = MeasurementRow(
            device=m.device, backend=m.backend, space=m.space, arch=m.arch, input_shape=shape_to_str(m.input_shape),
            batch=int(m.batch), latency_ms=float(m.latency_ms), latency_p10_ms=float(m.latency_p10_ms),
            latency_p90_ms=float(m.latency_p90_ms), latency_std_ms=float(m.latency_std_ms), runs=int(m.runs),
            energy_mj=None if m.energy_mj is None else float(m.energy_mj), energy_method=m.energy_method,
            created_at=m.created_at, versions=dict(m.versions), extra=dict(m.extra),
        )
        with Session(self.engine) as s:
            existing = s.scalars(self._select(m.device, m.backend, m.space, shape_to_str(m.input_shape), m.batch, m.arch)).first()
            if existing is not None:
                if not replace:
                    return False
                s.delete(existing)
                s.flush()
            s.add(row)
            try:
                s.commit()
            except IntegrityError:  # a concurrent writer stored the same key first
                s.rollback()
                return False
        return True

    def add_many(self, measurements: Iterable[Measurement]) -> int:
        return sum(self.add(m) for m in measurements)

    @staticmethod
    def _select(device=None, backend=None, space=None, input_shape=None, batch=None, arch=None):
        q = select(MeasurementRow)
        for column, value in (
            (MeasurementRow.device, device), (MeasurementRow.backend, backend), (MeasurementRow.space, space),
            (MeasurementRow.input_shape, input_shape), (MeasurementRow.batch, batch), (MeasurementRow.arch, arch),
        ):
            if value is not None:
                q = q.where(column == value)
        return q.order_by(MeasurementRow.id)

    def measurements(
        self,
        device: str | None = None,
        backend: str | None = None,
        space: str | None = None,
        input_shape: Sequence[int] | str | None = None,
        batch: int | None = None,
        arch: str | None = None,
    ) -> list[Measurement]:
        shape = None if input_shape is None else (input_shape if isinstance(input_shape, str) else shape_to_str(input_shape))
        with Session(self.engine) as s:
            return [_to_measurement(r) for r in s.scalars(self._select(device, backend, space, shape, batch, arch))]

    def groups(self) -> list[tuple[str, str, str, str, int, int]]:
        """One row per measured (device, backend, space, input shape, batch) with its count: what the store holds,
        cheaply, for choosing what to fit on and for saying what is there when a request matches nothing."""
        with Session(self.engine) as s:
            rows = s.execute(select(MeasurementRow.device, MeasurementRow.backend, MeasurementRow.space,
                                    MeasurementRow.input_shape, MeasurementRow.batch, func.count())
                             .group_by(MeasurementRow.device, MeasurementRow.backend, MeasurementRow.space,
                                       MeasurementRow.input_shape, MeasurementRow.batch)).all()
        return [tuple(r) for r in rows]

    def archs(self, **filters: Any) -> set[str]:
        return {m.arch for m in self.measurements(**filters)}

    def count(self, **filters: Any) -> int:
        return len(self.measurements(**filters))

    # --- CSV ----------------------------------------------------------------------------------------------
    def export_csv(self, path: str | Path, **filters: Any) -> int:
        rows = self.measurements(**filters)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            w.writeheader()
            for m in rows:
                d = m.to_dict()
                d["versions"] = json.dumps(d["versions"], sort_keys=True)
                d["extra"] = json.dumps(d["extra"], sort_keys=True)
                w.writerow({k: d[k] for k in CSV_COLUMNS})
        return len(rows)

    def import_table(
        self,
        path: str | Path,
        space: str,
        arch_column: str = "arch",
        columns: Sequence[str] | None = None,
        input_shape: Sequence[int] = (3, 32, 32),
        batch: int = 1,
        backend: str = "imported",
        validate_arch=None,
    ) -> dict[str, int]:
        """Load a wide table of published latencies (one row an architecture, one column a device, in ms,
        like ../shared/data/nb201/latency_ms.csv). Each column becomes a device named after it. Rows are checked
        before anything is written, so a bad file stores nothing. Returns new rows stored per device."""
        from hwnas.spaces import get_space

        space = get_space(space).spec  # "nb201:C=4,N=1" and "nb201:C=4,N=1,classes=10" are one space: store one name
        rows = read_csv_rows(path)
        header = list(rows[0].keys()) if rows else []
        if arch_column not in header:
            raise HwnasError(f"{path}: no column {arch_column!r}; columns: {', '.join(header)}")
        # A device column is any column with a number in it; a bad cell in one then fails the import below.
        numeric = [c for c in header if c not in (arch_column, "index") and any(_is_number(r.get(c, "")) for r in rows)]
        columns = list(columns) if columns else numeric
        missing = [c for c in columns if c not in header]
        if missing:
            raise HwnasError(f"{path}: no column(s) {', '.join(missing)}; numeric columns: {', '.join(numeric)}")
        parsed = []
        for line, row in enumerate(rows, start=2):
            arch = row[arch_column]
            if validate_arch is not None:
                try:
                    arch = validate_arch(arch)
                except HwnasError as e:
                    raise HwnasError(f"{path}, line {line}: {e}") from None
            for c in columns:
                if not _is_number(row[c]):
                    raise HwnasError(f"{path}, line {line}: column {c!r} holds {row[c]!r}, not a latency in ms")
            parsed.append((arch, row))
        added: dict[str, int] = {}
        source = str(Path(path).resolve())
        for c in columns:
            device = self.add_device(f"imported:{c}", c, {"name": c, "source": source})
            added[c] = 0
            with Session(self.engine) as s:
                have = set(s.scalars(select(MeasurementRow.arch).where(
                    MeasurementRow.device == device, MeasurementRow.backend == backend, MeasurementRow.space == space,
                    MeasurementRow.input_shape == shape_to_str(input_shape), MeasurementRow.batch == batch)))
                now = datetime.now(timezone.utc)
                for arch, row in parsed:
                    if arch in have:
                        continue
                    v = float(row[c])
                    s.add(MeasurementRow(device=device, backend=backend, space=space, arch=arch,
                                         input_shape=shape_to_str(input_shape), batch=batch, latency_ms=v,
                                         latency_p10_ms=v, latency_p90_ms=v, latency_std_ms=0.0, runs=1, energy_mj=None,
                                         energy_method=None, created_at=now, versions={}, extra={"source": source}))
                    have.add(arch)
                    added[c] += 1
                s.commit()  # one transaction per device column: all of it or none
        return added


def open_store(store_url: str | None, run_dir: str | Path, must_exist: bool = False) -> Store:
    """The run's store: `store_url` (a path or database URL) if given, else RUN_DIR/measurements.db.
    `must_exist` (callers that only read it): a missing SQLite file is an error rather than a new empty database
    left behind."""
    location = store_url or Path(run_dir) / "measurements.db"
    if must_exist and "://" not in str(location) and not Path(location).expanduser().is_file():
        raise HwnasError(f"no measurement store at {location}; run `hwnas profile` (or `hwnas measurements import`) "
                         "first, or point --store/--run-dir at an existing one")
    return Store(location)


def read_csv_rows(path: str | Path) -> list[dict[str, str]]:
    p = Path(path)
    if not p.is_file():
        raise HwnasError(f"no such CSV file: {path}")
    try:
        with open(p, newline="") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise HwnasError(f"{path} is not a readable CSV file ({e})") from None
    if not rows:
        raise HwnasError(f"{path} has a header but no rows (or is empty)")
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def _to_measurement(r: MeasurementRow) -> Measurement:
    created = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=timezone.utc)
    return Measurement(
        arch=r.arch, space=r.space, device=r.device, backend=r.backend, input_shape=shape_from_str(r.input_shape),
        batch=r.batch, latency_ms=r.latency_ms, latency_p10_ms=r.latency_p10_ms, latency_p90_ms=r.latency_p90_ms,
        latency_std_ms=r.latency_std_ms, runs=r.runs, energy_mj=r.energy_mj, energy_method=r.energy_method,
        created_at=created, versions=dict(r.versions or {}), extra=dict(r.extra or {}),
    )


def iter_unique(items: Iterable[str]) -> Iterator[str]:
    seen: set[str] = set()
    for x in items:
        if x not in seen:
            seen.add(x)
            yield x
