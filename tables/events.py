"""Event tables: a bounded, expiring buffer per ``*_events`` table and its generate().

Snapshot tables read the host when queried; event tables return rows that event
sources pushed earlier (zeek-agent-v2's EventTable, osquery's EventSubscriber).
Semantics follow osquery:

* at most ``max_events`` rows are buffered per table (``events_max``, default 50,000);
  the oldest are dropped first, and every drop is counted;
* rows older than ``expiry`` seconds (``events_expiry``, default 3600) are dropped;
* a consumer (a scheduled query, named in ``QueryContext.consumer``) sees only the
  rows added since its previous run; ad-hoc queries see the whole buffer;
* a query that constrains ``time`` reads the whole buffer (osquery disables
  events_optimize then) and does not move the consumer's position.

The buffer is shared between the event loop that adds rows and a query thread,
so its methods take a lock; each is O(rows returned).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .spec import Column, QueryContext, Row, TableSpec

__all__ = ["EVENT_STORES", "EventStore", "EventStoreStats", "event_table", "generate_events"]

#: The key under which the composer passes ``{table: EventStore}`` in QueryContext.services.
EVENT_STORES = "event_stores"

DEFAULT_EVENTS_MAX = 50_000
DEFAULT_EVENTS_EXPIRY = 3600.0


@dataclass(slots=True)
class EventStoreStats:
    """Counters one store shows in agent_events_status."""

    table: str
    buffered: int
    added: int
    dropped_overflow: int  # pushed out by events_max
    dropped_expired: int  # older than events_expiry
    consumers: int


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
        self._rows: deque[tuple[int, float, Row]] = deque()  # (eid, added_at, row)
        self._eids = itertools.count(1)
        self._positions: dict[str, int] = {}  # consumer -> last eid it has seen
        self._lock = threading.Lock()
        self.added = 0
        self.dropped_overflow = 0
        self.dropped_expired = 0

    def add(self, row: Row) -> None:
        """Buffer one row; it gets an ``eid`` (TEXT, as osquery's) and, if it has none, a ``time``."""
        now = self.clock()
        with self._lock:
            eid = next(self._eids)
            row.setdefault("eid", f"{eid:010d}")  # osquery's eid is TEXT
            row.setdefault("time", int(now))
            self._rows.append((eid, now, row))
            self.added += 1
            if len(self._rows) > self.max_events:
                self._rows.popleft()
                self.dropped_overflow += 1

    def extend(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.add(row)

    def select(self, consumer: str | None = None, *, advance: bool = True) -> list[Row]:
        """Rows a query should see: all of them, or the consumer's new ones."""
        with self._lock:
            self._expire(self.clock())
            if consumer is None:
                return [r for _, _, r in self._rows]
            last = self._positions.get(consumer, 0)
            rows = [r for eid, _, r in self._rows if eid > last] if last else [r for _, _, r in self._rows]
            if advance and self._rows:
                self._positions[consumer] = self._rows[-1][0]
            elif advance and consumer not in self._positions:
                self._positions[consumer] = 0
            return rows

    def stats(self) -> EventStoreStats:
        with self._lock:
            self._expire(self.clock())
            return EventStoreStats(
                table=self.table,
                buffered=len(self._rows),
                added=self.added,
                dropped_overflow=self.dropped_overflow,
                dropped_expired=self.dropped_expired,
                consumers=len(self._positions),
            )

    def _expire(self, now: float) -> None:
        if self.expiry <= 0:
            return
        cutoff = now - self.expiry
        rows = self._rows
        while rows and rows[0][1] < cutoff:
            rows.popleft()
            self.dropped_expired += 1


def generate_events(context: QueryContext) -> list[Row]:
    """generate() of every event table: read the table's store from the context's services."""
    stores: Mapping[str, EventStore] = context.services.get(EVENT_STORES, {})
    store = stores.get(context.table)
    if store is None:
        return []  # no source feeds this table in this process (e.g. agent-cli query)
    if "time" in context.ranges or "time" in context.constraints:
        return store.select(None)
    return store.select(context.consumer)


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
