"""The `hwnas` command: a thin layer over the Python API (each command calls a public function).

Commands are imported when they run, not when `hwnas` starts: `hwnas --help` lists them from the table below
without importing torch. Every way a command can end badly is one line on stderr: bad input (a HwnasError or an
unusable path) exits 2, Ctrl-C exits 130 with "interrupted" (no traceback, and the writes are atomic, so no partial
file remains).
"""
from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import warnings

import click

from hwnas import __version__
from hwnas.errors import HwnasError

#: the most characters an error line holds (what it quotes is already cut by hwnas.errors.quote)
MESSAGE_LIMIT = 600

#: name -> (module in hwnas.commands, attribute, one-line help for `hwnas --help`); the order is the stage order
COMMANDS: dict[str, tuple[str, str, str]] = {
    "devices": ("profile", "devices", "Which backends and energy meters work on this machine, and why the others don't."),
    "profile": ("profile", "profile",
                "Measure architectures of a space on this device and keep every measurement in the store."),
    "agent": ("agent", "agent", "Serve this device's backend to hwnas on other machines, and make a token for it."),
    "measurements": ("profile", "measurements", "List, export and import stored measurements."),
    "fit": ("fit", "fit", "Fit a latency or energy predictor and save it (parameters and metadata, no pickles)."),
    "predict": ("fit", "predict", ("Predict latency or energy with a saved predictor, for architectures or for every "
                                   "row of a CSV file.")),
    "search": ("search", "search", "Search for the most accurate architecture within a latency (and/or energy) budget."),
    "export": ("export", "export", ("Export an architecture as a deployable bundle: ONNX (optionally int8 and a "
                                    "TensorRT engine), weights, parity inputs and a manifest.")),
    "validate": ("export", "validate", "Re-check a bundle written by `hwnas export`, here and now."),
    "run": ("run", "run", ("Profile this device, fit a latency predictor, search under the budget, retrain, export "
                           "to ONNX and measure the exported model against the budget.")),
}


class UserError(click.ClickException):
    """Bad input: one line on stderr, exit code 2, nothing stored changed."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(one_line(message))


class Interrupted(Exception):
    """Ctrl-C during a command: `main` prints one line and exits 130."""


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """An error message as one line of at most `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 25] + f"... ({len(text)} characters)"


class HwnasGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)  # stage order (profile, fit, search, export), not alphabetical

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[name]
        try:
            return getattr(importlib.import_module(f"hwnas.commands.{module}"), attribute)
        except KeyboardInterrupt:  # Ctrl-C while torch and friends import: one line, not click's "Aborted!"
            raise Interrupted() from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table, so that `hwnas --help` imports no command (nor torch)."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, _short(text, limit)) for name, (_, _, text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HwnasError as e:
            raise UserError(str(e)) from None
        except KeyboardInterrupt:
            raise Interrupted() from None
        except MemoryError:  # what the memory estimates did not foresee
            raise UserError("not enough memory for this request; use a smaller --input-shape, --batch or space "
                            "setting") from None
        except OSError as e:  # a path that cannot be read or written (a folder under a file, no permission, disk full)
            where = f" {e.filename}" if e.filename else ""
            raise UserError(f"cannot use{where}: {e.strerror or e}; give a path that can be read or written") from None


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(10, limit - 3)].rsplit(" ", 1)[0] + "..."


@click.group(cls=HwnasGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="hwnas")
def cli() -> None:
    """Hardware-aware NAS: profile a device, fit latency/energy predictors, search under a budget, export.

    Start with `hwnas run` (every stage with defaults) or `hwnas devices`."""


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """hwnas's own warnings (e.g. hwnas.conversion.ExporterWarning) as one line; others keep Python's form."""
    if category.__module__.split(".")[0] == "hwnas":
        click.echo(f"warning: {one_line(str(message))}", err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def _on_interrupt(signum, frame) -> None:
    """Ctrl-C: a KeyboardInterrupt, as Python's own handler raises, except while a module is being imported. The
    commands import torch and friends when they start, and an interrupt landing inside a library's import can be
    swallowed there and leave it half-initialised (numpy then fails with a RecursionError, not "interrupted"), so
    then the process ends at once: "interrupted", exit 130."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            sys.stderr.write("\ninterrupted\n")
            sys.stderr.flush()
            os._exit(130)
        frame = frame.f_back
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """The console entry point: click's own usage errors keep their form; a HwnasError is one line and exit 2;
    Ctrl-C, even while the libraries are still importing, is "interrupted" and exit 130."""
    warnings.showwarning = _one_line_warning
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where SIGINT is ignored (`cmd &`)
        signal.signal(signal.SIGINT, _on_interrupt)
    # SQLAlchemy's pool logs a traceback when Ctrl-C lands while it resets a connection; the interrupt is already
    # one line ("interrupted") and the transaction is rolled back by SQLite, so that log is noise here
    pool_log = logging.getLogger("sqlalchemy.pool")
    pool_log.addHandler(logging.NullHandler())
    pool_log.propagate = False
    try:
        cli.main(args=argv, prog_name="hwnas", standalone_mode=False)
    except (Interrupted, KeyboardInterrupt, click.Abort):
        _fail("interrupted", 130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except BrokenPipeError:  # `hwnas ... | head`
        sys.exit(1)


def _fail(message: str, code: int) -> None:
    try:
        click.echo(message, err=True)
    finally:
        sys.exit(code)


if __name__ == "__main__":
    main()
