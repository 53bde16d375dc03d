"""The ``fcp-tune`` command line: parse, call the library, render with rich.

Each command lives in its own module and registers itself on :data:`app`; every
command's work is a library function callable from Python.
"""

from __future__ import annotations

from typing import Optional

import typer

from fcp_tune import __version__

app = typer.Typer(
    name="fcp-tune",
    help="Flexible context parallelism for variable-length LLM training: profile, search, run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"fcp-tune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", help="On a failure, also print the failing rank's traceback."),
) -> None:
    """Flexible context parallelism for variable-length LLM training."""


def _register_commands() -> None:
    """Import each command module; each adds its commands to :data:`app`."""
    from fcp_tune.cli import demo  # noqa: F401
    from fcp_tune.cli import workload  # noqa: F401
    from fcp_tune.cli import profile  # noqa: F401
    from fcp_tune.cli import run  # noqa: F401
    from fcp_tune.cli import validate  # noqa: F401
    from fcp_tune.cli import search  # noqa: F401
    from fcp_tune.cli import simulate  # noqa: F401
    from fcp_tune.cli import report  # noqa: F401


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app()
