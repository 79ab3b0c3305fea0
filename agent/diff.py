"""Differential results as osquery computes them: rows compared as whole maps, duplicates as a multiset."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

__all__ = ["Row", "StreamingDiff", "diff", "row_key"]

#: One result row: column name -> string value.
Row = Mapping[str, Any]


def _keys(rows: Sequence[Row], columns: tuple[str, ...]) -> list[Hashable]:
    """Hashable row identities: the values in ``columns`` order, so equal maps get equal keys.

    Rows with the usual column order (all rows of one query) cost one tuple each; a row
    with other columns is keyed by its sorted items, which cannot equal a usual row's key.
    """
    if all(isinstance(r, dict) for r in rows) and all(map(columns.__eq__, map(tuple, rows))):
        dicts = cast("Sequence[dict[str, Any]]", rows)  # checked just above
        return list(map(tuple, map(dict.values, dicts)))  # the usual case, in C-level loops
    keys: list[Hashable] = []
    append = keys.append
    wanted = set(columns)
    for row in rows:
        if tuple(row) == columns:
            append(tuple(row.values()))
        elif row.keys() == wanted:
            append(tuple(row[c] for c in columns))
        else:
            append(("\0other", tuple(sorted(row.items()))))
    return keys


def row_key(row: Row, columns: tuple[str, ...] | None = None) -> Hashable:
    """The identity diff() uses for ``row`` (its values in ``columns`` order)."""
    return _keys([row], tuple(row) if columns is None else columns)[0]


def diff(previous: Sequence[Row], current: Sequence[Row]) -> tuple[list[Row], list[Row]]:
    """(added, removed): rows of ``current`` not in ``previous`` and rows of ``previous`` gone.

    A row present twice before and once now is removed once (multiset semantics).
    ``added`` keeps the order of ``current``; ``removed`` the order of ``previous``.
    """
    if len(previous) == len(current) and previous == current:
        return [], []  # the common case: nothing changed (one C-level comparison)
    if not previous:
        return list(current), []
    if not current:
        return [], list(previous)
    columns = tuple(current[0])
    previous_keys = _keys(previous, columns)
    remaining: dict[Hashable, int] = {}
    for key in previous_keys:
        remaining[key] = remaining.get(key, 0) + 1
    added: list[Row] = []
    for row, key in zip(current, _keys(current, columns), strict=False):
        count = remaining.get(key, 0)
        if count:
            remaining[key] = count - 1
        else:
            added.append(row)
    removed: list[Row] = []
    for row, key in zip(previous, previous_keys, strict=False):
        count = remaining.get(key, 0)
        if count:
            remaining[key] = count - 1
            removed.append(row)
    return added, removed


#: A stored previous row: values in the stored columns' order, or (rows with other columns) a map.
StoredRow = tuple[Any, ...] | Mapping[str, Any]


class StreamingDiff:
    """:func:`diff` for a run whose rows stream in: fed one current row at a time.

    Current rows are value tuples in ``columns`` order; :meth:`feed` says whether a row is
    added.  The previous rows (``previous()`` reads them again each time it is called,
    e.g. from the stored blob) are read twice: counted into a multiset of keys first,
    and at the end the unmatched ones are reported as removed, in their stored order.
    Rows compare as maps: stored rows with the same columns in another order match.
    Only the previous keys are held in memory, never the rows as maps.

    ``key`` maps a row's values (in ``columns`` order) to what is compared: the runner
    passes their text as the result log prints them, so rows compare as osquery compares
    them (typed values that print the same are equal; previous results stored as text
    match typed ones).  None compares the values themselves.
    """

    def __init__(
        self,
        columns: Sequence[str],
        previous_columns: Sequence[str],
        previous: Callable[[], Iterable[StoredRow]],
        *,
        key: Callable[[tuple[Any, ...]], Hashable] | None = None,
    ) -> None:
        self.columns = tuple(columns)
        self.previous_columns = tuple(previous_columns)
        self._previous = previous
        self._as_key = key
        self._remaining: dict[Hashable, int] = {}
        self.added = 0
        if self.previous_columns == self.columns:
            self._reorder: tuple[int, ...] | None = None
        elif sorted(self.previous_columns) == sorted(self.columns) and len(set(self.columns)) == len(self.columns):
            self._reorder = tuple(self.previous_columns.index(c) for c in self.columns)
        else:
            self._reorder = ()  # no stored tuple can match
        remaining = self._remaining
        for row in previous():
            stored = self._key(row)
            remaining[stored] = remaining.get(stored, 0) + 1

    def _key(self, row: StoredRow) -> Hashable:
        values: tuple[Any, ...]
        if isinstance(row, tuple):
            if self._reorder is None:
                values = row
            elif self._reorder:
                values = tuple(row[i] for i in self._reorder)
            else:
                return ("\0other", tuple(sorted(zip(self.previous_columns, row, strict=False))))
        elif row.keys() == set(self.columns) and len(row) == len(self.columns):
            values = tuple(row[c] for c in self.columns)
        else:
            return ("\0other", tuple(sorted(row.items())))
        return values if self._as_key is None else self._as_key(values)

    def feed(self, values: tuple[Any, ...]) -> bool:
        """True when this current row is added (no unmatched previous row equals it)."""
        key = values if self._as_key is None else self._as_key(values)
        count = self._remaining.get(key, 0)
        if count:
            if count == 1:
                del self._remaining[key]
            else:
                self._remaining[key] = count - 1
            return False
        self.added += 1
        return True

    @property
    def changed(self) -> bool:
        """After every current row was fed: True when a row was added or a previous row is gone."""
        return bool(self.added or self._remaining)

    def removed(self) -> Iterator[tuple[tuple[str, ...], tuple[Any, ...]]]:
        """(columns, values) of the previous rows no current row matched, in their stored order."""
        remaining = self._remaining
        if not remaining:
            return
        for row in self._previous():
            key = self._key(row)
            count = remaining.get(key, 0)
            if not count:
                continue
            if count == 1:
                del remaining[key]
            else:
                remaining[key] = count - 1
            if isinstance(row, tuple):
                yield self.previous_columns, row
            else:
                yield tuple(row), tuple(row.values())
            if not remaining:
                return
