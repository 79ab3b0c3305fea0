"""The Zeek link's protocol core, sans I/O: frames in, frames and notifications out.

In the style of the ``websockets`` library's own core: the caller feeds what happened
(:meth:`LinkCore.connection_made`, :meth:`~LinkCore.data_received`, :meth:`~LinkCore.connection_lost`,
:meth:`~LinkCore.tick` with its clock) and drains :meth:`~LinkCore.frames` to send and
:meth:`~LinkCore.notifications` for collectord. :mod:`collector.zeek.client` is the asyncio shell.

Delivery (exactly once into Zeek's scripts): results travel in numbered batches per host,
framed by ``batch_begin_v1``/``batch_end_v1``; the framework acknowledges each batch when its
end is processed. At most ``max_inflight`` batches are unacknowledged at a time (Zeek closes a
client whose backlog outlasts its ping interval). Batches not acknowledged when the connection
drops, or after ``ack_timeout``, are in doubt: before sending one again the core asks the
framework for its delivery marks (the ``zeek_hello_v1`` of the next connection, or
``state_query_v1``) and drops those Zeek has completed. While Zeek is away, batches wait in a
buffer bounded by ``max_buffer``; past it the oldest are dropped and counted.

Broker's endpoint (Zeek 5.0 to 7.1, ``Broker::listen_websocket``) is told apart by its ack, which
names libbroker's version (2.x) instead of Zeek's (7.2 and newer). Its WebSocket reader (CAF's)
drops the connection now and then when one read holds the end of a frame and the start of the
next (seen on Zeek 7.0.11: bursts of frames of mixed sizes under 2 KiB, a reset within a few
hundred frames; one frame per write, or every frame over its 2,048-byte read size, never). So
after that ack every frame is padded with JSON whitespace to :data:`BROKER_MIN_FRAME`, and
``collector_hello`` waits for the ack, so the handshake travels alone.
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from collector.zeek import brokerjson as bj
from collector.zeek import protocol as p

log = logging.getLogger(__name__)


#: Frames to Broker's endpoint are padded to this many characters (its reader takes 2,048 bytes
#: at a time; a frame longer than that is always read on its own).
BROKER_MIN_FRAME = 2048


def is_broker_endpoint(version: str) -> bool:
    """Whether an ack's ``version`` is libbroker's (Zeek 5.0-7.1) rather than Zeek's (7.2 and newer)."""
    major = version.split(".", 1)[0]
    return major.isdigit() and int(major) < 7


class LinkState(enum.Enum):
    DISCONNECTED = "disconnected"
    HANDSHAKE = "handshake"  # topics sent, waiting for Zeek's ack
    SYNCING = "syncing"  # collector_hello sent, waiting for the framework's zeek_hello
    READY = "ready"


@dataclass(frozen=True, slots=True)
class ZeekBatch:
    """One host's numbered batch, already encoded: each element is the Broker JSON of one event
    (a result row as the subscription's event, or an ``osquery::error``)."""

    host_id: str
    seq: int
    events: tuple[str, ...]

    @property
    def key(self) -> tuple[str, int]:
        return (self.host_id, self.seq)


# --- notifications for collectord ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkUp:
    """Handshake done: ``endpoint`` and ``version`` as Zeek's ack gave them; ``broker``: the
    endpoint is Broker's (Zeek 5.0-7.1), whose frames the core pads."""

    endpoint: str
    version: str
    broker: bool = False


@dataclass(frozen=True, slots=True)
class LinkDown:
    reason: str


@dataclass(frozen=True, slots=True)
class Synced:
    """The framework replayed everything in force: collectord reconciles with it."""

    zeek_id: str
    requests: tuple[p.QueryRequest | p.GroupRequest, ...]


@dataclass(frozen=True, slots=True)
class Request:
    """A request made while the link was up (after the sync)."""

    request: p.QueryRequest | p.GroupRequest


@dataclass(frozen=True, slots=True)
class Delivered:
    """The framework completed these batches: collectord may advance its cursor."""

    batches: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class ZeekError:
    """Zeek refused a message. Its replies carry no message id: ``suspects`` are the batches
    unacknowledged when it arrived, oldest first, with the events they hold."""

    code: str
    context: str
    suspects: tuple[tuple[str, int, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class Dropped:
    """Batches dropped because the buffer was full while Zeek was away."""

    batches: int
    events: int


@dataclass(frozen=True, slots=True)
class Received:
    """An event from Zeek that is not part of the collector protocol (e.g. for attribution)."""

    event: bj.Event


Notification = LinkUp | LinkDown | Synced | Request | Delivered | ZeekError | Dropped | Received


@dataclass(slots=True)
class LinkStats:
    sent_batches: int = 0
    sent_events: int = 0
    delivered_batches: int = 0
    resent_batches: int = 0
    partial_batches: int = 0  # begun but not ended when the connection dropped: resent
    dropped_batches: int = 0
    dropped_events: int = 0
    zeek_errors: int = 0
    protocol_errors: int = 0
    connects: int = 0


@dataclass(slots=True)
class _InFlight:
    batch: ZeekBatch
    sent_at: float


@dataclass(slots=True)
class LinkCore:
    """One Zeek endpoint's link state. Not thread-safe; the shell serialises calls."""

    subscribe_topics: tuple[str, ...]
    publish_topic: str
    collector_id: str
    max_inflight: int = 64
    max_buffer: int = 10_000
    ack_timeout: float = 10.0
    max_inflight_events: int = 5000  # a batch bigger than this still goes, alone
    state: LinkState = LinkState.DISCONNECTED
    stats: LinkStats = field(default_factory=LinkStats)
    zeek_id: str = ""
    _out: list[str] = field(default_factory=list)
    _notes: list[Notification] = field(default_factory=list)
    _pending: deque[ZeekBatch] = field(default_factory=deque)
    _inflight: OrderedDict[tuple[str, int], _InFlight] = field(default_factory=OrderedDict)
    _inflight_events: int = 0
    _in_doubt: bool = False
    _awaiting_state: bool = False
    _sync: list[p.QueryRequest | p.GroupRequest] | None = None
    _hosts: dict[str, str] = field(default_factory=dict)
    _pad: int = 0  # BROKER_MIN_FRAME once Broker's endpoint answered

    # --- inputs ------------------------------------------------------------------------------

    def connection_made(self, now: float) -> None:
        self.state = LinkState.HANDSHAKE
        self.stats.connects += 1
        self._pad = 0
        self._out.append(bj.encode_handshake(self.subscribe_topics))

    def connection_lost(self, now: float, reason: str = "") -> None:
        if self.state is LinkState.DISCONNECTED:
            return
        self.state = LinkState.DISCONNECTED
        self._out.clear()
        self._sync = None
        self._awaiting_state = False
        if self._inflight:
            self._in_doubt = True
        self._notes.append(LinkDown(reason or "connection closed"))

    def data_received(self, text: str | bytes, now: float) -> None:
        try:
            msg = bj.decode_server_message(text)
        except bj.DecodeError as exc:
            self.stats.protocol_errors += 1
            log.warning("zeek link: unreadable message from Zeek: %s", exc)
            return
        if isinstance(msg, bj.Ack):
            if self.state is LinkState.HANDSHAKE:
                self.state = LinkState.SYNCING
                broker = is_broker_endpoint(msg.version)
                self._pad = BROKER_MIN_FRAME if broker else 0
                self._notes.append(LinkUp(msg.endpoint, msg.version, broker))
                self._out.append(self._frame(p.collector_hello(self.collector_id, p.PROTOCOL_VERSION)))
            return
        if isinstance(msg, bj.Error):
            self.stats.zeek_errors += 1
            if self.state is LinkState.HANDSHAKE:
                # A refused handshake leaves the connection dead (Zeek ignores all that follows).
                self._notes.append(ZeekError(msg.code, msg.context, ()))
                self.connection_lost(now, f"handshake refused: {msg.code}: {msg.context}")
                return
            suspects = tuple((b.batch.host_id, b.batch.seq, _names(b.batch)) for b in self._inflight.values())
            self._notes.append(ZeekError(msg.code, msg.context, suspects))
            return
        if msg.event is None:
            return
        try:
            decoded = p.decode_from_zeek(msg.event)
        except p.ProtocolError as exc:
            self.stats.protocol_errors += 1
            log.warning("zeek link: %s", exc)
            return
        if decoded is not None:
            self._on_protocol(decoded, now)
        elif self.state is LinkState.READY:
            self._notes.append(Received(msg.event))

    def submit(self, batch: ZeekBatch, now: float) -> None:
        """Queue a batch; when the buffer is full the oldest waiting batch is dropped (counted)."""
        if not batch.events:
            return
        self._pending.append(batch)
        while len(self._pending) > self.max_buffer:
            old = self._pending.popleft()
            self.stats.dropped_batches += 1
            self.stats.dropped_events += len(old.events)
            self._notes.append(Dropped(1, len(old.events)))
        self._pump(now)

    def discard_pending(self, limit: int) -> list[ZeekBatch]:
        """Take up to ``limit`` of the oldest batches waiting to be sent (not those in flight) off the buffer."""
        out: list[ZeekBatch] = []
        while self._pending and len(out) < limit:
            out.append(self._pending.popleft())
        return out

    def resume(self, batch: ZeekBatch, now: float) -> None:
        """A batch a previous collectord may have sent: Zeek's marks decide before it goes again."""
        old = self._inflight.get(batch.key)
        if old is not None:
            self._inflight_events -= len(old.batch.events)
        self._inflight[batch.key] = _InFlight(batch, now)
        self._inflight_events += len(batch.events)
        self._in_doubt = True
        if self.state is LinkState.READY and not self._awaiting_state:
            self._awaiting_state = True
            self._out.append(self._frame(p.state_query(self.collector_id)))

    def host_connected(self, host_id: str, hostname: str, addresses: Sequence[str], groups: Sequence[str]) -> None:
        frame = self._frame(p.host_connected(host_id, hostname, addresses, groups))
        self._hosts[host_id] = frame
        if self.state is LinkState.READY:
            self._out.append(frame)

    def host_disconnected(self, host_id: str) -> None:
        if self._hosts.pop(host_id, None) is not None and self.state is LinkState.READY:
            self._out.append(self._frame(p.host_disconnected(host_id)))

    def send_event(self, event_json: str) -> bool:
        """Send one event outside the batches (e.g. an ``osquery::error`` for a refused request)."""
        if self.state is not LinkState.READY:
            return False
        self._out.append(self._frame(event_json))
        return True

    def tick(self, now: float) -> None:
        if self.state is not LinkState.READY or not self._inflight or self._awaiting_state:
            return
        oldest = next(iter(self._inflight.values()))
        if now - oldest.sent_at >= self.ack_timeout:
            self._in_doubt = True
            self._awaiting_state = True
            self._out.append(self._frame(p.state_query(self.collector_id)))

    # --- outputs -----------------------------------------------------------------------------

    def frames(self) -> list[str]:
        out, self._out = self._out, []
        if self._pad:
            pad = self._pad
            return [f if len(f) >= pad else f.ljust(pad) for f in out]
        return out

    @property
    def broker_endpoint(self) -> bool:
        """The connected endpoint is Broker's (Zeek 5.0-7.1): frames are padded, pings are off."""
        return self._pad > 0

    def notifications(self) -> list[Notification]:
        out, self._notes = self._notes, []
        return out

    def next_deadline(self) -> float | None:
        if self.state is not LinkState.READY or not self._inflight or self._awaiting_state:
            return None
        return next(iter(self._inflight.values())).sent_at + self.ack_timeout

    @property
    def has_frames(self) -> bool:
        return bool(self._out)

    @property
    def unacknowledged(self) -> int:
        return len(self._inflight)

    @property
    def buffered(self) -> int:
        return len(self._pending)

    # --- internals ---------------------------------------------------------------------------

    def _frame(self, event_json: str) -> str:
        return bj.data_message(self.publish_topic, event_json)

    def _on_protocol(self, msg: p.FromZeek, now: float) -> None:
        if isinstance(msg, p.ZeekHello):
            if self.state is not LinkState.SYNCING:
                return
            self.zeek_id = msg.zeek_id
            self._sync = []
            self._reconcile(msg.done, msg.open, now)
            return
        if isinstance(msg, p.SyncDone):
            if self._sync is None or msg.zeek_id != self.zeek_id:
                return
            self._notes.append(Synced(msg.zeek_id, tuple(self._sync)))
            self._sync = None
            self.state = LinkState.READY
            self._out.extend(self._hosts.values())
            self._pump(now)
            return
        if isinstance(msg, p.BatchAck):
            if msg.zeek_id != self.zeek_id:
                return
            entry = self._inflight.pop((msg.host_id, msg.seq), None)
            if entry is not None:
                self._inflight_events -= len(entry.batch.events)
                self.stats.delivered_batches += 1
                self._notes.append(Delivered(((msg.host_id, msg.seq),)))
                self._pump(now)
            return
        if isinstance(msg, p.DeliveryState):
            if msg.zeek_id != self.zeek_id or not self._awaiting_state:
                return
            self._awaiting_state = False
            self._reconcile(msg.done, msg.open, now)
            if self.state is LinkState.READY:
                self._pump(now)
            return
        if isinstance(msg, p.QueryRequest | p.GroupRequest):
            if msg.zeek_id != self.zeek_id:
                return
            if self._sync is not None:
                self._sync.append(msg)
            elif self.state is LinkState.READY:
                self._notes.append(Request(msg))

    def _reconcile(self, done: dict[str, int], open_: dict[str, int], now: float) -> None:
        """Batches in doubt: completed ones are delivered, the others go out again."""
        if not self._in_doubt:
            return
        self._in_doubt = False
        delivered: list[tuple[str, int]] = []
        again: list[ZeekBatch] = []
        for key, entry in self._inflight.items():
            host, seq = key
            if seq <= done.get(host, 0):
                delivered.append(key)
                continue
            if open_.get(host) == seq:
                self.stats.partial_batches += 1
                log.warning(
                    "zeek link: batch %s/%d was cut off mid-way by a lost connection; it is sent again, "
                    "so rows Zeek processed before the cut are repeated",
                    host,
                    seq,
                )
            again.append(entry.batch)
        self._inflight.clear()
        self._inflight_events = 0
        if delivered:
            self.stats.delivered_batches += len(delivered)
            self._notes.append(Delivered(tuple(delivered)))
        self.stats.resent_batches += len(again)
        self._pending.extendleft(reversed(again))

    def _pump(self, now: float) -> None:
        if self.state is not LinkState.READY or self._awaiting_state:
            return
        while self._pending and len(self._inflight) < self.max_inflight:
            size = len(self._pending[0].events)
            if self._inflight and self._inflight_events + size > self.max_inflight_events:
                break
            batch = self._pending.popleft()
            self._inflight_events += size
            self._out.append(self._frame(p.batch_begin(batch.host_id, batch.seq, len(batch.events))))
            self._out.extend(self._frame(e) for e in batch.events)
            self._out.append(self._frame(p.batch_end(batch.host_id, batch.seq)))
            self._inflight[batch.key] = _InFlight(batch, now)
            self.stats.sent_batches += 1
            self.stats.sent_events += len(batch.events)


def _names(batch: ZeekBatch) -> tuple[str, ...]:
    """The event names a batch holds (for error reports)."""
    names: list[str] = []
    for e in batch.events:
        start = e.find('"@data-type":"string","data":')
        if start < 0:
            continue
        try:
            name = bj.loads(e[start + 29 : e.index("}", start)])
        except (bj.DecodeError, ValueError):
            continue
        if isinstance(name, str) and name not in names:
            names.append(name)
    return tuple(names)
