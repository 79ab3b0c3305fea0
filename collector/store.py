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
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .registry import Registry, Submission, Verdict

__all__ = ["Committer", "Store", "Wakeup"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Store:
    """Serialises every use of the registry onto one thread."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collectord-registry")

    async def call(self, fn: Callable[[Registry], T]) -> T:
        """``fn(registry)`` on the registry thread; its result (or exception) here."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self.registry)

    def close(self) -> None:
        """Finish queued calls, then close the database (called last at shutdown)."""
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
        self._stored = stored  # called after every commit that stored something (outbox wake-up)
        self._pending: list[tuple[Submission, Callback]] = []
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
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            if not self._pending:
                self._ready.clear()
            items = [s for s, _ in batch]
            started = time.monotonic()
            try:
                verdicts = await self.store.call(lambda registry, items=items: registry.accept(items))  # type: ignore[misc]
            except Exception:
                log.exception(
                    "storing %d result batches failed; their connections are closed unacknowledged", len(batch)
                )
                verdicts = [Verdict.FENCED] * len(batch)
            self.last_commit_seconds = time.monotonic() - started
            self.commits += 1
            self.submissions += len(batch)
            for (_, callback), verdict in zip(batch, verdicts, strict=True):
                try:
                    callback(verdict)
                except Exception:
                    log.exception("result callback failed")
            if self._stored is not None and any(v is Verdict.STORED for v in verdicts):
                self._stored()
        self._ready.clear()

    async def stop(self) -> None:
        """Stop the loop after committing what is pending (the caller bounds the time)."""
        self._stopping = True
        self._ready.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()
