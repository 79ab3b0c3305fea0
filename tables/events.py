"""Event tables: a bounded, expiring, compact buffer per ``*_events`` table and its generate().

Snapshot tables read the host when queried; event tables return rows that event
sources pushed earlier (zeek-agent-v2's EventTable, osquery's EventSubscriber).
Semantics follow osquery:

* at most ``max_events`` rows are buffered per table (``events_max``, default 50,000);
  the oldest are dropped first, and every drop is counted;
* rows older than ``expiry`` seconds (``events_expiry``, default 3600) are dropped;
* a consumer (a scheduled query, named in ``QueryContext.consumer``) sees only the
  rows added since its previous *committed* read; ad-hoc queries see the whole buffer;
* a query that constrains ``time`` reads the whole buffer (osquery disables
  events_optimize then) and does not move the consumer's position.

Storage (osquery keeps events in RocksDB; a busy host fills 50,000 rows a minute): rows
become tuples in the store's column order, and every ``BLOCK_ROWS`` of them are sealed
into one block, column by column (one msgpack array of column arrays): ~170 bytes a
process_events row instead of ~1,200 as dicts.  (zlib over a block would make it ~47
bytes, for ~2 us a row more on every add and ~0.7 us on every read: not worth it at the
default events_max; bench/RESULTS.md has the figures.)  A scan decompresses one block at a time and unpacks only
the columns the query uses (``QueryContext.columns_used``; none for ``count(*)``), so a
query over the whole buffer holds one block's values beyond what SQLite keeps.

A consumer's read is two-phase: :meth:`EventStore.read` notes where it ended, and
:meth:`EventStore.commit_read` moves the consumer's position there once the results are
stored (:meth:`discard_read` when the run failed): a failed or killed run sees the same
events again.  Rows a consumer never saw because they were dropped first are counted
per consumer (``missed``).

The buffer is shared between the event loop that adds rows and a query thread: its
methods take a lock for O(block) work; a scan runs outside the lock over sealed blocks
(immutable) and a copy of the unsealed tail.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import msgpack

from .rowsets import TupleRows, sql_column, sql_value
from .spec import Column, QueryContext, Row, TableSpec

__all__ = [
    "BLOCK_ROWS",
    "EVENT_STORES",
    "EventStore",
    "EventStoreStats",
    "commit_reads",
    "discard_reads",
    "event_table",
    "generate_events",
]

#: The key under which the composer passes ``{table: EventStore}`` in QueryContext.services.
EVENT_STORES = "event_stores"

DEFAULT_EVENTS_MAX = 50_000
DEFAULT_EVENTS_EXPIRY = 3600.0
#: Rows per sealed block: few objects per row, small enough to decode one block at a time.
BLOCK_ROWS = 256
#: Text with lone surrogates (undecodable bytes kept by surrogateescape) round-trips exactly.
_TEXT_ERRORS = "surrogatepass"


@dataclass(slots=True)
class EventStoreStats:
    """Counters one store shows in agent_events_status."""

    table: str
    buffered: int
    added: int
    dropped_overflow: int  # pushed out by events_max
    dropped_expired: int  # older than events_expiry
    consumers: int
    missed: dict[str, int] = field(default_factory=dict)  # consumer -> rows dropped before it read them
    stored_bytes: int = 0  # memory the buffered rows take (sealed blocks exactly, the tail estimated)


@dataclass(frozen=True, slots=True)
class _Block:
    """``count`` consecutive rows from eid ``first``, stored column by column.

    ``data`` is one msgpack array of the ``width`` columns known when the block was
    sealed, each an array of ``count`` values: a scan unpacks the columns it needs and
    skips the others.  ``sql_clean`` remembers the columns whose values SQLite takes as
    they are (:func:`sql_column` found nothing to convert): the block never changes, so
    each column is checked once, by the first query that reads it.
    """

    first: int
    count: int
    times: array[float]  # when each row was added (events_expiry)
    width: int
    data: bytes
    sql_clean: set[int] = field(default_factory=set)

    def columns(self, indexes: Sequence[int], lo: int, hi: int, *, sql: bool = False) -> list[Sequence[Any]]:
        """Values [lo:hi] of the columns ``indexes`` (all NULL for a column sealed before it was known).

        ``sql``: as SQLite is to get them (:func:`sql_column`).
        """
        unpacker = msgpack.Unpacker(
            use_list=False, raw=False, unicode_errors=_TEXT_ERRORS, max_buffer_size=max(len(self.data), 1 << 20)
        )
        unpacker.feed(self.data)
        unpacker.read_array_header()
        wanted = set(indexes)
        found: dict[int, Sequence[Any]] = {}
        for i in range(min(self.width, max(indexes) + 1)):
            if i in wanted:
                values: tuple[Any, ...] = unpacker.unpack()
                if sql and i not in self.sql_clean:
                    converted = sql_column(values)
                    if converted is values:
                        self.sql_clean.add(i)
                    values = converted
                found[i] = values if lo == 0 and hi == self.count else values[lo:hi]
            else:
                unpacker.skip()
        missing = (None,) * (hi - lo)
        return [found.get(i, missing) for i in indexes]


def _seal(first: int, rows: list[tuple[Any, ...]], times: array[float], width: int) -> _Block:
    """One block of ``rows`` (tuples of ``width`` values, shorter ones padded with NULL)."""
    if any(len(r) != width for r in rows):
        rows = [r + (None,) * (width - len(r)) for r in rows]
    return _Block(first, len(rows), times, width, _pack(list(zip(*rows, strict=True))))


def _pack(columns: list[tuple[Any, ...]]) -> bytes:
    try:
        packed: bytes = msgpack.packb(columns, use_bin_type=True, unicode_errors=_TEXT_ERRORS)
    except (OverflowError, TypeError, ValueError):  # a value msgpack cannot hold: keep it as text
        packed = msgpack.packb(
            [tuple(map(_packable, c)) for c in columns], use_bin_type=True, unicode_errors=_TEXT_ERRORS
        )
    return packed


def _packable(value: Any) -> Any:
    if value is None or isinstance(value, (str, bytes, bool, float)):
        return value
    if isinstance(value, int) and -(1 << 63) <= value < (1 << 64):
        return value
    return str(value)


class EventStore:
    """Bounded, expiring rows of one event table, with per-consumer read positions."""

    def __init__(
        self,
        table: str,
        *,
        max_events: int = DEFAULT_EVENTS_MAX,
        expiry: float = DEFAULT_EVENTS_EXPIRY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_events <= 0:
            raise ValueError(f"{table}: events_max must be positive, not {max_events}")
        self.table = table
        self.max_events = max_events
        self.expiry = expiry
        self.clock = clock
        self._columns: list[str] = []  # the order of values in stored tuples; only ever appended to
        self._index: dict[str, int] = {}
        self._order: tuple[str, ...] = ()  # key order of a row whose values() are in _columns order
        self._sealed: deque[_Block] = deque()
        self._tail: list[tuple[Any, ...]] = []  # rows not sealed yet, from eid _tail_first
        self._tail_times: array[float] = array("d")
        self._tail_first = 1
        self._first = 1  # eid of the oldest buffered row (rows below it are dropped)
        self._next = 1  # eid the next row gets
        self._positions: dict[str, int] = {}  # consumer -> last eid its committed reads saw
        self._pending: dict[str, tuple[int, int]] = {}  # consumer -> (last eid read, rows it missed)
        self._missed: dict[str, int] = {}
        self._lock = threading.Lock()
        self.added = 0
        self.dropped_overflow = 0
        self.dropped_expired = 0

    # -- writing -------------------------------------------------------------------------

    def add(self, row: Row) -> None:
        """Buffer one row; it gets an ``eid`` (TEXT, as osquery's) and, if it has none, a ``time``."""
        now = self.clock()
        with self._lock:
            eid = self._next
            self._next = eid + 1
            if "eid" not in row:
                row["eid"] = f"{eid:010d}"  # osquery's eid is TEXT
            if "time" not in row:
                row["time"] = int(now)
            if tuple(row) == self._order:  # the usual case: a source builds its rows alike
                values = tuple(row.values())
            else:
                if not self._index.keys() >= row.keys():
                    self._learn(row)
                values = tuple(map(row.get, self._columns))
                self._order = tuple(self._columns)  # rows with exactly these keys, in this order, take the fast path
            self._tail.append(values)
            self._tail_times.append(now)
            self.added += 1
            if len(self._tail) >= BLOCK_ROWS:
                self._seal()
            over = self._next - self._first - self.max_events
            if over > 0:
                self._drop(over)
                self.dropped_overflow += over

    def extend(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.add(row)

    def _learn(self, row: Row) -> None:
        for key in row:
            if key not in self._index:
                self._index[key] = len(self._columns)
                self._columns.append(key)

    def _seal(self) -> None:
        tail = self._tail
        self._sealed.append(_seal(self._tail_first, tail, self._tail_times, len(self._columns)))
        self._tail_first += len(tail)
        self._tail = []
        self._tail_times = array("d")

    def _drop(self, n: int) -> None:
        """Forget the ``n`` oldest rows (counted by the caller)."""
        self._first += n
        first = self._first
        sealed = self._sealed
        while sealed and sealed[0].first + sealed[0].count <= first:
            sealed.popleft()
        if not sealed and self._tail_first < first:
            k = first - self._tail_first
            del self._tail[:k]
            del self._tail_times[:k]
            self._tail_first = first

    def _expire(self, now: float) -> None:
        if self.expiry <= 0 or self._first == self._next:
            return
        cutoff = now - self.expiry
        expired = 0
        eid = self._first
        for block in self._sealed:
            offset = max(0, eid - block.first)
            if max(block.times[offset:]) < cutoff:
                expired += block.count - offset
                eid = block.first + block.count
                continue
            for t in block.times[offset:]:
                if t >= cutoff:
                    break
                expired += 1
            break
        else:
            times = self._tail_times
            for t in times[max(0, eid - self._tail_first) :]:
                if t >= cutoff:
                    break
                expired += 1
        if expired:
            self._drop(expired)
            self.dropped_expired += expired

    # -- reading -------------------------------------------------------------------------

    def read(
        self, consumer: str | None = None, columns: Iterable[str] | None = None, *, sql: bool = False
    ) -> TupleRows:
        """Rows a query should see: all of them (``consumer`` None), or the consumer's new ones.

        ``columns`` limits the values read to those (None: every column); the rows come as
        a :class:`TupleRows` naming them.  A consumer's read is pending until
        :meth:`commit_read` (or :meth:`discard_read`); reading again before that starts
        from the same position.  ``sql``: values converted as SQLite is to get them, a
        block's column at a time (:func:`tables.rowsets.sql_column`).
        """
        now = self.clock()
        with self._lock:
            self._expire(now)
            start, end = self._first, self._next - 1
            if consumer is not None:
                last = self._positions.get(consumer)
                missed = 0
                if last is not None:
                    start = max(start, last + 1)
                    missed = max(0, self._first - (last + 1))
                self._pending[consumer] = (end, missed)
            blocks = [b for b in self._sealed if b.first + b.count > start]
            tail, tail_first = self._tail[:], self._tail_first
            if columns is None:
                names = tuple(self._columns)
            else:
                names = tuple(c for c in columns if c in self._index)
            indexes = tuple(self._index[c] for c in names)
        return TupleRows(names, _scan(blocks, tail, tail_first, start, end, indexes, sql), sql_ready=sql)

    def commit_read(self, consumer: str) -> None:
        """The consumer's results are stored: its next read starts after what it just read."""
        with self._lock:
            pending = self._pending.pop(consumer, None)
            if pending is None:
                return
            end, missed = pending
            self._positions[consumer] = max(end, self._positions.get(consumer, 0))
            if missed:
                self._missed[consumer] = self._missed.get(consumer, 0) + missed

    def discard_read(self, consumer: str) -> None:
        """The consumer's run failed: its next read sees the same rows again."""
        with self._lock:
            self._pending.pop(consumer, None)

    def select(self, consumer: str | None = None, *, advance: bool = True) -> list[Row]:
        """Rows as dicts, read and (for a consumer, with ``advance``) committed at once."""
        rows = list(self.read(consumer))
        if consumer is not None:
            if advance:
                self.commit_read(consumer)
            else:
                self.discard_read(consumer)
        return rows

    def stats(self) -> EventStoreStats:
        with self._lock:
            self._expire(self.clock())
            missed = dict(self._missed)
            for consumer, last in self._positions.items():
                outstanding = max(0, self._first - (last + 1))  # dropped since its last read, never seen
                if outstanding or consumer in missed:
                    missed[consumer] = missed.get(consumer, 0) + outstanding
            stored = sum(len(b.data) + 8 * b.count for b in self._sealed)
            if self._tail:  # unsealed rows as tuples: a rough per-value estimate
                stored += len(self._tail) * (64 + 40 * len(self._columns))
            return EventStoreStats(
                table=self.table,
                buffered=self._next - self._first,
                added=self.added,
                dropped_overflow=self.dropped_overflow,
                dropped_expired=self.dropped_expired,
                consumers=len(self._positions),
                missed=missed,
                stored_bytes=stored,
            )


def _scan(
    blocks: list[_Block],
    tail: list[tuple[Any, ...]],
    tail_first: int,
    start: int,
    end: int,
    indexes: tuple[int, ...],
    sql: bool = False,
) -> Iterator[tuple[Any, ...]]:
    """Rows with eids in [start, end] as tuples of the columns ``indexes``, one block decoded at a time.

    ``sql``: each value as SQLite is to get it (:func:`sql_value`), checked a whole column at a time.
    """
    for block in blocks:
        lo, hi = max(0, start - block.first), min(block.count, end - block.first + 1)
        if lo >= hi:
            continue
        if not indexes:
            yield from repeat((), hi - lo)
            continue
        yield from zip(*block.columns(indexes, lo, hi, sql=sql), strict=True)
    lo, hi = max(0, start - tail_first), min(len(tail), end - tail_first + 1)
    if lo < hi:
        if not indexes:
            yield from repeat((), hi - lo)
            return
        width = max(indexes) + 1
        for row in tail[lo:hi]:
            if len(row) < width:
                row = row + (None,) * (width - len(row))
            yield tuple([sql_value(row[i]) for i in indexes] if sql else [row[i] for i in indexes])


def commit_reads(stores: Mapping[str, EventStore], consumer: str) -> None:
    """Commit ``consumer``'s pending reads in every store (its run's results are stored)."""
    for store in stores.values():
        store.commit_read(consumer)


def discard_reads(stores: Mapping[str, EventStore], consumer: str) -> None:
    """Forget ``consumer``'s pending reads in every store (its run failed)."""
    for store in stores.values():
        store.discard_read(consumer)


def generate_events(context: QueryContext) -> Iterable[Row]:
    """generate() of every event table: read the table's store from the context's services."""
    stores: Mapping[str, EventStore] = context.services.get(EVENT_STORES, {})
    store = stores.get(context.table)
    if store is None:
        return []  # no source feeds this table in this process (e.g. agent-cli query)
    consumer = None if "time" in context.ranges or "time" in context.constraints else context.consumer
    return store.read(consumer, context.columns_used, sql=True)


def event_table(name: str, description: str, columns: Iterable[Column], examples: Iterable[str] = ()) -> TableSpec:
    """A TableSpec for an event table whose rows come from its EventStore."""
    return TableSpec(
        name=name,
        description=description,
        columns=tuple(columns),
        generate=generate_events,
        examples=tuple(examples),
        event=True,
    )
