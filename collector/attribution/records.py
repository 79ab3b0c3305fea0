"""What the engine keeps per host: process incarnations and sockets, read from rows.

Rows arrive in osquery's schemas, typed as SQLite gave them on the host (int, float,
str, None); text holding a number (osquery's JSON logs) is accepted too.  A row that
cannot describe a process or a socket (no pid, no port, a failed call) is refused with a
short reason the engine counts.  Rows may carry more than osquery's columns: this
project's agent adds, on socket_events, the caller's ``uid``/``parent``, the process's
``process_start_time``, a precise ``timestamp`` and the local end of connects; the
collector's own subscriptions join process columns onto socket snapshots.  Where present
they are used, where absent the engine falls back to osquery's columns.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .addresses import normal

__all__ = [
    "EVENT_PRECISION",
    "SECOND_PRECISION",
    "Facts",
    "Proc",
    "RowRefused",
    "Sock",
    "SockKind",
    "event_time",
    "facts_from",
    "to_int",
    "to_text",
]

#: Uncertainty of an event time: audit's millisecond stamp taken from a coarse (jiffy) clock.
EVENT_PRECISION = 0.01
#: Uncertainty of a whole-second ``time`` column (the true time is in [time, time + 1)).
SECOND_PRECISION = 0.5


class RowRefused(ValueError):
    """A row that cannot be used; ``str()`` is the counter's key (short, no values)."""


def to_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value == value and abs(value) < 2**63 else None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def to_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if result == result and abs(result) != float("inf") else None


def to_text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text else None


def event_time(row: Mapping[str, Any]) -> tuple[float, float]:
    """(time, uncertainty) of an event row: the precise ``timestamp`` if given, else ``time``."""
    precise = to_float(row.get("timestamp"))
    if precise is not None and precise > 0:
        return precise, EVENT_PRECISION
    whole = to_int(row.get("time"))
    if whole is None or whole <= 0:
        raise RowRefused("no time")
    return whole + 0.5, SECOND_PRECISION


@dataclass(slots=True)
class Facts:
    """What a row says about the process behind it (None: the row does not say)."""

    pid: int
    start: float | None = None  # process start (fork) time, UNIX seconds
    path: str | None = None
    cmdline: str | None = None
    uid: int | None = None
    parent: int | None = None
    container_id: str | None = None

    def to_list(self) -> list[Any]:
        return [self.pid, self.start, self.path, self.cmdline, self.uid, self.parent, self.container_id]

    @classmethod
    def from_list(cls, data: list[Any]) -> Facts:
        return cls(*data)


def facts_from(row: Mapping[str, Any], *, start_column: str = "start_time") -> Facts:
    pid = to_int(row.get("pid"))
    if pid is None or pid <= 0:
        raise RowRefused("no pid")
    start = to_float(row.get(start_column))
    parent = to_int(row.get("parent"))
    return Facts(
        pid=pid,
        start=start if start is not None and start > 0 else None,
        path=to_text(row.get("path")),
        cmdline=to_text(row.get("cmdline")),
        uid=to_int(row.get("uid")),
        parent=parent if parent is not None and parent >= 0 else None,
        container_id=to_text(row.get("container_id")),
    )


@dataclass(slots=True)
class Proc:
    """One process image: from an exec event (``begin`` = exec time) or a processes row
    (``begin`` = start time).  ``until`` is when a snapshot saw it gone."""

    pid: int
    begin: float
    precision: float
    from_exec: bool
    start: float | None
    path: str | None
    cmdline: str | None
    uid: int | None
    parent: int | None
    container_id: str | None
    until: float | None = None
    touched: bool = False  # used by a lookup since it was queued for eviction
    row_key: tuple[Any, ...] | None = None  # the processes row it came from
    dropped: bool = False

    def to_list(self) -> list[Any]:
        return [
            self.pid,
            self.begin,
            self.precision,
            self.from_exec,
            self.start,
            self.path,
            self.cmdline,
            self.uid,
            self.parent,
            self.container_id,
            self.until,
            self.touched,
            list(self.row_key) if self.row_key is not None else None,
        ]

    @classmethod
    def from_list(cls, data: list[Any]) -> Proc:
        pid, begin, precision, from_exec, start, path, cmdline, uid, parent, container_id, until, touched, key = data
        return cls(
            pid,
            begin,
            precision,
            from_exec,
            start,
            path,
            cmdline,
            uid,
            parent,
            container_id,
            until,
            touched,
            tuple(key) if key is not None else None,
        )


class SockKind(enum.Enum):
    CONNECT = "connect"  # socket_events
    ACCEPT = "accept"  # socket_events: remote = the peer
    BIND = "bind"  # socket_events
    OPEN = "open"  # process_open_sockets
    LISTEN = "listen"  # listening_ports

    @property
    def is_event(self) -> bool:
        return self in (SockKind.CONNECT, SockKind.ACCEPT, SockKind.BIND)


@dataclass(slots=True)
class Sock:
    """A socket as one row saw it.  Events: ``t`` is the call's time.  Snapshot rows: ``t``
    is when first seen, ``until`` when seen gone; ``key`` identifies the row for removal."""

    kind: SockKind
    t: float
    precision: float
    protocol: int  # 0: not known (audit does not record it)
    local_addr: str | None  # normalised; ANY4/ANY6 for wildcards
    local_port: int | None
    remote_addr: str | None
    remote_port: int | None
    facts: Facts
    until: float | None = None
    key: tuple[Any, ...] | None = None

    def to_list(self) -> list[Any]:
        return [
            self.kind.value,
            self.t,
            self.precision,
            self.protocol,
            self.local_addr,
            self.local_port,
            self.remote_addr,
            self.remote_port,
            self.facts.to_list(),
            self.until,
            list(self.key) if self.key is not None else None,
        ]

    @classmethod
    def from_list(cls, data: list[Any]) -> Sock:
        kind, t, precision, protocol, la, lp, ra, rp, facts, until, key = data
        return cls(
            SockKind(kind),
            t,
            precision,
            protocol,
            la,
            lp,
            ra,
            rp,
            Facts.from_list(facts),
            until,
            tuple(key) if key is not None else None,
        )


_FAILED = frozenset({"failed", "no_client"})
_ACTIONS = {"connect": SockKind.CONNECT, "accept": SockKind.ACCEPT, "bind": SockKind.BIND}
_INET = (2, 10)


def socket_event(row: Mapping[str, Any]) -> Sock:
    """A socket_events row -> a CONNECT/ACCEPT/BIND socket; RowRefused for what is no connection."""
    kind = _ACTIONS.get(str(row.get("action") or ""))
    if kind is None:
        raise RowRefused("not connect, accept or bind")
    family = to_int(row.get("family"))
    if family is not None and family not in _INET:
        raise RowRefused("not an IP socket")
    status = row.get("status")
    failed = status in _FAILED or (status is None and to_int(row.get("success")) == 0)
    if failed and kind is not SockKind.CONNECT:
        # A refused or unreachable connect still sent its SYN (Zeek logs the attempt), so it
        # is kept; a bind or accept that failed made no socket anyone could connect to.
        raise RowRefused("failed call")
    t, precision = event_time(row)
    facts = facts_from(row, start_column="process_start_time")
    local_addr, local_port = normal(row.get("local_address")), to_int(row.get("local_port"))
    remote_addr, remote_port = normal(row.get("remote_address")), to_int(row.get("remote_port"))
    if local_port == 0:
        local_port = None
    if kind is SockKind.BIND:
        if not local_port:
            raise RowRefused("bind without a port")
    elif remote_addr is None or not remote_port:
        raise RowRefused("no remote endpoint")
    protocol = to_int(row.get("protocol")) or 0
    return Sock(kind, t, precision, protocol, local_addr, local_port, remote_addr, remote_port, facts)


def snapshot_socket(row: Mapping[str, Any], kind: SockKind, now: float) -> Sock:
    """A process_open_sockets (OPEN) or listening_ports (LISTEN) row, first seen ``now``."""
    family = to_int(row.get("family"))
    if family not in _INET:
        raise RowRefused("not an IP socket")
    facts = facts_from(row)  # pid -1 (held by no process) is refused here
    protocol = to_int(row.get("protocol")) or 0
    if kind is SockKind.LISTEN:
        local_addr, local_port = normal(row.get("address")), to_int(row.get("port"))
        remote_addr, remote_port = None, None
        if not local_port:
            raise RowRefused("no port")
    else:
        local_addr, local_port = normal(row.get("local_address")), to_int(row.get("local_port"))
        remote_addr, remote_port = normal(row.get("remote_address")), to_int(row.get("remote_port"))
        if not local_port:
            raise RowRefused("no port")
        if not remote_port:
            # listening (TCP) or bound and unconnected (UDP): what listening_ports shows
            remote_addr, remote_port = None, None
    key = (
        kind.value,  # the table it came from: one table's removal never touches the other's rows
        facts.pid,
        to_int(row.get("fd")),
        to_int(row.get("socket")),
        protocol,
        local_addr,
        local_port,
        remote_addr,
        remote_port,
        to_text(row.get("net_namespace")),
    )
    if remote_port is None:
        kind = SockKind.LISTEN
    return Sock(kind, now, 0.0, protocol, local_addr, local_port, remote_addr, remote_port, facts, key=key)
