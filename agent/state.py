"""agentd's state database: previous results, counters, denylist, identity, result outbox.

One SQLite file in the state directory, in WAL mode with synchronous=FULL.  Everything a
scheduled run changes (new previous-results, epoch, counter, last run and the result
lines to write) is written in ONE transaction (:meth:`StateDB.commit_run`), so a kill -9
leaves either the old or the new state.  The lines wait in the ``outbox`` table until the
result log holds them (see :mod:`agent.runner` for the exactly-once protocol).

Rows are stored compactly with msgpack: ``[columns, [values...], ...]``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import msgpack

__all__ = ["OutboxEntry", "QueryState", "StateDB", "StateError", "pack_rows", "unpack_rows"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queries (
    name TEXT PRIMARY KEY,
    sql TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    counter INTEGER,
    results BLOB NOT NULL,
    last_run REAL
);
CREATE TABLE IF NOT EXISTS denylist (name TEXT PRIMARY KEY, until REAL NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS splay (name TEXT PRIMARY KEY, interval INTEGER NOT NULL, splayed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (name TEXT PRIMARY KEY, last_run REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    data BLOB NOT NULL,
    file_id INTEGER,
    file_offset INTEGER
);
"""


class StateError(Exception):
    """The state database cannot be opened or is damaged."""


@dataclass(slots=True)
class QueryState:
    """What the previous run of a scheduled query left behind."""

    name: str
    sql: str
    epoch: int
    counter: int | None
    rows: list[dict[str, Any]]
    last_run: float | None


@dataclass(slots=True)
class OutboxEntry:
    """Result-log bytes committed with a run but maybe not yet in the log file."""

    id: int
    target: str  # "results" or "snapshots"
    data: bytes
    file_id: int | None  # inode of the log file when the write started, None before
    file_offset: int | None


def pack_rows(rows: Sequence[dict[str, Any]]) -> bytes:
    """Rows as msgpack ``[columns, values, values, ...]`` (rows with other columns as maps)."""
    if not rows:
        return msgpack.packb([])
    columns = tuple(rows[0])
    out: list[Any] = [columns]
    append = out.append
    for row in rows:
        append(tuple(row.values()) if tuple(row) == columns else dict(row))
    return msgpack.packb(out, use_bin_type=True)


def unpack_rows(data: bytes) -> list[dict[str, Any]]:
    items = msgpack.unpackb(data, raw=False, use_list=False)
    if not items:
        return []
    columns = items[0]
    return [dict(zip(columns, r, strict=False)) if isinstance(r, tuple) else r for r in items[1:]]


class StateDB:
    """The state database at ``path`` (created with its directory, mode 0600)."""

    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open state database {path}: {exc}") from exc
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside commits together or not at all."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- previous results ------------------------------------------------

    def get_query(self, name: str) -> QueryState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sql, epoch, counter, results, last_run FROM queries WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            return None
        try:
            rows = unpack_rows(row[3])
        except (ValueError, msgpack.UnpackException) as exc:
            raise StateError(f"{self.path}: stored results of {name!r} are damaged: {exc}") from exc
        return QueryState(name, row[0], row[1], row[2], rows, row[4])

    def commit_run(
        self,
        name: str,
        *,
        sql: str,
        epoch: int,
        counter: int | None,
        rows: Sequence[dict[str, Any]] | None,
        last_run: float,
        outbox: Sequence[tuple[str, bytes]] = (),
        update_query: bool = True,
        extra: Callable[[sqlite3.Connection], None] | None = None,
    ) -> list[int]:
        """Store one run atomically; ``rows`` None keeps the previous results. Returns outbox ids.

        ``update_query=False`` stores only the outbox (snapshot queries keep no diff state).
        ``extra`` writes more in the same transaction (the uplink queue's batch of the run).
        """
        ids: list[int] = []
        with self.transaction() as db:
            if not update_query:
                pass
            elif rows is None:
                cur = db.execute(
                    "UPDATE queries SET sql = ?, epoch = ?, counter = ?, last_run = ? WHERE name = ?",
                    (sql, epoch, counter, last_run, name),
                )
                if cur.rowcount == 0:
                    rows = []
            if update_query and rows is not None:
                db.execute(
                    "INSERT OR REPLACE INTO queries (name, sql, epoch, counter, results, last_run) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (name, sql, epoch, counter, pack_rows(rows), last_run),
                )
            db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?)", (name, last_run))
            for target, data in outbox:
                if data:
                    cursor = db.execute("INSERT INTO outbox (target, data) VALUES (?, ?)", (target, data))
                    ids.append(cast(int, cursor.lastrowid))  # set by every INSERT
            if extra is not None:
                extra(db)
        return ids

    def set_last_run(self, name: str, when: float) -> None:
        """Record a run that changed nothing else (e.g. one that failed)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?)", (name, when))

    def last_runs(self) -> dict[str, float]:
        """name -> time of its last committed run (snapshot queries included)."""
        with self._lock:
            return dict(self._db.execute("SELECT name, last_run FROM runs"))

    def query_names(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT name FROM queries ORDER BY name")]

    # -- outbox ------------------------------------------------------------

    def pending(self) -> list[OutboxEntry]:
        with self._lock:
            return [
                OutboxEntry(*r)
                for r in self._db.execute("SELECT id, target, data, file_id, file_offset FROM outbox ORDER BY id")
            ]

    def outbox_started(self, entry_id: int, file_id: int, offset: int) -> None:
        """Record where the entry's bytes are about to go (before writing them)."""
        with self._lock:
            self._db.execute("UPDATE outbox SET file_id = ?, file_offset = ? WHERE id = ?", (file_id, offset, entry_id))

    def outbox_done(self, entry_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))

    # -- denylist ----------------------------------------------------------

    def deny(self, name: str, until: float, reason: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO denylist VALUES (?, ?, ?)", (name, until, reason))

    def undeny(self, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM denylist WHERE name = ?", (name,))

    def denylisted(self, name: str, now: float) -> bool:
        with self._lock:
            row = self._db.execute("SELECT until FROM denylist WHERE name = ?", (name,)).fetchone()
        return row is not None and row[0] > now

    def denylist(self, now: float | None = None) -> dict[str, tuple[float, str]]:
        """name -> (until, reason), only entries still in force when ``now`` is given."""
        with self._lock:
            rows = self._db.execute("SELECT name, until, reason FROM denylist").fetchall()
        return {n: (u, r) for n, u, r in rows if now is None or u > now}

    # -- splay, identity, misc ----------------------------------------------

    def splay(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            return {n: (i, s) for n, i, s in self._db.execute("SELECT name, interval, splayed FROM splay")}

    def set_splay(self, name: str, interval: int, splayed: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO splay VALUES (?, ?, ?)", (name, interval, splayed))

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))

    def instance_id(self) -> str:
        """A random UUID made once and kept (osquery's host_identifier=instance)."""
        with self.transaction() as db:
            row = db.execute("SELECT value FROM kv WHERE key = 'instance_id'").fetchone()
            if row:
                return row[0]
            value = str(uuid.uuid4())
            db.execute("INSERT INTO kv VALUES ('instance_id', ?)", (value,))
            return value
