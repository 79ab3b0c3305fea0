"""TupleRows: rows held as tuples in a known column order, for generate()s that keep rows compactly.

A generate() may return a :class:`TupleRows` instead of dicts.  Iterating it yields dicts
(the generate() contract); the SQLite adapter instead reads :meth:`TupleRows.tuples` and
maps its columns to the table's once per scan, so no dict is built per row.  Tuples may be
shorter than ``columns`` (rows stored before a column was known): the missing tail is NULL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .spec import Row

__all__ = ["TupleRows"]

#: Position given to a table column the rows do not have: indexing with it raises IndexError -> NULL.
MISSING = 1 << 30


class TupleRows(Iterable[Row]):
    """``tuples`` (an iterable of tuples) whose values are in ``columns`` order."""

    __slots__ = ("_tuples", "columns")

    def __init__(self, columns: Sequence[str], tuples: Iterable[tuple[Any, ...]]) -> None:
        self.columns = tuple(columns)
        self._tuples = tuples

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
