"""agentd's state database: previous results, counters, denylist, identity, result outbox.

One SQLite file in the state directory, in WAL mode.  Everything a scheduled run changes
(new previous-results, epoch, counter, last run and its result batches, and what the
uplink queues of it) becomes durable in ONE transaction (:meth:`StateDB.commit_run`), so
a kill -9 leaves either the old or the new state (see :mod:`agent.runner` for the
exactly-once protocol).

The outbox (:mod:`agent.outbox`): a run streams its rows in as batches while the query
runs (:meth:`StateDB.stage_batch`, written without fsync and invisible until the commit,
whose fsync makes them durable too); a run killed before its commit leaves staged
batches that the next open discards.  Sinks read committed batches in order
(:meth:`StateDB.outbox`, :meth:`StateDB.runs`, :meth:`StateDB.batches`) and delete them
once delivered (:meth:`StateDB.outbox_done`).  Values are kept typed, as SQLite gave
them (int, float, str, None, bytes): the result log prints them as osquery does, the
uplink sends them as they are.

Previous results are stored compactly with msgpack: ``[columns, [values...], ...]``,
typed, packed and read row by row (:class:`ResultsPacker`, :func:`iter_results`).  An
older agentd stored them as text; the runner compares rows as text, so either form diffs
the same.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import msgpack

from .outbox import Action, LogForm, ResultBatch, ResultRun

__all__ = [
    "OutboxEntry",
    "QueryState",
    "ResultsPacker",
    "StateDB",
    "StateError",
    "iter_results",
    "pack_rows",
    "unpack_rows",
]

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
CREATE TABLE IF NOT EXISTS result_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    committed INTEGER NOT NULL DEFAULT 0,
    form TEXT NOT NULL,
    host_identifier TEXT NOT NULL,
    unix_time REAL NOT NULL,
    epoch INTEGER NOT NULL,
    counter INTEGER NOT NULL DEFAULT 0,
    numerics INTEGER NOT NULL,
    numeric_columns TEXT NOT NULL DEFAULT '[]',
    decorations TEXT NOT NULL DEFAULT '{}',
    decorations_top_level INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS result_batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run INTEGER NOT NULL REFERENCES result_runs (id),
    phase INTEGER NOT NULL,
    action TEXT NOT NULL,
    columns TEXT NOT NULL,
    rows BLOB NOT NULL,
    row_count INTEGER NOT NULL,
    file_id INTEGER,
    file_offset INTEGER
);
CREATE INDEX IF NOT EXISTS result_batches_order ON result_batches (run, phase, id);
"""


#: Text with lone surrogates (undecodable bytes kept by surrogateescape) round-trips exactly.
TEXT_ERRORS = "surrogatepass"


class StateError(Exception):
    """The state database cannot be opened or is damaged."""


@dataclass(frozen=True, slots=True)
class QueryState:
    """What the previous run of a scheduled query left behind (``results``: packed rows)."""

    name: str
    sql: str
    epoch: int
    counter: int | None
    results: bytes
    last_run: float | None

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The previous results as dicts (tests, tools; the runner streams :func:`iter_results`)."""
        return unpack_rows(self.results)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """Result-log bytes a previous version of agentd committed (the ``outbox`` table it kept)."""

    id: int
    target: str  # "results" or "snapshots"
    data: bytes
    file_id: int | None  # inode of the log file when the write started, None before
    file_offset: int | None


class ResultsPacker:
    """The stored previous-results blob, built row by row: msgpack ``[columns, values, values, ...]``."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = tuple(columns)
        self.count = 0
        self._packer = msgpack.Packer(use_bin_type=True, unicode_errors=TEXT_ERRORS)
        self._body = bytearray()

    def add(self, values: Sequence[Any]) -> None:
        self._body += self._packer.pack(tuple(values))
        self.count += 1

    def add_packed(self, data: bytes) -> None:
        """Add one row the caller packed already (a msgpack array of its values)."""
        self._body += data
        self.count += 1

    def blob(self) -> bytes:
        if not self.count:
            return bytes(self._packer.pack([]))
        head = self._packer.pack_array_header(self.count + 1) + self._packer.pack(self.columns)
        return bytes(head + self._body)


def pack_rows(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Rows as msgpack ``[columns, values, values, ...]`` (rows with other columns as maps)."""
    if not rows:
        return msgpack.packb([])
    columns = tuple(rows[0])
    out: list[Any] = [columns]
    append = out.append
    for row in rows:
        append(tuple(row.values()) if tuple(row) == columns else dict(row))
    return msgpack.packb(out, use_bin_type=True, unicode_errors=TEXT_ERRORS)


def iter_results(data: bytes) -> tuple[tuple[str, ...], Iterator[tuple[Any, ...] | dict[str, Any]]]:
    """(columns, rows) of a stored blob; rows are value tuples (or maps, for rows with other columns).

    The rows are decoded as they are iterated; a damaged blob raises :class:`ValueError`.
    """
    unpacker = msgpack.Unpacker(
        raw=False, use_list=False, unicode_errors=TEXT_ERRORS, max_buffer_size=max(len(data), 1 << 16)
    )
    unpacker.feed(data)
    try:
        n = unpacker.read_array_header()
        columns = tuple(unpacker.unpack()) if n else ()
    except (ValueError, TypeError, msgpack.UnpackException, msgpack.OutOfData) as exc:
        raise ValueError(f"not a stored result: {exc}") from exc

    def rows() -> Iterator[tuple[Any, ...] | dict[str, Any]]:
        try:
            for _ in range(n - 1):
                yield unpacker.unpack()
        except (ValueError, TypeError, msgpack.UnpackException, msgpack.OutOfData) as exc:
            raise ValueError(f"stored result cut short: {exc}") from exc

    return columns, rows()


def unpack_rows(data: bytes) -> list[dict[str, Any]]:
    columns, rows = iter_results(data)
    return [dict(zip(columns, r, strict=False)) if isinstance(r, tuple) else dict(r) for r in rows]


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
            self._legacy = bool(
                self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").fetchone()
            )
            # Runs staged but never committed belong to a process that died: they never happened.
            self._db.execute("DELETE FROM result_batches WHERE run IN (SELECT id FROM result_runs WHERE committed = 0)")
            self._db.execute("DELETE FROM result_runs WHERE committed = 0")
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open state database {path}: {exc}") from exc
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside commits together or not at all.

        ``durable=False`` skips the fsync: for writes that a later durable commit covers
        (WAL frames are synced in order) or that may be lost without harm.
        """
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")

    # -- previous results ------------------------------------------------

    def get_query(self, name: str) -> QueryState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sql, epoch, counter, results, last_run FROM queries WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            return None
        try:
            iter_results(row[3])
        except ValueError as exc:
            raise StateError(f"{self.path}: stored results of {name!r} are damaged: {exc}") from exc
        return QueryState(name, row[0], row[1], row[2], row[3], row[4])

    def commit_run(
        self,
        name: str,
        *,
        sql: str,
        epoch: int,
        counter: int | None,
        results: bytes | None,
        last_run: float,
        run_id: int | None = None,
        numeric_columns: Iterable[str] = (),
        update_query: bool = True,
        extra: Callable[[sqlite3.Connection, ResultRun], None] | None = None,
    ) -> bool:
        """Store one run atomically: its diff state and its staged batches. True if it has output.

        ``results`` (from :class:`ResultsPacker` or :func:`pack_rows`) None keeps the previous
        results; ``update_query=False`` stores no diff state (snapshot queries).  The run
        ``run_id`` becomes visible to the sinks with ``counter``; a run without batches is
        dropped.  ``extra(db, run)`` writes more in the same transaction when the run has
        batches (the uplink queues them: :meth:`batches` reads them inside it).
        """
        with self.transaction() as db:
            if update_query and results is None:
                cur = db.execute(
                    "UPDATE queries SET sql = ?, epoch = ?, counter = ?, last_run = ? WHERE name = ?",
                    (sql, epoch, counter, last_run, name),
                )
                if cur.rowcount == 0:
                    results = pack_rows([])
            if update_query and results is not None:
                db.execute(
                    "INSERT OR REPLACE INTO queries (name, sql, epoch, counter, results, last_run) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (name, sql, epoch, counter, results, last_run),
                )
            db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?)", (name, last_run))
            if run_id is None:
                return False
            if db.execute("SELECT 1 FROM result_batches WHERE run = ? LIMIT 1", (run_id,)).fetchone() is None:
                db.execute("DELETE FROM result_runs WHERE id = ?", (run_id,))
                return False
            db.execute(
                "UPDATE result_runs SET committed = 1, counter = ?, numeric_columns = ? WHERE id = ?",
                (counter or 0, json.dumps(sorted(numeric_columns)), run_id),
            )
            if extra is not None:
                extra(db, self._runs(db, "id = ?", (run_id,))[0])
            return True

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

    # -- outbox: staging a run ---------------------------------------------

    def begin_run(
        self,
        name: str,
        *,
        form: LogForm,
        host_identifier: str,
        unix_time: float,
        epoch: int,
        numerics: bool = False,
        decorations: Mapping[str, str] | None = None,
        decorations_top_level: bool = False,
    ) -> int:
        """A new staged run (its counter is set by :meth:`commit_run`); returns its id."""
        with self.transaction(durable=False) as db:
            cur = db.execute(
                "INSERT INTO result_runs (name, form, host_identifier, unix_time, epoch, numerics, decorations, "
                "decorations_top_level) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    form.value,
                    host_identifier,
                    unix_time,
                    epoch,
                    int(numerics),
                    json.dumps(dict(decorations or {})),
                    int(decorations_top_level),
                ),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def stage_batch(self, run_id: int, action: Action, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Add rows of one action to a staged run (no fsync: the run's commit makes them durable)."""
        if not rows:
            return
        packer = msgpack.Packer(use_bin_type=True, unicode_errors=TEXT_ERRORS)
        self.stage_packed(run_id, action, columns, len(rows), b"".join(map(packer.pack, rows)))

    def stage_packed(self, run_id: int, action: Action, columns: Sequence[str], count: int, body: bytes) -> None:
        """:meth:`stage_batch` for rows the caller packed already: ``body`` is ``count`` msgpack arrays."""
        if not count:
            return
        packer = msgpack.Packer(use_bin_type=True)
        data = packer.pack_array_header(count) + body
        with self.transaction(durable=False) as db:
            db.execute(
                "INSERT INTO result_batches (run, phase, action, columns, rows, row_count) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, action.phase, action.value, json.dumps(list(columns)), data, count),
            )

    def discard_run(self, run_id: int) -> None:
        """Forget a staged run (its query failed)."""
        with self.transaction(durable=False) as db:
            db.execute("DELETE FROM result_batches WHERE run = ?", (run_id,))
            db.execute("DELETE FROM result_runs WHERE id = ? AND committed = 0", (run_id,))

    # -- outbox: reading and delivering ------------------------------------

    def runs(self) -> list[ResultRun]:
        """Committed runs not yet delivered, in commit order."""
        with self._lock:
            return self._runs(self._db, "committed = 1", ())

    @staticmethod
    def _runs(db: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> list[ResultRun]:
        rows = db.execute(
            "SELECT id, name, form, host_identifier, unix_time, epoch, counter, numerics, numeric_columns, "
            f"decorations, decorations_top_level FROM result_runs WHERE {where} ORDER BY id",
            args,
        ).fetchall()
        return [
            ResultRun(
                id=r[0],
                name=r[1],
                form=LogForm(r[2]),
                host_identifier=r[3],
                unix_time=r[4],
                epoch=r[5],
                counter=r[6],
                numerics=bool(r[7]),
                numeric_columns=frozenset(json.loads(r[8])),
                decorations=json.loads(r[9]),
                decorations_top_level=bool(r[10]),
            )
            for r in rows
        ]

    def batch_ids(self, run: ResultRun) -> list[int]:
        with self._lock:
            return [
                r[0]
                for r in self._db.execute(
                    "SELECT id FROM result_batches WHERE run = ? ORDER BY phase, id", (run.id,)
                ).fetchall()
            ]

    def batches(self, run: ResultRun) -> Iterator[ResultBatch]:
        """The run's batches in order (removed rows first), read one at a time."""
        for batch_id in self.batch_ids(run):
            with self._lock:
                r = self._db.execute(
                    "SELECT action, columns, rows, file_id, file_offset FROM result_batches WHERE id = ?", (batch_id,)
                ).fetchone()
            if r is None:
                continue  # delivered meanwhile
            try:
                rows = msgpack.unpackb(r[2], raw=False, use_list=False, unicode_errors=TEXT_ERRORS)
            except (ValueError, msgpack.UnpackException) as exc:
                raise StateError(f"{self.path}: result batch {batch_id} of {run.name!r} is damaged: {exc}") from exc
            yield ResultBatch(batch_id, run, Action(r[0]), tuple(json.loads(r[1])), rows, r[3], r[4])

    def outbox(self) -> Iterator[ResultBatch]:
        """Every committed batch not yet delivered, in order: what a sink reads."""
        for run in self.runs():
            yield from self.batches(run)

    def outbox_started(self, batch_id: int, file_id: int, offset: int) -> None:
        """Record where the lines starting with this batch are about to go (durably, before writing them)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE result_batches SET file_id = ?, file_offset = ? WHERE id = ?", (file_id, offset, batch_id)
            )

    def outbox_done(self, batch_ids: Iterable[int]) -> None:
        """Delivered: delete the batches, and their runs once no batch is left.

        Not fsynced: if this is lost, the batches are delivered again and the log finds
        their bytes already in place.
        """
        ids = list(batch_ids)
        with self.transaction(durable=False) as db:
            runs = {
                r[0]
                for chunk in _chunks(ids, 500)
                for r in db.execute(
                    f"SELECT DISTINCT run FROM result_batches WHERE id IN ({','.join('?' * len(chunk))})", chunk
                )
            }
            for chunk in _chunks(ids, 500):
                db.execute(f"DELETE FROM result_batches WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            for run in runs:
                db.execute(
                    "DELETE FROM result_runs WHERE id = ? AND NOT EXISTS (SELECT 1 FROM result_batches WHERE run = ?)",
                    (run, run),
                )

    def drop_run(self, run_id: int) -> None:
        """Delete a committed run and whatever batches it still has."""
        with self.transaction(durable=False) as db:
            db.execute("DELETE FROM result_batches WHERE run = ?", (run_id,))
            db.execute("DELETE FROM result_runs WHERE id = ?", (run_id,))

    # -- outbox of earlier versions: raw log bytes --------------------------

    def legacy_pending(self) -> list[OutboxEntry]:
        """Entries an earlier agentd committed as encoded lines (its ``outbox`` table), in order."""
        if not self._legacy:
            return []
        with self._lock:
            return [
                OutboxEntry(*r)
                for r in self._db.execute("SELECT id, target, data, file_id, file_offset FROM outbox ORDER BY id")
            ]

    def legacy_started(self, entry_id: int, file_id: int, offset: int) -> None:
        with self._lock:
            self._db.execute("UPDATE outbox SET file_id = ?, file_offset = ? WHERE id = ?", (file_id, offset, entry_id))

    def legacy_done(self, entry_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))
            if self._db.execute("SELECT 1 FROM outbox LIMIT 1").fetchone() is None:
                self._db.execute("DROP TABLE outbox")
                self._legacy = False

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


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
