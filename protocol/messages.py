"""The messages between agentd and collectord: one frozen dataclass per message type.

Each class names its wire type (``TYPE``) and the check of every field (``FIELDS``);
the codec (:mod:`protocol.codec`) decodes a frame into exactly one of them or raises.
Values in result rows are typed as SQLite gave them (int, float, str, bytes, None).
docs/protocol.md documents every message with an example.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from operator import itemgetter
from typing import ClassVar

from .errors import ErrorCode, ProtocolError
from .schema import (
    INT64_MAX,
    Fields,
    Record,
    Value,
    bad,
    boolean,
    check_values,
    enum,
    integer,
    number,
    optional,
    seq_of,
    text,
    value_rows,
    values_ok,
)

__all__ = [
    "MAX_COLUMNS",
    "MAX_FRAME",
    "MAX_INTERVAL",
    "MAX_ROWS",
    "MAX_SQL",
    "SUPPORTED_VERSIONS",
    "Ack",
    "Action",
    "Bye",
    "ByeReason",
    "Dropped",
    "Error",
    "Execute",
    "ExecuteResult",
    "Hello",
    "Message",
    "Mode",
    "Ping",
    "Pong",
    "Results",
    "Row",
    "Subscribe",
    "Unsubscribe",
    "Welcome",
]

#: Protocol versions this code speaks, oldest first.  The collector picks the highest in common.
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)

#: Default frame limit (bytes) of both sides; the collector announces its own in ``welcome``.
MAX_FRAME = 4 * 1024 * 1024
MAX_SQL = 65536
MAX_COLUMNS = 1024
MAX_ROWS = 1_000_000  # per message; the frame limit bounds it long before
MAX_INTERVAL = 604800  # osquery's kMaxQueryInterval
MAX_TEXT = 8192
MAX_ID = 128
MAX_NAME = 256

_NAME = text(MAX_NAME, min_len=1)
_ID = text(MAX_ID, min_len=1)
_SEQ = integer(1, INT64_MAX)
_SEQ0 = integer(0, INT64_MAX)
_COLUMNS = seq_of(text(MAX_NAME, min_len=1), MAX_COLUMNS)
_SQL = text(MAX_SQL, min_len=1)
_TIME = number(0)


class Action(StrEnum):
    """osquery's action of a result row."""

    ADDED = "added"
    REMOVED = "removed"
    SNAPSHOT = "snapshot"


class Mode(StrEnum):
    """osquery's two ways of reporting a scheduled query."""

    DIFFERENTIAL = "differential"
    SNAPSHOT = "snapshot"


class ByeReason(StrEnum):
    """Why a side ends the session on purpose."""

    SHUTDOWN = "shutdown"  # the process is stopping; reconnect later
    RESTART = "restart"  # the process restarts right away; reconnect soon
    SUPERSEDED = "superseded"  # a newer connection of the same host took over
    REVOKED = "revoked"  # the host was revoked: do not come back with this node key
    DONE = "done"  # a client (agent-cli) has what it wanted


#: One result row: its action and its values in the batch's column order.
Row = tuple[Action, tuple[Value, ...]]

_ACTIONS = {a.value: a for a in Action}


_FIRST, _SECOND = itemgetter(0), itemgetter(1)


def _check_action_rows(value: object, where: str) -> tuple[Row, ...]:
    """``[[action, [values...]], ...]`` -> tuple of (Action, values); widths are checked by the message."""
    if type(value) is not tuple or len(value) > MAX_ROWS:
        raise bad(where, f"an array of at most {MAX_ROWS} rows", value)
    # The common case in C loops: pairs, known actions, tuples of SQLite values.  Anything else
    # takes the row-by-row path below, which names the first culprit.
    if not value:
        return ()
    if set(map(type, value)) == {tuple} and set(map(len, value)) == {2}:
        actions, rows = list(map(_FIRST, value)), list(map(_SECOND, value))
        known = set(map(type, actions)) == {str} and set(actions) <= _ACTIONS.keys()
        if known and set(map(type, rows)) == {tuple} and values_ok(rows):
            return tuple(zip(map(_ACTIONS.__getitem__, actions), rows, strict=True))
    out: list[Row] = []
    append = out.append
    for i, row in enumerate(value):
        if type(row) is not tuple or len(row) != 2:
            raise bad(f"{where}[{i}]", "[action, [values...]]", row)
        action = _ACTIONS.get(row[0]) if type(row[0]) is str else None
        if action is None:
            raise bad(f"{where}[{i}][0]", "added, removed or snapshot", row[0])
        vals = row[1]
        if type(vals) is not tuple:
            raise bad(f"{where}[{i}][1]", "an array of values", vals)
        check_values(vals, f"{where}[{i}][1]")
        append((action, vals))
    return tuple(out)


class Message(Record):
    """A top-level message: ``TYPE`` is its wire name; ``OPEN`` tolerates unknown fields."""

    __slots__ = ()
    TYPE: ClassVar[str] = ""
    #: Unknown fields are ignored instead of refused (only ``hello``/``auth``: they precede version negotiation).
    OPEN: ClassVar[bool] = False


# ---------------------------------------------------------------------------
# agent -> collector
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """First message of an agent: who it is, what it can do, and its credential."""

    TYPE: ClassVar[str] = "hello"
    OPEN: ClassVar[bool] = True
    FIELDS: ClassVar[Fields] = {
        "versions": seq_of(integer(1, 65535), 64, min_items=1),
        "host_id": _ID,
        "hostname": text(MAX_NAME),
        "addresses": seq_of(text(64, min_len=1), 1024),
        "platform": text(64),
        "agent_version": text(64),
        "tables": seq_of(_NAME, 4096),
        "groups": seq_of(_NAME, 256),
        "node_key": optional(text(MAX_NAME, min_len=1)),
        "enroll_secret": optional(text(1024, min_len=1)),
        "stream": _ID,
        "acked_seq": _SEQ0,
        "subscriptions": seq_of(_ID, 4096),
    }

    versions: tuple[int, ...]
    host_id: str  # stable across restarts and reinstalls on the same machine
    hostname: str
    addresses: tuple[str, ...]
    platform: str
    agent_version: str
    tables: tuple[str, ...]
    groups: tuple[str, ...]
    node_key: str | None
    enroll_secret: str | None
    stream: str  # identity of the agent's result queue; a new one restarts its sequence numbers
    acked_seq: int  # the highest sequence the agent knows to be acknowledged
    subscriptions: tuple[str, ...]  # ids of the collector subscriptions the agent runs

    def check(self, where: str) -> None:
        if (self.node_key is None) == (self.enroll_secret is None):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{where}: exactly one of node_key and enroll_secret")

    def __repr__(self) -> str:  # credentials never reach a log line
        return (
            f"Hello(host_id={self.host_id!r}, hostname={self.hostname!r}, versions={self.versions}, "
            f"stream={self.stream!r}, acked_seq={self.acked_seq}, groups={self.groups}, "
            f"credential={'node_key' if self.node_key else 'enroll_secret'})"
        )


@dataclass(frozen=True, slots=True)
class Results(Message):
    """One batch of a query's results: the next sequence number of the host's stream."""

    TYPE: ClassVar[str] = "results"
    FIELDS: ClassVar[Fields] = {
        "seq": _SEQ,
        "subscription": optional(_ID),
        "name": _NAME,
        "columns": _COLUMNS,
        "rows": _check_action_rows,
        "counter": _SEQ0,
        "epoch": _SEQ0,
        "time": _TIME,
    }

    seq: int
    subscription: str | None  # the collector subscription, None for a query of the agent's own config
    name: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    counter: int
    epoch: int
    time: float  # the host's clock, unix seconds

    def check(self, where: str) -> None:
        width = len(self.columns)
        for i, (_, vals) in enumerate(self.rows):
            if len(vals) != width:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{where}.rows[{i}]: {len(vals)} values for {width} columns")


@dataclass(frozen=True, slots=True)
class Dropped(Message):
    """Sequences ``from_seq``..``to_seq`` were dropped by the agent's bounded queue; they never come."""

    TYPE: ClassVar[str] = "dropped"
    FIELDS: ClassVar[Fields] = {
        "from_seq": _SEQ,
        "to_seq": _SEQ,
        "batches": integer(1, INT64_MAX),
        "rows": _SEQ0,
        "time": _TIME,
    }

    from_seq: int
    to_seq: int
    batches: int
    rows: int
    time: float

    def check(self, where: str) -> None:
        if self.to_seq < self.from_seq:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{where}: to_seq {self.to_seq} < from_seq {self.from_seq}")
        if self.batches > self.to_seq - self.from_seq + 1:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{where}: more batches than sequence numbers")


@dataclass(frozen=True, slots=True)
class ExecuteResult(Message):
    """A part of a one-time query's answer; the part with ``last`` true ends it (with ``error`` if it failed)."""

    TYPE: ClassVar[str] = "execute_result"
    FIELDS: ClassVar[Fields] = {
        "query_id": _ID,
        "columns": _COLUMNS,
        "rows": value_rows(MAX_ROWS, MAX_COLUMNS),
        "last": boolean(),
        "error": optional(text(MAX_TEXT)),
        "timed_out": boolean(),
    }

    query_id: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Value, ...], ...]
    last: bool
    error: str | None = None
    timed_out: bool = False

    def check(self, where: str) -> None:
        width = len(self.columns)
        for i, vals in enumerate(self.rows):
            if len(vals) != width:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{where}.rows[{i}]: {len(vals)} values for {width} columns")
        if (self.error is not None or self.timed_out) and not self.last:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{where}: an error ends the answer (last must be true)")


# ---------------------------------------------------------------------------
# collector -> agent
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcome(Message):
    """The collector accepts the agent: the version it chose and where the agent's stream resumes."""

    TYPE: ClassVar[str] = "welcome"
    FIELDS: ClassVar[Fields] = {
        "version": integer(1, 65535),
        "collector_id": _ID,
        "node_key": optional(text(MAX_NAME, min_len=1)),
        "last_seq": _SEQ0,
        "max_frame": integer(1024, 2**31),
        "max_rate": number(1),
    }

    version: int
    collector_id: str
    node_key: str | None  # set when the agent was enrolled by this hello: keep it, use it next time
    last_seq: int  # highest sequence durably stored for this host: resend what comes after
    max_frame: int  # bytes per frame the collector accepts
    max_rate: float  # messages per second (sustained) the collector accepts

    def __repr__(self) -> str:
        return (
            f"Welcome(version={self.version}, collector_id={self.collector_id!r}, last_seq={self.last_seq}, "
            f"enrolled={self.node_key is not None})"
        )


@dataclass(frozen=True, slots=True)
class Subscribe(Message):
    """Run ``sql`` every ``interval`` seconds (events: as they arrive) until unsubscribed; persisted by the agent."""

    TYPE: ClassVar[str] = "subscribe"
    FIELDS: ClassVar[Fields] = {
        "id": _ID,
        "name": _NAME,
        "sql": _SQL,
        "interval": integer(1, MAX_INTERVAL),
        "mode": enum(Mode),
        "removed": boolean(),
    }

    id: str
    name: str
    sql: str
    interval: int
    mode: Mode = Mode.DIFFERENTIAL
    removed: bool = True


@dataclass(frozen=True, slots=True)
class Unsubscribe(Message):
    TYPE: ClassVar[str] = "unsubscribe"
    FIELDS: ClassVar[Fields] = {"id": _ID}

    id: str


@dataclass(frozen=True, slots=True)
class Execute(Message):
    """Run ``sql`` once now; answer with ``execute_result`` parts."""

    TYPE: ClassVar[str] = "execute"
    FIELDS: ClassVar[Fields] = {"query_id": _ID, "sql": _SQL, "timeout": number(0.001, 3600)}

    query_id: str
    sql: str
    timeout: float


@dataclass(frozen=True, slots=True)
class Ack(Message):
    """Every sequence up to ``seq`` is durably stored: the agent may forget it."""

    TYPE: ClassVar[str] = "ack"
    FIELDS: ClassVar[Fields] = {"seq": _SEQ0}

    seq: int


# ---------------------------------------------------------------------------
# both directions
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Error(Message):
    """A refusal; the side that sends it closes the connection afterwards."""

    TYPE: ClassVar[str] = "error"
    FIELDS: ClassVar[Fields] = {"code": enum(ErrorCode), "message": text(MAX_TEXT)}

    code: ErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class Ping(Message):
    TYPE: ClassVar[str] = "ping"
    FIELDS: ClassVar[Fields] = {"nonce": _SEQ0}

    nonce: int


@dataclass(frozen=True, slots=True)
class Pong(Message):
    TYPE: ClassVar[str] = "pong"
    FIELDS: ClassVar[Fields] = {"nonce": _SEQ0}

    nonce: int


@dataclass(frozen=True, slots=True)
class Bye(Message):
    """The sender ends the session on purpose and closes; ``reason`` says whether to come back."""

    TYPE: ClassVar[str] = "bye"
    FIELDS: ClassVar[Fields] = {"reason": enum(ByeReason), "message": text(MAX_TEXT)}

    reason: ByeReason
    message: str = ""
