"""The collector's subscriptions on this host: persisted, on the schedule, streamed when they read events.

A ``subscribe`` from the collector becomes a row of ``uplink_subscriptions`` in the state
database and a scheduled query named ``collector_<id>``: the same scheduler, splay,
denylist and differential results as a config query, running whether or not the
collector is connected (differences accumulate in the uplink queue).  They are put back
on the schedule at every start.  A subscription that reads an event table
(process_events, socket_events, hardware_events) also runs as soon as new rows arrive,
at most ``stream_delay`` (0.1 s) later, so a host's exec reaches the collector in well
under a second; its interval remains as the longest wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from protocol.messages import Mode, Subscribe

from ..config import ScheduledQuery
from ..state import StateDB

__all__ = ["PREFIX", "CollectorSubscription", "SubscriptionSet"]

log = logging.getLogger("agentd.uplink")

#: Scheduled queries of collector subscriptions are named PREFIX + the subscription's id.
PREFIX = "collector_"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS uplink_subscriptions (id TEXT PRIMARY KEY, name TEXT NOT NULL, sql TEXT NOT NULL, "
    "interval INTEGER NOT NULL, mode TEXT NOT NULL, removed INTEGER NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class CollectorSubscription:
    id: str
    name: str
    sql: str
    interval: int
    mode: Mode
    removed: bool

    @classmethod
    def from_message(cls, message: Subscribe) -> CollectorSubscription:
        return cls(message.id, message.name, message.sql, message.interval, message.mode, message.removed)

    @property
    def query_name(self) -> str:
        return PREFIX + self.id

    def scheduled(self) -> ScheduledQuery:
        return ScheduledQuery(
            name=self.query_name,
            query=self.sql,
            interval=self.interval,
            snapshot=self.mode is Mode.SNAPSHOT,
            removed=self.removed,
            description=f"collector subscription {self.name}",
        )


class SubscriptionSet:
    """The collector's subscriptions: persisted in ``statedb``, kept on ``schedule``."""

    def __init__(
        self,
        statedb: StateDB,
        schedule: Any,
        *,
        event_tables: Callable[[str], frozenset[str]],
        stream_delay: float = 0.1,
    ) -> None:
        self.statedb = statedb
        self.schedule = schedule
        self.event_tables = event_tables  # the event tables an SQL statement reads
        self.stream_delay = stream_delay
        self._subs: dict[str, CollectorSubscription] = {}
        self._by_table: dict[str, set[str]] = {}
        self._pending: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        with statedb.transaction() as db:
            db.execute(_SCHEMA)

    def load(self) -> int:
        """Put the persisted subscriptions on the schedule (at start-up); how many."""
        with self.statedb.transaction() as db:
            rows = db.execute("SELECT id, name, sql, interval, mode, removed FROM uplink_subscriptions").fetchall()
        for row in rows:
            sub = CollectorSubscription(row[0], row[1], row[2], row[3], Mode(row[4]), bool(row[5]))
            self._schedule(sub)
        return len(rows)

    def ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._subs))

    def subscription_of(self, query_name: str) -> str | None:
        """The subscription id of a scheduled query (None for a config query)."""
        if not query_name.startswith(PREFIX):
            return None
        sub_id = query_name[len(PREFIX) :]
        return sub_id if sub_id in self._subs else None

    def apply(self, message: Subscribe) -> bool:
        """Subscribe (persisted first); False when it already runs."""
        sub = CollectorSubscription.from_message(message)
        if self._subs.get(sub.id) == sub:
            return False
        with self.statedb.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO uplink_subscriptions VALUES (?, ?, ?, ?, ?, ?)",
                (sub.id, sub.name, sub.sql, sub.interval, sub.mode.value, int(sub.removed)),
            )
        self._schedule(sub)
        log.info("collector subscription %s (%s) every %d s: %s", sub.name, sub.id, sub.interval, sub.sql)
        return True

    def remove(self, sub_id: str) -> bool:
        sub = self._subs.pop(sub_id, None)
        with self.statedb.transaction() as db:
            db.execute("DELETE FROM uplink_subscriptions WHERE id = ?", (sub_id,))
        if sub is None:
            return False
        self.schedule.remove(sub.query_name)
        for names in self._by_table.values():
            names.discard(sub.query_name)
        log.info("collector subscription %s (%s) removed", sub.name, sub.id)
        return True

    def _schedule(self, sub: CollectorSubscription) -> None:
        self._subs[sub.id] = sub
        self.schedule.add(sub.scheduled())
        for table in self.event_tables(sub.sql):
            self._by_table.setdefault(table, set()).add(sub.query_name)

    # -- streaming event tables --------------------------------------------------------------

    def on_event(self, table: str, row: Any) -> None:
        """Event listener (the event loop, for every row): run the subscriptions that read ``table`` soon."""
        names = self._by_table.get(table)
        if not names:
            return
        self._pending |= names
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.stream_delay, self._flush)

    def _flush(self) -> None:
        self._timer = None
        pending, self._pending = self._pending, set()
        for name in pending:
            self.schedule.expedite(name)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def streaming(self) -> Iterable[str]:
        return sorted({n for names in self._by_table.values() for n in names})
