"""Plain-text tables for the terminal: the one renderer behind `videomaker score`, `compare` and `nightly`."""

from __future__ import annotations

from collections.abc import Sequence


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: Sequence[int] = (0,)) -> str:
    """Columns padded to their widest cell, two spaces apart, under a rule of dashes.

    Args:
        header: Column titles.
        rows: Cells as strings, one list per row, as many as `header`.
        text_columns: Indices of the left-aligned columns (negative counts from the end); the others
            (numbers) are right-aligned.

    Returns:
        The table without trailing spaces on any line.

    Example:
        >>> print(render_table(["set", "N"], [["object", "24"]]))
        set      N
        ------  --
        object  24
    """
    rows = [list(map(str, row)) for row in rows]
    for number, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise ValueError(f"`rows` row {number} has {len(row)} cells for {len(header)} columns: {row!r}.")
    left = {i % len(header) for i in text_columns} if header else set()
    widths = [max(len(line[i]) for line in [list(header), *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = (c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "  ".join(padded).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
