"""Conventions every command shares: run folder, store, --json output, progress and tables on stderr."""
from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hwnas.errors import HwnasError
from hwnas.reporting import Reporter

# Progress, warnings and errors go to stderr; results (tables, "wrote ..." lines) to stdout, so that
# `hwnas measurements list > file` keeps them. With --json, stdout holds the JSON only.


def _console(stderr: bool = False) -> Console:
    """A rich console; piped output gets a wide fixed width (rich would assume 80 columns and split architecture
    strings and file paths across lines), a terminal keeps its own width."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else max(int(os.environ.get("COLUMNS") or 0), PIPED_WIDTH)
    return Console(stderr=stderr, width=width)


#: columns of piped output: wide enough for an nb201 architecture string and a path on one line
PIPED_WIDTH = 240
console = _console(stderr=True)
results = _console()

DEFAULT_RUN_DIR = "runs/default"


def run_dir_option(f):
    return click.option(
        "--run-dir", type=click.Path(file_okay=False), default=lambda: os.environ.get("HWNAS_RUN_DIR", DEFAULT_RUN_DIR),
        show_default="runs/default or $HWNAS_RUN_DIR", help="Folder for this run's store, predictors, plots and exports.",
    )(f)


def store_option(f):
    return click.option(
        "--store", "store_url", default=None, metavar="PATH|URL", envvar="HWNAS_STORE",
        help="Measurement store: an SQLite file or a database URL (postgresql+psycopg://...). "
        "Default: $HWNAS_STORE if set (keeps a URL with a password out of shell history), else RUN_DIR/measurements.db. "
        "A password in the URL is never shown.",
    )(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")(f)


class RichReporter(Reporter):
    """The CLI's reporter: stages as rules, messages as lines and progress as bars, all on stderr."""

    def stage(self, title: str) -> None:
        console.rule(f"[bold]{escape(title)}")

    def message(self, text: str) -> None:
        console.print(text, markup=False, soft_wrap=True)

    def warning(self, text: str) -> None:
        console.print(f"[yellow]warning:[/] {escape(text)}", soft_wrap=True)

    @contextlib.contextmanager
    def progress(self, title: str, total: int, completed: int = 0):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        # count and ETA first, a short bar after: on a narrow terminal what is cut is the bar and description
        with Progress(TextColumn(f"[bold]{escape(title)}[/]"), MofNCompleteColumn(), TimeRemainingColumn(),
                      BarColumn(bar_width=20), TimeElapsedColumn(), TextColumn("{task.description}"),
                      console=console) as bar:
            task = bar.add_task("", total=total, completed=completed)
            try:
                yield _RichTask(bar, task)
            except BaseException:  # an error or Ctrl-C ends the command with one line: the bar is not left behind
                bar.live.transient = True
                raise


class _RichTask:
    def __init__(self, bar, task):
        self.bar, self.task = bar, task

    def advance(self, steps: int = 1, description: str = "") -> None:
        self.bar.update(self.task, advance=steps, description=escape(description))


def reporter(quiet: bool = False) -> Reporter:
    """What a command hands the library: silent with --json (stdout holds the JSON only), else rich on stderr."""
    return Reporter() if quiet else RichReporter()


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


def open_store(*args, **kwargs):
    """hwnas.store.open_store (same arguments), imported when a command opens a store, not when `--help` runs."""
    from hwnas.store import open_store as open_

    return open_(*args, **kwargs)


def parse_shape(text: str):
    from hwnas.measurement import shape_from_str

    return shape_from_str(text)


__all__ = [
    "HwnasError",
    "RichReporter",
    "console",
    "emit_json",
    "fmt",
    "json_option",
    "open_store",
    "parse_shape",
    "reporter",
    "results",
    "run_dir_option",
    "store_option",
    "table",
]
