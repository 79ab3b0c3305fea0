"""msgpack frames <-> messages.  One WebSocket binary frame holds exactly one message: a map
with a ``type`` key and the message's fields.

:func:`decode` is strict: anything but one msgpack map of a type the receiving side
accepts, with every field of the right type and within bounds, raises
:class:`~protocol.errors.ProtocolError` with a code (``bad_frame``, ``unknown_type``,
``bad_message``, ``too_large``).  It never raises anything else, whatever the bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgpack

from . import operator as op
from .errors import ErrorCode, ProtocolError
from .messages import (
    MAX_FRAME,
    Ack,
    Bye,
    Dropped,
    Error,
    Execute,
    ExecuteResult,
    Hello,
    Message,
    Ping,
    Pong,
    Results,
    Subscribe,
    Unsubscribe,
    Welcome,
)
from .schema import Record, build

__all__ = [
    "FROM_AGENT",
    "FROM_COLLECTOR_TO_AGENT",
    "FROM_COLLECTOR_TO_OPERATOR",
    "FROM_OPERATOR",
    "Vocabulary",
    "decode",
    "encode",
]

Vocabulary = Mapping[str, type[Message]]


def _vocabulary(classes: Iterable[type[Message]]) -> Vocabulary:
    return {cls.TYPE: cls for cls in classes}


#: What each side accepts, by the direction of the message.
FROM_AGENT: Vocabulary = _vocabulary([Hello, Results, Dropped, ExecuteResult, Error, Ping, Pong, Bye])
FROM_COLLECTOR_TO_AGENT: Vocabulary = _vocabulary(
    [Welcome, Subscribe, Unsubscribe, Execute, Ack, Error, Ping, Pong, Bye]
)
FROM_OPERATOR: Vocabulary = _vocabulary(
    [
        op.Auth,
        op.ListHosts,
        op.GetStatus,
        op.ListSubscriptions,
        op.AddSubscription,
        op.RemoveSubscription,
        op.RunQuery,
        op.Revoke,
        Ping,
        Pong,
        Bye,
    ]
)
FROM_COLLECTOR_TO_OPERATOR: Vocabulary = _vocabulary(
    [
        op.Authorized,
        op.HostList,
        op.CollectorStatus,
        op.SubscriptionList,
        op.Done,
        op.QueryStarted,
        op.QueryRows,
        op.QueryStatus,
        op.QueryDone,
        op.OperatorError,
        Ping,
        Pong,
        Bye,
    ]
)


def _as_map(obj: Any) -> Any:
    if isinstance(obj, Record):
        return {name: getattr(obj, name) for name in obj.FIELDS}
    raise TypeError(f"cannot encode {type(obj).__name__}")


def encode(message: Message, *, max_frame: int | None = None) -> bytes:
    """The frame for ``message``; ``TOO_LARGE`` if it would exceed ``max_frame`` (split the batch)."""
    body: dict[str, Any] = {"type": message.TYPE}
    for name in message.FIELDS:
        body[name] = getattr(message, name)
    frame = msgpack.packb(body, use_bin_type=True, default=_as_map)
    if max_frame is not None and len(frame) > max_frame:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"{message.TYPE} message of {len(frame)} bytes exceeds the frame limit of {max_frame}"
        )
    return frame


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not used by this protocol")


def decode(frame: bytes | bytearray | memoryview | str, accepted: Vocabulary, *, max_frame: int = MAX_FRAME) -> Message:
    """The message in ``frame``, checked against the vocabulary of what this side ``accepted``."""
    if isinstance(frame, str):
        raise ProtocolError(ErrorCode.BAD_FRAME, "text frame: messages are binary msgpack frames")
    if len(frame) > max_frame:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"frame of {len(frame)} bytes exceeds the limit of {max_frame}")
    try:
        body = msgpack.unpackb(frame, raw=False, use_list=False, strict_map_key=True, ext_hook=_no_ext, timestamp=0)
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types for bad bytes; all mean the same here
        raise ProtocolError(ErrorCode.BAD_FRAME, f"not a msgpack message: {type(exc).__name__}: {exc}") from None
    if type(body) is not dict:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"a message is a msgpack map, got {type(body).__name__}")
    kind = body.get("type")
    if type(kind) is not str:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "message: missing or non-string 'type'")
    cls = accepted.get(kind)
    if cls is None:
        shown = kind if len(kind) <= 64 else kind[:61] + "..."
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"message type {shown!r} is not accepted here")
    return build(cls, body, kind, tolerate_unknown=cls.OPEN)
