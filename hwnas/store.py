"""The measurement store: SQLAlchemy, an SQLite file by default, any database URL (PostgreSQL...) by `--store`.

One row per (device, backend, space, arch, input shape, batch), committed as each is measured, so an
interrupted profiling run keeps what it measured and a rerun skips it.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    delete,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from hwnas.errors import HwnasError, quote
from hwnas.files import atomic_write, read_wide_csv
from hwnas.measurement import Measurement, check_measurement, check_value, shape_from_str, shape_to_str
from hwnas.spaces import get_space


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


#: seconds a writer waits for another process's lock on an SQLite store before giving up with one line
#: ($HWNAS_STORE_LOCK_TIMEOUT overrides it)
LOCK_TIMEOUT_S = 10.0


def _lock_timeout() -> float:
    return float(os.environ.get("HWNAS_STORE_LOCK_TIMEOUT", LOCK_TIMEOUT_S))

_TABLES = {table.name: {c.name for c in table.columns} for table in _Base.metadata.sorted_tables}

# --- schema version and migrations ---------------------------------------------------------------------------
#: the schema this hwnas writes. 0: hwnas before the version table (same tables, no version); 1: versioned.
SCHEMA_VERSION = 1

#: one row, the schema version, laid out as Alembic's own version table (a `version_num` string) under a name of
#: ours, so a database shared with an Alembic-managed application is not confused with it
_VERSION_TABLE = Table("hwnas_schema_version", MetaData(), Column("version_num", String(32), primary_key=True))

#: arbitrary key of the PostgreSQL advisory lock held while a writer creates or upgrades the schema
_SCHEMA_LOCK_KEY = 0x6877_6E61


def _upgrade_0_to_1(ops: Operations) -> None:
    """Schema 0 to 1: the tables are unchanged; only the version table (created by the caller) is new."""


#: the ordered upgrade steps: (from version, step, whether this hwnas can read a store still at that version).
#: Step n takes a store at schema n to n + 1 through Alembic's operations (add_column, batch_alter_table...),
#: inside the writer's transaction. A new schema appends a step and raises SCHEMA_VERSION.
UPGRADES: list[tuple[int, Any, bool]] = [(0, _upgrade_0_to_1, True)]


def _read_version(conn: Connection, location: str) -> int | None:
    """The stored schema version: None for a database without our version table."""
    if not inspect(conn).has_table(_VERSION_TABLE.name):
        return None
    found = conn.execute(select(_VERSION_TABLE.c.version_num)).scalars().all()
    if not found:
        return None
    if len(found) > 1 or not str(found[0]).isdigit():
        raise HwnasError(f"the measurement store {location} has a schema version hwnas does not know "
                         f"({quote(', '.join(map(str, found)), 80)}); it was written by a newer hwnas: upgrade hwnas")
    return int(found[0])


def _check_version(version: int, location: str, readonly: bool) -> None:
    """Refuse a store this hwnas cannot use: a newer schema always; an older one that cannot be read as it is
    when opened read-only (readers never write)."""
    if version > SCHEMA_VERSION:
        raise HwnasError(f"the measurement store {location} was written by a newer hwnas (schema version {version}; "
                         f"this hwnas knows up to {SCHEMA_VERSION}); upgrade hwnas to use it")
    unreadable = [start for start, _, readable in UPGRADES if start >= version and not readable]
    if readonly and unreadable:
        raise HwnasError(f"the measurement store {location} has an older schema (version {version}) that this hwnas "
                         "reads only after an upgrade; open it once with a writing command (e.g. `hwnas profile` or "
                         "`hwnas measurements import`) to upgrade it in place")


def _stamp(conn: Connection, version: int) -> None:
    _VERSION_TABLE.create(conn, checkfirst=True)
    conn.execute(delete(_VERSION_TABLE))
    conn.execute(_VERSION_TABLE.insert().values(version_num=str(version)))


def _migrate(conn: Connection, location: str) -> None:
    """Create the tables in a new database, or upgrade an older schema in place step by step, then stamp the
    version; a newer schema is refused. Runs in one transaction (PostgreSQL: under an advisory lock, so concurrent
    writers opening one database upgrade it once)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
    present = set(inspect(conn).get_table_names()) & set(_TABLES)
    version = _read_version(conn, location)
    if version is None and not present:  # a new store: today's schema
        _Base.metadata.create_all(conn)
        _stamp(conn, SCHEMA_VERSION)
        return
    version = 0 if version is None else version
    _check_version(version, location, readonly=False)
    if version == SCHEMA_VERSION:
        if present != set(_TABLES):
            _Base.metadata.create_all(conn)
        return
    ops = Operations(MigrationContext.configure(conn))
    for start, step, _ in UPGRADES:
        if start >= version:
            step(ops)
    _Base.metadata.create_all(conn)  # tables added by a step's schema that a step did not create
    _stamp(conn, SCHEMA_VERSION)


def _is_race(error: BaseException) -> bool:
    """A concurrent writer created the same table or version row between our check and our write."""
    low = str(error).lower()
    return any(k in low for k in ("already exists", "duplicate", "unique constraint", "database is locked"))


def store_url(location: str | Path, create_folder: bool = True) -> str:
    """A database URL as given, or a path turned into an SQLite URL (its folder is created when `create_folder`)."""
    text = str(location)
    if "://" in text:
        return text
    path = Path(text).expanduser().resolve()
    if create_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _split_password(text: str) -> tuple[str, str | None]:
    """(the URL with its password masked, the password as written) for `scheme://user:password@host/...`; the
    password runs to the last "@" before any "?", so one with an unescaped "@" or "/" is masked whole."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text, None
    head, question, query = rest.partition("?")
    userinfo, at, host = head.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon or "/" in user:
        return text, None
    return f"{scheme}://{user}:***@{host}{question}{query}", password


def display_url(url: str | Path) -> str:
    """A store location as it may be shown or saved: a database URL with its password masked as SQLAlchemy's
    `render_as_string(hide_password=True)` does (`postgresql+psycopg://hw:***@host/db`); a path as given.
    Every place that shows or writes a store URL (tables, --json, errors, manifests, metadata, logs) uses this."""
    return _split_password(str(url))[0]


def scrub(text: str, url: str | Path) -> str:
    """`text` (an error message) with the password of `url` masked wherever it appears, as written or decoded."""
    text = str(text).replace(str(url), display_url(url))
    password = _split_password(str(url))[1]
    for form in {password, unquote(password or "")} - {None, ""}:
        text = text.replace(form, "***")
    return text


def _sqlite_path(url: str) -> Path | None:
    """The file behind an SQLite URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite:///") or url in ("sqlite://", "sqlite:///:memory:"):
        return None
    return Path(url[len("sqlite:///"):].split("?")[0])


def _store_failure(where: str, error: BaseException) -> HwnasError | None:
    """A one-line HwnasError for a database failure a user can act on (lock, full disk, read-only), else None."""
    text = str(getattr(error, "orig", None) or error).splitlines()[0] if str(error) else type(error).__name__
    low = text.lower()
    if isinstance(error, OSError) and error.errno == errno.ENOSPC or "disk is full" in low:
        return HwnasError(f"the measurement store {where} could not be written: the disk is full ({text}); "
                          "nothing more was stored: free some space or give another --store")
    if "database is locked" in low or "database table is locked" in low:
        return HwnasError(f"the measurement store {where} is locked by another process ({text}); wait for it to "
                          "finish or give another --store")
    if "readonly database" in low or "read-only" in low:
        return HwnasError(f"the measurement store {where} is read-only ({text}); give a writable --store")
    if "no such table" in low or "no such column" in low or "has no column" in low:
        return HwnasError(f"{where} is not a hwnas measurement store ({text}); give another --store")
    return None


class Store:
    """Measurements in a database. `readonly` (commands that only read): the database is opened read-only and
    nothing is created in it, not even the tables; a store without them reads as empty. A writable store is checked
    up front (schema, permissions, locks), before anything is measured."""

    def __init__(self, location: str | Path, readonly: bool = False):
        self.readonly = readonly
        self._url = store_url(location, create_folder=not readonly)  # private: may hold a password
        self.path = _sqlite_path(self._url)
        self.location = str(self.path) if self.path is not None else display_url(self._url)
        self._empty = False
        try:
            self.engine = self._engine()
            with self._errors():
                present = self._check_schema()
                if readonly:
                    self._check_readable()
                    self._empty = not set(_TABLES) <= present
                else:
                    self._check_writable()
                    self._create_tables()
        except (ArgumentError, DatabaseError, ImportError) as e:  # DatabaseError: e.g. "file is not a database"
            reason = scrub(str(getattr(e, "orig", None) or e).splitlines()[0], self._url)
            raise HwnasError(
                f"cannot open the measurement store {self.url!r} ({reason}); accepted: a file path or a database URL "
                "such as sqlite:///runs/x.db or postgresql+psycopg://user@host/db"
            ) from None

    @property
    def url(self) -> str:
        """The store's URL as it may be shown or saved: its password masked (`display_url`)."""
        return display_url(self._url)

    def _engine(self):
        if self.path is None:
            return create_engine(self._url)
        if self.readonly:  # mode=ro: SQLite neither creates the file nor writes a byte to it
            return create_engine(f"sqlite:///file:{self.path}?mode=ro&uri=true",
                                 connect_args={"timeout": _lock_timeout()})
        return create_engine(self._url, connect_args={"timeout": _lock_timeout()})

    def _create_tables(self) -> None:
        """Create the tables, or upgrade an older schema in place (`_migrate`); retried when a concurrent writer
        did it between our check and our write."""
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    _migrate(conn, self.location)
                return
            except (OperationalError, ProgrammingError, IntegrityError) as e:
                if attempt == 2 or not _is_race(e):
                    raise

    def _check_readable(self) -> None:
        """A read-only store: refused if written by a newer hwnas, or at an older schema that needs an upgrade
        first (nothing is written here)."""
        with self.engine.connect() as conn:
            version = _read_version(conn, self.location)
        if version is not None or set(inspect(self.engine).get_table_names()) & set(_TABLES):
            _check_version(0 if version is None else version, self.location, readonly=True)

    def schema_version(self) -> int | None:
        """The schema version stored (0: written before versions; None: an empty database opened read-only)."""
        with self._errors(), self.engine.connect() as conn:
            version = _read_version(conn, self.location)
            if version is None and set(inspect(conn).get_table_names()) & set(_TABLES):
                return 0
            return version

    def _check_schema(self) -> set[str]:
        """The names of our tables the database holds; a table of ours with other columns is refused (a foreign
        database), before anything is written."""
        inspector = inspect(self.engine)
        present = set(inspector.get_table_names()) & set(_TABLES)
        for name in sorted(present):
            have = {c["name"] for c in inspector.get_columns(name)}
            if not _TABLES[name] <= have:
                missing = ", ".join(sorted(_TABLES[name] - have))
                raise HwnasError(f"{self.location} is not a hwnas measurement store: its table {name!r} has other "
                                 f"columns (lacks {quote(missing, 120)}); give another --store")
        return present

    def _check_writable(self) -> None:
        """Refuse, before any measuring, a store that cannot be written: a read-only file or folder, or one whose
        lock another process holds (SQLite: a write transaction is begun and rolled back)."""
        if self.path is not None and self.path.exists():
            mode = self.path.stat().st_mode
            if not os.access(self.path, os.W_OK) or not mode & 0o222:
                raise HwnasError(f"the measurement store {self.location} is read-only (mode {stat.filemode(mode)}); "
                                 "make it writable or give another --store")
            if not os.access(self.path.parent, os.W_OK):
                raise HwnasError(f"the measurement store {self.location} is in a folder that cannot be written "
                                 "(SQLite writes its journal beside it); give another --store")
        if self.path is not None:
            with self.engine.connect() as c:
                c.exec_driver_sql("BEGIN IMMEDIATE")
                c.exec_driver_sql("ROLLBACK")

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Database failures a user can act on become one line naming the store."""
        try:
            yield
        except (OperationalError, DatabaseError, OSError) as e:
            failure = _store_failure(self.location, e)
            if failure is None:
                raise
            raise HwnasError(scrub(str(failure), self._url)) from None

    def _session(self) -> Session:
        return Session(self.engine)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def _writable(self) -> None:
        if self.readonly:
            raise HwnasError(f"the measurement store {self.location} was opened read-only; open it with readonly=False "
                             "to write")

    def require_writable(self) -> None:
        """A HwnasError naming the store if it cannot be written now (read-only, locked): checked before measuring."""
        self._writable()
        with self._errors():
            self._check_writable()

    # --- devices ------------------------------------------------------------------------------------------
    def add_device(self, device_id: str, name: str, fingerprint: dict[str, Any]) -> str:
        self._writable()
        with self._errors(), self._session() as s:
            if s.get(DeviceRow, device_id) is None:
                s.add(DeviceRow(id=device_id, name=name, fingerprint=fingerprint, created_at=datetime.now(timezone.utc)))
                try:
                    s.commit()
                except IntegrityError:  # a concurrent writer added the same device first: it is there, as wanted
                    s.rollback()
        return device_id

    def devices(self) -> list[dict[str, Any]]:
        if self._empty:
            return []
        with self._errors(), self._session() as s:
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
        raise HwnasError(f"no device {quote(name_or_id)} in the store {self.url}; known: {quote(known, 400)[1:-1]}")

    # --- measurements -------------------------------------------------------------------------------------
    def add(self, m: Measurement, replace: bool = False) -> bool:
        """Store one measurement and commit. Returns False (and changes nothing) if its key is already stored,
        unless `replace`, which overwrites it (used when a result is re-measured). The values are checked first
        (`check_measurement`): a NaN or negative latency is a HwnasError and nothing is written."""
        self._writable()
        check_measurement(m)
        row = _to_row(m)
        with self._errors(), self._session() as s:
            existing = s.scalars(self._select(m.device, m.backend, m.space, shape_to_str(m.input_shape), m.batch,
                                              m.arch)).first()
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
        """The query every reader (predictors, search, export) uses: stored measurements matching the filters
        given, in the order they were stored. Nobody outside this module touches the tables."""
        if self._empty:
            return []
        shape = None if input_shape is None else (input_shape if isinstance(input_shape, str) else shape_to_str(input_shape))
        with self._errors(), self._session() as s:
            return [_to_measurement(r) for r in s.scalars(self._select(device, backend, space, shape, batch, arch))]

    where = measurements  # Store.where(device=..., space=...): the same query, read as a filter

    def groups(self) -> list[tuple[str, str, str, str, int, int]]:
        """One row per measured (device, backend, space, input shape, batch) with its count: what the store holds,
        cheaply, for choosing what to fit on and for saying what is there when a request matches nothing."""
        if self._empty:
            return []
        keys = (MeasurementRow.device, MeasurementRow.backend, MeasurementRow.space, MeasurementRow.input_shape,
                MeasurementRow.batch)
        with self._errors(), self._session() as s:
            rows = s.execute(select(*keys, func.count()).group_by(*keys)).all()
        return [tuple(r) for r in rows]

    def archs(self, **filters: Any) -> set[str]:
        return {m.arch for m in self.measurements(**filters)}

    def count(self, **filters: Any) -> int:
        return len(self.measurements(**filters))

    # --- CSV ----------------------------------------------------------------------------------------------
    def export_csv(self, path: str | Path, **filters: Any) -> int:
        """Write the matching measurements as CSV, atomically: an interruption or a full disk leaves any previous
        file as it was and no partial one."""
        rows = self.measurements(**filters)
        with atomic_write(path, newline="") as f:
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
        like ../shared/data/nb201/latency_ms.csv). Each column becomes a device named after it. Every row and value
        is checked before anything is written (a latency is a finite number above 0; one architecture given twice
        with different values is refused, naming both lines), and the whole import is one transaction: a bad file
        or an interruption stores nothing. Returns new rows stored per device."""

        self._writable()
        space = get_space(space).spec  # "nb201:C=4,N=1" and "nb201:C=4,N=1,classes=10" are one space: store one name
        table = read_wide_csv(path, arch_column, columns, parse_arch=validate_arch, check=check_value)
        source = str(Path(path).resolve())
        shape = shape_to_str(input_shape)
        added: dict[str, int] = {}
        with self._errors(), self._session() as s:
            for c in table.columns:
                device = f"imported:{c}"
                if s.get(DeviceRow, device) is None:
                    s.add(DeviceRow(id=device, name=c, fingerprint={"name": c, "source": source},
                                    created_at=datetime.now(timezone.utc)))
                have = set(s.scalars(select(MeasurementRow.arch).where(
                    MeasurementRow.device == device, MeasurementRow.backend == backend, MeasurementRow.space == space,
                    MeasurementRow.input_shape == shape, MeasurementRow.batch == batch)))
                now = datetime.now(timezone.utc)
                new = [(a, v) for a, v in zip(table.archs, table.values[c]) if a not in have]
                s.add_all(MeasurementRow(device=device, backend=backend, space=space, arch=a, input_shape=shape,
                                         batch=batch, latency_ms=v, latency_p10_ms=v, latency_p90_ms=v,
                                         latency_std_ms=0.0, runs=1, energy_mj=None, energy_method=None,
                                         created_at=now, versions={}, extra={"source": source}) for a, v in new)
                added[c] = len(new)
            s.commit()  # one transaction for the whole file: all of it or none
        return added


def open_store(store_url: str | None, run_dir: str | Path, must_exist: bool = False,
               readonly: bool | None = None) -> Store:
    """The run's store: `store_url` (a path or database URL) if given, else RUN_DIR/measurements.db.
    `must_exist` (callers that only read it): a missing SQLite file is an error rather than a new empty database
    left behind, and the store is opened read-only (unless `readonly=False`), so reading never writes a byte."""
    location = store_url or Path(run_dir) / "measurements.db"
    if must_exist and "://" not in str(location) and not Path(location).expanduser().is_file():
        raise HwnasError(f"no measurement store at {quote(str(location))[1:-1]}; run `hwnas profile` (or `hwnas "
                         "measurements import`) first, or point --store/--run-dir at an existing one")
    return Store(location, readonly=must_exist if readonly is None else readonly)


def _to_row(m: Measurement) -> MeasurementRow:
    return MeasurementRow(
        device=m.device, backend=m.backend, space=m.space, arch=m.arch, input_shape=shape_to_str(m.input_shape),
        batch=int(m.batch), latency_ms=float(m.latency_ms), latency_p10_ms=float(m.latency_p10_ms),
        latency_p90_ms=float(m.latency_p90_ms), latency_std_ms=float(m.latency_std_ms), runs=int(m.runs),
        energy_mj=None if m.energy_mj is None else float(m.energy_mj), energy_method=m.energy_method,
        created_at=m.created_at, versions=dict(m.versions), extra=dict(m.extra),
    )


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


__all__ = [
    "CSV_COLUMNS",
    "LOCK_TIMEOUT_S",
    "SCHEMA_VERSION",
    "Store",
    "display_url",
    "iter_unique",
    "open_store",
    "scrub",
    "store_url",
]
