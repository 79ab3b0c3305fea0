"""One agent's connection: the asyncio shell around :class:`protocol.session.CollectorSession`.

Reads frames (with a hello deadline and a per-connection message rate limit), hands
them to the session, acts on the messages: results and drop notices go to the
:class:`~collector.store.Committer` and are acknowledged once durable; execute answers go
to their :class:`~collector.fleet.QueryRun`.  One writer task sends what the session
queues.  A broken rule, a refusal or a bye ends the session; the connection is closed
after the session's last frame is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from websockets.exceptions import ConnectionClosed

from protocol.errors import ErrorCode
from protocol.messages import (
    Ack,
    Bye,
    ByeReason,
    Dropped,
    Error,
    Execute,
    ExecuteResult,
    Hello,
    Results,
    Subscribe,
    Unsubscribe,
)
from protocol.session import CollectorSession, State

from .config import Limits
from .fleet import Fleet, QueryRun, Refusal
from .model import HostQuery, Lease
from .ratelimit import TokenBucket
from .registry import Submission, Verdict
from .store import Committer

__all__ = ["AgentLink"]

log = logging.getLogger("collectord.agents")

#: Result batches of one connection waiting for their commit before it stops reading more.
MAX_PENDING = 1024

#: WebSocket close codes.
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_GOING_AWAY = 1000, 1008, 1009, 1001


class AgentLink:
    """A connected agent (the :class:`~collector.fleet.Link` the fleet sees)."""

    def __init__(self, ws: Any, fleet: Fleet, committer: Committer, limits: Limits, *, peer: str) -> None:
        self.ws = ws
        self.fleet = fleet
        self.committer = committer
        self.limits = limits
        self.peer = peer
        self.session = CollectorSession(versions=fleet.versions, max_frame=limits.max_frame)
        self.host_id = ""
        self.hostname = ""
        self.running: set[str] = set()
        self.lease: Lease | None = None
        self.rate = TokenBucket(limits.max_rate, burst=2 * limits.max_rate)
        # Results of this connection submitted and not yet committed; reading pauses above MAX_PENDING.
        self.pending = 0
        self._drained = asyncio.Event()
        self._drained.set()
        # Highest sequence durably stored (what the next ack says).
        self.stored_seq = 0
        self._ack_scheduled = False
        self._executions: dict[str, QueryRun] = {}
        self._wake_writer = asyncio.Event()
        self._close_code = CLOSE_NORMAL
        self.batches = 0
        self.rows = 0

    # -- the Link interface -------------------------------------------------------------------

    def subscribe(self, query_id: str, name: str, query: HostQuery) -> None:
        if self._send(Subscribe(query_id, name, query.sql, query.interval, query.mode, query.removed)):
            self.running.add(query_id)

    def unsubscribe(self, query_id: str) -> None:
        if self._send(Unsubscribe(query_id)):
            self.running.discard(query_id)

    def execute(self, run: QueryRun) -> None:
        self._executions[run.query_id] = run
        if not self._send(Execute(run.query_id, run.sql, run.timeout)):
            self._executions.pop(run.query_id, None)
            run.lost(self.host_id, "the host disconnected before answering")

    def close(self, reason: ByeReason, message: str) -> None:
        """End the session with ``bye`` (revoked, superseded, shutdown) and close the connection."""
        if not self.session.closed:
            self.session.send(Bye(reason, message))
            self._close_code = CLOSE_GOING_AWAY if reason in (ByeReason.SHUTDOWN, ByeReason.RESTART) else CLOSE_POLICY
        self._wake_writer.set()

    # -- the connection -----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it ends; never raises for what the peer does."""
        writer = asyncio.create_task(self._writer(), name=f"collectord-agent-writer-{self.peer}")
        try:
            if await self._handshake():
                await self._read_loop()
        except ConnectionClosed:
            pass
        finally:
            self._wake_writer.set()
            await self._finish(writer)

    async def _handshake(self) -> bool:
        try:
            async with asyncio.timeout(self.limits.hello_timeout):
                frame = await self.ws.recv()
        except TimeoutError:
            self._refuse(ErrorCode.TIMEOUT, f"no hello within {self.limits.hello_timeout:g} s")
            return False
        self.session.receive_frame(frame)
        events = self.session.events_received()
        if self.session.closed or not events or not isinstance(events[0], Hello):
            self._log_failure("before hello")
            return False
        hello = events[0]
        self.host_id, self.hostname = hello.host_id, hello.hostname
        assert self.session.version is not None
        try:
            welcome, lease = await self.fleet.admit(self, hello, self.session.version)
        except Refusal as exc:
            log.warning("%s: refused host %s (%s): %s", self.peer, hello.host_id, hello.hostname, exc)
            self._refuse(exc.code, str(exc))
            return False
        self.lease = lease
        self.stored_seq = lease.last_seq
        self.running = set(hello.subscriptions)
        self.session.accept(welcome)
        self._wake_writer.set()
        log.info(
            "host %s (%s) connected from %s, resuming after seq %d%s",
            self.host_id,
            self.hostname,
            self.peer,
            lease.last_seq,
            " (newly enrolled)" if welcome.node_key else "",
        )
        await self.fleet.reconcile([self.host_id])
        return True

    async def _read_loop(self) -> None:
        while not self.session.closed:
            if self.pending >= MAX_PENDING:
                await self._drained.wait()
            frame = await self.ws.recv()
            if not self.rate.take(time.monotonic()):
                self.session.fail(
                    ErrorCode.RATE_LIMITED, f"more than {self.limits.max_rate:g} messages per second (burst 2x)"
                )
                self._log_failure("rate limit")
                break
            self.session.receive_frame(frame)
            for message in self.session.events_received():
                self._handle(message)
            if self.session.failure is not None:
                self._log_failure("message")
            self._wake_writer.set()

    def _handle(self, message: object) -> None:
        if isinstance(message, (Results, Dropped)):
            assert self.lease is not None
            self.pending += 1
            if self.pending >= MAX_PENDING:
                self._drained.clear()
            if isinstance(message, Results):
                self.batches += 1
                self.rows += len(message.rows)
                seq = message.seq
            else:
                seq = message.to_seq
                log.warning(
                    "host %s (%s) dropped %d rows in %d batches (seq %d..%d): its queue overflowed",
                    self.host_id,
                    self.hostname,
                    message.rows,
                    message.batches,
                    message.from_seq,
                    message.to_seq,
                )
            submission = Submission(self.lease, self.hostname, message, time.time())
            self.committer.submit(submission, lambda verdict, seq=seq: self._stored(seq, verdict))  # type: ignore[misc]
        elif isinstance(message, ExecuteResult):
            run = self._executions.get(message.query_id)
            if run is not None:
                run.part(self.host_id, message)
                if message.last:
                    del self._executions[message.query_id]
        elif isinstance(message, Bye):
            log.info("host %s (%s) said bye: %s %s", self.host_id, self.hostname, message.reason.value, message.message)
        elif isinstance(message, Error):
            log.warning(
                "host %s (%s) reported %s: %s", self.host_id, self.hostname, message.code.value, message.message
            )

    def _stored(self, seq: int, verdict: Verdict) -> None:
        """A commit finished (on the event loop): acknowledge what is durable."""
        self.pending -= 1
        if self.pending < MAX_PENDING:
            self._drained.set()
        if verdict is Verdict.STORED:
            if seq > self.stored_seq:
                self.stored_seq = seq
            if not self._ack_scheduled:
                self._ack_scheduled = True
                asyncio.get_running_loop().call_soon(self._send_ack)
        elif not self.session.closed:
            # Fenced: a newer connection or a revocation took the host's lease; nothing more is stored here.
            self.close(ByeReason.SUPERSEDED, f"results no longer accepted on this connection ({verdict.value})")

    def _send_ack(self) -> None:
        self._ack_scheduled = False
        if self.session.state is State.OPEN and self.stored_seq > self.session.acked:
            self._send(Ack(self.stored_seq))

    def _send(self, message: Any) -> bool:
        if self.session.state is not State.OPEN:
            return False
        self.session.send(message)
        self._wake_writer.set()
        return True

    def _refuse(self, code: ErrorCode, message: str) -> None:
        self.session.fail(code, message)
        self._close_code = CLOSE_POLICY
        self._wake_writer.set()

    def _log_failure(self, where: str) -> None:
        failure = self.session.failure
        if failure is not None:
            self._close_code = CLOSE_POLICY
            who = f"host {self.host_id} ({self.hostname})" if self.host_id else "unidentified agent"
            log.warning("%s from %s: %s (%s)", who, self.peer, failure, where)

    async def _writer(self) -> None:
        """The only sender: writes what the session queued; after the session's end, closes."""
        try:
            while True:
                await self._wake_writer.wait()
                self._wake_writer.clear()
                for frame in self.session.data_to_send():
                    await self.ws.send(frame)
                if self.session.closed:
                    break
        except ConnectionClosed:
            return
        with contextlib.suppress(Exception):
            await self.ws.close(self._close_code, (self.session.failure.code.value if self.session.failure else ""))

    async def _finish(self, writer: asyncio.Task[None]) -> None:
        if not self.session.closed:
            self.session.connection_lost()
        try:
            await asyncio.wait_for(writer, 5.0)
        except (TimeoutError, ConnectionClosed, asyncio.CancelledError):
            writer.cancel()
        for run in self._executions.values():
            run.lost(self.host_id, "the host disconnected before answering")
        self._executions.clear()
        if self.host_id and self.lease is not None:
            log.info("host %s (%s) disconnected", self.host_id, self.hostname)
        await self.fleet.left(self, self.lease)
