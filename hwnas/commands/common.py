"""Conventions every command shares: run folder, store, --json output, progress and tables on stderr."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hwnas.errors import HwnasError
from hwnas.store import Store

# Progress, warnings and errors go to stderr; results (tables, "wrote ..." lines) to stdout, so that
# `hwnas measurements list > file` keeps them. With --json, stdout holds the JSON only.
console = Console(stderr=True)
results = Console()

DEFAULT_RUN_DIR = "runs/default"


def run_dir_option(f):
    return click.option(
        "--run-dir", type=click.Path(file_okay=False), default=lambda: os.environ.get("HWNAS_RUN_DIR", DEFAULT_RUN_DIR),
        show_default="runs/default or $HWNAS_RUN_DIR", help="Folder for this run's store, predictors, plots and exports.",
    )(f)


def store_option(f):
    return click.option(
        "--store", "store_url", default=None, metavar="PATH|URL",
        help="Measurement store: an SQLite file or a database URL (postgresql+psycopg://...). "
        "Default: RUN_DIR/measurements.db.",
    )(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")(f)


def open_store(store_url: str | None, run_dir: str | Path, must_exist: bool = False) -> Store:
    """The run's store. `must_exist` (commands that only read it): a missing SQLite file is an error rather than
    a new empty database left behind."""
    location = store_url or Path(run_dir) / "measurements.db"
    if must_exist and "://" not in str(location) and not Path(location).expanduser().is_file():
        raise HwnasError(f"no measurement store at {location}; run `hwnas profile` (or `hwnas measurements import`) "
                         "first, or point --store/--run-dir at an existing one")
    return Store(location)


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold")  # architecture strings and paths are long; wrap, never truncate
    for r in rows:
        t.add_row(*[escape(fmt(v)) for v in r])  # "[...]" in device ids is text, not rich markup
    return t


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def parse_shape(text: str):
    from hwnas.measurement import shape_from_str

    return shape_from_str(text)


__all__ = ["HwnasError", "console", "results", "emit_json", "fmt", "json_option", "open_store", "parse_shape",
           "run_dir_option", "store_option", "table"]
