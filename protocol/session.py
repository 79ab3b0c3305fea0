"""Sans-I/O sessions: the protocol's rules, with no sockets and no clock of their own.

In the manner of the ``websockets`` library's protocol core: the I/O shell hands every
frame it reads to :meth:`Session.receive_frame`, then takes the decoded messages from
:meth:`Session.events_received` and the frames to write from :meth:`Session.data_to_send`;
messages the shell wants to send go through :meth:`Session.send`, which refuses what the
state does not allow (a local bug, raised as :class:`ProtocolError`).

A peer that breaks a rule (undecodable frame, wrong type, message out of state order,
sequence gap or replay) does not raise: the session queues an ``error`` message for it,
moves to CLOSED and records the reason in :attr:`Session.failure`; the shell sends what
is queued and closes the connection.  States (docs/protocol.md draws them)::

    START --hello--> HANDSHAKE --welcome--> OPEN --bye/error--> CLOSED
                         \\--error (refused)--> CLOSED        OPEN --send bye--> CLOSING
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import ClassVar

from .codec import FROM_AGENT, FROM_COLLECTOR_TO_AGENT, Vocabulary, decode, encode
from .errors import ErrorCode, ProtocolError
from .messages import (
    MAX_FRAME,
    SUPPORTED_VERSIONS,
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

__all__ = ["AgentSession", "CollectorSession", "Session", "State"]


class State(Enum):
    START = "start"  # nothing exchanged yet
    HANDSHAKE = "handshake"  # hello sent (agent) / received and being checked (collector)
    OPEN = "open"  # welcome exchanged: results, subscriptions, queries flow
    CLOSING = "closing"  # this side sent bye: nothing more will be sent
    CLOSED = "closed"  # an error or bye ended the session: the shell closes the connection


class Session:
    """What both sides share: frame queues, failure handling, ping/pong, bye and error."""

    #: Message types the peer may send, by wire name.
    accepts: ClassVar[Vocabulary] = {}
    #: Which received types are allowed in which state (error and bye are allowed in every state).
    allowed_in: ClassVar[Mapping[State, frozenset[type[Message]]]] = {}

    def __init__(self, *, max_frame: int = MAX_FRAME) -> None:
        self.state = State.START
        # Max frame size this side accepts (checked before decoding).
        self.max_frame = max_frame
        # Frame limit of the peer; frames we send must fit (set by the handshake where the peer tells it).
        self.peer_max_frame: int | None = None
        # Why the session closed because of a rule broken by the peer (None otherwise).
        self.failure: ProtocolError | None = None
        # The peer's own error or bye, if it sent one.
        self.peer_error: Error | None = None
        self.peer_bye: Bye | None = None
        self._events: list[Message] = []
        self._out: list[bytes] = []
        self._pings: set[int] = set()

    # -- the three verbs ----------------------------------------------------------

    def receive_frame(self, frame: bytes | bytearray | memoryview | str) -> None:
        """Take one frame read from the connection (frames after CLOSED are ignored)."""
        if self.state is State.CLOSED:
            return
        try:
            message = decode(frame, self.accepts, max_frame=self.max_frame)
            if isinstance(message, Error):
                self.peer_error = message
                self.state = State.CLOSED
                self._events.append(message)
                return
            if isinstance(message, Bye):
                self.peer_bye = message
                self.state = State.CLOSED
                self._events.append(message)
                return
            if self.state is State.CLOSING:
                return  # in flight when our bye left: the peer resends what matters after reconnecting
            allowed = self.allowed_in.get(self.state, frozenset())
            if type(message) not in allowed:
                raise ProtocolError(ErrorCode.BAD_STATE, f"{message.TYPE} may not be sent in state {self.state.value}")
            if isinstance(message, Ping):
                self._queue(Pong(message.nonce))
                return
            if isinstance(message, Pong):
                if message.nonce not in self._pings:
                    raise ProtocolError(ErrorCode.BAD_MESSAGE, f"pong {message.nonce} answers no ping")
                self._pings.discard(message.nonce)
                self._events.append(message)
                return
            self._received(message)
        except ProtocolError as exc:
            self.fail(exc.code, exc.detail)

    def events_received(self) -> list[Message]:
        """Messages received since the last call, in order (ping is answered by the session itself)."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[bytes]:
        """Frames to write, in order, since the last call."""
        out, self._out = self._out, []
        return out

    def send(self, message: Message) -> None:
        """Queue ``message``; raises :class:`ProtocolError` if this side may not send it now."""
        if self.state in (State.CLOSED, State.CLOSING):
            raise ProtocolError(ErrorCode.BAD_STATE, f"cannot send {message.TYPE}: the session is {self.state.value}")
        if isinstance(message, Bye):
            self._queue(message)
            self.state = State.CLOSING
            return
        if isinstance(message, Error):
            self.fail(message.code, message.message)
            return
        if isinstance(message, Ping):
            self._require_open(message)
            self._pings.add(message.nonce)
            self._queue(message)
            return
        self._sending(message)
        self._queue(message)

    # -- for the shell --------------------------------------------------------------

    def fail(self, code: ErrorCode, message: str) -> None:
        """End the session with an ``error`` to the peer (a rule it broke, or a refusal of ours)."""
        if self.state is State.CLOSED:
            return
        self.failure = ProtocolError(code, message)
        self._out.append(encode(Error(code, message[:8192])))
        self.state = State.CLOSED

    def connection_lost(self) -> None:
        """The connection is gone (the shell saw it close): nothing more is exchanged."""
        self.state = State.CLOSED

    @property
    def closed(self) -> bool:
        """True once nothing more will be exchanged: write what is queued, then close the connection."""
        return self.state in (State.CLOSED, State.CLOSING)

    # -- for subclasses ---------------------------------------------------------------

    def _received(self, message: Message) -> None:
        """Apply the rules for a decoded message allowed in the current state."""
        self._events.append(message)

    def _sending(self, message: Message) -> None:
        """Check that this side may send ``message`` now and update the state."""
        raise ProtocolError(ErrorCode.BAD_STATE, f"this side never sends {message.TYPE}")

    def _require_open(self, message: Message) -> None:
        if self.state is not State.OPEN:
            raise ProtocolError(ErrorCode.BAD_STATE, f"cannot send {message.TYPE} in state {self.state.value}")

    def _queue(self, message: Message) -> None:
        self._out.append(encode(message, max_frame=self.peer_max_frame))


_OPEN_FROM_COLLECTOR = frozenset({Subscribe, Unsubscribe, Execute, Ack, Ping, Pong})
_OPEN_FROM_AGENT = frozenset({Results, Dropped, ExecuteResult, Ping, Pong})


class AgentSession(Session):
    """The agent's side: sends hello, results in sequence, execute answers; receives the collector's orders.

    ``next_seq`` is the sequence number the next ``results``/``dropped`` must carry;
    ``acked`` the highest the collector acknowledged.  Both start from ``welcome.last_seq``.
    """

    accepts: ClassVar[Vocabulary] = FROM_COLLECTOR_TO_AGENT
    allowed_in: ClassVar[Mapping[State, frozenset[type[Message]]]] = {
        State.HANDSHAKE: frozenset({Welcome}),
        State.OPEN: _OPEN_FROM_COLLECTOR,
    }

    def __init__(self, hello: Hello, *, max_frame: int = MAX_FRAME) -> None:
        super().__init__(max_frame=max_frame)
        self.hello = hello
        # The welcome that opened the session (None before).
        self.welcome: Welcome | None = None
        self.version: int | None = None
        self.next_seq = 0
        self.acked = 0
        # One-time queries the collector asked for and the agent has not finished answering.
        self.executing: set[str] = set()

    def start(self) -> None:
        """Queue the hello frame (the first thing the agent sends)."""
        if self.state is not State.START:
            raise ProtocolError(ErrorCode.BAD_STATE, "hello is sent once, first")
        self._queue(self.hello)
        self.state = State.HANDSHAKE

    @property
    def in_flight(self) -> int:
        """Sequence numbers sent but not yet acknowledged."""
        return max(0, self.next_seq - 1 - self.acked)

    def _received(self, message: Message) -> None:
        if isinstance(message, Welcome):
            if message.version not in self.hello.versions:
                raise ProtocolError(
                    ErrorCode.UNSUPPORTED_VERSION, f"welcome chose version {message.version}, not one offered"
                )
            self.welcome, self.version = message, message.version
            self.acked = message.last_seq
            self.next_seq = message.last_seq + 1
            self.peer_max_frame = message.max_frame
            self.state = State.OPEN
        elif isinstance(message, Ack):
            if not self.acked <= message.seq < self.next_seq:
                raise ProtocolError(
                    ErrorCode.BAD_SEQUENCE,
                    f"ack {message.seq} outside the sent range {self.acked}..{self.next_seq - 1}",
                )
            self.acked = message.seq
        elif isinstance(message, Execute):
            if message.query_id in self.executing:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"execute {message.query_id!r} is already running")
            self.executing.add(message.query_id)
        self._events.append(message)

    def _sending(self, message: Message) -> None:
        self._require_open(message)
        if isinstance(message, Results):
            if message.seq != self.next_seq:
                raise ProtocolError(ErrorCode.BAD_SEQUENCE, f"results seq {message.seq}, expected {self.next_seq}")
            self.next_seq += 1
        elif isinstance(message, Dropped):
            if message.from_seq != self.next_seq:
                raise ProtocolError(
                    ErrorCode.BAD_SEQUENCE, f"dropped from_seq {message.from_seq}, expected {self.next_seq}"
                )
            self.next_seq = message.to_seq + 1
        elif isinstance(message, ExecuteResult):
            if message.query_id not in self.executing:
                raise ProtocolError(ErrorCode.BAD_STATE, f"no execute {message.query_id!r} to answer")
            if message.last:
                self.executing.discard(message.query_id)
        elif not isinstance(message, Pong):
            super()._sending(message)


class CollectorSession(Session):
    """The collector's side of one agent connection.

    After ``hello`` arrives (an event) the shell authenticates it and calls :meth:`accept`
    with the welcome, or :meth:`fail` to refuse.  Results must then arrive with
    consecutive sequence numbers from ``welcome.last_seq + 1``; a gap or a replay closes
    the session with ``bad_sequence`` (``expected_seq`` is the next one allowed).
    """

    accepts: ClassVar[Vocabulary] = FROM_AGENT
    allowed_in: ClassVar[Mapping[State, frozenset[type[Message]]]] = {
        State.START: frozenset({Hello}),
        State.OPEN: _OPEN_FROM_AGENT,
    }

    def __init__(self, *, versions: tuple[int, ...] = SUPPORTED_VERSIONS, max_frame: int = MAX_FRAME) -> None:
        super().__init__(max_frame=max_frame)
        self.versions = versions
        self.hello: Hello | None = None
        self.version: int | None = None
        self.expected_seq = 0
        # Highest sequence received (what an ack may cover) and the last ack sent.
        self.received_seq = 0
        self.acked = 0
        # One-time queries sent to the agent and not yet answered in full.
        self.executing: set[str] = set()

    def _received(self, message: Message) -> None:
        if isinstance(message, Hello):
            common = set(message.versions) & set(self.versions)
            if not common:
                raise ProtocolError(
                    ErrorCode.UNSUPPORTED_VERSION,
                    f"agent speaks versions {list(message.versions)}, collector {list(self.versions)}",
                )
            self.hello, self.version = message, max(common)
            self.state = State.HANDSHAKE
        elif isinstance(message, Results):
            if message.seq != self.expected_seq:
                kind = "replayed" if message.seq < self.expected_seq else "skipped ahead"
                raise ProtocolError(
                    ErrorCode.BAD_SEQUENCE, f"results seq {message.seq} {kind}: expected {self.expected_seq}"
                )
            self.expected_seq += 1
            self.received_seq = message.seq
        elif isinstance(message, Dropped):
            if message.from_seq != self.expected_seq:
                kind = "replayed" if message.from_seq < self.expected_seq else "skipped ahead"
                raise ProtocolError(
                    ErrorCode.BAD_SEQUENCE,
                    f"dropped from_seq {message.from_seq} {kind}: expected {self.expected_seq}",
                )
            self.expected_seq = message.to_seq + 1
            self.received_seq = message.to_seq
        elif isinstance(message, ExecuteResult):
            if message.query_id not in self.executing:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"execute_result for unknown query {message.query_id!r}")
            if message.last:
                self.executing.discard(message.query_id)
        self._events.append(message)

    def accept(self, welcome: Welcome) -> None:
        """Admit the agent: queue ``welcome``; results are expected from ``welcome.last_seq + 1``."""
        if self.state is not State.HANDSHAKE:
            raise ProtocolError(ErrorCode.BAD_STATE, f"accept in state {self.state.value}")
        if welcome.version != self.version:
            raise ProtocolError(ErrorCode.BAD_STATE, f"welcome version {welcome.version}, negotiated {self.version}")
        self._queue(welcome)
        self.expected_seq = welcome.last_seq + 1
        self.received_seq = self.acked = welcome.last_seq
        self.state = State.OPEN

    def _sending(self, message: Message) -> None:
        if isinstance(message, Welcome):
            raise ProtocolError(ErrorCode.BAD_STATE, "welcome is sent by accept()")
        self._require_open(message)
        if isinstance(message, Ack):
            if not self.acked <= message.seq <= self.received_seq:
                raise ProtocolError(
                    ErrorCode.BAD_SEQUENCE, f"ack {message.seq} outside {self.acked}..{self.received_seq}"
                )
            self.acked = message.seq
        elif isinstance(message, Execute):
            if message.query_id in self.executing:
                raise ProtocolError(ErrorCode.BAD_STATE, f"query {message.query_id!r} is already running")
            self.executing.add(message.query_id)
        elif not isinstance(message, (Subscribe, Unsubscribe, Pong)):
            super()._sending(message)
