"""Differential results as osquery computes them: rows compared as whole maps, duplicates as a multiset."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, cast

__all__ = ["Row", "diff", "row_key"]

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
