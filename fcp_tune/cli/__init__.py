"""The ``fcp-tune`` command line: parse, call the library, render with rich.

Each command lives in its own module and registers itself on :data:`app`; every
command's work is a library function callable from Python.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer
from typer.core import TyperGroup

from fcp_tune import __version__


class OneLineErrors(TyperGroup):
    """The root command group: typer's own usage errors (an unknown option, a value out of
    range, a missing argument) become one ``error:`` line and exit 2, like every other error,
    instead of a boxed usage panel. A bare ``fcp-tune`` still prints the help."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        try:  # recent typer bundles its own click
            from typer._click.exceptions import ClickException, NoArgsIsHelpError
        except ImportError:  # pragma: no cover - older typer on click
            from click.exceptions import ClickException, NoArgsIsHelpError
        Abort = typer.Abort

        from fcp_tune.cli.common import internal_error, usage_error_line

        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = code if isinstance(code, int) else 0
        except NoArgsIsHelpError as exc:
            typer.echo(exc.ctx.get_help() if exc.ctx is not None else str(exc))
            code = exc.exit_code
        except ClickException as exc:
            usage_error_line(exc.format_message())
            code = exc.exit_code
        except Abort:
            usage_error_line("aborted")
            code = 1
        except Exception as exc:  # noqa: BLE001 - outside any command (a callback, a converter): still one line
            usage_error_line(internal_error(exc))
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code)


app = typer.Typer(
    cls=OneLineErrors,
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


def _readable_metavars() -> None:
    """Give every option a metavar users understand (``INTEGER``, ``FLOAT``, ``TEXT``, ``PATH``)
    where its command did not name one, instead of typer's ``<int>`` / ``<str>``; flags show none.
    Help texts are shown literally (a ``[default: ...]`` in them is text, not rich markup)."""
    import inspect
    import typing
    from pathlib import Path

    names = {int: "INTEGER", float: "FLOAT", str: "TEXT", Path: "PATH", bool: ""}
    commands = list(app.registered_commands)
    commands += [c for g in app.registered_groups if g.typer_instance for c in g.typer_instance.registered_commands]
    for info in commands:
        fn = info.callback
        if fn is None:
            continue
        hints = typing.get_type_hints(getattr(fn, "__wrapped__", fn))
        for name, param in inspect.signature(fn).parameters.items():
            opt = param.default
            if not isinstance(opt, (typer.models.OptionInfo, typer.models.ArgumentInfo)):
                continue
            if opt.help and "\\[" not in opt.help:
                opt.help = opt.help.replace("[", "\\[")
            if opt.metavar or isinstance(opt, typer.models.ArgumentInfo):  # an argument shows its name
                continue
            kind = hints.get(name)
            if typing.get_origin(kind) is typing.Union:  # Optional[X] -> X
                kind = next(a for a in typing.get_args(kind) if a is not type(None))
            base = typing.get_args(kind)[0] if typing.get_origin(kind) is list else kind
            if base in names:
                opt.metavar = names[base]


_register_commands()
_readable_metavars()


def main() -> None:
    """Console-script entry point."""
    app()
