"""Rich tables that show every number whole on a narrow terminal.

A command builds its :class:`rich.table.Table` as usual and prints it with
:func:`print_table`. If the table is wider than the console, :func:`fit_table` first lets
cells with several words wrap (down to their longest word), and if that is not enough
splits the columns into several tables, each repeating the ``keys`` leading columns (the
ones that name a row: policy, step, ...), so every table fits. No cell is ever cut: column
widths are set explicitly to at least the longest word of each column, so rich never
truncates with an ellipsis. ``wide=True`` prints the one full table at its natural width
(``--wide`` on the command line); ``--json`` has everything anyway.

The functions are pure in what they return (new tables; the input is not modified), so
any column another part of the code adds to a table is laid out the same way.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Optional

import typer
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.segment import Segments
from rich.table import Column, Table
from rich.text import Text


def wide_option() -> Any:
    """The ``--wide`` option every command with tables takes."""
    return typer.Option(False, "--wide", help="Print full tables at their natural width (may exceed the terminal).")


@dataclasses.dataclass(frozen=True)
class ColumnWidth:
    """What a column needs: ``natural`` (every cell on one line) and ``minimum`` (longest word)."""

    natural: int
    minimum: int


def _cell_width(console: Console, cell: RenderableType) -> ColumnWidth:
    """Natural and minimum width of one cell (a string with markup, a Text or any renderable)."""
    if isinstance(cell, str):
        cell = console.render_str(cell)
    if isinstance(cell, Text):
        lines = cell.plain.split("\n")
        words = [w for line in lines for w in line.split()]
        return ColumnWidth(max((cell_len(line) for line in lines), default=0),
                           max((cell_len(w) for w in words), default=0))
    m = Measurement.get(console, console.options, cell)
    return ColumnWidth(m.maximum, m.minimum)


def column_width(console: Console, column: Column) -> ColumnWidth:
    """The widths ``column`` needs to show its header and every cell with no word cut."""
    if column.width is not None:
        return ColumnWidth(column.width, column.width)
    cells = [_cell_width(console, column.header)] + [_cell_width(console, c) for c in column._cells]
    natural = max(c.natural for c in cells)
    minimum = max(c.minimum for c in cells)
    return ColumnWidth(max(natural, column.min_width or 0), max(minimum, column.min_width or 0))


def overhead(table: Table, columns: int) -> int:
    """Characters a table of ``columns`` columns spends on borders and padding."""
    _, right, _, left = table.padding
    pad = (left + right) * columns
    if not table.pad_edge and columns:
        pad -= left + right
    borders = 0
    if table.box is not None:
        borders = max(0, columns - 1) + (2 if table.show_edge else 0)
    return pad + borders


def _widths(table: Table, needs: list[ColumnWidth], width: int) -> Optional[list[int]]:
    """Column widths that fit ``width`` (wrapping multi-word columns, widest first), or None."""
    budget = width - overhead(table, len(needs))
    widths = [n.natural for n in needs]
    if sum(n.minimum for n in needs) > budget:
        return None
    excess = sum(widths) - budget
    while excess > 0:
        # Shrink the column with the most room above its minimum by one character.
        i = max(range(len(widths)), key=lambda j: (widths[j] - needs[j].minimum, widths[j]))
        widths[i] -= 1
        excess -= 1
    return widths


def _piece(table: Table, indices: list[int], widths: list[int], title: Any) -> Table:
    """A copy of ``table`` with only the columns ``indices`` at fixed ``widths``."""
    out = copy.copy(table)
    out.columns = [
        dataclasses.replace(table.columns[i], width=w, min_width=None, max_width=None, no_wrap=False,
                            overflow="fold", ratio=None, _index=k)
        for k, (i, w) in enumerate(zip(indices, widths))
    ]
    out.title = title
    out.width = None
    out.min_width = None
    out.expand = False
    return out


def _groups(table: Table, needs: list[ColumnWidth], width: int, keys: int) -> list[list[int]]:
    """Column indices per piece: the key columns, then the others in order, in as few pieces as fit.

    Among the splits into that fewest number of pieces (contiguous runs of the other
    columns), the one whose widest piece is narrowest wins, so the pieces look alike.
    """
    n = len(needs)
    keys = min(keys, n)
    head = list(range(keys))
    rest = list(range(keys, n))
    if not rest or _widths(table, needs, width) is not None:
        return [list(range(n))]

    def fits(run: list[int]) -> bool:
        return len(run) == 1 or _widths(table, [needs[j] for j in head + run], width) is not None

    def span(run: list[int]) -> int:
        return sum(needs[j].natural for j in head + run) + overhead(table, keys + len(run))

    # best[i] = (pieces, widest piece) for rest[:i]; prev[i] = where its last piece starts.
    best: list[tuple[int, int]] = [(0, 0)] + [(n + 1, 0)] * len(rest)
    prev = [0] * (len(rest) + 1)
    for i in range(1, len(rest) + 1):
        for j in range(i):
            run = rest[j:i]
            if best[j][0] > n or not fits(run):
                continue
            cand = (best[j][0] + 1, max(best[j][1], span(run)))
            if cand < best[i]:
                best[i], prev[i] = cand, j
    groups: list[list[int]] = []
    i = len(rest)
    while i > 0:
        groups.append(head + rest[prev[i]:i])
        i = prev[i]
    return groups[::-1]


def fit_table(table: Table, width: int, keys: int = 1, console: Optional[Console] = None) -> list[Table]:
    """``table`` as one or more tables no wider than ``width``, no number cut.

    ``keys`` leading columns are repeated in every piece so each row stays identifiable.
    A table that fits comes back as one piece (with fixed column widths); pieces of a
    split table are titled ``<title> (i/n)``; the caption goes with the last one.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    if keys < 0:
        raise ValueError(f"keys must be >= 0, got {keys}")
    if not table.columns:
        return [table]
    console = console or Console(width=width)
    needs = [column_width(console, c) for c in table.columns]
    groups = _groups(table, needs, width, keys)
    pieces = []
    for k, idx in enumerate(groups, 1):
        sub = [needs[i] for i in idx]
        widths = _widths(table, sub, width) or [n.minimum for n in sub]
        title = table.title
        if len(groups) > 1 and title is not None:
            title = Text.assemble(console.render_str(title) if isinstance(title, str) else title,
                                  f" ({k}/{len(groups)})")
        piece = _piece(table, idx, widths, title)
        if title is not None:  # at least as wide as the title's longest word: the title wraps, never cuts
            piece.min_width = min(width, _cell_width(console, title).minimum)
        if k < len(groups):
            piece.caption = None
        pieces.append(piece)
    return pieces


def natural_width(table: Table, console: Console) -> int:
    """Width of ``table`` with every cell on one line."""
    needs = [column_width(console, c) for c in table.columns]
    return sum(n.natural for n in needs) + overhead(table, len(needs))


def print_table(table: Table, console: Console, keys: int = 1, wide: bool = False) -> None:
    """Print ``table`` to ``console``: fitted to its width, or whole at natural width with ``wide``."""
    if wide:
        width = max(console.width, natural_width(table, console))
        full = fit_table(table, width, keys=len(table.columns), console=console)[0]
        if full.title is not None:  # the whole title on one line too
            width = max(width, _cell_width(console, full.title).natural)
            full.min_width = _cell_width(console, full.title).natural
        lines = console.render_lines(full, console.options.update(width=width), pad=False, new_lines=True)
        console.print(Segments([seg for line in lines for seg in line]), crop=False, soft_wrap=True, end="")
        return
    for piece in fit_table(table, console.width, keys=keys, console=console):
        console.print(piece)
