"""The protocol's one exception and its error codes.

Every problem the codec or a session finds is a :class:`ProtocolError` with an
:class:`ErrorCode`; the session turns it into an ``error`` message for the peer and
closes, and the shell logs it.  Codes are part of the wire protocol (docs/protocol.md).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ErrorCode", "ProtocolError"]


class ErrorCode(StrEnum):
    """Why a frame, a message or a connection was refused."""

    BAD_FRAME = "bad_frame"  # not one msgpack map (or a text frame)
    BAD_MESSAGE = "bad_message"  # a field missing, of the wrong type, unknown, or out of bounds
    UNKNOWN_TYPE = "unknown_type"  # a message type this side does not accept
    BAD_STATE = "bad_state"  # a known message that may not come in the session's state
    BAD_SEQUENCE = "bad_sequence"  # a results/dropped sequence that is not the next one
    TOO_LARGE = "too_large"  # a frame over the size limit
    UNSUPPORTED_VERSION = "unsupported_version"  # no protocol version in common
    AUTH_FAILED = "auth_failed"  # wrong enroll secret, unknown node key, wrong operator token
    REVOKED = "revoked"  # the host was revoked by an operator
    RATE_LIMITED = "rate_limited"  # more messages per second than the collector allows
    TIMEOUT = "timeout"  # no hello (or auth) in time
    SUPERSEDED = "superseded"  # a newer connection of the same host took over
    BAD_REQUEST = "bad_request"  # an operator request that cannot be done (unknown host, bad SQL, ...)
    INTERNAL = "internal"  # a fault of the side that reports it


class ProtocolError(Exception):
    """A protocol rule was broken; ``code`` says which kind, the message says what exactly."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.detail = message
