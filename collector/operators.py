"""One operator connection (agent-cli --collector): the shell around OperatorServerSession.

The operator authenticates with the operator token (constant-time compare; agents' node
keys and the enroll secret are different secrets and never match it).  Each request runs
as its own task, so a long one-time query does not hold up a ``hosts`` request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

from protocol import operator as op
from protocol.errors import ErrorCode
from protocol.messages import Bye, ByeReason, Message
from protocol.opsession import OperatorServerSession
from protocol.session import State

from .config import Limits
from .fleet import Fleet, HostAnswer, HostRows
from .model import OPERATOR_OWNER, Host, HostQuery, Subscription
from .ratelimit import TokenBucket
from .registry import RegistryError

__all__ = ["OperatorLink", "StatusProvider", "host_info", "subscription_info"]

log = logging.getLogger("collectord.operators")

#: collectord's downstream parts (Zeek links, logs) as operators see them (``get_status``).
StatusProvider = Callable[[], list[op.ComponentInfo]]


def host_info(host: Host) -> op.HostInfo:
    return op.HostInfo(
        host_id=host.host_id,
        hostname=host.hostname,
        addresses=host.addresses,
        platform=host.platform,
        agent_version=host.agent_version,
        groups=host.groups,
        online=host.online,
        revoked=host.revoked,
        first_seen=host.first_seen,
        last_seen=host.last_seen,
        last_seq=host.last_seq,
        dropped_rows=host.dropped_rows,
    )


def subscription_info(sub: Subscription) -> op.SubscriptionInfo:
    q = sub.query
    return op.SubscriptionInfo(sub.id, sub.name, sub.owner, q.sql, q.interval, q.mode, q.removed, sub.targets)


class OperatorLink:
    """A connected operator client."""

    def __init__(
        self, ws: Any, fleet: Fleet, limits: Limits, *, token: str, peer: str, status: StatusProvider | None = None
    ) -> None:
        self.ws = ws
        self.status = status
        self.fleet = fleet
        self.limits = limits
        self.peer = peer
        self._token = token.encode()
        self.session = OperatorServerSession(versions=fleet.versions, max_frame=limits.max_frame)
        self.rate = TokenBucket(limits.max_rate, burst=2 * limits.max_rate)
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake_writer = asyncio.Event()

    async def run(self) -> None:
        writer = asyncio.create_task(self._writer(), name=f"collectord-operator-writer-{self.peer}")
        try:
            if await self._authenticate():
                await self._read_loop()
        except ConnectionClosed:
            pass
        finally:
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if not self.session.closed:
                self.session.connection_lost()
            self._wake_writer.set()
            try:
                await asyncio.wait_for(writer, 5.0)
            except (TimeoutError, asyncio.CancelledError):
                writer.cancel()

    def close(self, reason: ByeReason, message: str) -> None:
        if not self.session.closed:
            self.session.send(Bye(reason, message))
        self._wake_writer.set()

    async def _authenticate(self) -> bool:
        try:
            async with asyncio.timeout(self.limits.hello_timeout):
                frame = await self.ws.recv()
        except TimeoutError:
            self._fail(ErrorCode.TIMEOUT, f"no auth within {self.limits.hello_timeout:g} s")
            return False
        self.session.receive_frame(frame)
        events = self.session.events_received()
        if self.session.closed or not events or not isinstance(events[0], op.Auth):
            self._log_failure()
            self._wake_writer.set()
            return False
        if not hmac.compare_digest(events[0].token.encode(), self._token):
            self._fail(ErrorCode.AUTH_FAILED, "wrong operator token")
            return False
        self.session.accept(self.fleet.collector_id)
        self._wake_writer.set()
        log.info("operator %s connected from %s", events[0].client or "client", self.peer)
        return True

    async def _read_loop(self) -> None:
        while not self.session.closed:
            frame = await self.ws.recv()
            if not self.rate.take(time.monotonic()):
                self._fail(ErrorCode.RATE_LIMITED, f"more than {self.limits.max_rate:g} messages per second")
                return
            self.session.receive_frame(frame)
            for message in self.session.events_received():
                if type(message) in _HANDLERS:
                    task = asyncio.create_task(self._request(message))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            self._log_failure()
            self._wake_writer.set()

    async def _request(self, message: Message) -> None:
        req: int = message.req  # type: ignore[attr-defined]
        try:
            await _HANDLERS[type(message)](self, message)
        except (RegistryError, ValueError) as exc:
            self._send(op.OperatorError(req, ErrorCode.BAD_REQUEST, str(exc)))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("operator request %s failed", message.TYPE)
            self._send(op.OperatorError(req, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"))

    # -- requests ---------------------------------------------------------------------------

    async def _list_hosts(self, message: op.ListHosts) -> None:
        hosts = await self.fleet.hosts()
        self._send(op.HostList(message.req, tuple(host_info(h) for h in hosts)))

    async def _get_status(self, message: op.GetStatus) -> None:
        hosts = await self.fleet.hosts()
        components = tuple(self.status()) if self.status is not None else ()
        online = sum(1 for h in hosts if h.host_id in self.fleet.links)
        self._send(op.CollectorStatus(message.req, self.fleet.collector_id, online, len(hosts), components))

    async def _list_subscriptions(self, message: op.ListSubscriptions) -> None:
        subs = await self.fleet.subscriptions()
        self._send(op.SubscriptionList(message.req, tuple(subscription_info(s) for s in subs)))

    async def _add_subscription(self, message: op.AddSubscription) -> None:
        if message.targets.empty:
            raise ValueError("a subscription needs targets: --host, --group or --all")
        query = HostQuery(message.sql, message.interval, message.mode, message.removed)
        sub = await self.fleet.put_subscription(OPERATOR_OWNER, message.name, query, message.targets)
        hosts, _ = await self.fleet.store.call(lambda r: r.select(message.targets))
        online = sum(1 for h in hosts if h.host_id in self.fleet.links)
        log.info("operator subscribed %r (%s) on %d hosts", message.name, sub.query.id, len(hosts))
        self._send(
            op.Done(message.req, f"subscription {message.name!r} targets {len(hosts)} hosts ({online} connected)")
        )

    async def _remove_subscription(self, message: op.RemoveSubscription) -> None:
        sub = await self.fleet.remove_subscription(OPERATOR_OWNER, message.name)
        if sub is None:
            raise ValueError(f"no operator subscription named {message.name!r}")
        self._send(op.Done(message.req, f"subscription {message.name!r} removed"))

    async def _revoke(self, message: op.Revoke) -> None:
        host = await self.fleet.revoke(message.host)
        self._send(op.Done(message.req, f"host {host.host_id} ({host.hostname}) revoked"))

    async def _run_query(self, message: op.RunQuery) -> None:
        if message.targets.empty:
            raise ValueError("a query needs targets: --host, --group or --all")
        run = await self.fleet.execute(message.sql, message.targets, message.timeout)
        try:
            self._send(op.QueryStarted(message.req, run.query_id, tuple(run.counts)))
            async for event in run.events():
                if isinstance(event, HostRows):
                    self._send(op.QueryRows(message.req, event.host_id, event.hostname, event.columns, event.rows))
                elif isinstance(event, HostAnswer):
                    self._send(
                        op.QueryStatus(
                            message.req, event.host_id, event.hostname, event.status, event.rows, event.message
                        )
                    )
            self._send(op.QueryDone(message.req))
        finally:
            self.fleet.finished(run)

    # -- sending ----------------------------------------------------------------------------

    def _send(self, message: Message) -> None:
        if self.session.state is State.OPEN:
            self.session.send(message)
            self._wake_writer.set()

    def _fail(self, code: ErrorCode, message: str) -> None:
        self.session.fail(code, message)
        self._log_failure()
        self._wake_writer.set()

    def _log_failure(self) -> None:
        if self.session.failure is not None:
            log.warning("operator connection from %s refused: %s", self.peer, self.session.failure)

    async def _writer(self) -> None:
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
            await self.ws.close(1008 if self.session.failure else 1000)


_HANDLERS: dict[type[Message], Any] = {
    op.ListHosts: OperatorLink._list_hosts,
    op.GetStatus: OperatorLink._get_status,
    op.ListSubscriptions: OperatorLink._list_subscriptions,
    op.AddSubscription: OperatorLink._add_subscription,
    op.RemoveSubscription: OperatorLink._remove_subscription,
    op.Revoke: OperatorLink._revoke,
    op.RunQuery: OperatorLink._run_query,
}
