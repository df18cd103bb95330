"""Files: writing them so that an interruption or a full disk never leaves a truncated or half-written one behind,
and reading CSV tables (the one reader of wide latency tables)."""
from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hwnas.errors import HwnasError, quote


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """Write to a temporary file beside `path` and rename it over `path` only when the block succeeds: on any
    error (disk full, KeyboardInterrupt) the previous file, if any, is untouched and no partial file remains."""
    path = Path(path)
    for folder in (path.parent, *path.parent.parents):
        if folder.exists():
            if not folder.is_dir():  # "m.db/x.csv" under a file: name the path asked for, as open() would
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_csv_rows(path: str | Path) -> list[dict[str, str]]:
    """Every row of a CSV file with a header, as dicts; a missing, unreadable or empty file is a HwnasError."""
    p = Path(path)
    if not p.is_file():
        raise HwnasError(f"no such CSV file: {quote(str(path))}")
    try:
        with open(p, newline="") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise HwnasError(f"{quote(str(path))} is not a readable CSV file ({str(e)[:200]})") from None
    if not rows:
        raise HwnasError(f"{quote(str(path))} has a header but no rows (or is empty)")
    return rows


def read_json(path: str | Path, what: str, give: str) -> Any:
    """The JSON value in the file at `path`; a missing or malformed file is one HwnasError naming `what` it should
    be and ending with what to `give` instead (e.g. "give the JSON written by `hwnas search --json`")."""
    p = Path(path)
    if not p.is_file():
        raise HwnasError(f"no {what} at {str(path)[:200]}; {give}")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HwnasError(f"{str(path)[:200]} is not valid JSON ({str(e)[:200]}); {give}") from None


def is_number(text: object) -> bool:
    try:
        float(text)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError):
        return False


@dataclass
class WideTable:
    """A wide CSV table (one row an architecture, one column a device or metric), read and checked: the one reader
    behind `measurements import`, `fit --from-csv` and the tabular search."""

    path: str
    header: list[str]
    rows: list[dict[str, str]]
    archs: list[Any]  # what `parse_arch` made of each row's architecture cell (the cell itself without one)
    columns: list[str]  # the value columns read
    values: dict[str, list[float]] = field(default_factory=dict)  # column -> one value per row


def read_wide_csv(path: str | Path, arch_column: str = "arch", columns: Sequence[str] | None = None,
                  parse_arch: Callable[[str], Any] | None = None,
                  check: Callable[[str, str], float] | None = None) -> WideTable:
    """Read a wide table and check every cell before the caller stores or fits anything.

    columns: the value columns to read (default: every column but `arch_column` and `index` holding a number
    somewhere). parse_arch: turns an architecture cell into what the caller keys on (a HwnasError from it names
    the line). check(text, where) -> float: validates one value (default: any number). One architecture given
    twice with different values is refused, naming both lines; given twice with the same values it is kept once.
    """
    rows = read_csv_rows(path)
    header = list(rows[0].keys())
    name = quote(str(path))
    if arch_column not in header:
        raise HwnasError(f"{name}: no column {quote(arch_column)}; columns: {quote(', '.join(header), 400)[1:-1]}")
    numeric = [c for c in header if c not in (arch_column, "index") and any(is_number(r.get(c, "")) for r in rows)]
    columns = list(columns) if columns else numeric
    missing = [c for c in columns if c not in header]
    if missing:
        what = f"column {quote(missing[0])}" if len(missing) == 1 else f"columns {quote(', '.join(missing))[1:-1]}"
        raise HwnasError(f"{name}: no {what}; numeric columns: "
                         f"{quote(', '.join(numeric), 400)[1:-1]}")
    table = WideTable(str(path), header, [], [], columns, {c: [] for c in columns})
    first_line: dict[Any, tuple[int, tuple[float, ...]]] = {}
    for line, row in enumerate(rows, start=2):
        arch, values = _wide_row(name, line, row, arch_column, columns, parse_arch, check)
        if arch in first_line:
            earlier, kept = first_line[arch]
            if kept != values:
                raise HwnasError(f"{name}, lines {earlier} and {line}: the same architecture {quote(row[arch_column])} "
                                 "with different values; keep one row per architecture")
            continue
        first_line[arch] = (line, values)
        table.rows.append(row)
        table.archs.append(arch)
        for c, v in zip(columns, values):
            table.values[c].append(v)
    return table


def _wide_row(name, line, row, arch_column, columns, parse_arch, check) -> tuple[Any, tuple[float, ...]]:
    where = f"{name}, line {line}"
    arch = row.get(arch_column) or ""
    if parse_arch is not None:
        try:
            arch = parse_arch(arch)
        except HwnasError as e:
            raise HwnasError(f"{where}: {e}") from None
    values = []
    for c in columns:
        cell = row.get(c)
        if check is not None:
            values.append(check(cell, f"{where}: column {quote(c)}"))
        elif is_number(cell):
            values.append(float(cell))
        else:
            raise HwnasError(f"{where}: column {quote(c)} holds {quote(cell)}, not a number")
    return arch, tuple(values)
