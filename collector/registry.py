"""The registry: collectord's durable state, in SQLite (WAL).  The only module that writes SQL.

What it holds: hosts (node keys as SHA-256 only), their groups, subscriptions, each host's
stream and highest durably stored sequence, the outbox of accepted results and each
downstream sink's cursor over it.

Its interface is shaped for a shared PostgreSQL registry serving several collectors
(docs/architecture.md, "Scale-out"): a collector serves a host only under a **lease** whose
epoch rises at every connection (:meth:`Registry.acquire`); every write of results is
fenced by that epoch and commits the host's sequence mark in the same transaction as the
outbox rows (:meth:`Registry.accept`), so a stale collector can never store a batch twice
or out of order.  Wake-ups (new outbox rows, changed subscriptions) are the caller's
business and carry no data: readers always re-read from here.

Not thread-safe by design: the collector calls it from one thread (collector/store.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from operator import itemgetter
from typing import Any

import msgpack

from protocol.messages import Action, Dropped, Mode, Results
from protocol.operator import Targets

from .model import (
    AGENT_OWNER,
    Host,
    HostEvent,
    HostEventKind,
    HostFacts,
    HostQuery,
    Lease,
    LossReport,
    OutboxItem,
    OutboxKind,
    ResultBatch,
    Subscription,
)

__all__ = [
    "AGENT_GROUP_SOURCE",
    "Cursor",
    "OutboxReader",
    "Registry",
    "RegistryError",
    "Submission",
    "Verdict",
]

SCHEMA_VERSION = 1
#: Source of the groups an agent declares in its own config (other sources: e.g. "zeek" for subnet joins).
AGENT_GROUP_SOURCE = "agent"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (
    host_id TEXT PRIMARY KEY,
    node_key_hash BLOB,
    hostname TEXT NOT NULL,
    addresses TEXT NOT NULL,
    platform TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    epoch INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_expires REAL,
    stream TEXT NOT NULL DEFAULT '',
    last_seq INTEGER NOT NULL DEFAULT 0,
    dropped_rows INTEGER NOT NULL DEFAULT 0,
    dropped_batches INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS hosts_hostname ON hosts (hostname);
CREATE TABLE IF NOT EXISTS host_groups (
    host_id TEXT NOT NULL,
    grp TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (host_id, grp, source)
);
CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    sql TEXT NOT NULL,
    interval INTEGER NOT NULL,
    mode TEXT NOT NULL,
    removed INTEGER NOT NULL,
    hosts TEXT NOT NULL,
    groups TEXT NOT NULL,
    all_hosts INTEGER NOT NULL,
    route TEXT NOT NULL,
    created REAL NOT NULL,
    instance TEXT NOT NULL DEFAULT '',
    UNIQUE (owner, name)
);
CREATE TABLE IF NOT EXISTS outbox (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    host_id TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, position INTEGER NOT NULL, state TEXT NOT NULL);
"""


class RegistryError(Exception):
    """The registry cannot be opened, or a request on it cannot be done (the message says why)."""


class Verdict(Enum):
    """What :meth:`Registry.accept` did with one submission."""

    STORED = "stored"  # durable; ack it
    FENCED = "fenced"  # the lease is no longer current (a newer connection of the host took over)
    OUT_OF_ORDER = "out_of_order"  # not the next sequence of the host's stream


@dataclass(frozen=True, slots=True)
class Submission:
    """A batch (or a drop notice) of a host, to be stored under ``lease``."""

    lease: Lease
    hostname: str
    message: Results | Dropped
    received: float


@dataclass(frozen=True, slots=True)
class Cursor:
    """A sink's place in the outbox: everything up to ``position`` is delivered; ``state`` is the sink's own."""

    sink: str
    position: int
    state: str = ""


def _hash_key(node_key: str) -> bytes:
    return hashlib.sha256(node_key.encode()).digest()


_ACTIONS = {a.value: a for a in Action}
_FIRST, _SECOND = itemgetter(0), itemgetter(1)


class Registry:
    """The registry in the SQLite file ``path`` (created 0600, with its directory 0700)."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise RegistryError(f"{path}: registry schema {row[0]}, this collectord reads {SCHEMA_VERSION}")
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(subscriptions)")}
            if "instance" not in columns:  # registries made before HostQuery.instance existed
                self._db.execute("ALTER TABLE subscriptions ADD COLUMN instance TEXT NOT NULL DEFAULT ''")
        except (OSError, sqlite3.Error) as exc:
            raise RegistryError(f"cannot open the registry {path}: {exc}") from exc
        self._subscriptions: list[Subscription] = self._load_subscriptions()
        self._groups: dict[str, frozenset[str]] = {}
        self._hostnames: dict[str, str] = {}

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- identity --------------------------------------------------------------------------

    def collector_id(self) -> str:
        """This registry's collector id, made once and kept."""
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'collector_id'").fetchone()
            if row is not None:
                return str(row[0])
            value = "c-" + uuid.uuid4().hex[:12]
            db.execute("INSERT INTO meta VALUES ('collector_id', ?)", (value,))
            return value

    # -- hosts and credentials -------------------------------------------------------------

    def enroll(self, facts: HostFacts) -> str:
        """A new node key for ``facts.host_id`` (known or not); raises if the host is revoked."""
        now = self.clock()
        key = secrets.token_urlsafe(32)
        with self._transaction() as db:
            row = db.execute("SELECT revoked FROM hosts WHERE host_id = ?", (facts.host_id,)).fetchone()
            if row is not None and row[0]:
                raise RegistryError(f"host {facts.host_id} is revoked")
            if row is None:
                db.execute(
                    "INSERT INTO hosts (host_id, node_key_hash, hostname, addresses, platform, agent_version, "
                    "first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        facts.host_id,
                        _hash_key(key),
                        facts.hostname,
                        json.dumps(list(facts.addresses)),
                        facts.platform,
                        facts.agent_version,
                        now,
                        now,
                    ),
                )
            else:
                db.execute("UPDATE hosts SET node_key_hash = ? WHERE host_id = ?", (_hash_key(key), facts.host_id))
            self._append(db, OutboxKind.HOST, facts.host_id, self._host_event(facts, HostEventKind.ENROLLED, now))
        return key

    def authenticate(self, host_id: str, node_key: str) -> bool | None:
        """True: the node key is the host's; False: it is not (or unknown host); None: the host is revoked."""
        row = self._db.execute("SELECT node_key_hash, revoked FROM hosts WHERE host_id = ?", (host_id,)).fetchone()
        stored = row[0] if row is not None and row[0] is not None else b"\0" * 32
        match = hmac.compare_digest(stored, _hash_key(node_key))  # compared even for unknown hosts: same timing
        if row is None or not match:
            return False
        return None if row[1] else True

    def revoke(self, name: str) -> Host:
        """Revoke a host by id or hostname: its node key stops working, enrolling again is refused."""
        host = self._resolve_one(name)
        now = self.clock()
        with self._transaction() as db:
            db.execute(
                "UPDATE hosts SET revoked = 1, owner = NULL, lease_expires = NULL, epoch = epoch + 1 WHERE host_id = ?",
                (host.host_id,),
            )
            facts = HostFacts(host.host_id, host.hostname, host.addresses, groups=host.groups)
            self._append(db, OutboxKind.HOST, host.host_id, self._host_event(facts, HostEventKind.REVOKED, now))
        revoked = self.host(host.host_id)
        assert revoked is not None
        return revoked

    def host(self, host_id: str) -> Host | None:
        row = self._db.execute(f"SELECT {_HOST_COLUMNS} FROM hosts WHERE host_id = ?", (host_id,)).fetchone()
        return None if row is None else self._host(row)

    def hosts(self) -> list[Host]:
        rows = self._db.execute(f"SELECT {_HOST_COLUMNS} FROM hosts ORDER BY hostname, host_id").fetchall()
        return [self._host(r) for r in rows]

    def resolve(self, names: Iterable[str]) -> dict[str, list[Host]]:
        """name -> the hosts it names (a host id, else every host of that hostname; [] if none)."""
        out: dict[str, list[Host]] = {}
        for name in names:
            row = self._db.execute(f"SELECT {_HOST_COLUMNS} FROM hosts WHERE host_id = ?", (name,)).fetchone()
            if row is not None:
                out[name] = [self._host(row)]
                continue
            rows = self._db.execute(
                f"SELECT {_HOST_COLUMNS} FROM hosts WHERE hostname = ? ORDER BY host_id", (name,)
            ).fetchall()
            out[name] = [self._host(r) for r in rows]
        return out

    def select(self, targets: Targets) -> tuple[list[Host], list[str]]:
        """The hosts ``targets`` name (revoked ones included: callers say why they are skipped), and unknown names."""
        chosen: dict[str, Host] = {}
        unknown: list[str] = []
        if targets.all:
            chosen.update((h.host_id, h) for h in self.hosts())
        elif targets.groups:
            marks = ",".join("?" * len(targets.groups))
            ids = [
                r[0]
                for r in self._db.execute(
                    f"SELECT DISTINCT host_id FROM host_groups WHERE grp IN ({marks})", tuple(targets.groups)
                )
            ]
            for host_id in ids:
                host = self.host(host_id)
                if host is not None:
                    chosen[host_id] = host
        for name, found in self.resolve(targets.hosts).items():
            if not found:
                unknown.append(name)
            chosen.update((h.host_id, h) for h in found)
        return sorted(chosen.values(), key=lambda h: (h.hostname, h.host_id)), unknown

    def _resolve_one(self, name: str) -> Host:
        found = self.resolve([name])[name]
        if not found:
            raise RegistryError(f"no enrolled host with id or hostname {name!r}")
        if len(found) > 1:
            ids = ", ".join(h.host_id for h in found)
            raise RegistryError(f"hostname {name!r} names {len(found)} hosts ({ids}); give the host id")
        return found[0]

    def set_groups(self, host_id: str, source: str, groups: Iterable[str]) -> None:
        """Replace the groups ``source`` puts ``host_id`` in (the agent's own config is AGENT_GROUP_SOURCE)."""
        with self._transaction() as db:
            self._set_groups(db, host_id, source, groups)

    def _set_groups(self, db: sqlite3.Connection, host_id: str, source: str, groups: Iterable[str]) -> None:
        db.execute("DELETE FROM host_groups WHERE host_id = ? AND source = ?", (host_id, source))
        db.executemany(
            "INSERT OR IGNORE INTO host_groups VALUES (?, ?, ?)", [(host_id, g, source) for g in sorted(set(groups))]
        )
        self._groups.pop(host_id, None)

    def groups_of(self, host_id: str) -> frozenset[str]:
        cached = self._groups.get(host_id)
        if cached is None:
            rows = self._db.execute("SELECT DISTINCT grp FROM host_groups WHERE host_id = ?", (host_id,))
            cached = self._groups[host_id] = frozenset(r[0] for r in rows)
        return cached

    def groups_by_source(self, source: str) -> dict[str, frozenset[str]]:
        """host id -> the groups ``source`` put it in (hosts without any are left out)."""
        out: dict[str, set[str]] = {}
        for host_id, grp in self._db.execute("SELECT host_id, grp FROM host_groups WHERE source = ?", (source,)):
            out.setdefault(host_id, set()).add(grp)
        return {h: frozenset(g) for h, g in out.items()}

    # -- leases ----------------------------------------------------------------------------

    def acquire(self, facts: HostFacts, *, stream: str, acked_seq: int, collector_id: str, ttl: float) -> Lease:
        """Take the host's lease (epoch + 1) and refresh its facts; the mark results resume after.

        A new ``stream`` (a reinstalled agent) starts its marks at 0.  ``acked_seq`` above
        the stored mark (a registry older than the agent's knowledge) moves the mark up:
        the agent has forgotten those batches, so waiting for them would block it forever.
        """
        now = self.clock()
        with self._transaction() as db:
            row = db.execute(
                "SELECT epoch, stream, last_seq, revoked FROM hosts WHERE host_id = ?", (facts.host_id,)
            ).fetchone()
            if row is None:
                raise RegistryError(f"host {facts.host_id} is not enrolled")
            epoch, old_stream, last_seq, revoked = row
            if revoked:
                raise RegistryError(f"host {facts.host_id} is revoked")
            if old_stream != stream:
                last_seq = 0
            last_seq = max(last_seq, acked_seq)
            epoch += 1
            db.execute(
                "UPDATE hosts SET hostname = ?, addresses = ?, platform = ?, agent_version = ?, last_seen = ?, "
                "epoch = ?, owner = ?, lease_expires = ?, stream = ?, last_seq = ? WHERE host_id = ?",
                (
                    facts.hostname,
                    json.dumps(list(facts.addresses)),
                    facts.platform,
                    facts.agent_version,
                    now,
                    epoch,
                    collector_id,
                    now + ttl,
                    stream,
                    last_seq,
                    facts.host_id,
                ),
            )
            self._set_groups(db, facts.host_id, AGENT_GROUP_SOURCE, facts.groups)
            groups = tuple(sorted(self._groups_in(db, facts.host_id)))
            event = HostFacts(facts.host_id, facts.hostname, facts.addresses, groups=groups)
            self._append(db, OutboxKind.HOST, facts.host_id, self._host_event(event, HostEventKind.CONNECTED, now))
        self._hostnames[facts.host_id] = facts.hostname
        return Lease(facts.host_id, epoch, stream, last_seq, collector_id)

    def renew(self, leases: Sequence[Lease], ttl: float) -> list[Lease]:
        """Extend ``leases`` (and the hosts' last_seen); returns those that are no longer current."""
        now = self.clock()
        lost = []
        with self._transaction() as db:
            for lease in leases:
                cur = db.execute(
                    "UPDATE hosts SET lease_expires = ?, last_seen = ? WHERE host_id = ? AND epoch = ? AND owner = ?",
                    (now + ttl, now, lease.host_id, lease.epoch, lease.collector_id),
                )
                if cur.rowcount == 0:
                    lost.append(lease)
        return lost

    def release(self, lease: Lease) -> bool:
        """Give the lease back (the host went offline); False if it was no longer ours."""
        now = self.clock()
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE hosts SET owner = NULL, lease_expires = NULL, last_seen = ? "
                "WHERE host_id = ? AND epoch = ? AND owner = ?",
                (now, lease.host_id, lease.epoch, lease.collector_id),
            )
            if cur.rowcount == 0:
                return False
            row = db.execute("SELECT hostname, addresses FROM hosts WHERE host_id = ?", (lease.host_id,)).fetchone()
            groups = tuple(sorted(self._groups_in(db, lease.host_id)))
            facts = HostFacts(lease.host_id, row[0], tuple(json.loads(row[1])), groups=groups)
            self._append(db, OutboxKind.HOST, lease.host_id, self._host_event(facts, HostEventKind.DISCONNECTED, now))
        return True

    def release_all(self, collector_id: str) -> int:
        """Leases ``collector_id`` left behind (a crash) and expired ones of others: released, hosts offline."""
        now = self.clock()
        with self._transaction() as db:
            rows = db.execute(
                "SELECT host_id, hostname, addresses FROM hosts WHERE owner = ? OR (owner IS NOT NULL AND "
                "lease_expires < ?)",
                (collector_id, now),
            ).fetchall()
            for host_id, hostname, addresses in rows:
                db.execute("UPDATE hosts SET owner = NULL, lease_expires = NULL WHERE host_id = ?", (host_id,))
                groups = tuple(sorted(self._groups_in(db, host_id)))
                facts = HostFacts(host_id, hostname, tuple(json.loads(addresses)), groups=groups)
                self._append(db, OutboxKind.HOST, host_id, self._host_event(facts, HostEventKind.DISCONNECTED, now))
        return len(rows)

    # -- results: exactly once -------------------------------------------------------------

    def accept(self, submissions: Sequence[Submission], cursors: Sequence[Cursor] = ()) -> list[Verdict]:
        """Store results and drop notices in ONE transaction with the hosts' sequence marks.

        ``cursors`` (sinks' positions) are committed in the same transaction, so they share
        its fsync; a cursor that would move back is left where it is.

        Each submission must carry the next sequence of its host's stream under a current
        lease; a result batch becomes one outbox row per registry subscription it serves
        (none if nobody subscribes any more; the mark still moves).
        """
        verdicts: list[Verdict] = []
        marks: dict[str, list[Any]] = {}  # host_id -> [epoch, last_seq, dropped_rows, dropped_batches, changed]
        rows: list[tuple[int, str, bytes]] = []
        with self._transaction() as db:
            for item in submissions:
                lease = item.lease
                mark = marks.get(lease.host_id)
                if mark is None:
                    found = db.execute(
                        "SELECT epoch, last_seq, dropped_rows, dropped_batches, stream FROM hosts WHERE host_id = ?",
                        (lease.host_id,),
                    ).fetchone()
                    if found is None or found[0] != lease.epoch or found[4] != lease.stream:
                        verdicts.append(Verdict.FENCED)
                        continue
                    mark = marks[lease.host_id] = [found[0], found[1], found[2], found[3], False]
                message = item.message
                if isinstance(message, Results):
                    if message.seq != mark[1] + 1:
                        verdicts.append(Verdict.OUT_OF_ORDER)
                        continue
                    mark[1] = message.seq
                    rows.extend(self._result_rows(lease.host_id, item.hostname, message, item.received))
                else:
                    if message.from_seq != mark[1] + 1:
                        verdicts.append(Verdict.OUT_OF_ORDER)
                        continue
                    mark[1] = message.to_seq
                    mark[2] += message.rows
                    mark[3] += message.batches
                    data = [
                        item.hostname,
                        message.from_seq,
                        message.to_seq,
                        message.batches,
                        message.rows,
                        message.time,
                        item.received,
                    ]
                    rows.append((OutboxKind.LOSS, lease.host_id, msgpack.packb(data)))
                mark[4] = True
                verdicts.append(Verdict.STORED)
            if rows:
                db.executemany("INSERT INTO outbox (kind, host_id, data) VALUES (?, ?, ?)", rows)
            if cursors:
                db.executemany(_UPSERT_CURSOR, [(c.sink, c.position, c.state) for c in cursors])
            for host_id, (epoch, last_seq, dropped_rows, dropped_batches, changed) in marks.items():
                if changed:
                    db.execute(
                        "UPDATE hosts SET last_seq = ?, dropped_rows = ?, dropped_batches = ? "
                        "WHERE host_id = ? AND epoch = ?",
                        (last_seq, dropped_rows, dropped_batches, host_id, epoch),
                    )
        return verdicts

    def _result_rows(
        self, host_id: str, hostname: str, message: Results, received: float
    ) -> Iterator[tuple[int, str, bytes]]:
        body = [
            hostname,
            message.seq,
            None,  # query id
            None,  # subscription id
            message.name,
            AGENT_OWNER,
            "",
            message.columns,
            message.rows,
            message.counter,
            message.epoch,
            message.time,
            received,
        ]
        if message.subscription is None:
            yield OutboxKind.RESULTS, host_id, msgpack.packb(body, use_bin_type=True)
            return
        body[2] = message.subscription
        for sub in self.subscribers(host_id, message.subscription):
            body[3], body[4], body[5], body[6] = sub.id, sub.name, sub.owner, sub.route
            yield OutboxKind.RESULTS, host_id, msgpack.packb(body, use_bin_type=True)

    # -- subscriptions ---------------------------------------------------------------------

    def _load_subscriptions(self) -> list[Subscription]:
        rows = self._db.execute(
            "SELECT id, owner, name, sql, interval, mode, removed, hosts, groups, all_hosts, route, instance "
            "FROM subscriptions ORDER BY created, rowid"
        ).fetchall()
        return [
            Subscription(
                id=r[0],
                owner=r[1],
                name=r[2],
                query=HostQuery(r[3], r[4], Mode(r[5]), bool(r[6]), r[11]),
                targets=Targets(tuple(json.loads(r[7])), tuple(json.loads(r[8])), bool(r[9])),
                route=r[10],
            )
            for r in rows
        ]

    def subscriptions(self, owner: str | None = None) -> list[Subscription]:
        return [s for s in self._subscriptions if owner is None or s.owner == owner]

    def put_subscription(
        self, owner: str, name: str, query: HostQuery, targets: Targets, route: str = ""
    ) -> Subscription:
        """Add or replace (same owner and name) a subscription; its id changes when its definition does."""
        existing = next((s for s in self._subscriptions if s.owner == owner and s.name == name), None)
        if existing is not None and existing.query == query and existing.targets == targets and existing.route == route:
            return existing
        sub = Subscription(
            id=existing.id if existing is not None else "s" + secrets.token_hex(8),
            owner=owner,
            name=name,
            query=query,
            targets=targets,
            route=route,
        )
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO subscriptions (id, owner, name, sql, interval, mode, removed, hosts, "
                "groups, all_hosts, route, created, instance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sub.id,
                    owner,
                    name,
                    query.sql,
                    query.interval,
                    query.mode.value,
                    int(query.removed),
                    json.dumps(list(targets.hosts)),
                    json.dumps(list(targets.groups)),
                    int(targets.all),
                    route,
                    self.clock(),
                    query.instance,
                ),
            )
        self._subscriptions = self._load_subscriptions()
        return sub

    def remove_subscription(self, owner: str, name: str) -> Subscription | None:
        """Remove a subscription; the one removed, or None if there was none."""
        existing = next((s for s in self._subscriptions if s.owner == owner and s.name == name), None)
        if existing is None:
            return None
        with self._transaction() as db:
            db.execute("DELETE FROM subscriptions WHERE id = ?", (existing.id,))
        self._subscriptions = self._load_subscriptions()
        return existing

    def subscriptions_of(self, host_id: str, hostname: str = "") -> list[Subscription]:
        """The registry subscriptions that target ``host_id`` (by id, hostname, group or all)."""
        groups = self.groups_of(host_id)
        hostname = hostname or self._hostname(host_id)
        return [s for s in self._subscriptions if s.targets_host(host_id, hostname, groups)]

    def wanted(self, host_id: str, hostname: str = "") -> dict[str, tuple[HostQuery, str]]:
        """Host-side subscriptions the host should run: query id -> (definition, a name for its logs)."""
        out: dict[str, tuple[HostQuery, str]] = {}
        for sub in self.subscriptions_of(host_id, hostname):
            out.setdefault(sub.query.id, (sub.query, sub.name))
        return out

    def subscribers(self, host_id: str, query_id: str) -> list[Subscription]:
        """The registry subscriptions a host's results for ``query_id`` go to."""
        return [s for s in self.subscriptions_of(host_id) if s.query.id == query_id]

    def _hostname(self, host_id: str) -> str:
        name = self._hostnames.get(host_id)
        if name is None:
            row = self._db.execute("SELECT hostname FROM hosts WHERE host_id = ?", (host_id,)).fetchone()
            name = self._hostnames[host_id] = row[0] if row else ""
        return name

    # -- outbox and cursors ----------------------------------------------------------------

    def read(self, after: int, limit: int = 256) -> list[OutboxItem]:
        """Outbox items with a position above ``after``, in order (at most ``limit``)."""
        rows = self._db.execute(
            "SELECT position, kind, host_id, data FROM outbox WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        ).fetchall()
        return [_item(*row) for row in rows]

    def head(self) -> int:
        """The highest outbox position used so far (0: none)."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        return int(row[0]) if row else 0

    def cursor(self, sink: str) -> Cursor:
        row = self._db.execute("SELECT position, state FROM cursors WHERE sink = ?", (sink,)).fetchone()
        if row is None:
            return Cursor(sink, 0, "")
        return Cursor(sink, row[0], row[1])

    def commit_cursor(self, cursor: Cursor) -> None:
        """Record that ``cursor.sink`` has everything up to ``cursor.position`` (never moves back)."""
        with self._transaction() as db:
            row = db.execute("SELECT position FROM cursors WHERE sink = ?", (cursor.sink,)).fetchone()
            if row is not None and cursor.position < row[0]:
                raise RegistryError(
                    f"cursor of sink {cursor.sink!r} cannot move back from {row[0]} to {cursor.position}"
                )
            db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?)", (cursor.sink, cursor.position, cursor.state))

    def prune(self, sinks: Iterable[str], limit: int | None = None) -> int:
        """Delete outbox items every one of ``sinks`` has (at most ``limit``, oldest first); how many.

        No sinks: nothing is deleted.  Callers delete in chunks so commits of results are not held up.
        """
        names = list(sinks)
        if not names:
            return 0
        low = min(self.cursor(name).position for name in names)
        return self._delete_upto(low, limit)

    def prune_all(self, limit: int | None = None) -> int:
        """Delete outbox items (there is no sink to deliver them to); at most ``limit``."""
        return self._delete_upto(self.head(), limit)

    def _delete_upto(self, position: int, limit: int | None) -> int:
        with self._transaction() as db:
            if limit is None:
                return db.execute("DELETE FROM outbox WHERE position <= ?", (position,)).rowcount
            return db.execute(
                "DELETE FROM outbox WHERE position IN "
                "(SELECT position FROM outbox WHERE position <= ? ORDER BY position LIMIT ?)",
                (position, limit),
            ).rowcount

    def outbox_size(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    # -- helpers ---------------------------------------------------------------------------

    def _groups_in(self, db: sqlite3.Connection, host_id: str) -> set[str]:
        return {r[0] for r in db.execute("SELECT grp FROM host_groups WHERE host_id = ?", (host_id,))}

    def _append(self, db: sqlite3.Connection, kind: OutboxKind, host_id: str, data: bytes) -> None:
        db.execute("INSERT INTO outbox (kind, host_id, data) VALUES (?, ?, ?)", (kind, host_id, data))

    @staticmethod
    def _host_event(facts: HostFacts, event: HostEventKind, now: float) -> bytes:
        return msgpack.packb([facts.hostname, event.value, list(facts.addresses), list(facts.groups), now])

    def _host(self, row: Sequence[Any]) -> Host:
        host_id = row[0]
        return Host(
            host_id=host_id,
            hostname=row[1],
            addresses=tuple(json.loads(row[2])),
            platform=row[3],
            agent_version=row[4],
            groups=tuple(sorted(self.groups_of(host_id))),
            online=row[10] is not None,
            revoked=bool(row[7]),
            first_seen=row[5],
            last_seen=row[6],
            last_seq=row[11],
            dropped_rows=row[12],
            stream=row[13],
            epoch=row[8],
            owner=row[10],
        )


_UPSERT_CURSOR = (
    "INSERT INTO cursors (sink, position, state) VALUES (?, ?, ?) ON CONFLICT (sink) DO UPDATE SET "
    "position = excluded.position, state = excluded.state WHERE excluded.position >= cursors.position"
)

_HOST_COLUMNS = (
    "host_id, hostname, addresses, platform, agent_version, first_seen, last_seen, revoked, epoch, lease_expires, "
    "owner, last_seq, dropped_rows, stream"
)


class OutboxReader:
    """A read-only connection to the registry's outbox: sinks read without waiting for commits (WAL)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=30.0)
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open the registry {path} for reading: {exc}") from exc

    def read(self, after: int, limit: int = 256) -> list[OutboxItem]:
        """Outbox items with a position above ``after``, in order (at most ``limit``)."""
        rows = self._db.execute(
            "SELECT position, kind, host_id, data FROM outbox WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        ).fetchall()
        return [_item(*row) for row in rows]

    def close(self) -> None:
        self._db.close()


def _item(position: int, kind: int, host_id: str, data: bytes) -> OutboxItem:
    body = msgpack.unpackb(data, raw=False, use_list=False)
    if kind == OutboxKind.RESULTS:
        (hostname, seq, query_id, sub_id, name, owner, route, columns, rows, counter, epoch, host_time, received) = body
        return ResultBatch(
            position=position,
            host_id=host_id,
            hostname=hostname,
            seq=seq,
            query_id=query_id,
            subscription_id=sub_id,
            name=name,
            owner=owner,
            route=route,
            columns=columns,
            rows=tuple(zip(map(_ACTIONS.__getitem__, map(_FIRST, rows)), map(_SECOND, rows), strict=True)),
            counter=counter,
            epoch=epoch,
            host_time=host_time,
            received=received,
        )
    if kind == OutboxKind.HOST:
        hostname, event, addresses, groups, when = body
        return HostEvent(position, host_id, hostname, HostEventKind(event), addresses, groups, when)
    if kind == OutboxKind.LOSS:
        hostname, from_seq, to_seq, batches, rows_dropped, host_time, received = body
        return LossReport(position, host_id, hostname, from_seq, to_seq, batches, rows_dropped, host_time, received)
    raise RegistryError(f"outbox item {position} has an unknown kind {kind}")
