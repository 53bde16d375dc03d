"""Shared pieces of the command line: one-line errors, JSON output, rich console, progress bars."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import sys
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn

from fcp_tune.fileio import write_error_log
from fcp_tune.launch import Terminated, stop_signals_raise
from fcp_tune.redact import redact

F = TypeVar("F", bound=Callable[..., Any])

console = Console()  # data: tables and results, on stdout
err_console = Console(stderr=True)  # progress, logs and errors, on stderr

JSON_SCHEMA_PREFIX = "fcp-tune/"


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on one line to stderr and exit with ``code``.

    Under torchrun every rank parses the same command line: only rank 0 prints, so a bad
    argument gives one line, not one per rank.
    """
    if os.environ.get("RANK", "0") == "0":
        err_console.print(f"[bold red]error:[/] {escape(redact(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def usage_error_line(message: str) -> None:
    """Print a usage error (typer's, e.g. ``Invalid value for '--nproc'``) as one ``error:`` line."""
    flat = " ".join(message.split())
    err_console.print(f"[bold red]error:[/] {escape(redact(flat))}", highlight=False, soft_wrap=True)


def cli_errors(fn: F) -> F:
    """Turn every exception into one ``error:`` line and a non-zero exit, never a traceback.

    Bad input (``ValueError``, ``OSError``, YAML errors) exits 2 with its message. Runtime
    failures keep their cause: a :class:`~fcp_tune.launch.RankFailure`'s failing rank
    traceback (``details``) or the exception's own traceback is written to a private log
    file the line names, and to stderr under ``fcp-tune --verbose``; anything unexpected
    is reported the same way as an internal error (exit 1). SIGTERM/SIGHUP stop the command
    (its ranks and temporary files go with it) with exit 128 + the signal's number.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with stop_signals_raise():
                return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Terminated as exc:
            fail(f"{exc}; stopped", code=128 + exc.signum)
        except KeyboardInterrupt:
            fail("interrupted", code=130)
        except (RuntimeError, TimeoutError) as exc:  # a failure while running, not bad input: keep the cause
            fail(_first_line(exc) + _keep_cause(exc))
        except (ValueError, OSError, yaml.YAMLError) as exc:
            fail(_first_line(exc))
        except MemoryError as exc:
            fail("out of memory; lower the sizes asked for" + _keep_cause(exc), code=1)
        except Exception as exc:  # noqa: BLE001 - the last resort: one line, the traceback in a log
            fail(internal_error(exc), code=1)

    return wrapper  # type: ignore[return-value]


def internal_error(exc: BaseException) -> str:
    """The line for an exception nobody expected (a bug): its type and message, and the log
    holding its traceback."""
    return f"internal error: {type(exc).__name__}: {_first_line(exc)}" + _keep_cause(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _keep_cause(exc: BaseException) -> str:
    """Write ``exc``'s traceback (a failing rank's, for ``RankFailure``) to a log; return the note."""
    details = getattr(exc, "details", "") or "".join(traceback.format_exception(exc))
    if _verbose():
        err_console.print(details, markup=False, highlight=False, soft_wrap=True)
    try:
        path = write_error_log(redact(f"fcp-tune error: {exc}\n\n{details}"))
    except OSError:
        return ""
    return f" (traceback: {path})"


def _verbose() -> bool:
    """Whether ``fcp-tune --verbose`` was given (read from the root command context).

    Recent typer releases bundle their own click (``typer._click``), older ones use click.
    """
    for module in ("typer._click.globals", "click.globals"):
        try:
            ctx = importlib.import_module(module).get_current_context(silent=True)
        except ImportError:
            continue
        if ctx is not None:
            return bool(ctx.find_root().params.get("verbose"))
    return False


def json_document(data: dict[str, Any], schema: str, version: int = 1) -> dict[str, Any]:
    """``data`` as a ``--json`` document: an object that starts with ``schema``
    (``fcp-tune/<schema>``) and ``schema_version``, unless ``data`` names its own."""
    if not isinstance(data, dict):
        raise TypeError(f"--json output must be an object, got {type(data).__name__}")
    head = {"schema": JSON_SCHEMA_PREFIX + schema, "schema_version": version}
    return {**head, **data} if "schema" not in data else {**data}


def print_json(data: dict[str, Any], schema: str, version: int = 1) -> None:
    """Write ``data`` (see :func:`json_document`) as JSON to stdout (no rich markup), for machines."""
    sys.stdout.write(json.dumps(json_document(data, schema, version), indent=2, default=str) + "\n")
    sys.stdout.flush()


def split_names(values: list[str] | None) -> list[str]:
    """``--compare a,b --compare c`` -> ``[a, b, c]``."""
    out: list[str] = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def progress_bar(*extra: ProgressColumn, **kwargs: Any) -> Progress:
    """The commands' progress bar: description, bar, done/total, elapsed, then ``extra`` columns.

    On stderr (data goes to stdout), and only drawn on a terminal.
    """
    kwargs.setdefault("console", err_console)
    kwargs.setdefault("transient", True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    *extra, **kwargs)


@contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner with ``message`` on stderr while a block runs (drawn only on a terminal)."""
    with err_console.status(message):
        yield


@contextmanager
def counting_progress(description: str, total: int) -> Iterator[Callable[[Any], None]]:
    """A progress bar advanced once per event; yields the ``on_event`` callback to pass on."""
    with progress_bar() as bar:
        task = bar.add_task(description, total=total)
        yield lambda _event: bar.advance(task)


def require_extra(module: str, extra: str, what: str) -> None:
    """Fail in one line naming the optional extra to install when ``module`` is missing."""
    if importlib.util.find_spec(module) is None:
        fail(f"{what} needs the optional extra '{extra}': pip install 'fcp-tune[{extra}]' (or pip install {module})")


@contextmanager
def search_progress(trials: int) -> Iterator[Callable[[int, int, float], None]]:
    """A progress bar over ``trials`` with the best value so far; yields the ``on_trial`` callback."""
    with progress_bar(TextColumn("best {task.fields[best]}")) as bar:
        task = bar.add_task("searching", total=trials, best="-")
        best = [float("inf")]

        def on_trial(done: int, total: int, value: float) -> None:
            if value == value:  # not NaN
                best[0] = min(best[0], value)
            bar.update(task, completed=done, best=f"{best[0]:.4g} s")

        yield on_trial
