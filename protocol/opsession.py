"""Sans-I/O sessions of the operator path: agent-cli (client) and collectord (server).

Same shape as :mod:`protocol.session`.  The client authenticates with ``auth``; the
server answers ``authorized`` or an ``error`` and closes.  Requests carry a ``req``
number; every reply repeats it, and a reply to a request that was never made (or is
already finished) is a broken rule.  An ``error`` with ``req`` refuses that request only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from .codec import FROM_COLLECTOR_TO_OPERATOR, FROM_OPERATOR, Vocabulary
from .errors import ErrorCode, ProtocolError
from .messages import MAX_FRAME, SUPPORTED_VERSIONS, Message, Ping, Pong
from .operator import (
    AddSubscription,
    Auth,
    Authorized,
    CollectorStatus,
    Done,
    GetStatus,
    HostList,
    ListHosts,
    ListSubscriptions,
    OperatorError,
    QueryDone,
    QueryRows,
    QueryStarted,
    QueryStatus,
    RemoveSubscription,
    Revoke,
    RunQuery,
    SubscriptionList,
)
from .session import Session, State

__all__ = ["REQUESTS", "OperatorClientSession", "OperatorServerSession"]

#: Operator requests (each carries ``req``).
REQUESTS: frozenset[type[Message]] = frozenset(
    {ListHosts, ListSubscriptions, AddSubscription, RemoveSubscription, RunQuery, Revoke, GetStatus}
)
#: Replies that finish a request (a run_query is finished by query_done).
_FINAL = (HostList, SubscriptionList, Done, QueryDone, CollectorStatus)
_QUERY_PARTS = (QueryStarted, QueryRows, QueryStatus)


class OperatorClientSession(Session):
    """agent-cli's side: ``auth`` first, then requests; replies are matched to open requests."""

    accepts: ClassVar[Vocabulary] = FROM_COLLECTOR_TO_OPERATOR
    allowed_in: ClassVar[Mapping[State, frozenset[type[Message]]]] = {
        State.HANDSHAKE: frozenset({Authorized, OperatorError}),
        State.OPEN: frozenset(
            {HostList, SubscriptionList, Done, OperatorError, Ping, Pong, QueryStarted, QueryRows, QueryStatus}
            | {QueryDone, CollectorStatus}
        ),
    }

    def __init__(self, token: str, *, client: str = "", max_frame: int = 64 * 1024 * 1024) -> None:
        super().__init__(max_frame=max_frame)
        self._auth = Auth(SUPPORTED_VERSIONS, token, client)
        self.version: int | None = None
        self.collector_id = ""
        # Requests sent and not yet finished, by req.
        self.pending: dict[int, Message] = {}
        # The collector's session-ending error (bad token, ...), if it sent one.
        self.refusal: OperatorError | None = None
        self._next_req = 1

    def start(self) -> None:
        if self.state is not State.START:
            raise ProtocolError(ErrorCode.BAD_STATE, "auth is sent once, first")
        self._queue(self._auth)
        self.state = State.HANDSHAKE

    def fail(self, code: ErrorCode, message: str) -> None:
        """A broken rule of the collector's: nothing is sent (the server has no use for it); the shell closes."""
        if self.state is not State.CLOSED:
            self.failure = ProtocolError(code, message)
            self.state = State.CLOSED

    def next_req(self) -> int:
        req, self._next_req = self._next_req, self._next_req + 1
        return req

    def _received(self, message: Message) -> None:
        if isinstance(message, Authorized):
            if message.version not in SUPPORTED_VERSIONS:
                raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION, f"collector chose version {message.version}")
            self.version, self.collector_id = message.version, message.collector_id
            self.state = State.OPEN
        elif isinstance(message, OperatorError):
            if message.req is None:  # the session is refused: the collector closes
                self.refusal = message
                self.state = State.CLOSED
            elif self.pending.pop(message.req, None) is None:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"error for request {message.req} that is not open")
        elif isinstance(message, _FINAL + _QUERY_PARTS):
            request = self.pending.get(message.req)
            if request is None:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{message.TYPE} for request {message.req} that is not open")
            if isinstance(message, _QUERY_PARTS) and not isinstance(request, RunQuery):
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{message.TYPE} answers {request.TYPE}")
            if isinstance(message, _FINAL):
                del self.pending[message.req]
        self._events.append(message)

    def _sending(self, message: Message) -> None:
        self._require_open(message)
        if type(message) in REQUESTS:
            req = message.req  # type: ignore[attr-defined]
            if req in self.pending:
                raise ProtocolError(ErrorCode.BAD_STATE, f"request {req} is still open")
            self.pending[req] = message
        elif not isinstance(message, Pong):
            super()._sending(message)


class OperatorServerSession(Session):
    """collectord's side of one operator connection; the shell checks the token and calls accept/fail."""

    accepts: ClassVar[Vocabulary] = FROM_OPERATOR
    allowed_in: ClassVar[Mapping[State, frozenset[type[Message]]]] = {
        State.START: frozenset({Auth}),
        State.OPEN: REQUESTS | {Ping, Pong},
    }

    def __init__(self, *, versions: tuple[int, ...] = SUPPORTED_VERSIONS, max_frame: int = MAX_FRAME) -> None:
        super().__init__(max_frame=max_frame)
        self.versions = versions
        self.auth: Auth | None = None
        self.version: int | None = None
        # Requests received and not yet finished.
        self.open_requests: set[int] = set()

    def _received(self, message: Message) -> None:
        if isinstance(message, Auth):
            common = set(message.versions) & set(self.versions)
            if not common:
                raise ProtocolError(
                    ErrorCode.UNSUPPORTED_VERSION,
                    f"client speaks versions {list(message.versions)}, collector {list(self.versions)}",
                )
            self.auth, self.version = message, max(common)
            self.state = State.HANDSHAKE
        elif type(message) in REQUESTS:
            req = message.req  # type: ignore[attr-defined]
            if req in self.open_requests:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"request {req} is still open")
            self.open_requests.add(req)
        self._events.append(message)

    def accept(self, collector_id: str) -> None:
        if self.state is not State.HANDSHAKE or self.version is None:
            raise ProtocolError(ErrorCode.BAD_STATE, f"accept in state {self.state.value}")
        self._queue(Authorized(self.version, collector_id))
        self.state = State.OPEN

    def fail(self, code: ErrorCode, message: str) -> None:
        if self.state is State.CLOSED:
            return
        self.failure = ProtocolError(code, message)
        self._queue(OperatorError(None, code, message[:8192]))
        self.state = State.CLOSED

    def _sending(self, message: Message) -> None:
        self._require_open(message)
        if isinstance(message, OperatorError):
            if message.req is None:
                raise ProtocolError(ErrorCode.BAD_STATE, "a session-ending error is sent by fail()")
            self._finish(message.req, message)
        elif isinstance(message, _FINAL):
            self._finish(message.req, message)
        elif isinstance(message, _QUERY_PARTS):
            if message.req not in self.open_requests:
                raise ProtocolError(ErrorCode.BAD_STATE, f"{message.TYPE} for request {message.req} that is not open")
        elif not isinstance(message, Pong):
            super()._sending(message)

    def _finish(self, req: int, message: Message) -> None:
        if req not in self.open_requests:
            raise ProtocolError(ErrorCode.BAD_STATE, f"{message.TYPE} for request {req} that is not open")
        self.open_requests.discard(req)
