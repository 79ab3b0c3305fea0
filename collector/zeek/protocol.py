"""The versioned events between collectord and the Zeek package (protocol v1), as frozen values.

Names, argument order and types are the package's declarations in zeek/scripts/osquery/
collector.zeek; docs/zeek.md documents them. Decoding is strict: an event whose arguments do
not have the declared types is an error naming the event, never a guess.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from collector.zeek import brokerjson as bj
from collector.zeek.values import Count

PROTOCOL_VERSION = "1"

# framework -> collectord
ZEEK_HELLO = "osquery::zeek_hello_v1"
SUBSCRIBE = "osquery::subscribe_v1"
UNSUBSCRIBE = "osquery::unsubscribe_v1"
EXECUTE = "osquery::execute_v1"
JOIN = "osquery::join_v1"
LEAVE = "osquery::leave_v1"
SYNC_DONE = "osquery::sync_done_v1"
BATCH_ACK = "osquery::batch_ack_v1"
STATE = "osquery::state_v1"
# collectord -> framework
COLLECTOR_HELLO = "osquery::collector_hello_v1"
STATE_QUERY = "osquery::state_query_v1"
HOST_CONNECTED = "osquery::host_connected_v1"
HOST_DISCONNECTED = "osquery::host_disconnected_v1"
BATCH_BEGIN = "osquery::batch_begin_v1"
BATCH_END = "osquery::batch_end_v1"
ERROR = "osquery::error"


class ProtocolError(ValueError):
    """An event from Zeek that does not match the declared v1 protocol."""


class RequestOp(enum.Enum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    EXECUTE = "execute"


class UpdateType(enum.Enum):
    """``osquery::UpdateType``: which rows a subscription reports."""

    ADD = "ADD"
    REMOVE = "REMOVE"
    BOTH = "BOTH"
    SNAPSHOT = "SNAPSHOT"


@dataclass(frozen=True, slots=True)
class QueryRequest:
    """A subscribe/unsubscribe/execute from a Zeek script (``osquery::Request``)."""

    op: RequestOp
    zeek_id: str
    ev_name: str
    ev_type: str
    query: str
    utype: UpdateType
    interval: int
    cookie: str
    hosts: tuple[str, ...]
    groups: tuple[str, ...]

    @property
    def key(self) -> tuple[object, ...]:
        """Identity as zeek-osquery's ``same_event``: query, event, utype, interval (not the cookie)."""
        return (self.query, self.ev_name, self.utype, self.interval, self.hosts, self.groups)


@dataclass(frozen=True, slots=True)
class GroupRequest:
    """``join``/``leave``: hosts with an address in ``ranges`` join or leave ``group``."""

    join: bool
    zeek_id: str
    ranges: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    group: str


@dataclass(frozen=True, slots=True)
class ZeekHello:
    """The framework's answer to collector_hello: its delivery marks, then a replay follows."""

    zeek_id: str
    version: str
    done: dict[str, int]
    open: dict[str, int]


@dataclass(frozen=True, slots=True)
class SyncDone:
    zeek_id: str
    requests: int


@dataclass(frozen=True, slots=True)
class BatchAck:
    zeek_id: str
    host_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class DeliveryState:
    zeek_id: str
    done: dict[str, int]
    open: dict[str, int]


FromZeek = QueryRequest | GroupRequest | ZeekHello | SyncDone | BatchAck | DeliveryState


def _str(v: object, what: str) -> str:
    if not isinstance(v, str):
        raise ProtocolError(f"{what}: expected string, got {v!r:.80}")
    return v


def _count(v: object, what: str) -> int:
    if not isinstance(v, Count):
        raise ProtocolError(f"{what}: expected count, got {v!r:.80}")
    return int(v)


def _strings(v: object, what: str) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise ProtocolError(f"{what}: expected vector of string, got {v!r:.80}")
    return tuple(_str(x, what) for x in v)


def _marks(v: object, what: str) -> dict[str, int]:
    if not isinstance(v, dict):
        raise ProtocolError(f"{what}: expected table[string] of count, got {v!r:.80}")
    return {_str(k, what): _count(x, what) for k, x in v.items()}


def _args(ev: bj.Event, n: int) -> tuple[object, ...]:
    if len(ev.args) != n:
        raise ProtocolError(f"{ev.name}: expected {n} arguments, got {len(ev.args)}")
    return ev.args


def decode_from_zeek(ev: bj.Event) -> FromZeek | None:
    """The protocol message an event from the framework carries; None for events of others."""
    name = ev.name
    if name in (SUBSCRIBE, UNSUBSCRIBE, EXECUTE):
        zeek_id, req = _args(ev, 2)
        if not isinstance(req, list) or len(req) != 8:
            raise ProtocolError(f"{name}: Request must be a record of 8 fields, got {req!r:.120}")
        try:
            utype = UpdateType(_str(req[3], "utype"))
        except ValueError:
            raise ProtocolError(f"{name}: unknown utype {req[3]!r}") from None
        op = {SUBSCRIBE: RequestOp.SUBSCRIBE, UNSUBSCRIBE: RequestOp.UNSUBSCRIBE, EXECUTE: RequestOp.EXECUTE}[name]
        return QueryRequest(
            op=op,
            zeek_id=_str(zeek_id, "zeek_id"),
            ev_name=_str(req[0], "ev_name"),
            ev_type=_str(req[1], "ev_type"),
            query=_str(req[2], "query"),
            utype=utype,
            interval=_count(req[4], "inter"),
            cookie=_str(req[5], "cookie"),
            hosts=tuple(h for h in _strings(req[6], "hosts") if h),
            groups=tuple(g for g in _strings(req[7], "groups") if g),
        )
    if name in (JOIN, LEAVE):
        zeek_id, ranges, group = _args(ev, 3)
        if not isinstance(ranges, list) or not all(
            isinstance(r, ipaddress.IPv4Network | ipaddress.IPv6Network) for r in ranges
        ):
            raise ProtocolError(f"{name}: ranges must be a vector of subnet, got {ranges!r:.120}")
        return GroupRequest(name == JOIN, _str(zeek_id, "zeek_id"), tuple(ranges), _str(group, "group"))
    if name == ZEEK_HELLO:
        zeek_id, version, done, open_ = _args(ev, 4)
        return ZeekHello(
            _str(zeek_id, "zeek_id"), _str(version, "version"), _marks(done, "done"), _marks(open_, "open")
        )
    if name == SYNC_DONE:
        zeek_id, n = _args(ev, 2)
        return SyncDone(_str(zeek_id, "zeek_id"), _count(n, "requests"))
    if name == BATCH_ACK:
        zeek_id, host, seq = _args(ev, 3)
        return BatchAck(_str(zeek_id, "zeek_id"), _str(host, "host_id"), _count(seq, "seq"))
    if name == STATE:
        zeek_id, done, open_ = _args(ev, 3)
        return DeliveryState(_str(zeek_id, "zeek_id"), _marks(done, "done"), _marks(open_, "open"))
    return None


# --- collectord -> framework: pre-encoded event values (Broker JSON text) ---------------------


def _event(name: str, *args_json: str) -> str:
    return bj.encode_event_args(name, args_json)


def collector_hello(collector_id: str, version: str) -> str:
    return _event(COLLECTOR_HELLO, bj.enc_string(collector_id), bj.enc_string(version))


def state_query(collector_id: str) -> str:
    return _event(STATE_QUERY, bj.enc_string(collector_id))


def host_connected(host_id: str, hostname: str, addresses: Sequence[str], groups: Sequence[str]) -> str:
    addrs = []
    for a in addresses:
        try:
            addr = ipaddress.ip_address(a.split("%", 1)[0])
        except ValueError:
            continue  # a host's odd address text is not worth refusing the host for
        addrs.append(bj.enc_addr(addr))
    return _event(
        HOST_CONNECTED,
        bj.enc_string(host_id),
        bj.enc_string(hostname),
        bj.enc_vector(addrs),
        bj.enc_vector(bj.enc_string(g) for g in groups),
    )


def host_disconnected(host_id: str) -> str:
    return _event(HOST_DISCONNECTED, bj.enc_string(host_id))


def batch_begin(host_id: str, seq: int, rows: int) -> str:
    return _event(BATCH_BEGIN, bj.enc_string(host_id), bj.enc_count(seq), bj.enc_count(rows))


def batch_end(host_id: str, seq: int) -> str:
    return _event(BATCH_END, bj.enc_string(host_id), bj.enc_count(seq))


def error_event(host_id: str, utype: str, cookie: str, ev_name: str, message: str) -> str:
    """``osquery::error(resultInfo, ev, message)``: a request or row that could not be served."""
    info = bj.enc_vector(
        (bj.enc_string(host_id), bj._tagged("enum-value", bj._dumps("osquery::" + utype)), bj.enc_string(cookie))
    )
    return _event(ERROR, info, bj.enc_string(ev_name), bj.enc_string(message))
