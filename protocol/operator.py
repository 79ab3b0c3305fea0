"""The messages between an operator client (agent-cli) and collectord, on the operator path.

A separate vocabulary from the agents' (:mod:`protocol.messages`): an agent message on
the operator path, or an operator message sent to an agent, is an unknown type there.
Requests carry a client-chosen ``req`` number that every reply to them repeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from .errors import ErrorCode
from .messages import MAX_COLUMNS, MAX_ID, MAX_INTERVAL, MAX_NAME, MAX_ROWS, MAX_SQL, MAX_TEXT, Message, Mode
from .schema import (
    INT64_MAX,
    Fields,
    Record,
    Value,
    boolean,
    enum,
    integer,
    number,
    optional,
    record,
    seq_of,
    text,
    value_rows,
)

__all__ = [
    "AddSubscription",
    "Auth",
    "Authorized",
    "CollectorStatus",
    "ComponentInfo",
    "Counter",
    "Done",
    "GetStatus",
    "HostInfo",
    "HostList",
    "HostQueryStatus",
    "ListHosts",
    "ListSubscriptions",
    "OperatorError",
    "QueryDone",
    "QueryRows",
    "QueryStarted",
    "QueryStatus",
    "RemoveSubscription",
    "Revoke",
    "RunQuery",
    "SubscriptionInfo",
    "SubscriptionList",
    "Targets",
]

_REQ = integer(1, INT64_MAX)
_NAME = text(MAX_NAME, min_len=1)
_ID = text(MAX_ID, min_len=1)
_NAMES = seq_of(_NAME, 4096)
_TIME = number(0)
_COLUMNS = seq_of(text(MAX_NAME, min_len=1), MAX_COLUMNS)


class HostQueryStatus(StrEnum):
    """How one host ended a one-time query."""

    ROWS = "rows"  # answered with at least one row
    NO_ROWS = "no_rows"  # answered, nothing matched
    ERROR = "error"  # the query failed on the host (message says why)
    OFFLINE = "offline"  # not connected when the query started
    TIMEOUT = "timeout"  # no complete answer before the deadline
    UNKNOWN = "unknown"  # no enrolled host of that id or name

    @property
    def failed(self) -> bool:
        return self not in (HostQueryStatus.ROWS, HostQueryStatus.NO_ROWS)


@dataclass(frozen=True, slots=True)
class Targets(Record):
    """Which hosts: by host id or hostname, by group, or all (a group reaches hosts that join later)."""

    FIELDS: ClassVar[Fields] = {"hosts": _NAMES, "groups": _NAMES, "all": boolean()}

    hosts: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    all: bool = False

    @property
    def empty(self) -> bool:
        return not (self.hosts or self.groups or self.all)


_TARGETS = record(Targets)


@dataclass(frozen=True, slots=True)
class HostInfo(Record):
    """One enrolled host, as the registry knows it."""

    FIELDS: ClassVar[Fields] = {
        "host_id": _ID,
        "hostname": text(MAX_NAME),
        "addresses": seq_of(text(64), 1024),
        "platform": text(64),
        "agent_version": text(64),
        "groups": _NAMES,
        "online": boolean(),
        "revoked": boolean(),
        "first_seen": _TIME,
        "last_seen": _TIME,
        "last_seq": integer(0, INT64_MAX),
        "dropped_rows": integer(0, INT64_MAX),
    }

    host_id: str
    hostname: str
    addresses: tuple[str, ...]
    platform: str
    agent_version: str
    groups: tuple[str, ...]
    online: bool
    revoked: bool
    first_seen: float
    last_seen: float
    last_seq: int  # highest result sequence durably stored
    dropped_rows: int  # rows the host reported dropped by its bounded queue, in total


@dataclass(frozen=True, slots=True)
class SubscriptionInfo(Record):
    FIELDS: ClassVar[Fields] = {
        "id": _ID,
        "name": _NAME,
        "owner": text(MAX_NAME),
        "sql": text(MAX_SQL, min_len=1),
        "interval": integer(1, MAX_INTERVAL),
        "mode": enum(Mode),
        "removed": boolean(),
        "targets": _TARGETS,
    }

    id: str
    name: str
    owner: str
    sql: str
    interval: int
    mode: Mode
    removed: bool
    targets: Targets


@dataclass(frozen=True, slots=True)
class Counter(Record):
    FIELDS: ClassVar[Fields] = {"name": text(MAX_NAME, min_len=1), "value": integer(0, INT64_MAX)}

    name: str
    value: int


@dataclass(frozen=True, slots=True)
class ComponentInfo(Record):
    """One part of collectord downstream of the agents (a Zeek link, the log writer, ...) and how it is."""

    FIELDS: ClassVar[Fields] = {
        "name": text(MAX_NAME, min_len=1),
        "kind": text(64, min_len=1),
        "state": text(64),
        "detail": text(MAX_TEXT),
        "counters": seq_of(record(Counter), 64),
    }

    name: str
    kind: str  # zeek, logs, results
    state: str  # e.g. ready, disconnected, writing
    detail: str  # where it goes, the last error
    counters: tuple[Counter, ...] = ()


# -- operator -> collector ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Auth(Message):
    """First message of an operator client: its operator token."""

    TYPE: ClassVar[str] = "auth"
    OPEN: ClassVar[bool] = True
    FIELDS: ClassVar[Fields] = {
        "versions": seq_of(integer(1, 65535), 64, min_items=1),
        "token": text(1024, min_len=1),
        "client": text(MAX_NAME),
    }

    versions: tuple[int, ...]
    token: str
    client: str

    def __repr__(self) -> str:
        return f"Auth(versions={self.versions}, client={self.client!r})"


@dataclass(frozen=True, slots=True)
class ListHosts(Message):
    TYPE: ClassVar[str] = "list_hosts"
    FIELDS: ClassVar[Fields] = {"req": _REQ}

    req: int


@dataclass(frozen=True, slots=True)
class GetStatus(Message):
    """collectord's own status: hosts online, and each downstream part (Zeek links, logs)."""

    TYPE: ClassVar[str] = "get_status"
    FIELDS: ClassVar[Fields] = {"req": _REQ}

    req: int


@dataclass(frozen=True, slots=True)
class ListSubscriptions(Message):
    TYPE: ClassVar[str] = "list_subscriptions"
    FIELDS: ClassVar[Fields] = {"req": _REQ}

    req: int


@dataclass(frozen=True, slots=True)
class AddSubscription(Message):
    """Subscribe the targets to ``sql``; a name already used by the operator is replaced."""

    TYPE: ClassVar[str] = "add_subscription"
    FIELDS: ClassVar[Fields] = {
        "req": _REQ,
        "name": _NAME,
        "sql": text(MAX_SQL, min_len=1),
        "interval": integer(1, MAX_INTERVAL),
        "mode": enum(Mode),
        "removed": boolean(),
        "targets": _TARGETS,
    }

    req: int
    name: str
    sql: str
    interval: int
    mode: Mode
    removed: bool
    targets: Targets


@dataclass(frozen=True, slots=True)
class RemoveSubscription(Message):
    TYPE: ClassVar[str] = "remove_subscription"
    FIELDS: ClassVar[Fields] = {"req": _REQ, "name": _NAME}

    req: int
    name: str


@dataclass(frozen=True, slots=True)
class RunQuery(Message):
    """A one-time query on the targets; answered by query_started, rows, a status per host, query_done."""

    TYPE: ClassVar[str] = "run_query"
    FIELDS: ClassVar[Fields] = {
        "req": _REQ,
        "sql": text(MAX_SQL, min_len=1),
        "targets": _TARGETS,
        "timeout": number(0.001, 3600),
    }

    req: int
    sql: str
    targets: Targets
    timeout: float


@dataclass(frozen=True, slots=True)
class Revoke(Message):
    """Revoke a host (id or hostname): its node key stops working and it is disconnected."""

    TYPE: ClassVar[str] = "revoke"
    FIELDS: ClassVar[Fields] = {"req": _REQ, "host": _NAME}

    req: int
    host: str


# -- collector -> operator ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authorized(Message):
    TYPE: ClassVar[str] = "authorized"
    FIELDS: ClassVar[Fields] = {"version": integer(1, 65535), "collector_id": _ID}

    version: int
    collector_id: str


@dataclass(frozen=True, slots=True)
class HostList(Message):
    TYPE: ClassVar[str] = "hosts"
    FIELDS: ClassVar[Fields] = {"req": _REQ, "hosts": seq_of(record(HostInfo), 1_000_000)}

    req: int
    hosts: tuple[HostInfo, ...]


@dataclass(frozen=True, slots=True)
class CollectorStatus(Message):
    TYPE: ClassVar[str] = "status"
    FIELDS: ClassVar[Fields] = {
        "req": _REQ,
        "collector_id": _ID,
        "hosts_online": integer(0, INT64_MAX),
        "hosts_enrolled": integer(0, INT64_MAX),
        "components": seq_of(record(ComponentInfo), 1024),
    }

    req: int
    collector_id: str
    hosts_online: int
    hosts_enrolled: int
    components: tuple[ComponentInfo, ...]


@dataclass(frozen=True, slots=True)
class SubscriptionList(Message):
    TYPE: ClassVar[str] = "subscriptions"
    FIELDS: ClassVar[Fields] = {"req": _REQ, "subscriptions": seq_of(record(SubscriptionInfo), 100_000)}

    req: int
    subscriptions: tuple[SubscriptionInfo, ...]


@dataclass(frozen=True, slots=True)
class Done(Message):
    """A request succeeded; ``message`` says what it did."""

    TYPE: ClassVar[str] = "done"
    FIELDS: ClassVar[Fields] = {"req": _REQ, "message": text(MAX_TEXT)}

    req: int
    message: str


@dataclass(frozen=True, slots=True)
class QueryStarted(Message):
    TYPE: ClassVar[str] = "query_started"
    FIELDS: ClassVar[Fields] = {"req": _REQ, "query_id": _ID, "hosts": seq_of(_NAME, 1_000_000)}

    req: int
    query_id: str
    hosts: tuple[str, ...]  # every host the query targets (ids; unknown names as given)


@dataclass(frozen=True, slots=True)
class QueryRows(Message):
    TYPE: ClassVar[str] = "query_rows"
    FIELDS: ClassVar[Fields] = {
        "req": _REQ,
        "host_id": _ID,
        "hostname": text(MAX_NAME),
        "columns": _COLUMNS,
        "rows": value_rows(MAX_ROWS, MAX_COLUMNS),
    }

    req: int
    host_id: str
    hostname: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Value, ...], ...]


@dataclass(frozen=True, slots=True)
class QueryStatus(Message):
    TYPE: ClassVar[str] = "query_status"
    FIELDS: ClassVar[Fields] = {
        "req": _REQ,
        "host_id": _NAME,
        "hostname": text(MAX_NAME),
        "status": enum(HostQueryStatus),
        "rows": integer(0, INT64_MAX),
        "message": text(MAX_TEXT),
    }

    req: int
    host_id: str
    hostname: str
    status: HostQueryStatus
    rows: int
    message: str = ""


@dataclass(frozen=True, slots=True)
class QueryDone(Message):
    TYPE: ClassVar[str] = "query_done"
    FIELDS: ClassVar[Fields] = {"req": _REQ}

    req: int


@dataclass(frozen=True, slots=True)
class OperatorError(Message):
    """A refused request (``req`` set; the session goes on) or a refused session (``req`` nil; it closes)."""

    TYPE: ClassVar[str] = "error"
    FIELDS: ClassVar[Fields] = {"req": optional(_REQ), "code": enum(ErrorCode), "message": text(MAX_TEXT)}

    req: int | None
    code: ErrorCode
    message: str
