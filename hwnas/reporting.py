"""How the library reports progress and messages without knowing who listens.

Library functions take a `reporter` (default: `NullReporter`, silent) and call `stage`, `message` and `progress`
on it; the CLI passes a rich-backed one (hwnas.commands.common), a notebook may pass `LoggingReporter` or its own.
Nothing here imports the command layer, and nothing in the library imports rich for output.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Protocol

log = logging.getLogger("hwnas")


class ProgressTask(Protocol):
    def advance(self, steps: int = 1, description: str = "") -> None: ...


class Reporter:
    """The interface, and a silent implementation: subclasses override what they show."""

    def stage(self, title: str) -> None:
        """A new stage of a long job starts (`hwnas run`: profile, fit, search, export)."""

    def message(self, text: str) -> None:
        """One line of progress (an epoch's figures, a measurement's verdict)."""

    def warning(self, text: str) -> None:
        """Something the user should know that does not stop the work."""

    @contextlib.contextmanager
    def progress(self, title: str, total: int, completed: int = 0) -> Iterator[ProgressTask]:
        """A bar of `total` steps; the body calls `task.advance()` per step."""
        yield _SilentTask()


class _SilentTask:
    def advance(self, steps: int = 1, description: str = "") -> None:
        pass


NullReporter = Reporter


class LoggingReporter(Reporter):
    """Every report as a record of the `hwnas` logger (progress bars as one line per tenth)."""

    def stage(self, title: str) -> None:
        log.info("== %s", title)

    def message(self, text: str) -> None:
        log.info("%s", text)

    def warning(self, text: str) -> None:
        log.warning("%s", text)

    @contextlib.contextmanager
    def progress(self, title: str, total: int, completed: int = 0) -> Iterator[ProgressTask]:
        task = _LoggedTask(title, total, completed)
        yield task


class _LoggedTask:
    def __init__(self, title: str, total: int, completed: int):
        self.title, self.total, self.done = title, max(1, total), completed

    def advance(self, steps: int = 1, description: str = "") -> None:
        before = 10 * self.done // self.total
        self.done += steps
        if 10 * self.done // self.total != before or self.done >= self.total:
            log.info("%s: %d/%d %s", self.title, self.done, self.total, description)


def reporter_or_null(reporter: Reporter | None) -> Reporter:
    return reporter if reporter is not None else Reporter()
