"""The `hwnas` command: a thin layer over the Python API (each command calls a public function)."""
from __future__ import annotations

import click

from hwnas import __version__
from hwnas.errors import HwnasError


class UserError(click.ClickException):
    """Bad input: one line on stderr, exit code 2, nothing stored changed."""

    exit_code = 2


class HwnasGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # stage order (profile, fit, search, export), not alphabetical

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HwnasError as e:
            raise UserError(str(e)) from None
        except OSError as e:  # a path that cannot be read or written (a folder under a file, no permission, disk full)
            where = f" {e.filename}" if e.filename else ""
            raise UserError(f"cannot use{where}: {e.strerror or e}; give a path that can be read or written") from None


@click.group(cls=HwnasGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="hwnas")
def cli() -> None:
    """Hardware-aware NAS: profile a device, fit latency/energy predictors, search under a budget, export.

    Start with `hwnas run` (every stage with defaults) or `hwnas devices`."""


def _add_commands() -> None:
    # One module per stage; the order here is the order `hwnas --help` lists them in.
    from hwnas.commands import export, fit, profile, run, search

    for command in (profile.devices, profile.profile, profile.measurements, fit.fit, fit.predict, search.search,
                    export.export, export.validate, run.run):
        cli.add_command(command)


_add_commands()


def main() -> None:
    cli(prog_name="hwnas")


if __name__ == "__main__":
    main()
