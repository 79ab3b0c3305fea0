"""Downstream delivery: each sink consumes the durable outbox with its own persisted cursor.

A sink (the JSON-lines file here; the Zeek link, the Zeek-format log writer and the
attribution state in later steps) implements :class:`Sink`: ``run(feed)`` reads items
after its cursor, delivers them, and commits the cursor once they are delivered for good.
Whatever crashes, each sink sees every item at least once and, by committing its cursor
only after a durable delivery and making redelivery idempotent, exactly once (seams item 3).

:class:`Sinks` runs them, wakes them when results are stored (wake-ups carry no data),
and prunes outbox items every sink has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from .model import OutboxItem
from .registry import Cursor
from .store import Committer, Store, Wakeup

__all__ = ["Sink", "SinkFeed", "Sinks"]

log = logging.getLogger(__name__)


class SinkFeed:
    """One sink's view of the outbox: :meth:`read` after a position, :meth:`commit` its cursor."""

    def __init__(
        self, name: str, store: Store, wakeup: Wakeup, committer: Committer | None = None, *, poll: float = 1.0
    ) -> None:
        self.name = name
        self.store = store
        self.wakeup = wakeup
        self.committer = committer  # cursor commits share the group commit's transaction when given
        self.poll = poll  # read again at least this often even without a wake-up
        self._seen = wakeup.generation
        self._committed: int | None = None

    async def cursor(self) -> Cursor:
        """The last committed cursor (where to resume after a restart)."""
        return await self.store.call(lambda r: r.cursor(self.name))

    async def read(self, after: int, limit: int = 256, *, wait: bool = True) -> list[OutboxItem]:
        """Items after ``after``; with ``wait``, blocks until there is at least one."""
        while True:
            seen = self.wakeup.generation
            items = await self.store.read_outbox(after, limit)
            if items or not wait:
                return items
            self._seen = await self.wakeup.wait(seen, self.poll)

    async def commit(self, position: int, state: str = "") -> None:
        """Everything up to ``position`` is delivered for good; ``state`` is the sink's own (e.g. a file offset).

        Durable when it returns.  A position below the last committed one is a bug of the sink (ValueError).
        """
        await self.commit_soon(position, state)

    def commit_soon(self, position: int, state: str = "") -> asyncio.Future[None]:
        """:meth:`commit` without waiting: the sink goes on while the cursor rides on the next commit.

        Only for sinks whose redelivery after a crash is idempotent anyway (the file sink cuts
        its file back to the committed offset): a crash before the commit redelivers.
        """
        if self._committed is not None and position < self._committed:
            raise ValueError(f"sink {self.name}: cursor cannot move back from {self._committed} to {position}")
        self._committed = position
        cursor = Cursor(self.name, position, state)
        if self.committer is not None:
            return self.committer.commit_cursor_soon(cursor)
        return asyncio.ensure_future(self.store.call(lambda r: r.commit_cursor(cursor)))


class Sink(Protocol):
    """A consumer of the outbox.  ``run`` returns only when cancelled (or on a fatal error, logged)."""

    name: str

    async def run(self, feed: SinkFeed) -> None: ...


class Sinks:
    """Runs the sinks, restarts one that fails (after a pause), prunes what all of them have."""

    def __init__(
        self, sinks: Sequence[Sink], store: Store, *, committer: Committer | None = None, prune_interval: float = 10.0
    ) -> None:
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique: {names}")
        self.sinks = list(sinks)
        self.store = store
        self.committer = committer
        self.wakeup = Wakeup()
        self.prune_interval = prune_interval
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for sink in self.sinks:
            feed = SinkFeed(sink.name, self.store, self.wakeup, self.committer)
            self._tasks.append(asyncio.create_task(self._keep_running(sink, feed), name=f"collectord-sink-{sink.name}"))
        self._tasks.append(asyncio.create_task(self._prune_loop(), name="collectord-prune"))

    def notify(self) -> None:
        """Results were stored: wake the sinks."""
        self.wakeup.notify()

    async def _keep_running(self, sink: Sink, feed: SinkFeed) -> None:
        while True:
            try:
                await sink.run(feed)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one sink's fault must not stop the others
                log.error("sink %s failed: %s: %s; restarting it in 5 s", sink.name, type(exc).__name__, exc)
                await asyncio.sleep(5.0)

    async def _prune_loop(self) -> None:
        names = [s.name for s in self.sinks]
        while True:
            await asyncio.sleep(self.prune_interval)
            try:
                await self.prune(names)
            except Exception as exc:  # noqa: BLE001 - retried at the next interval
                log.warning("pruning the outbox failed: %s", exc)

    async def prune(self, names: Sequence[str] | None = None, chunk: int = 2000) -> int:
        """Delete what every sink has (everything, when there is no sink at all), ``chunk`` rows per
        transaction so the group commit's transactions go in between."""
        wanted = [s.name for s in self.sinks] if names is None else list(names)
        total = 0
        while True:
            if wanted:
                deleted = await self.store.call(lambda r: r.prune(wanted, chunk))
            else:
                deleted = await self.store.call(lambda r: r.prune_all(chunk))
            total += deleted
            if deleted < chunk:
                return total

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel("collectord is shutting down")
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
