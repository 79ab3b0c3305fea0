"""The attribution events between the Zeek package and collectord (protocol v1), pure.

zeek/scripts/osquery/attribution.zeek declares them:

- Zeek -> collectord, on the collector topic: ``osquery::attribute_v1(zeek_id: string,
  uid: string, ts: time, orig_h: addr, orig_p: port, resp_h: addr, resp_p: port,
  community_id: string, final: bool)``: a connection Zeek learned of (``final`` F) or removed (T);
- collectord -> Zeek, on the Zeek topic: ``osquery::attribution_v1(uid: string, final: bool,
  orig: osquery::AttributionSide, resp: osquery::AttributionSide)``.

The connection's own fields travel as plain values, not as Zeek's ``conn_id`` (whose fields
differ between Zeek versions).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from collector.zeek.brokerjson import Event
from collector.zeek.values import Port, Proto, Time

from .model import Attribution, Connection, SideAttribution

__all__ = [
    "ATTRIBUTE_EVENT",
    "ATTRIBUTION_EVENT",
    "AttributionRequest",
    "BadRequest",
    "ZeekSide",
    "answer_event",
    "parse_request",
]

ATTRIBUTE_EVENT = "osquery::attribute_v1"
ATTRIBUTION_EVENT = "osquery::attribution_v1"

_PROTO = {Proto.TCP: "tcp", Proto.UDP: "udp", Proto.ICMP: "icmp"}


class BadRequest(ValueError):
    """An attribute_v1 event whose arguments are not what the package sends."""


@dataclass(frozen=True)
class AttributionRequest:
    """One question from Zeek."""

    zeek_id: str
    conn: Connection
    community_id: str
    final: bool


def parse_request(event: Event) -> AttributionRequest:
    """The question an ``osquery::attribute_v1`` event asks; BadRequest when malformed."""
    if event.name != ATTRIBUTE_EVENT:
        raise BadRequest(f"not {ATTRIBUTE_EVENT}: {event.name}")
    args = event.args
    if len(args) != 9:
        raise BadRequest(f"{ATTRIBUTE_EVENT}: {len(args)} arguments, expected 9")
    zeek_id, uid, ts, orig_h, orig_p, resp_h, resp_p, cid, final = args
    ok = (
        isinstance(zeek_id, str)
        and isinstance(uid, str)
        and isinstance(ts, Time)
        and isinstance(orig_h, ipaddress.IPv4Address | ipaddress.IPv6Address)
        and isinstance(resp_h, ipaddress.IPv4Address | ipaddress.IPv6Address)
        and isinstance(orig_p, Port)
        and isinstance(resp_p, Port)
        and isinstance(cid, str)
        and isinstance(final, bool)
    )
    if not ok:
        types = ", ".join(type(a).__name__ for a in args)
        raise BadRequest(f"{ATTRIBUTE_EVENT}: argument types ({types}) are not the declaration's")
    assert isinstance(ts, Time) and isinstance(orig_p, Port) and isinstance(resp_p, Port)  # for the type checker
    proto = _PROTO.get(resp_p.proto, "unknown")
    try:
        conn = Connection.from_zeek(ts.seconds, str(uid), str(orig_h), orig_p.number, str(resp_h), resp_p.number, proto)
    except ValueError as exc:
        raise BadRequest(f"{ATTRIBUTE_EVENT}: {exc}") from None
    return AttributionRequest(str(zeek_id), conn, str(cid), bool(final))


@dataclass(frozen=True)
class ZeekSide:
    """``osquery::AttributionSide`` as Broker JSON carries it (a record: its fields in order)."""

    host_id: str | None
    hostname: str | None
    pid: int | None
    path: str | None
    cmdline: str | None
    user_id: int | None
    user: str | None
    parent: int | None
    container: str | None
    match: str | None
    reason: str | None
    candidates: list[str] | None

    @classmethod
    def of(cls, side: SideAttribution) -> ZeekSide:
        return cls(
            side.host_id,
            side.hostname,
            side.pid,
            side.path,
            side.cmdline,
            side.uid,
            side.username,
            side.parent,
            side.container_id,
            side.method.value if side.method is not None else None,
            side.reason.value if side.reason is not None else None,
            list(side.candidates) if side.candidates else None,
        )


def answer_event(answer: Attribution, *, final: bool) -> Event:
    """The ``osquery::attribution_v1`` event answering a question about ``answer.conn``."""
    return Event(ATTRIBUTION_EVENT, (answer.conn.uid, final, ZeekSide.of(answer.orig), ZeekSide.of(answer.resp)))
