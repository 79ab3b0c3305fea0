"""The registry on its own thread, group commit of results, and wake-ups.

SQLite has one writer; calling it from the event loop would stall every connection for an
fsync.  :class:`Store` runs every registry call, in order, on one thread.
:class:`Committer` gathers the results all connections submit while a commit is running
and stores them in the next single transaction (group commit): one fsync for many
batches, so 1,000 agents cost tens of commits per second, not thousands.
:class:`Wakeup` tells waiters that something changed, with no data: readers re-read the
registry (the shape a PostgreSQL NOTIFY will have).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .model import OutboxItem
from .registry import Cursor, OutboxReader, Registry, Submission, Verdict

__all__ = ["Committer", "Store", "Wakeup"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Store:
    """Serialises every use of the registry onto one thread; outbox reads go to a second one."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collectord-registry")
        self._reader = OutboxReader(registry.path)
        self._read_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collectord-outbox")

    async def call(self, fn: Callable[[Registry], T]) -> T:
        """``fn(registry)`` on the registry thread; its result (or exception) here."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self.registry)

    async def read_outbox(self, after: int, limit: int) -> list[OutboxItem]:
        """Outbox items after ``after``, read on their own connection (no wait behind commits)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_executor, self._reader.read, after, limit)

    def close(self) -> None:
        """Finish queued calls, then close the database (called last at shutdown)."""
        self._read_executor.shutdown(wait=True)
        self._reader.close()
        self._executor.shutdown(wait=True)
        self.registry.close()


class Wakeup:
    """A broadcast "something changed" with no payload; waiters re-read and wait again."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.generation = 0

    def notify(self) -> None:
        self.generation += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seen: int, poll: float | None = None) -> int:
        """Wait until the generation moves past ``seen`` (or ``poll`` seconds); the generation now."""
        if self.generation == seen:
            event = self._event
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), poll)
        return self.generation


Callback = Callable[[Verdict], None]


class Committer:
    """Group commit: submissions gathered for ``delay`` seconds (or while a commit runs) go in one transaction.

    ``submit`` never blocks; its callback runs on the event loop with the verdict once the
    transaction has committed (STORED: durable, send the ack) or failed.
    """

    def __init__(
        self, store: Store, *, delay: float = 0.005, stored: Callable[[], None] | None = None, max_batch: int = 5000
    ) -> None:
        self.store = store
        self.delay = delay
        self.max_batch = max_batch
        self.stored = stored  # called after every commit that stored something (outbox wake-up)
        self._pending: list[tuple[Submission, Callback]] = []
        self._cursors: dict[str, tuple[Cursor, list[asyncio.Future[None]]]] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.commits = 0
        self.submissions = 0
        self.last_commit_seconds = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="collectord-committer")

    def submit(self, submission: Submission, callback: Callback) -> None:
        self._pending.append((submission, callback))
        self._ready.set()

    async def commit_cursor(self, cursor: Cursor) -> None:
        """Commit a sink's cursor with the next group transaction; returns once it is durable."""
        await self.commit_cursor_soon(cursor)

    def commit_cursor_soon(self, cursor: Cursor) -> asyncio.Future[None]:
        """Queue a sink's cursor for the next group transaction; the future resolves once it is durable.

        A later cursor of the same sink replaces a queued one (cursors only move forward).
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        previous = self._cursors.get(cursor.sink)
        waiters = previous[1] if previous is not None else []
        waiters.append(future)
        self._cursors[cursor.sink] = (cursor, waiters)
        self._ready.set()
        return future

    @property
    def backlog(self) -> int:
        return len(self._pending)

    async def _run(self) -> None:
        while not self._stopping:
            await self._ready.wait()
            if self.delay and not self._stopping:
                await asyncio.sleep(self.delay)
            await self.flush()

    async def flush(self) -> None:
        """Commit everything pending now (also used at shutdown, after connections stopped reading)."""
        while self._pending or self._cursors:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            cursors, self._cursors = self._cursors, {}
            if not self._pending:
                self._ready.clear()
            items = [s for s, _ in batch]
            marks = [c for c, _ in cursors.values()]
            started = time.monotonic()
            error: Exception | None = None
            try:
                verdicts = await self.store.call(functools.partial(Registry.accept, submissions=items, cursors=marks))
            except Exception as exc:
                log.exception("storing %d result batches failed; they are not acknowledged", len(batch))
                verdicts, error = [Verdict.FENCED] * len(batch), exc
            self.last_commit_seconds = time.monotonic() - started
            self.commits += 1
            self.submissions += len(batch)
            for _, waiters in cursors.values():
                for waiter in waiters:
                    if waiter.done():
                        continue
                    if error is None:
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(error)
            for (_, callback), verdict in zip(batch, verdicts, strict=True):
                try:
                    callback(verdict)
                except Exception:
                    log.exception("result callback failed")
            if self.stored is not None and any(v is Verdict.STORED for v in verdicts):
                self.stored()
        if not self._pending and not self._cursors:
            self._ready.clear()

    async def stop(self) -> None:
        """Stop the loop after committing what is pending (the caller bounds the time)."""
        self._stopping = True
        self._ready.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()
