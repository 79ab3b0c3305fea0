"""The uplink's connection to collectord: the asyncio shell around protocol.session.AgentSession.

One outgoing WebSocket at a time.  The URLs are tried in turn (failover); after a round
in which none answered, a jittered exponential backoff (capped at ``reconnect_max``).
Each state change is logged once, not each attempt.

On a connection: hello (node key, else the enroll secret) -> welcome -> the queue resumes
after ``welcome.last_seq`` -> a sender sends queued batches in order (a window of
unacknowledged batches, paced under the collector's rate) while a reader handles acks
(the queue forgets what is stored), subscriptions (persisted, on the schedule) and
one-time queries (through the agent's read-only query path, answered in parts).

Refusals: an unknown node key makes the agent enroll again (with the secret, if it has
one); ``revoked`` stops the uplink until agentd restarts; the rest retry with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgpack

from protocol import AGENT_PATH
from protocol.errors import ErrorCode
from protocol.messages import (
    MAX_FRAME,
    SUPPORTED_VERSIONS,
    Ack,
    Bye,
    ByeReason,
    Error,
    Execute,
    ExecuteResult,
    Hello,
    Message,
    Subscribe,
    Unsubscribe,
    Welcome,
)
from protocol.session import AgentSession, State

from ..status import UplinkStatus
from .queue import QueueStats, UplinkQueue
from .settings import CollectorSection, ConfigError, read_secret
from .subscriptions import SubscriptionSet

__all__ = ["Identity", "UplinkClient", "UplinkState", "UplinkStatus", "ws_url"]

log = logging.getLogger("agentd.uplink")

#: Unacknowledged batches (and bytes) the sender allows before it waits for acks.
WINDOW_BATCHES = 256
WINDOW_BYTES = 8 * 1024 * 1024
#: A connection that lasted this long resets the backoff.
STABLE_AFTER = 30.0
FIRST_DELAY = 1.0

Execute_ = Callable[[str, float], Awaitable[tuple[Sequence[str], Sequence[Sequence[Any]]]]]


class UplinkState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # waiting to try again
    REVOKED = "revoked"  # the collector revoked this host: no more attempts until agentd restarts
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Identity:
    """What the agent says about itself in hello."""

    host_id: str
    hostname: str
    addresses: tuple[str, ...]
    platform: str
    agent_version: str
    tables: tuple[str, ...]
    stream: str


def ws_url(url: str) -> str:
    """The agent path on ``url`` (a bare ``ws://host:port`` gets /agent)."""
    parts = urlsplit(url)
    path = parts.path if parts.path not in ("", "/") else AGENT_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class Refused(Exception):
    """The collector refused the hello (its error code and message)."""

    def __init__(self, code: ErrorCode | None, message: str) -> None:
        super().__init__(message)
        self.code = code


class UplinkClient:
    """Keeps one connection to a collector of ``section.urls`` until :meth:`stop`."""

    def __init__(
        self,
        section: CollectorSection,
        queue: UplinkQueue,
        subscriptions: SubscriptionSet,
        identity: Identity,
        execute: Execute_,
        *,
        execute_time_limit: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.section = section
        self.queue = queue
        self.subscriptions = subscriptions
        self.identity = identity
        self.execute = execute
        self.execute_time_limit = execute_time_limit
        self.rng = rng or random.Random()
        self.state = UplinkState.DISCONNECTED
        self.url = section.urls[0] if section.urls else ""
        self.last_error = ""
        self.last_ack_time = 0.0
        self.connected_since = 0.0
        self.sent_batches = 0
        self._stats: QueueStats | None = None
        self._wake = asyncio.Event()  # new batches in the queue, or acks: the sender looks again
        self._stopping = False
        self._ws: Any = None
        self._session: AgentSession | None = None
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._logged: tuple[str, str] = ("", "")

    # -- for the component ---------------------------------------------------------------------

    def wake(self) -> None:
        """New batches were queued (any thread may call it through call_soon_threadsafe)."""
        self._wake.set()

    def status(self) -> UplinkStatus:
        stats = self.queue.stats()
        self._stats = stats
        return UplinkStatus(
            url=self.url,
            state=self.state.value,
            last_ack=stats.acked,
            last_ack_time=self.last_ack_time,
            queued_batches=stats.queued_batches,
            queued_rows=stats.queued_rows,
            queued_bytes=stats.queued_bytes,
            dropped_batches=stats.dropped_batches,
            dropped_rows=stats.dropped_rows,
            sent_batches=self.sent_batches,
            subscriptions=len(self.subscriptions.ids()),
            connected_since=self.connected_since if self.state is UplinkState.CONNECTED else 0.0,
            last_error=self.last_error,
        )

    async def run(self) -> None:
        """Connect, serve, reconnect, until stopped or revoked.

        Each round tries the URLs in turn, starting with the one that answered last.  After a
        connection that lasted (STABLE_AFTER), the next round starts after about a second; after
        a round where none answered, or one that dropped us at once, the wait doubles up to
        ``reconnect_max``; every wait is jittered (x 0.5..1) so agents do not come back in step.
        """
        failures = 0
        start_index = 0
        urls = self.section.urls
        while not self._stopping:
            best = "failed"
            for offset in range(len(urls)):
                if self._stopping:
                    return
                index = (start_index + offset) % len(urls)
                self.url = urls[index]
                outcome = await self._attempt(self.url)
                if outcome == "reenroll":
                    outcome = await self._attempt(self.url)  # at once, with the enroll secret
                if outcome == "revoked":
                    self._set_state(UplinkState.REVOKED, self.last_error)
                    return
                if outcome in ("served", "stable"):
                    best, start_index = outcome, index  # stay with the collector that answered
                    break
            if self._stopping:
                return
            failures = 0 if best == "stable" else failures + 1
            delay = min(self.section.reconnect_max, FIRST_DELAY * 2 ** max(0, failures - 1))
            await asyncio.sleep(delay * self.rng.uniform(0.5, 1.0))

    async def stop(self) -> None:
        """Say bye (shutdown) if connected, close, end the tasks."""
        self._stopping = True
        session, ws = self._session, self._ws
        if session is not None and ws is not None and session.state is State.OPEN:
            with contextlib.suppress(Exception):
                session.send(Bye(ByeReason.SHUTDOWN, "agentd is stopping"))
                await asyncio.wait_for(self._flush(), 1.0)
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1.0)
        for task in list(self._tasks):
            task.cancel()
        self._set_state(UplinkState.STOPPED, "")

    # -- one connection ------------------------------------------------------------------------

    async def _attempt(self, url: str) -> str:
        """One connection to ``url``: "served"/"stable" (it answered), "failed", "reenroll" or "revoked"."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

        self._set_state(UplinkState.CONNECTING, "")
        started = time.monotonic()
        try:
            context = await self._ssl_for(url)
            ws = await connect(
                ws_url(url),
                ssl=context,
                compression=None,
                max_size=MAX_FRAME * 4,
                open_timeout=10,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=2,
                proxy=None,
                user_agent_header=f"agentd/{self.identity.agent_version}",
            )
        except ssl.SSLCertVerificationError as exc:
            return self._failed(url, f"the collector's certificate is not trusted: {exc.verify_message}")
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConfigError, ssl.SSLError) as exc:
            return self._failed(url, _reason(exc))
        self._ws = ws
        try:
            try:
                welcome = await self._handshake(ws)
            except Refused as exc:
                return self._refused(url, exc)
            except (ConnectionClosed, TimeoutError, OSError) as exc:
                return self._failed(url, f"no welcome: {_reason(exc)}")
            await self._serve(ws, welcome)
            return "stable" if time.monotonic() - started > STABLE_AFTER else "served"
        except ConnectionClosed as exc:
            self._lost(url, _reason(exc))
            return "stable" if time.monotonic() - started > STABLE_AFTER else "served"
        finally:
            self._ws = None
            self._session = None
            self.connected_since = 0.0
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)

    async def _ssl_for(self, url: str) -> ssl.SSLContext | None:
        parts = urlsplit(url)
        if parts.scheme == "ws":
            await _require_loopback(parts.hostname or "", parts.port or 80)
            return None
        try:
            context = ssl.create_default_context(cafile=self.section.ca)  # the pinned CA (system CAs if none)
            if self.section.client_cert is not None:
                context.load_cert_chain(self.section.client_cert, self.section.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"collector TLS files cannot be used: {exc}") from None
        return context

    def _hello(self) -> Hello:
        node_key = self.queue.get_text("node_key")
        secret = None
        if node_key is None:
            secret = read_secret(self.section)
            if secret is None:
                raise ConfigError(
                    "no node key and no enroll secret (collector.enroll_secret_file or --enroll-secret-file)"
                )
        stats = self.queue.stats()
        ident = self.identity
        return Hello(
            versions=SUPPORTED_VERSIONS,
            host_id=ident.host_id,
            hostname=ident.hostname,
            addresses=ident.addresses,
            platform=ident.platform,
            agent_version=ident.agent_version,
            tables=ident.tables,
            groups=self.section.groups,
            node_key=node_key,
            enroll_secret=secret,
            stream=ident.stream,
            acked_seq=stats.acked,
            subscriptions=self.subscriptions.ids(),
        )

    async def _handshake(self, ws: Any) -> Welcome:
        try:
            hello = await asyncio.to_thread(self._hello)
        except ConfigError as exc:
            raise Refused(None, str(exc)) from None
        session = AgentSession(hello)
        self._session = session
        session.start()
        await self._flush()
        async with asyncio.timeout(15):
            while session.state is State.HANDSHAKE:
                session.receive_frame(await ws.recv())
        for message in session.events_received():
            if isinstance(message, Welcome):
                return message
        error = session.peer_error
        if error is not None:
            raise Refused(error.code, error.message)
        if session.peer_bye is not None:
            raise Refused(None, f"bye: {session.peer_bye.reason.value} {session.peer_bye.message}")
        raise Refused(None, f"the collector broke the protocol: {session.failure}")

    async def _serve(self, ws: Any, welcome: Welcome) -> None:
        session = self._session
        assert session is not None
        if welcome.node_key is not None:
            await asyncio.to_thread(self.queue.set_text, "node_key", welcome.node_key)
            log.info("enrolled with the collector at %s (node key stored)", self.url)
        await asyncio.to_thread(self.queue.resume, welcome.last_seq)
        self.connected_since = time.time()
        self._set_state(UplinkState.CONNECTED, f"resuming after seq {welcome.last_seq}")
        sender = asyncio.create_task(self._sender(session, welcome), name="agentd-uplink-sender")
        reader = asyncio.create_task(self._reader(ws, session), name="agentd-uplink-reader")
        self._tasks |= {sender, reader}
        try:
            done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is not None:
                    raise exc
        finally:
            for task in (sender, reader):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._tasks -= {sender, reader}
        if session.peer_error is not None:
            self.last_error = f"{session.peer_error.code.value}: {session.peer_error.message}"
            self._set_state(UplinkState.DISCONNECTED, f"the collector closed the session: {self.last_error}")
        elif session.failure is not None:
            self._set_state(UplinkState.DISCONNECTED, f"the collector broke the protocol: {session.failure}")

    async def _flush(self) -> None:
        session, ws = self._session, self._ws
        if session is None or ws is None:
            return
        async with self._send_lock:
            for frame in session.data_to_send():
                await ws.send(frame)

    async def _sender(self, session: AgentSession, welcome: Welcome) -> None:
        """Send queued batches in order, within the window and under the collector's rate."""
        sent_upto = welcome.last_seq
        rate = max(1.0, welcome.max_rate * 0.8)
        tokens, last = rate, time.monotonic()
        in_flight_bytes: list[tuple[int, int]] = []  # (last seq, bytes) of unacknowledged batches
        while not session.closed:
            in_flight_bytes = [(s, b) for s, b in in_flight_bytes if s > session.acked]
            if session.in_flight >= WINDOW_BATCHES or sum(b for _, b in in_flight_bytes) >= WINDOW_BYTES:
                self._wake.clear()
                await self._wait_wake(1.0)
                continue
            self._wake.clear()
            entries = await asyncio.to_thread(self.queue.take, sent_upto, 32)
            if not entries:
                await self._wait_wake(1.0)
                continue
            for entry in entries:
                if session.closed:
                    return
                now = time.monotonic()
                tokens = min(rate, tokens + (now - last) * rate)
                last = now
                if tokens < 1:
                    await asyncio.sleep((1 - tokens) / rate)
                    tokens = 1.0
                tokens -= 1
                if entry.seq != session.next_seq:
                    raise RuntimeError(f"uplink queue entry {entry.seq} is not the next sequence {session.next_seq}")
                session.send(entry.message)
                await self._flush()
                sent_upto = entry.last_seq
                in_flight_bytes.append((entry.last_seq, entry.bytes))
                self.sent_batches += 1

    async def _wait_wake(self, poll: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), poll)

    async def _reader(self, ws: Any, session: AgentSession) -> None:
        from websockets.exceptions import ConnectionClosed

        acks: asyncio.Task[None] | None = None
        try:
            while not session.closed:
                try:
                    frame = await ws.recv()
                except ConnectionClosed as exc:
                    self._lost(self.url, _reason(exc))
                    return
                session.receive_frame(frame)
                for message in session.events_received():
                    if isinstance(message, Ack):
                        self.last_ack_time = time.time()
                        if acks is None or acks.done():
                            acks = asyncio.create_task(self._apply_acks(session))
                        self._wake.set()
                    else:
                        self._order(message)
                await self._flush()
        finally:
            if acks is not None:
                with contextlib.suppress(Exception):
                    await acks

    async def _apply_acks(self, session: AgentSession) -> None:
        """Forget acknowledged batches (in a thread; later acks are folded into one deletion)."""
        done = 0
        while session.acked > done:
            done = session.acked
            await asyncio.to_thread(self.queue.acked, done)

    def _order(self, message: Message) -> None:
        if isinstance(message, Subscribe):
            self.subscriptions.apply(message)
        elif isinstance(message, Unsubscribe):
            self.subscriptions.remove(message.id)
        elif isinstance(message, Execute):
            task = asyncio.create_task(self._execute(message), name=f"agentd-uplink-execute-{message.query_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif isinstance(message, Bye):
            log.info("the collector said bye: %s %s", message.reason.value, message.message)
            if message.reason is ByeReason.REVOKED:
                self.last_error = "revoked by an operator"
        elif isinstance(message, Error):
            log.warning("the collector reported %s: %s", message.code.value, message.message)

    async def _execute(self, message: Execute) -> None:
        """A one-time query through the agent's read-only query path; the answer in parts that fit a frame."""
        from tables.sqlite import QueryError, QueryTimeout

        limit = min(message.timeout, self.execute_time_limit)
        try:
            columns, rows = await self.execute(message.sql, limit)
        except QueryTimeout as exc:
            await self._answer(ExecuteResult(message.query_id, (), (), last=True, error=str(exc), timed_out=True))
            return
        except QueryError as exc:
            await self._answer(ExecuteResult(message.query_id, (), (), last=True, error=str(exc)))
            return
        except Exception as exc:
            log.exception("one-time query %s failed", message.query_id)
            await self._answer(
                ExecuteResult(message.query_id, (), (), last=True, error=f"internal error: {type(exc).__name__}")
            )
            return
        cols = tuple(columns)
        chunk: list[tuple[Any, ...]] = []
        size = 0
        limit_bytes = 1024 * 1024
        for row in rows:
            values = tuple(row)
            chunk.append(values)
            size += len(msgpack.packb(values, use_bin_type=True))
            if size >= limit_bytes:
                await self._answer(ExecuteResult(message.query_id, cols, tuple(chunk), last=False))
                chunk, size = [], 0
        await self._answer(ExecuteResult(message.query_id, cols, tuple(chunk), last=True))

    async def _answer(self, result: ExecuteResult) -> None:
        session = self._session
        if session is None or session.state is not State.OPEN or result.query_id not in session.executing:
            return  # the connection it came on is gone: the collector reported a timeout or an error
        session.send(result)
        await self._flush()

    # -- states and their log lines ------------------------------------------------------------

    def _set_state(self, state: UplinkState, detail: str) -> None:
        key = (state.value, detail if state is not UplinkState.CONNECTING else "")
        self.state = state
        if key == self._logged or state is UplinkState.CONNECTING:
            return
        self._logged = key
        if state is UplinkState.CONNECTED:
            log.info("uplink connected to %s (%s)", self.url, detail)
        elif state is UplinkState.REVOKED:
            log.error("uplink: this host was revoked by the collector at %s; not trying again until restart", self.url)
        elif state is UplinkState.DISCONNECTED:
            log.warning("uplink disconnected: %s; retrying with backoff", detail)
        elif state is UplinkState.STOPPED:
            log.info("uplink stopped")

    def _failed(self, url: str, why: str) -> str:
        self.last_error = f"{url}: {why}"
        self._set_state(UplinkState.DISCONNECTED, f"cannot reach {url}: {why}")
        return "failed"

    def _lost(self, url: str, why: str) -> None:
        if not self._stopping:
            self._set_state(UplinkState.DISCONNECTED, f"connection to {url} lost: {why}")

    def _refused(self, url: str, exc: Refused) -> str:
        self.last_error = f"{url}: {exc}"
        if exc.code is ErrorCode.REVOKED:
            return "revoked"
        if exc.code is ErrorCode.AUTH_FAILED and self.queue.get_text("node_key") is not None:
            log.warning("the collector at %s refused the node key (%s); enrolling again", url, exc)
            self.queue.set_text("node_key", None)
            return "reenroll"
        self._set_state(UplinkState.DISCONNECTED, f"{url} refused: {exc}")
        return "failed"


async def _require_loopback(host: str, port: int) -> None:
    """Plaintext only to loopback: every address of ``host`` must be a loopback address."""
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    if not addresses or not all(a.is_loopback for a in addresses):
        raise ConfigError(f"plaintext ws:// is only allowed to loopback addresses; {host} is not one (use wss://)")


def _reason(exc: BaseException) -> str:
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, ConnectionClosed):
        frame = exc.rcvd
        if frame is None:
            return "closed without a close frame"
        return f"closed with code {frame.code}" + (f" ({frame.reason})" if frame.reason else "")
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # "Connection refused", not asyncio's "Connect call failed (...)"
    return str(exc) or type(exc).__name__
