"""The collector's typed seams: what the registry stores and what downstream sinks receive.

Frozen dataclasses and enums only, no behaviour with side effects.  The Zeek link and the
attribution state (collector/zeek/, collector/attribution/) code against these:
:class:`ResultBatch`, :class:`HostEvent`, :class:`LossReport` arrive through the durable
outbox (collector/outbox.py), :class:`Subscription` is what they register.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from protocol.messages import Mode, Row
from protocol.operator import Targets

__all__ = [
    "AGENT_OWNER",
    "CONFIG_OWNER",
    "OPERATOR_OWNER",
    "Host",
    "HostEvent",
    "HostEventKind",
    "HostFacts",
    "HostQuery",
    "Lease",
    "LossReport",
    "OutboxItem",
    "OutboxKind",
    "ResultBatch",
    "Subscription",
    "Targets",
    "host_query_id",
]

#: Owners of subscriptions (a Zeek endpoint is ``zeek:<name>``); AGENT_OWNER marks results of a host's own config.
CONFIG_OWNER = "config"
OPERATOR_OWNER = "operator"
AGENT_OWNER = "agent"


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What an agent says about itself in hello (refreshed at every connection)."""

    host_id: str
    hostname: str
    addresses: tuple[str, ...] = ()
    platform: str = ""
    agent_version: str = ""
    groups: tuple[str, ...] = ()  # from the agent's config


@dataclass(frozen=True, slots=True)
class Host:
    """A host as the registry knows it."""

    host_id: str
    hostname: str
    addresses: tuple[str, ...]
    platform: str
    agent_version: str
    groups: tuple[str, ...]  # every group it is in: its config's and any added by other sources (e.g. Zeek's join)
    online: bool
    revoked: bool
    first_seen: float
    last_seen: float
    last_seq: int  # highest result sequence durably stored for its current stream
    dropped_rows: int  # rows the host reported dropped by its bounded queue, in total
    stream: str = ""
    epoch: int = 0  # lease epoch: rises at every connection (fencing for several collectors)
    owner: str | None = None  # collector id holding the lease


@dataclass(frozen=True, slots=True)
class Lease:
    """One collector's right to store a host's results: valid while ``epoch`` is the host's current epoch."""

    host_id: str
    epoch: int
    stream: str
    last_seq: int  # the host's mark when the lease was taken: results resume after it
    collector_id: str


@dataclass(frozen=True, slots=True)
class HostQuery:
    """A query as a host runs it; identical definitions wanted by several owners run once (seams item 4).

    ``instance`` (non-empty) makes a query run on its own, apart from identical definitions:
    a host runs a shared query once, so a subscriber that joins it later gets only the
    differences from then on; a subscriber that needs its own first run (every current row
    as ``added``, as osquery's first run gives it, e.g. a Zeek script) sets an instance.
    """

    sql: str
    interval: int
    mode: Mode = Mode.DIFFERENTIAL
    removed: bool = True
    instance: str = ""

    @property
    def id(self) -> str:
        return host_query_id(self)


def host_query_id(query: HostQuery) -> str:
    """The host-side subscription id: derived from the definition, so it is the same everywhere."""
    text = f"{query.sql}\0{query.interval}\0{query.mode.value}\0{int(query.removed)}"
    if query.instance:
        text += f"\0{query.instance}"
    return "q" + hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Subscription:
    """A registry subscription: who wants which query on which hosts, and where results go."""

    id: str
    owner: str  # config | operator | zeek:<endpoint> ...
    name: str  # unique per owner
    query: HostQuery
    targets: Targets = field(default_factory=Targets)
    route: str = ""  # opaque to the core: JSON the owner reads back (e.g. a Zeek event name and its types)

    def targets_host(self, host_id: str, hostname: str, groups: frozenset[str] | tuple[str, ...]) -> bool:
        t = self.targets
        if t.all or host_id in t.hosts or (hostname and hostname in t.hosts):
            return True
        return any(g in groups for g in t.groups)


class OutboxKind(IntEnum):
    RESULTS = 1
    HOST = 2
    LOSS = 3


@dataclass(frozen=True, slots=True)
class ResultBatch:
    """Accepted results of one query of one host, for one registry subscription (seams item 2).

    ``position`` is its place in the durable outbox: each sink's cursor moves over it once.
    Rows are (action, values) with values typed as SQLite gave them, in ``columns`` order.
    """

    position: int
    host_id: str
    hostname: str
    seq: int  # the host's sequence number of the batch
    query_id: str | None  # host-side subscription id; None for a query of the host's own config
    subscription_id: str | None  # registry subscription; None for the host's own config
    name: str  # the subscription's name (or the config query's name, as in osquery's result log)
    owner: str  # the subscription's owner (AGENT_OWNER for the host's own config)
    route: str  # the subscription's route (JSON text, "" for none)
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    counter: int
    epoch: int
    host_time: float  # the host's clock, unix seconds
    received: float  # the collector's clock when the batch was accepted
    kind: OutboxKind = OutboxKind.RESULTS


class HostEventKind(StrEnum):
    ENROLLED = "enrolled"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class HostEvent:
    """A host's coming and going, in order with its results (Zeek's host_connected/host_disconnected)."""

    position: int
    host_id: str
    hostname: str
    event: HostEventKind
    addresses: tuple[str, ...]
    groups: tuple[str, ...]
    time: float
    kind: OutboxKind = OutboxKind.HOST


@dataclass(frozen=True, slots=True)
class LossReport:
    """The host's bounded queue dropped ``rows`` rows in ``batches`` batches (sequences from_seq..to_seq)."""

    position: int
    host_id: str
    hostname: str
    from_seq: int
    to_seq: int
    batches: int
    rows: int
    host_time: float
    received: float
    kind: OutboxKind = OutboxKind.LOSS


OutboxItem = ResultBatch | HostEvent | LossReport
