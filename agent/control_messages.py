"""The control socket's messages: frozen dataclasses, one JSON object per line, one codec.

Pure (no sockets): :mod:`agent.control` is the asyncio server and the blocking client
around it.  On the wire, as agent-cli and agentd have always spoken it::

    {"op": "query", "sql": "SELECT ...", "time_limit": 5}  ->  {"ok": true, "columns": [...], "rows": [[...]]}
    {"op": "status"}                                       ->  {"ok": true, "status": {...}}
    {"op": "ping"}                                         ->  {"ok": true}
    anything wrong                                         ->  {"ok": false, "error": "..."}

:func:`encode` turns any message into its line; :func:`decode_request` and
:func:`decode_reply` check a line and raise :class:`ProtocolError` with a message that
says what is wrong with it (the server sends that message back as an error reply).
A reply does not name its kind: the client decodes it as the reply to the request it sent.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .status import Status
from .typed_json import DecodeError

__all__ = [
    "ErrorReply",
    "Op",
    "PingReply",
    "PingRequest",
    "ProtocolError",
    "QueryReply",
    "QueryRequest",
    "Reply",
    "Request",
    "StatusReply",
    "StatusRequest",
    "decode_reply",
    "decode_request",
    "encode",
]


class ProtocolError(ValueError):
    """A line that is not a valid message; the text says what is wrong with it."""


class Op(enum.StrEnum):
    """The requests' ``op`` values."""

    QUERY = "query"
    STATUS = "status"
    PING = "ping"


@dataclass(frozen=True, slots=True)
class QueryRequest:
    """Run one SQL statement inside agentd (event tables included)."""

    sql: str
    time_limit: float | None = None  # seconds; agentd's own ad-hoc limit applies when None (or lower)


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """The daemon's :class:`~agent.status.Status`."""


@dataclass(frozen=True, slots=True)
class PingRequest:
    """Is agentd there?"""


Request = QueryRequest | StatusRequest | PingRequest


@dataclass(frozen=True, slots=True)
class QueryReply:
    """A query's columns and rows (BLOBs as text with backslash escapes, NaN as null)."""

    columns: tuple[str, ...]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True, slots=True)
class StatusReply:
    status: Status


@dataclass(frozen=True, slots=True)
class PingReply:
    pass


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """The request failed; ``error`` is the one line to show the user."""

    error: str


Reply = QueryReply | StatusReply | PingReply | ErrorReply


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def _object(message: Request | Reply) -> dict[str, Any]:
    match message:
        case QueryRequest(sql=sql, time_limit=limit):
            return {"op": Op.QUERY.value, "sql": sql} | ({} if limit is None else {"time_limit": limit})
        case StatusRequest():
            return {"op": Op.STATUS.value}
        case PingRequest():
            return {"op": Op.PING.value}
        case QueryReply(columns=columns, rows=rows):
            return {"ok": True, "columns": list(columns), "rows": [[_jsonable(v) for v in row] for row in rows]}
        case StatusReply(status=status):
            return {"ok": True, "status": status.to_json()}
        case PingReply():
            return {"ok": True}
        case ErrorReply(error=error):
            return {"ok": False, "error": error}
    raise TypeError(f"not a control message: {message!r}")


def encode(message: Request | Reply) -> bytes:
    """The message's line (JSON and a newline)."""
    return json.dumps(_object(message), separators=(",", ":"), default=str).encode() + b"\n"


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------


def _load(line: bytes | str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed {what} (not JSON): {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"malformed {what}: expected a JSON object")
    return data


def decode_request(line: bytes | str) -> Request:
    """The request on ``line``; :class:`ProtocolError` says what is wrong with it."""
    data = _load(line, "request")
    op = data.get("op")
    if op == Op.QUERY:
        sql = data.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            raise ProtocolError("query request needs a non-empty string 'sql'")
        limit = data.get("time_limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0):
            raise ProtocolError("'time_limit' must be a positive number of seconds")
        return QueryRequest(sql, None if limit is None else float(limit))
    if op == Op.STATUS:
        return StatusRequest()
    if op == Op.PING:
        return PingRequest()
    raise ProtocolError(f"unknown op {op!r}; use one of: {', '.join(o.value for o in Op)}")


def decode_reply(line: bytes | str, request: Request) -> Reply:
    """The reply to ``request`` on ``line``; :class:`ProtocolError` when agentd's answer does not fit."""
    data = _load(line, "reply")
    ok = data.get("ok")
    if ok is False:
        error = data.get("error")
        return ErrorReply(str(error) if error else "agentd reported an unknown error")
    if ok is not True:
        raise ProtocolError("malformed reply: 'ok' must be true or false")
    match request:
        case QueryRequest():
            columns, rows = data.get("columns"), data.get("rows")
            if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
                raise ProtocolError("malformed reply: 'columns' must be a list of strings")
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise ProtocolError("malformed reply: 'rows' must be a list of lists")
            return QueryReply(tuple(columns), rows)
        case StatusRequest():
            try:
                return StatusReply(Status.from_json(data.get("status")))
            except DecodeError as exc:
                raise ProtocolError(f"malformed reply: {exc}") from None
        case PingRequest():
            return PingReply()
    raise TypeError(f"not a control request: {request!r}")
