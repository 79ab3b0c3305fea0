"""One Zeek endpoint as a downstream sink of collectord: results in, requests out.

:class:`ZeekSink` owns the endpoint's :class:`~collector.zeek.client.ZeekLink` and does two jobs:

- **Results to Zeek, exactly once.** It reads the durable outbox (collector/outbox.py) after its
  cursor; every result batch of its own subscriptions (owner ``zeek:<name>``) becomes numbered
  batches of the subscription's events, at most ``batch_rows`` each, numbered ``position * PARTS +
  part`` from its outbox position (rising per host, stable across restarts). The cursor moves only
  over positions whose every part the framework acknowledged (or that had nothing for Zeek).
  After a restart, what may have been sent before is handed to the link as *in doubt*
  (``ZeekLink.resume``): Zeek's delivery marks decide whether it goes again.
  Host events become ``host_connected``/``host_disconnected``; a host's dropped rows become an
  ``osquery::error``. Rows whose values cannot become the declared types become
  ``osquery::error`` events in their place (and a log line): never a silent drop, never a wrong value.
- **Requests from Zeek.** After every (re)connect the framework replays every subscription and
  grouping in force (:class:`~collector.zeek.link.Synced`): the endpoint's registry
  subscriptions are made exactly that set (unchanged ones untouched: a restarted Zeek costs the
  hosts nothing). Live ``subscribe``/``unsubscribe`` change it; ``execute`` runs a one-time query
  and sends its rows as ``SNAPSHOT`` events; ``join``/``leave`` put hosts in subnet groups.

While Zeek is away, result batches stay in the outbox, bounded by ``max_backlog``: past it the
oldest are dropped, counted and reported to Zeek when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from protocol.operator import HostQueryStatus

from ..config import ZeekConfig
from ..fleet import Fleet, HostAnswer, HostRows, SubnetGroups
from ..model import HostEvent, HostEventKind, LossReport, OutboxItem, ResultBatch
from ..outbox import SinkFeed
from . import brokerjson as bj
from . import protocol as p
from .client import LinkStatus, ZeekLink
from .columns import Action as ZeekAction
from .columns import ColumnError, RowEncoder, SignatureError
from .link import (
    BROKER_MIN_FRAME,
    Delivered,
    Dropped,
    LinkDown,
    LinkState,
    LinkUp,
    Notification,
    Received,
    Request,
    Synced,
    ZeekBatch,
    ZeekError,
)
from .requests import ZEEK_ACTION, RequestError, Route, execute_targets, subscription_for

__all__ = ["EXECUTE_KEY", "ZeekSink", "ZeekSinkStatus"]

log = logging.getLogger("collectord.zeek")

#: The delivery-mark key of one-time query results (they are not in the outbox; numbered by time).
EXECUTE_KEY = "#execute"
#: Batch numbers: an outbox position's parts are position * PARTS + 0, 1, ...
PARTS = 1 << 16

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ZeekSinkStatus:
    """One Zeek endpoint as operators see it (``agent-cli --collector URL status``)."""

    name: str
    url: str
    state: LinkState
    zeek_id: str
    subscriptions: int  # this endpoint's subscriptions in force
    delivered_batches: int
    delivered_rows: int
    unacknowledged: int
    buffered: int
    resent_batches: int
    partial_batches: int
    dropped_batches: int  # over max_backlog while Zeek was away
    dropped_rows: int
    conversion_errors: int  # rows sent as osquery::error instead (a value that cannot be the declared type)
    refused_requests: int
    zeek_errors: int  # messages Zeek refused
    connects: int
    last_error: str


class _Encoders:
    """RowEncoders per (route, columns): compiled once, reused for every batch."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[Route, RowEncoder | None, str]] = {}

    def get(self, route_json: str, columns: Sequence[str]) -> tuple[Route, RowEncoder | None, str]:
        key = (route_json, tuple(columns))
        found = self._cache.get(key)
        if found is None:
            route = Route.from_json(route_json)
            try:
                found = (route, RowEncoder(route.signature(), columns), "")
            except (ColumnError, SignatureError) as exc:
                found = (route, None, str(exc))
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = found
        return found


class ZeekSink:
    """Results to one Zeek endpoint and its requests into the fleet (a :class:`~collector.outbox.Sink`)."""

    def __init__(
        self,
        config: ZeekConfig,
        fleet: Fleet,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.fleet = fleet
        self.name = config.owner  # the sink's cursor and the subscriptions' owner: zeek:<name>
        self.owner = config.owner
        self.read_ahead = 2 * config.max_inflight
        self._backoff = (backoff_initial, backoff_max)
        self._clock = clock
        self._encoders = _Encoders()
        self.link = self._new_link()
        self._feed: SinkFeed | None = None
        # Positions read and not yet delivered (in order), and those done; the cursor follows.
        self._order: deque[int] = deque()
        self._done: set[int] = set()
        self._parts_left: dict[int, int] = {}
        self._after = 0
        self._resume_upto = 0
        self._committed = 0
        self._room = asyncio.Event()
        self._requests: asyncio.Queue[Notification] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._groupings: dict[str, set[Network]] = {}
        self._rows_in: dict[tuple[str, int], int] = {}
        self._exec_seq = 0
        self._backlog_warned = False
        self._lost_report: tuple[int, int] = (0, 0)  # (batches, rows) dropped and not yet told to Zeek
        self._subscription_names: set[str] = set()
        #: Handlers of events from Zeek that are not the collector protocol (e.g. attribution).
        self.event_handlers: list[Callable[[bj.Event], None]] = []
        self.stats = {
            "delivered_rows": 0,
            "dropped_batches": 0,
            "dropped_rows": 0,
            "conversion_errors": 0,
            "refused_requests": 0,
        }
        self.last_error = ""

    # -- what collectord calls --------------------------------------------------------------

    def status(self) -> ZeekSinkStatus:
        s: LinkStatus = self.link.status()
        return ZeekSinkStatus(
            name=self.config.name,
            url=s.url,
            state=s.state,
            zeek_id=s.zeek_id,
            subscriptions=len(self._subscription_names),
            delivered_batches=s.delivered_batches,
            delivered_rows=self.stats["delivered_rows"],
            unacknowledged=s.unacknowledged,
            buffered=s.buffered,
            resent_batches=s.resent_batches,
            partial_batches=s.partial_batches,
            dropped_batches=self.stats["dropped_batches"],
            dropped_rows=self.stats["dropped_rows"],
            conversion_errors=self.stats["conversion_errors"],
            refused_requests=self.stats["refused_requests"],
            zeek_errors=s.zeek_errors,
            connects=s.connects,
            last_error=self.last_error,
        )

    def send_event(self, event_json: str) -> bool:
        """Send an event outside the result batches (while Zeek is connected); False when it is not."""
        return self.link.send_event(event_json)

    # -- the sink -----------------------------------------------------------------------------

    async def run(self, feed: SinkFeed) -> None:
        """Deliver the outbox to Zeek until cancelled (restarted by Sinks if it raises)."""
        self._feed = feed
        cursor = await feed.cursor()
        self._after = self._committed = cursor.position
        self._order.clear()
        self._done.clear()
        self._parts_left.clear()
        self._rows_in.clear()
        # Anything up to today's head may have been sent by an earlier run: Zeek's marks decide.
        self._resume_upto = await feed.store.call(lambda r: r.head())
        self._subscription_names = {s.name for s in await self.fleet.subscriptions(self.owner)}
        if self.link.core.state is not LinkState.DISCONNECTED or self.link.core.unacknowledged:
            self.link = self._new_link()  # a restarted sink starts from its cursor with a clean link
        await self._seed_hosts()
        self._spawn(self._serve_requests(), "requests")
        await self.link.start()
        try:
            await self._deliver(feed)
        finally:
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.link.stop(grace=2.0)

    def _new_link(self) -> ZeekLink:
        c = self.config
        return ZeekLink(
            c.endpoint(),
            self.fleet.collector_id,
            self._on_note,
            max_inflight=c.max_inflight,
            max_inflight_events=c.max_inflight_events,
            max_buffer=self.read_ahead + c.max_inflight + 16,
            ack_timeout=c.ack_timeout,
            backoff_initial=self._backoff[0],
            backoff_max=self._backoff[1],
            clock=self._clock,
        )

    async def _seed_hosts(self) -> None:
        """Hosts connected now (a sink restarted while collectord runs): Zeek is told of them again."""
        online = [h for h in await self.fleet.hosts() if h.host_id in self.fleet.links]
        for host in online:
            self.link.host_connected(host.host_id, host.hostname, host.addresses, host.groups)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=f"collectord-zeek-{self.config.name}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, feed: SinkFeed) -> None:
        while True:
            room = self.read_ahead - (self.link.core.unacknowledged + self.link.core.buffered)
            if room <= 0:
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), 1.0)
                await self._bound_backlog(feed)
                continue
            seen = feed.wakeup.generation
            items = await feed.read(self._after, min(room, 256), wait=False)
            if not items:
                await feed.wakeup.wait(seen, 1.0)
                continue
            for item in items:
                self._take(item)
            self._after = items[-1].position
            self._advance()

    def _take(self, item: OutboxItem) -> None:
        """One outbox item: batches for the link, a host event, or nothing for Zeek (done at once)."""
        position = item.position
        self._order.append(position)
        batches: list[ZeekBatch] = []
        if isinstance(item, ResultBatch):
            if item.owner == self.owner:
                batches = self._result_batches(item)
        elif isinstance(item, HostEvent):
            if item.event is HostEventKind.CONNECTED:
                self.link.host_connected(item.host_id, item.hostname, item.addresses, item.groups)
            elif item.event in (HostEventKind.DISCONNECTED, HostEventKind.REVOKED):
                self.link.host_disconnected(item.host_id)
        elif isinstance(item, LossReport):
            message = (
                f"the host's queue dropped {item.rows} result rows ({item.batches} batches, sequences "
                f"{item.from_seq}..{item.to_seq}) while it could not reach collectord"
            )
            event = p.error_event(item.host_id, "ADD", "", "", message)
            batches = [ZeekBatch(item.host_id, position * PARTS, (event,))]
        if not batches:
            self._done.add(position)
            return
        self._parts_left[position] = len(batches)
        for batch in batches:
            if position <= self._resume_upto:
                self.link.resume(batch)
            else:
                self.link.submit(batch)

    def _result_batches(self, item: ResultBatch) -> list[ZeekBatch]:
        try:
            route, encoder, problem = self._encoders.get(item.route, item.columns)
        except RequestError as exc:
            self._error(f"{item.name}: {exc}")
            return []
        wanted = route.actions
        rows = [(a, v) for a, v in item.rows if a in wanted]
        if not rows:
            return []
        host = item.host_id
        if encoder is None:
            message = f"{len(rows)} row(s) of host {host} not sent: {problem}"
            self.stats["conversion_errors"] += len(rows)
            self._error(f"{route.ev_name}: {message}")
            event = p.error_event(host, route.utype.value, route.cookie, route.ev_name, message)
            return [ZeekBatch(host, item.position * PARTS, (event,))]
        events: list[str] = []
        infos: dict[Any, str] = {}
        failed = 0
        for action, values in rows:
            info = infos.get(action)
            if info is None:
                info = infos[action] = encoder.result_info(host, ZEEK_ACTION[action], route.cookie)
            try:
                events.append(encoder.encode(info, values))
            except ColumnError as exc:
                failed += 1
                if failed == 1:
                    self._error(f"host {host}: {exc}")
                utype = ZEEK_ACTION[action].zeek_enum.split("::")[1]
                events.append(p.error_event(host, utype, route.cookie, route.ev_name, str(exc)))
        if failed:
            self.stats["conversion_errors"] += failed
        size = self.config.batch_rows
        out = []
        for part, start in enumerate(range(0, len(events), size)):
            chunk = tuple(events[start : start + size])
            seq = item.position * PARTS + part
            self._rows_in[(host, seq)] = len(chunk)
            out.append(ZeekBatch(host, seq, chunk))
        return out

    def _error(self, message: str) -> None:
        self.last_error = message
        log.error("zeek %s: %s", self.config.name, message)

    def _part_done(self, seq: int) -> None:
        position = seq // PARTS
        left = self._parts_left.get(position)
        if left is None:
            return  # not read in this run (an ack of an earlier link), or done already
        if left <= 1:
            del self._parts_left[position]
            self._done.add(position)
        else:
            self._parts_left[position] = left - 1

    def _advance(self) -> None:
        """Move the cursor over every position done, in order; commit it (durable soon)."""
        moved = None
        while self._order and self._order[0] in self._done:
            moved = self._order.popleft()
            self._done.discard(moved)
        if not self._order:
            moved = self._after
        if moved is None or moved <= self._committed or self._feed is None:
            return
        self._committed = moved
        pending = self._feed.commit_soon(moved)
        pending.add_done_callback(_log_commit_failure)

    async def _bound_backlog(self, feed: SinkFeed) -> None:
        """While Zeek is away: keep at most ``max_backlog`` batches for it; drop (and count) the oldest."""
        if self.link.core.state is LinkState.READY:
            return
        head = await feed.store.call(lambda r: r.head())
        excess = (head - self._after) + self.link.core.buffered - self.config.max_backlog
        if excess <= 0:
            return
        batches = rows = 0
        for batch in self.link.core.discard_pending(excess):
            batches += 1
            rows += self._rows_in.pop(batch.key, len(batch.events))
            self._part_done(batch.seq)
            excess -= 1
        while excess > 0:
            items = await feed.read(self._after, min(excess, 2000), wait=False)
            if not items:
                break
            for item in items:
                self._order.append(item.position)
                self._done.add(item.position)
                if isinstance(item, ResultBatch) and item.owner == self.owner:
                    batches += 1
                    rows += len(item.rows)
            self._after = items[-1].position
            excess -= len(items)
        self._advance()
        if batches:
            self.stats["dropped_batches"] += batches
            self.stats["dropped_rows"] += rows
            lost_batches, lost_rows = self._lost_report
            self._lost_report = (lost_batches + batches, lost_rows + rows)
            if not self._backlog_warned:
                self._backlog_warned = True
                log.warning(
                    "zeek %s: Zeek is away and more than %d batches wait for it: dropping the oldest (counted; "
                    "reported to Zeek when it is back)",
                    self.config.name,
                    self.config.max_backlog,
                )

    # -- notifications (on the event loop, in order) --------------------------------------------

    def _on_note(self, link: ZeekLink, note: Notification) -> None:
        if link is not self.link:
            return
        if isinstance(note, Delivered):
            for host, seq in note.batches:
                if host == EXECUTE_KEY:
                    continue
                self.stats["delivered_rows"] += self._rows_in.pop((host, seq), 0)
                self._part_done(seq)
            self._advance()
            self._room.set()
        elif isinstance(note, Synced | Request):
            self._requests.put_nowait(note)
        elif isinstance(note, LinkUp):
            if note.broker:
                log.info(
                    "zeek %s: Broker %s (%s) answered: Zeek 5.0-7.1's endpoint, frames padded to %d bytes",
                    self.config.name,
                    note.version,
                    note.endpoint,
                    BROKER_MIN_FRAME,
                )
            else:
                log.info("zeek %s: Zeek %s (%s) answered", self.config.name, note.version, note.endpoint)
        elif isinstance(note, ZeekError):
            names = sorted({n for _, _, events in note.suspects for n in events})
            message = f"Zeek refused a message: {note.code}: {note.context}"
            if names:
                message += f" (one of the events in flight: {', '.join(names)})"
            self._error(message)
        elif isinstance(note, LinkDown):
            self._room.set()
        elif isinstance(note, Dropped):
            self.stats["dropped_batches"] += note.batches
        elif isinstance(note, Received):
            for handler in self.event_handlers:
                try:
                    handler(note.event)
                except Exception:
                    log.exception("zeek %s: handler of %s failed", self.config.name, note.event.name)

    # -- requests -------------------------------------------------------------------------------

    async def _serve_requests(self) -> None:
        while True:
            note = await self._requests.get()
            try:
                if isinstance(note, Synced):
                    await self._sync(note)
                elif isinstance(note, Request):
                    await self._request(note.request)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one request must not end the endpoint
                log.exception("zeek %s: request failed", self.config.name)
                self._error(f"a request from Zeek failed: {type(exc).__name__}: {exc}")

    def _refuse(self, req: p.QueryRequest, message: str) -> None:
        self.stats["refused_requests"] += 1
        self._error(f"refused: {message}")
        self.link.send_event(p.error_event("", req.utype.value, req.cookie, req.ev_name, message))

    async def _sync(self, note: Synced) -> None:
        wanted: dict[str, tuple[Any, ...]] = {}
        executes: list[p.QueryRequest] = []
        self._groupings = {}
        for req in note.requests:
            if isinstance(req, p.GroupRequest):
                self._group(req)
            elif req.op is p.RequestOp.SUBSCRIBE:
                try:
                    sub = subscription_for(self.owner, req)
                except RequestError as exc:
                    self._refuse(req, str(exc))
                    continue
                wanted[sub.name] = sub.entry()
            elif req.op is p.RequestOp.EXECUTE:
                executes.append(req)
        before = self._subscription_names
        await self.fleet.sync_owner(self.owner, list(wanted.values()))
        self._subscription_names = set(wanted)
        await self.fleet.set_subnet_groups(self.owner, self._subnet_groups())
        added, removed = len(set(wanted) - before), len(before - set(wanted))
        log.info(
            "zeek %s: synced with %s: %d subscriptions (%d new, %d removed), %d subnet groups",
            self.config.name,
            note.zeek_id,
            len(wanted),
            added,
            removed,
            len(self._groupings),
        )
        lost_batches, lost_rows = self._lost_report
        if lost_batches:
            self._lost_report = (0, 0)
            self._backlog_warned = False
            message = (
                f"collectord dropped {lost_rows} result rows ({lost_batches} batches) while Zeek was away: more "
                f"than max_backlog = {self.config.max_backlog} batches waited"
            )
            self._error(message)
            self.link.send_event(p.error_event("", "ADD", "", "", message))
        for req in executes:
            self._execute(req)

    async def _request(self, req: p.QueryRequest | p.GroupRequest) -> None:
        if isinstance(req, p.GroupRequest):
            self._group(req)
            await self.fleet.set_subnet_groups(self.owner, self._subnet_groups())
            return
        if req.op is p.RequestOp.EXECUTE:
            self._execute(req)
            return
        try:
            sub = subscription_for(self.owner, req)
        except RequestError as exc:
            self._refuse(req, str(exc))
            return
        if req.op is p.RequestOp.SUBSCRIBE:
            await self.fleet.put_subscription(self.owner, *sub.entry())
            self._subscription_names.add(sub.name)
            log.info("zeek %s: subscribed %s to '%s' (%s)", self.config.name, req.ev_name, req.query, sub.name)
        else:
            removed = await self.fleet.remove_subscription(self.owner, sub.name)
            self._subscription_names.discard(sub.name)
            if removed is not None:
                log.info("zeek %s: unsubscribed %s from '%s'", self.config.name, req.ev_name, req.query)

    def _group(self, req: p.GroupRequest) -> None:
        ranges = self._groupings.setdefault(req.group, set())
        if req.join:
            ranges.update(req.ranges)
        else:
            ranges.difference_update(req.ranges)
            if not ranges:
                del self._groupings[req.group]

    def _subnet_groups(self) -> SubnetGroups:
        return {g: tuple(sorted(r, key=str)) for g, r in self._groupings.items()}

    # -- one-time queries -------------------------------------------------------------------------

    def _execute(self, req: p.QueryRequest) -> None:
        try:
            route, targets = execute_targets(req)
            route.signature()
        except (RequestError, SignatureError) as exc:
            self._refuse(req, str(exc))
            return
        self._spawn(self._run_execute(req, route, targets), "execute")

    def _next_exec_seq(self) -> int:
        # Rising across collectord restarts too (Zeek's marks remember the highest one done).
        self._exec_seq = max(self._exec_seq + 1, time.time_ns() // 1000)
        return self._exec_seq

    async def _run_execute(self, req: p.QueryRequest, route: Route, targets: Any) -> None:
        run = await self.fleet.execute(req.query, targets, self.config.execute_timeout)
        encoders: dict[tuple[str, ...], RowEncoder | str] = {}
        try:
            async for event in run.events():
                if isinstance(event, HostRows):
                    found = encoders.get(event.columns)
                    if found is None:
                        try:
                            found = RowEncoder(route.signature(), event.columns)
                        except ColumnError as exc:
                            found = str(exc)
                        encoders[event.columns] = found
                    self._send_execute_rows(route, event, found)
                elif isinstance(event, HostAnswer):
                    self._answer(req, route, event)
        finally:
            self.fleet.finished(run)

    def _send_execute_rows(self, route: Route, rows: HostRows, encoder: RowEncoder | str) -> None:
        host = rows.host_id
        events: list[str] = []
        if isinstance(encoder, str):
            message = f"{len(rows.rows)} row(s) of host {host} not sent: {encoder}"
            events.append(p.error_event(host, "SNAPSHOT", route.cookie, route.ev_name, message))
            self.stats["conversion_errors"] += len(rows.rows)
            self._error(f"{route.ev_name}: {message}")
        else:
            info = encoder.result_info(host, ZeekAction.SNAPSHOT, route.cookie)
            for values in rows.rows:
                try:
                    events.append(encoder.encode(info, values))
                except ColumnError as exc:
                    self.stats["conversion_errors"] += 1
                    events.append(p.error_event(host, "SNAPSHOT", route.cookie, route.ev_name, str(exc)))
        size = self.config.batch_rows
        for start in range(0, len(events), size):
            self.link.submit(ZeekBatch(EXECUTE_KEY, self._next_exec_seq(), tuple(events[start : start + size])))

    def _answer(self, req: p.QueryRequest, route: Route, answer: HostAnswer) -> None:
        status = answer.status
        if status in (HostQueryStatus.ROWS, HostQueryStatus.NO_ROWS):
            return
        if status is HostQueryStatus.OFFLINE and not req.hosts:
            return  # a group or all hosts: those not connected simply do not answer, as with the original
        message = f"one-time query '{req.query:.200}' on {answer.hostname or answer.host_id}: {status.value}"
        if answer.message:
            message += f": {answer.message}"
        host = answer.host_id if answer.hostname else ""  # an unknown name is no host id
        event = p.error_event(host, "SNAPSHOT", route.cookie, route.ev_name, message)
        self.link.submit(ZeekBatch(EXECUTE_KEY, self._next_exec_seq(), (event,)))


def _log_commit_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("committing the Zeek sink's cursor failed: %s", future.exception())
