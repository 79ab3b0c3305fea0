"""TupleRows: rows held as tuples in a known column order, for generate()s that keep rows compactly.

A generate() may return a :class:`TupleRows` instead of dicts.  Iterating it yields dicts
(the generate() contract); the SQLite adapter instead reads :meth:`TupleRows.tuples` and
maps its columns to the table's once per scan, so no dict is built per row.  Tuples may be
shorter than ``columns`` (rows stored before a column was known): the missing tail is NULL.

The adapter converts every value on its way into SQLite (host text through
:func:`tables.text.to_sql`, integers beyond SQLite's 64 bits to their decimal text).  A
generate() that reads its rows column by column (the event stores' blocks) can do that
for a whole column at once with :func:`sql_column`, in C-level passes, and say so with
``TupleRows(..., sql_ready=True)``: the adapter then hands the values over as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .spec import Row
from .text import to_sql

__all__ = ["TupleRows", "sql_column", "sql_value"]

#: Position given to a table column the rows do not have: indexing with it raises IndexError -> NULL.
MISSING = 1 << 30


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def sql_value(value: Any) -> Any:
    """One value as SQLite gets it: host text kept whole (escaped where not UTF-8), integers exact."""
    if value.__class__ is str:
        return value if value.isascii() and "\\x" not in value else to_sql(value)
    if value.__class__ is int and not _INT64_MIN <= value <= _INT64_MAX:
        return str(value)  # beyond SQLite's integers (an overlayfs inode): exact, as decimal text
    return value


def sql_column(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """:func:`sql_value` of every value of a column; ``values`` itself when none changes (the usual case).

    The usual columns are checked whole, in C: all text that is ASCII without a backslash-x,
    or all numbers within SQLite's integers (first without NULLs, then with them); other
    columns go value by value.
    """
    if not values:
        return values
    kind = values[0].__class__
    try:
        if kind is str:
            text = "".join(values)  # TypeError when a value is not text (NULL): the general check below
            if text.isascii() and "\\x" not in text:
                return values
        elif (kind is int or kind is float) and min(values) >= _INT64_MIN and max(values) <= _INT64_MAX:
            return values  # (floats compare with the bounds too: one beyond them only takes the slow way)
    except TypeError:
        pass
    try:
        text = "".join(filter(None, values))  # TypeError unless every value but NULL and "" is text
    except TypeError:
        try:
            low, high = min(filter(None, values), default=0), max(filter(None, values), default=0)
            if low >= _INT64_MIN and high <= _INT64_MAX:
                return values
        except TypeError:  # text and numbers mixed, or bytes
            pass
    else:
        if text.isascii() and "\\x" not in text:
            return values
    return tuple(map(sql_value, values))


class TupleRows(Iterable[Row]):
    """``tuples`` (an iterable of tuples) whose values are in ``columns`` order.

    ``sql_ready``: the values went through :func:`sql_value` already (the adapter need not).
    """

    __slots__ = ("_tuples", "columns", "sql_ready")

    def __init__(self, columns: Sequence[str], tuples: Iterable[tuple[Any, ...]], *, sql_ready: bool = False) -> None:
        self.columns = tuple(columns)
        self._tuples = tuples
        self.sql_ready = sql_ready

    def tuples(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._tuples)

    def positions(self, names: Sequence[str]) -> list[int]:
        """For each of ``names`` (a table's columns), its index in the tuples (MISSING: none)."""
        index = {name: i for i, name in enumerate(self.columns)}
        return [index.get(name, MISSING) for name in names]

    def __iter__(self) -> Iterator[Row]:
        columns = self.columns
        for values in self._tuples:
            yield dict(zip(columns, values, strict=False))

    def close(self) -> None:
        """End an unfinished scan now (a generator's finally blocks run)."""
        close = getattr(self._tuples, "close", None)
        if close is not None:
            close()
