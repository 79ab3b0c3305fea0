"""The query executor: every query agentd runs goes through one worker thread, in order.

Scheduled runs, ad-hoc queries from the control socket, pack discovery and decorator
queries all run on :class:`Worker`'s thread, so the event loop keeps serving events,
the control socket and the watchdogs while a query runs, and the database (one APSW
connection) is never used by two queries at once.  What that thread uses is also
closed on it, after its last job: a query stuck in a ``generate()`` can delay that,
never break it.

:class:`QueryExecutor` knows what runs (``Activity.running``) and can interrupt it with
a reason (the watchdog's CPU limit, shutdown); the scheduler loop turns that reason
into a denylisting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tables.procfs import CLK_TCK
from tables.sqlite import Database, QueryError

from .config import ScheduledQuery
from .lifecycle import StartupError
from .results import ResultWriter
from .runner import DecorationRunner, QueryRunner, RunOutcome
from .state import StateError
from .status import Activity
from .watchdog import own_rss, parse_stat

__all__ = ["QueryExecutor", "ScheduledRun", "Worker", "WorkerStopped"]

log = logging.getLogger("agentd")

T = TypeVar("T")


class WorkerStopped(RuntimeError):
    """A job was submitted to a :class:`Worker` that has stopped."""


class Worker:
    """One daemon thread that runs blocking calls in order; results come back as futures.

    A daemon thread (not a ThreadPoolExecutor, whose workers are joined at exit) so a
    query stuck in a generate() can never keep agentd from exiting.
    """

    name = "query thread"

    def __init__(self, thread_name: str = "agentd-query") -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        self.busy = False
        self._stopped = False  # stop() was called: nothing submitted after it would ever run

    async def start(self) -> None:
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` on the thread after what is queued; await the result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._stopped:  # the thread has ended or is ending: fail now rather than wait for ever
            future.set_exception(WorkerStopped(f"the {self.name} has stopped (agentd is shutting down)"))
            return future
        self._queue.put((fn, args, future, loop))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args, future, loop = item
            self.busy = True
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                result, error = None, exc
            finally:
                self.busy = False
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, result, error)

    async def stop(self) -> None:
        """Wait for the jobs queued so far (cancellable), then end the thread; later submits fail at once."""
        if self._stopped:
            return
        if self._thread.is_alive():
            await self.submit(_nothing)
        self._stopped = True
        self._queue.put(None)


def _nothing() -> None:
    return None


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _thread_cpu_ms() -> tuple[int, int]:
    """(user, system) CPU milliseconds of the calling thread (/proc/thread-self/stat)."""
    try:
        with open("/proc/thread-self/stat", "rb") as f:
            utime, stime = parse_stat(f.read())
    except (OSError, ValueError, IndexError):
        return 0, 0
    return utime * 1000 // CLK_TCK, stime * 1000 // CLK_TCK


@dataclass(frozen=True, slots=True)
class ScheduledRun:
    """One scheduled run as the worker thread saw it: the outcome and what it cost."""

    outcome: RunOutcome
    user_ms: int = 0
    system_ms: int = 0
    memory: int = 0  # our RSS after the run, bytes
    output_bytes: int = 0  # result lines written
    interrupted: str | None = None  # why it was interrupted (watchdog, shutdown); None: it was not


class QueryExecutor:
    """Runs scheduled and ad-hoc queries on the worker thread; owns the database it queries."""

    name = "query executor"

    def __init__(
        self,
        worker: Worker,
        database: Database,
        runner: QueryRunner,
        writer: ResultWriter,
        activity: Activity,
        *,
        decorations: DecorationRunner,
        adhoc_time_limit: float,
        adhoc_max_rows: int,
    ) -> None:
        self.worker = worker
        self.database = database
        self.runner = runner
        self.writer = writer
        self.activity = activity
        self.decorations = decorations
        self.adhoc_time_limit = adhoc_time_limit
        self.adhoc_max_rows = adhoc_max_rows
        self._interrupted: str | None = None
        self._closed = False

    async def start(self) -> None:
        """Load the decorators and deliver result lines a previous run committed but did not write."""
        try:
            delivered = await self.worker.submit(self._prepare)
        except (OSError, StateError) as exc:
            raise StartupError(
                f"cannot write result lines left from the previous run to {self.writer.directory}: {exc}"
            ) from exc
        if delivered:
            log.info("delivered %d result batches committed before the previous stop", delivered)

    def _prepare(self) -> int:
        self.decorations.load()
        return self.runner.deliver(self.writer)

    async def stop(self) -> None:
        """Interrupt what runs (shutdown); close the database on the worker thread, after its last job."""
        if self._closed:
            return
        self._closed = True
        if self.worker.busy:
            self.database.interrupt()
        await self.worker.submit(self.database.close)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking function that queries the database on the worker thread (pack discovery)."""
        return await self.worker.submit(fn, *args)

    def execute_dicts(self, sql: str) -> list[dict[str, Any]]:
        """Worker thread: ``sql``'s rows as dicts (discovery and decorator queries)."""
        return self.database.execute(sql).dicts()

    async def query(
        self, sql: str, *, time_limit: float | None = None
    ) -> tuple[Sequence[str], Sequence[Sequence[Any]]]:
        """An ad-hoc query (control socket), serialised with the schedule; bounded in time and rows."""
        limit = self.adhoc_time_limit if time_limit is None else min(time_limit, self.adhoc_time_limit)
        result = await self.worker.submit(self._adhoc, sql, limit)
        return result.columns, result.rows

    def _adhoc(self, sql: str, time_limit: float) -> Any:
        return self.database.execute(sql, time_limit=time_limit, max_rows=self.adhoc_max_rows)

    @property
    def running(self) -> str | None:
        """The scheduled query running now."""
        return self.activity.running

    def interrupt(self, reason: str) -> bool:
        """Interrupt the running scheduled query; ``reason`` ends up in its denylisting. False: none ran."""
        if self.activity.running is None:
            return False
        self._interrupted = reason
        self.database.interrupt()
        return True

    async def run_scheduled(self, query: ScheduledQuery, now: float) -> ScheduledRun:
        """Run, commit and deliver one scheduled query on the worker thread."""
        self.activity.running = query.name
        self._interrupted = None
        try:
            run = await self.worker.submit(self._execute_scheduled, query, now)
        finally:
            self.activity.running = None
        if self._interrupted is not None:
            run = ScheduledRun(
                run.outcome, run.user_ms, run.system_ms, run.memory, run.output_bytes, interrupted=self._interrupted
            )
        return run

    def _execute_scheduled(self, query: ScheduledQuery, now: float) -> ScheduledRun:
        """Worker thread: run, commit and write one scheduled query; with its CPU and memory."""
        user0, system0 = _thread_cpu_ms()
        try:
            outcome = self.runner.run(query, now, self.writer)
        except (OSError, StateError, QueryError) as exc:
            log.error("query %s: its results could not be stored: %s", query.name, exc)
            outcome = RunOutcome(name=query.name, error=f"results not stored: {exc}")
        except Exception as exc:  # a bug in one query's path must not stop the schedule
            log.exception("query %s: internal error", query.name)
            outcome = RunOutcome(name=query.name, error=f"internal error: {type(exc).__name__}: {exc}")
        user1, system1 = _thread_cpu_ms()
        return ScheduledRun(outcome, user1 - user0, system1 - system0, own_rss(), outcome.output_bytes)
