"""The uplink queue: result batches waiting for the collector, in the state database.

Each scheduled run that has rows for the collector is written here *in the run's own
commit transaction* (:meth:`UplinkQueue.enqueue` is the runner's ``uplink`` hook), with
the next sequence number of this agent's stream; a run bigger than ``chunk_bytes`` is
cut into several batches.  Nothing is lost across kill -9: a run is in the queue exactly
when its new diff state is committed.  The run's rows stream in from its outbox batches
(:func:`agent.runner.uplink_runs`): each is packed once, and only one batch's worth is
held at a time.

Bounded in rows and bytes: when a new batch takes the queue over a bound, the oldest
batches that cannot be in flight are dropped and replaced by one *gap* entry that spans
their sequence numbers and counts their rows; the collector receives it as a ``dropped``
message, so drops are counted exactly and the sequence stays gapless.  Batches that may
have been sent on the current or last connection (``protect_upto``) are never dropped:
whether the collector stored them is only known at the next welcome.

Acknowledged entries are deleted (:meth:`acked`); a lost deletion only makes the agent
offer them again, and the collector's welcome says to skip them.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgpack

from protocol.messages import Action, Dropped, Results

from ..runner import UplinkRun
from ..state import StateDB

__all__ = ["CHUNK_BYTES", "EntryKind", "QueueStats", "QueuedEntry", "UplinkQueue"]

#: Batches are cut to about this size (the collector's frame limit is 4 MiB by default).
CHUNK_BYTES = 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uplink_queue (
    seq INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS uplink_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS uplink_text (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COUNTERS = (
    "next_seq",
    "acked",
    "queued_batches",
    "queued_rows",
    "queued_bytes",
    "dropped_batches",
    "dropped_rows",
)
_ACTIONS = {a.value: a for a in Action}


class EntryKind(IntEnum):
    RESULTS = 1
    GAP = 2  # batches dropped by the bound: sent as ``dropped``


@dataclass(frozen=True, slots=True)
class QueuedEntry:
    """One queue entry as the sender reads it: the message to send and what it weighs."""

    seq: int
    last_seq: int
    kind: EntryKind
    rows: int
    bytes: int
    message: Results | Dropped


@dataclass(frozen=True, slots=True)
class QueueStats:
    next_seq: int  # the sequence number the next batch gets
    acked: int  # highest sequence the collector acknowledged
    queued_batches: int
    queued_rows: int
    queued_bytes: int
    dropped_batches: int  # dropped by the bound since this stream began
    dropped_rows: int


class UplinkQueue:
    """The uplink queue in ``statedb`` (its own tables); bounded by ``max_rows`` and ``max_bytes``."""

    def __init__(
        self,
        statedb: StateDB,
        *,
        max_rows: int,
        max_bytes: int,
        chunk_bytes: int = CHUNK_BYTES,
        subscription_of: Any = None,
        clock: Any = time.time,
    ) -> None:
        self.statedb = statedb
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.chunk_bytes = chunk_bytes
        #: name of a scheduled query -> its collector subscription id (None: a config query)
        self.subscription_of = subscription_of or (lambda name: None)
        self.clock = clock
        #: Entries up to this sequence may be in flight: never dropped (set by the sender).
        self.protect_upto = 0
        with statedb.transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            for key in _COUNTERS:
                db.execute("INSERT OR IGNORE INTO uplink_state VALUES (?, ?)", (key, 1 if key == "next_seq" else 0))

    # -- counters (inside a transaction) ------------------------------------------------------

    @staticmethod
    def _counters(db: sqlite3.Connection) -> dict[str, int]:
        return dict(db.execute("SELECT key, value FROM uplink_state"))

    @staticmethod
    def _save(db: sqlite3.Connection, counters: dict[str, int]) -> None:
        db.executemany("UPDATE uplink_state SET value = ? WHERE key = ?", [(v, k) for k, v in counters.items()])

    def stats(self) -> QueueStats:
        with self.statedb.transaction() as db:
            c = self._counters(db)
        return QueueStats(**{k: c[k] for k in _COUNTERS})

    # -- text state: node key, stream ------------------------------------------------------------

    def get_text(self, key: str) -> str | None:
        with self.statedb.transaction() as db:
            row = db.execute("SELECT value FROM uplink_text WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_text(self, key: str, value: str | None) -> None:
        with self.statedb.transaction() as db:
            if value is None:
                db.execute("DELETE FROM uplink_text WHERE key = ?", (key,))
            else:
                db.execute("INSERT OR REPLACE INTO uplink_text VALUES (?, ?)", (key, value))

    # -- writing: the runner's hook ----------------------------------------------------------

    def enqueue(self, db: sqlite3.Connection, run: UplinkRun) -> list[int]:
        """Queue a run's rows (inside the caller's transaction); the sequence numbers used.

        Called on the query thread, in the run's commit transaction.  ``run.rows`` is read
        once, as it streams; a batch is cut once its rows pack to ``chunk_bytes``.
        """
        subscription = self.subscription_of(run.name)
        counters = self._counters(db)
        packer = msgpack.Packer(use_bin_type=True)
        pack = packer.pack
        head = pack(subscription) + pack(run.name) + pack(list(run.columns))
        tail = pack(run.counter) + pack(run.epoch) + pack(run.time)
        seqs: list[int] = []
        body: list[bytes] = []
        size = 0

        def flush() -> None:
            # the stored entry is msgpack [subscription, name, columns, [[action, values], ...], counter, epoch, time]
            data = b"".join((packer.pack_array_header(7), head, packer.pack_array_header(len(body)), *body, tail))
            seq = counters["next_seq"]
            db.execute(
                "INSERT INTO uplink_queue VALUES (?, ?, ?, ?, ?, ?)",
                (seq, seq, EntryKind.RESULTS, len(body), len(data), data),
            )
            counters["next_seq"] = seq + 1
            counters["queued_batches"] += 1
            counters["queued_rows"] += len(body)
            counters["queued_bytes"] += len(data)
            seqs.append(seq)

        for action, values in run.rows:
            row = pack((action, values))
            if body and size + len(row) > self.chunk_bytes:
                flush()
                body, size = [], 0
            body.append(row)
            size += len(row)
        if body:
            flush()
        self._bound(db, counters)
        self._save(db, counters)
        return seqs

    def _bound(self, db: sqlite3.Connection, counters: dict[str, int]) -> None:
        """Drop the oldest batches that cannot be in flight until the queue is within its bounds."""
        protect = self.protect_upto
        while counters["queued_rows"] > self.max_rows or counters["queued_bytes"] > self.max_bytes:
            victim = db.execute(
                "SELECT seq, rows, bytes FROM uplink_queue WHERE kind = ? AND seq > ? ORDER BY seq LIMIT 1",
                (EntryKind.RESULTS, protect),
            ).fetchone()
            if victim is None:
                return  # only batches in flight are left: they leave when acknowledged
            seq, rows, size = victim
            before = db.execute(
                "SELECT seq, last_seq, kind, data FROM uplink_queue WHERE seq < ? ORDER BY seq DESC LIMIT 1", (seq,)
            ).fetchone()
            db.execute("DELETE FROM uplink_queue WHERE seq = ?", (seq,))
            if before is not None and before[2] == EntryKind.GAP and before[1] + 1 == seq:
                batches, dropped, when = msgpack.unpackb(before[3])
                data = msgpack.packb([batches + 1, dropped + rows, when])
                db.execute(
                    "UPDATE uplink_queue SET last_seq = ?, rows = ?, data = ? WHERE seq = ?",
                    (seq, dropped + rows, data, before[0]),
                )
            else:
                data = msgpack.packb([1, rows, self.clock()])
                db.execute(
                    "INSERT INTO uplink_queue VALUES (?, ?, ?, ?, ?, ?)", (seq, seq, EntryKind.GAP, rows, 0, data)
                )
            counters["queued_batches"] -= 1
            counters["queued_rows"] -= rows
            counters["queued_bytes"] -= size
            counters["dropped_batches"] += 1
            counters["dropped_rows"] += rows

    # -- reading and acknowledging: the sender ----------------------------------------------

    def read(self, after: int, limit: int = 64) -> list[QueuedEntry]:
        """Entries after sequence ``after``, in order (gap entries as ``dropped`` messages)."""
        with self.statedb.transaction() as db:
            return self._read(db, after, limit)

    def take(self, after: int, limit: int = 64) -> list[QueuedEntry]:
        """:meth:`read` and protect what was read from the bound (it is about to be sent), atomically."""
        with self.statedb.transaction() as db:
            entries = self._read(db, after, limit)
            if entries:
                self.protect_upto = max(self.protect_upto, entries[-1].last_seq)
        return entries

    @staticmethod
    def _read(db: sqlite3.Connection, after: int, limit: int) -> list[QueuedEntry]:
        rows = db.execute(
            "SELECT seq, last_seq, kind, rows, bytes, data FROM uplink_queue WHERE last_seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return [_entry(*row) for row in rows]

    def acked(self, seq: int) -> None:
        """The collector stored everything up to ``seq``: forget it."""
        with self.statedb.transaction() as db:
            counters = self._counters(db)
            if seq <= counters["acked"]:
                return
            done = db.execute(
                "SELECT kind, count(*), sum(rows), sum(bytes) FROM uplink_queue WHERE last_seq <= ? GROUP BY kind",
                (seq,),
            ).fetchall()
            db.execute("DELETE FROM uplink_queue WHERE last_seq <= ?", (seq,))
            for kind, count, rows, size in done:
                if kind == EntryKind.RESULTS:
                    counters["queued_batches"] -= count
                    counters["queued_rows"] -= rows or 0
                    counters["queued_bytes"] -= size or 0
            counters["acked"] = seq
            if counters["next_seq"] <= seq:
                counters["next_seq"] = seq + 1
            self._save(db, counters)

    def resume(self, last_seq: int) -> None:
        """After a welcome: the collector has everything up to ``last_seq``; nothing is in flight."""
        self.acked(last_seq)
        self.protect_upto = last_seq


def _entry(seq: int, last_seq: int, kind: int, rows: int, size: int, data: bytes) -> QueuedEntry:
    body = msgpack.unpackb(data, raw=False, use_list=False)
    message: Results | Dropped
    if kind == EntryKind.GAP:
        batches, dropped, when = body
        message = Dropped(seq, last_seq, batches, dropped, float(when))
    else:
        subscription, name, columns, values, counter, epoch, when = body
        rows_typed = tuple((_ACTIONS[a], v) for a, v in values)
        message = Results(seq, subscription, name, columns, rows_typed, counter, epoch, float(when))
    return QueuedEntry(seq, last_seq, EntryKind(kind), rows, size, message)
