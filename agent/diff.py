"""Differential results as osquery computes them: rows compared as whole maps, duplicates as a multiset."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

__all__ = ["HOLD_BYTES", "HOLD_ROWS", "Row", "StreamingDiff", "diff", "row_key"]

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

#: First item of the key of a stored row that cannot match a current row (its columns differ).
_OTHER = object()

#: :meth:`StreamingDiff.push` holds at most this many rows without a typed twin (or this many bytes of
#: their items) before it indexes the previous rows left by their text.
HOLD_ROWS = 4096
HOLD_BYTES = 1 << 20

T = TypeVar("T")


class StreamingDiff:
    """:func:`diff` for a run whose rows stream in: fed one current row at a time.

    Current rows are value tuples in ``columns`` order; :meth:`feed` says whether a row is
    added.  The previous rows (``previous()`` reads them again each time it is called,
    e.g. from the stored blob) are read twice: counted into a multiset of keys first,
    and at the end the unmatched ones are reported as removed, in their stored order.
    Rows compare as maps: stored rows with the same columns in another order match.
    Only the previous keys are held in memory, never the rows as maps.

    ``text`` (the runner passes :func:`agent.results.stringify`) makes rows compare as
    osquery compares them: as the text the result log prints.  Values typed as SQLite gave
    them are looked up as they are first, so a run where nothing changed prints nothing
    (the key of a row with a float also holds its values' types: 1 == 1.0 in Python, but
    they print differently).  A row without a typed twin is then matched by its text
    against the previous rows left: a value whose type moved but prints the same, or
    previous results an older agentd stored as text, is no change.  That lookup uses an
    index of the text's hashes of the previous rows left; :meth:`push` defers it, holding
    such rows (a bounded number: ``HOLD_ROWS``, ``HOLD_BYTES``) until :meth:`finish`, when
    few previous rows are left to index (the usual run: few rows changed).  Without
    ``text``, values compare as Python compares them.
    """

    def __init__(
        self,
        columns: Sequence[str],
        previous_columns: Sequence[str],
        previous: Callable[[], Iterable[StoredRow]],
        *,
        text: Callable[[Any], str] | None = None,
    ) -> None:
        self.columns = tuple(columns)
        self.previous_columns = tuple(previous_columns)
        self._previous = previous
        self._text = text
        self._by_text: dict[int, Any] | None = None  # hash of a previous key's text -> the key (or a list)
        self._types: dict[tuple[type, ...], tuple[type, ...]] = {}  # one tuple per types seen (keys share it)
        self._held: list[tuple[tuple[Any, ...], Any]] = []  # (values, item) of rows push() has not decided
        self._held_bytes = 0
        self._remaining: dict[tuple[Any, ...], int] = {}
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

    def _typed(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """The typed key of a row: its values, and with a float among them (and ``text``) their types."""
        if self._text is not None:
            types = tuple(map(type, values))
            if float in types:
                return (*values, self._types.setdefault(types, types))
        return values

    def _key(self, row: StoredRow) -> tuple[Any, ...]:
        values: tuple[Any, ...]
        if isinstance(row, tuple):
            if self._reorder is None:
                values = row
            elif self._reorder:
                values = tuple(row[i] for i in self._reorder)
            else:
                return (_OTHER, tuple(sorted(zip(self.previous_columns, row, strict=False))))
        elif row.keys() == set(self.columns) and len(row) == len(self.columns):
            values = tuple(row[c] for c in self.columns)
        else:
            return (_OTHER, tuple(sorted(row.items())))
        return self._typed(values)

    def _take(self, key: tuple[Any, ...]) -> bool:
        """Match one previous row with ``key``, if one is left."""
        remaining = self._remaining
        count = remaining.get(key, 0)
        if not count:
            return False
        if count == 1:
            del remaining[key]
        else:
            remaining[key] = count - 1
        return True

    def feed(self, values: tuple[Any, ...]) -> bool:
        """True when this current row is added (no unmatched previous row equals it), decided at once."""
        if self._take(self._typed(values)):
            return False
        if self._text is not None and self._remaining and self._take_twin(values):
            return False
        self.added += 1
        return True

    def push(self, values: tuple[Any, ...], item: T) -> Sequence[T]:
        """Feed a row with what the caller keeps for it if it is added (``item``, e.g. its packed values).

        Returns the items of the rows now known to be added, in the order they were pushed:
        with ``text``, a row without a typed twin is held until enough of them are, or until
        :meth:`finish`.  (Use either :meth:`feed` or this, not both.)
        """
        if self._take(self._typed(values)):
            return ()
        if self._text is None or not (self._remaining or self._held):  # nothing left to match by text
            self.added += 1
            return (item,)
        if self._by_text is not None:  # indexed already: decided at once (after what was held)
            if self._take_twin(values):
                return ()
            self.added += 1
            return (item,)
        self._held.append((values, item))
        self._held_bytes += len(item) if isinstance(item, (bytes, bytearray)) else 64
        if len(self._held) < HOLD_ROWS and self._held_bytes < HOLD_BYTES:
            return ()
        return self._release()

    def finish(self) -> Sequence[Any]:
        """After the last :meth:`push`: the items of the held rows that are added, in order."""
        return self._release() if self._held else ()

    def _release(self) -> list[Any]:
        """Decide every held row, in order, against the previous rows left; the items of those added."""
        added: list[Any] = []
        for values, item in self._held:
            if self._remaining and self._take_twin(values):
                continue
            self.added += 1
            added.append(item)
        self._held, self._held_bytes = [], 0
        return added

    def _as_text(self, key: tuple[Any, ...]) -> tuple[str, ...]:
        """What a key's row prints as (the types a typed key may end with left out)."""
        text = self._text
        assert text is not None
        values = key[: len(self.columns)]
        return tuple([v if v.__class__ is str else str(v) if v.__class__ is int else text(v) for v in values])

    def _take_twin(self, values: tuple[Any, ...]) -> bool:
        """Match a previous row left that prints as ``values`` do, if there is one."""
        index = self._by_text
        if index is None:  # indexed once: the previous rows left now (later, fewer are left)
            index = self._by_text = {}
            for key in self._remaining:
                if key[0] is _OTHER:
                    continue
                found = hash(self._as_text(key))
                entry = index.get(found)
                if entry is None:
                    index[found] = key
                elif entry.__class__ is list:
                    entry.append(key)
                else:
                    index[found] = [entry, key]
        wanted = self._as_text(values)
        entry = index.get(hash(wanted))
        if entry is None:
            return False
        for key in entry if entry.__class__ is list else (entry,):
            if self._remaining.get(key) and self._as_text(key) == wanted:
                return self._take(key)
        return False

    @property
    def changed(self) -> bool:
        """After every current row was fed (and :meth:`finish`): True when a row was added or a previous row is gone."""
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
