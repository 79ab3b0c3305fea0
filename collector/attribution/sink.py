"""The attribution sink: collectord's durable outbox into the engine, the engine onto disk.

A consumer of the outbox like the JSON-lines file and the Zeek link (collector/outbox.py):
it reads every ResultBatch of the attribution subscriptions (owner ``attribution``) and every
HostEvent (a host's hostname and addresses), feeds the engine, expires old history, and
saves the engine's state with the outbox position it reflects.  The cursor is committed
only after the state is on disk; after a crash the sink resumes after the later of the
two, so each batch is learned once.

It also writes osq-user_connections.log (into ``[attribution] log_dir``, else collectord's
``[logs] dir``): each connect a host reports, with its process and user, as it arrives.  The
log is exactly once like collectord's other logs: the state file records how far the log was
written and fsynced; a restart cuts the live file back to that size (a live file the state
does not describe is set aside, never deleted) and writes again what followed.  The file is
rotated only right after a save, so a rotation never separates records from their mark.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from collector.model import HostEvent, HostEventKind, HostQuery, OutboxItem, ResultBatch, Targets
from collector.outbox import SinkFeed
from collector.zeeklog.writer import LogFormat, ZeekLogWriter, opened_stamp
from protocol.messages import Mode

from .engine import AttributionEngine, StateError
from .hoststate import HostState
from .logs import user_connection_record, user_connections_writer
from .model import Action, Table
from .persist import LogMark, load_saved, write_state
from .queries import SUBSCRIPTIONS, subscription_for
from .records import RowRefused, SockKind, socket_event

__all__ = ["OWNER", "AttributionSink", "batch_rows", "fleet_subscriptions"]

log = logging.getLogger(__name__)

#: The owner of the attribution subscriptions in collectord's registry.
OWNER = "attribution"

_CONNECTED = frozenset({HostEventKind.ENROLLED, HostEventKind.CONNECTED})


def fleet_subscriptions() -> list[tuple[str, HostQuery, Targets, str]]:
    """The attribution queries as Fleet.sync_owner takes them: every host runs them."""
    return [
        (
            sub.name,
            HostQuery(sub.sql, sub.interval, Mode.SNAPSHOT if sub.snapshot else Mode.DIFFERENTIAL, sub.removed),
            Targets(all=True),
            "",
        )
        for sub in SUBSCRIPTIONS
    ]


def batch_rows(columns: Iterable[str], rows: Iterable[tuple[Any, Any]]) -> list[tuple[Action, Mapping[str, Any]]]:
    """A result batch's (action, values) rows as (Action, {column: value})."""
    names = tuple(columns)
    return [
        (Action(str(getattr(action, "value", action))), dict(zip(names, values, strict=False)))
        for action, values in rows
    ]


class AttributionSink:
    """Feeds the engine from the outbox and keeps its state on disk."""

    name = "attribution"

    def __init__(
        self,
        engine: AttributionEngine,
        state_file: Path,
        *,
        save_interval: float = 5.0,
        expire_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.state_file = Path(state_file)
        self.save_interval = save_interval
        self.expire_interval = expire_interval
        self.clock = clock
        self.position: int | None = None  # of the last item learned
        self.saved_position: int | None = None
        self.batches = 0
        self.host_events = 0
        self.user_connections: ZeekLogWriter | None = None  # osq-user_connections.log, when configured
        self.user_connections_written = 0
        self.log_mark: LogMark | None = None  # of the saved state
        self._log_now = 0.0  # the time writes see: the last save's, so a write never rotates the file

    @classmethod
    def restore(
        cls, state_file: Path, engine_factory: Callable[[], AttributionEngine], **options: Any
    ) -> AttributionSink:
        """The sink with the engine collectord saved before (a fresh one when there is none,
        or when the file cannot be read: it is kept aside, and the error logged)."""
        engine, position, mark = engine_factory(), None, None
        if Path(state_file).exists():
            try:
                saved = load_saved(state_file, engine.config)
                engine, position, mark = saved.engine, saved.position, saved.log_mark
            except StateError as exc:
                aside = Path(f"{state_file}.unreadable-{int(time.time())}")
                log.error("attribution: %s; kept as %s, starting with an empty state", exc, aside)
                Path(state_file).replace(aside)
        sink = cls(engine, state_file, **options)
        sink.position = sink.saved_position = position
        sink.log_mark = mark
        return sink

    def open_user_connections_log(
        self, directory: Path, fmt: LogFormat = LogFormat.ASCII, *, rotation: float = 0.0
    ) -> None:
        """Write osq-user_connections.log (the "user connections" view) into ``directory``,
        continuing the live file where the saved state says it was (else setting it aside)."""
        writer = user_connections_writer(directory, fmt, rotation_interval=rotation, clock=self.clock)
        live = writer.live_path
        mark = self.log_mark
        resumed = False
        try:
            inode = live.stat().st_ino
        except FileNotFoundError:
            inode = None
        if inode is not None and mark is not None and inode == mark.inode:
            resumed = writer.resume(mark.size, mark.opened)
        if inode is not None and not resumed:
            n, target = 0, live.with_name(f"{writer.path}.{opened_stamp(live)}.log")
            while target.exists():
                n += 1
                target = live.with_name(f"{writer.path}.{opened_stamp(live)}-{n}.log")
            os.replace(live, target)
            log.warning("attribution: %s was not written up to the saved state: set aside as %s", live, target)
        self.user_connections = writer
        self._log_now = self.clock()

    def learn(self, item: OutboxItem) -> None:
        """One outbox item: an attribution result batch, or a host's coming."""
        if isinstance(item, ResultBatch):
            if item.owner != OWNER:
                return
            sub = subscription_for(item.name)
            if sub is None:
                return
            rows = batch_rows(item.columns, item.rows)
            self.engine.ingest(item.host_id, sub.table, rows, item.host_time, hostname=item.hostname)
            self.batches += 1
            if sub.table is Table.SOCKET_EVENTS and self.user_connections is not None:
                self._log_user_connections(self.engine.hosts[item.host_id], rows)
        elif isinstance(item, HostEvent) and item.event in _CONNECTED:
            self.engine.set_host(item.host_id, hostname=item.hostname, addresses=item.addresses, now=item.time)
            self.host_events += 1

    def _log_user_connections(self, host: HostState, rows: list[tuple[Action, Mapping[str, Any]]]) -> None:
        assert self.user_connections is not None
        for action, row in rows:
            if action is Action.REMOVED or row.get("action") != "connect":
                continue
            try:
                sock = socket_event(row)
            except RowRefused:
                continue
            if sock.kind is SockKind.CONNECT:
                record = user_connection_record(self.engine.user_connection(host, sock))
                self.user_connections.write(record, now=self._log_now)
                self.user_connections_written += 1

    def _sync_log(self) -> LogMark | None:
        """Make the log durable; its mark (None: no log, or no file yet)."""
        writer = self.user_connections
        if writer is None or not writer.is_open:
            return None
        writer.sync()
        return LogMark(writer.inode(), writer.size(), writer.opened)

    def _after_save(self, now: float) -> None:
        """Rotate the log now if it is due (right after a save: the next mark names the new file)."""
        if self.user_connections is not None:
            self.user_connections.rotate(now)
        self._log_now = now

    async def save(self) -> None:
        """The engine's state, its position and the log's mark to disk (the state taken here,
        written on a thread)."""
        if self.position is None or self.position == self.saved_position:
            return
        mark = await asyncio.to_thread(self._sync_log)
        state, position = self.engine.to_state(), self.position
        await asyncio.to_thread(write_state, state, self.state_file, position=position, log_mark=mark)
        self.saved_position, self.log_mark = position, mark
        self._after_save(self.clock())

    async def run(self, feed: SinkFeed) -> None:
        cursor = await feed.cursor()
        after = max(cursor.position, self.position or 0)
        last_save = last_expire = self.clock()
        try:
            while True:
                items = await feed.read(after, limit=512, wait=False)
                if not items:
                    # Nothing new: what was learned is saved once its interval is up, not only when the
                    # next batch comes (on a quiet host that can be minutes: a restart would lose it, and
                    # `collectord attribute` would not see it).
                    pending = self.position is not None and self.position != self.saved_position
                    due = self.save_interval - (self.clock() - last_save)
                    if pending and due <= 0:
                        await self.save()
                        await feed.commit(after)
                        last_save = self.clock()
                        continue
                    try:
                        items = await asyncio.wait_for(feed.read(after, limit=512), due if pending else None)
                    except TimeoutError:
                        continue
                for item in items:
                    self.learn(item)
                after = self.position = items[-1].position
                now = self.clock()
                if now - last_expire >= self.expire_interval:
                    self.engine.expire(now)
                    last_expire = now
                if now - last_save >= self.save_interval:
                    await self.save()
                    await feed.commit(after)
                    last_save = now
        finally:
            self.close()

    def close(self) -> None:
        """Save what was learned since the last save (at shutdown; also when the sink fails)."""
        try:
            if self.position is not None and self.position != self.saved_position:
                mark = self._sync_log()
                write_state(self.engine.to_state(), self.state_file, position=self.position, log_mark=mark)
                self.saved_position, self.log_mark = self.position, mark
        except OSError as exc:
            log.error("attribution: could not save the state to %s: %s", self.state_file, exc)
        finally:
            if self.user_connections is not None:
                self.user_connections.close()  # #close written; rotated when rotation is on, as Zeek does at exit
