"""The two logs attribution writes, in Zeek's formats (collector.zeeklog):

- ``osq-attribution``: one record per connection, keyed by Zeek's ``uid``: the connection's
  id, proto and Community ID, then for each side (``orig_``, ``resp_``) the host, process and
  user, how they were matched (``_match``) or why not (``_reason``).  The live Zeek script
  (zeek/.../attribution.zeek) writes the same columns.
- ``osq-user_connections``: one record per connect a host reported, with its process and
  user, as the original zeek-osquery's user_connections log (``t``, ``host``, ...), plus
  the hostname and the Community ID.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path

from collector.config import USER_CONNECTIONS_LOG
from collector.zeek.values import Enum, Port, Proto, Time
from collector.zeek.ztypes import parse_type
from collector.zeeklog.writer import LogField, LogFormat, ZeekLogWriter

from .model import Attribution, SideAttribution, UserConnection

__all__ = [
    "ATTRIBUTION_FIELDS",
    "ATTRIBUTION_PATH",
    "USER_CONNECTIONS_FIELDS",
    "USER_CONNECTIONS_PATH",
    "attribution_record",
    "attribution_writer",
    "user_connection_record",
    "user_connections_writer",
]

ATTRIBUTION_PATH = "osq-attribution"
USER_CONNECTIONS_PATH = USER_CONNECTIONS_LOG  # named in collector.config, which refuses it for other logs

_SIDE = (
    ("host_id", "string"),
    ("hostname", "string"),
    ("pid", "int"),
    ("path", "string"),
    ("cmdline", "string"),
    ("user_id", "int"),
    ("user", "string"),
    ("parent", "int"),
    ("container", "string"),
    ("match", "string"),
    ("reason", "string"),
    ("candidates", "vector of string"),
)


def _fields(spec: Sequence[tuple[str, str]]) -> tuple[LogField, ...]:
    return tuple(LogField(name, parse_type(type_name)) for name, type_name in spec)


ATTRIBUTION_FIELDS = _fields(
    [
        ("ts", "time"),
        ("uid", "string"),
        ("id.orig_h", "addr"),
        ("id.orig_p", "port"),
        ("id.resp_h", "addr"),
        ("id.resp_p", "port"),
        ("proto", "transport_proto"),
        ("community_id", "string"),
        *((f"orig_{name}", t) for name, t in _SIDE),
        *((f"resp_{name}", t) for name, t in _SIDE),
    ]
)

USER_CONNECTIONS_FIELDS = _fields(
    [
        ("t", "time"),
        ("host", "string"),
        ("local_address", "addr"),
        ("local_port", "int"),
        ("remote_address", "addr"),
        ("remote_port", "int"),
        ("protocol", "int"),
        ("pid", "int"),
        ("path", "string"),
        ("cmdline", "string"),
        ("uid", "int"),
        ("username", "string"),
        ("hostname", "string"),
        ("community_id", "string"),
    ]
)

_PROTO = {"tcp": Proto.TCP, "udp": Proto.UDP, "icmp": Proto.ICMP}


def _side(answer: SideAttribution) -> list[object]:
    return [
        answer.host_id,
        answer.hostname,
        answer.pid,
        answer.path,
        answer.cmdline,
        answer.uid,
        answer.username,
        answer.parent,
        answer.container_id,
        answer.method.value if answer.method is not None else None,
        answer.reason.value if answer.reason is not None else None,
        list(answer.candidates) if answer.candidates else None,
    ]


def attribution_record(answer: Attribution) -> list[object]:
    conn = answer.conn
    proto = _PROTO.get(conn.proto_name, Proto.UNKNOWN)
    return [
        Time.from_seconds(conn.ts),
        conn.uid,
        ipaddress.ip_address(conn.orig_h),
        Port(conn.orig_p, proto),
        ipaddress.ip_address(conn.resp_h),
        Port(conn.resp_p, proto),
        Enum(conn.proto_name),
        answer.community_id,
        *_side(answer.orig),
        *_side(answer.resp),
    ]


def user_connection_record(view: UserConnection) -> list[object]:
    return [
        Time.from_seconds(view.ts),
        view.host_id,
        ipaddress.ip_address(view.local_address) if view.local_address else None,
        view.local_port,
        ipaddress.ip_address(view.remote_address),
        view.remote_port,
        view.protocol or None,
        view.pid,
        view.path,
        view.cmdline,
        view.uid,
        view.username,
        view.hostname,
        view.community_id,
    ]


def attribution_writer(directory: Path, fmt: LogFormat = LogFormat.ASCII, **options: object) -> ZeekLogWriter:
    return ZeekLogWriter(directory, ATTRIBUTION_PATH, ATTRIBUTION_FIELDS, fmt=fmt, **options)  # type: ignore[arg-type]


def user_connections_writer(directory: Path, fmt: LogFormat = LogFormat.ASCII, **options: object) -> ZeekLogWriter:
    return ZeekLogWriter(directory, USER_CONNECTIONS_PATH, USER_CONNECTIONS_FIELDS, fmt=fmt, **options)  # type: ignore[arg-type]
