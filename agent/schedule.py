"""The schedule agentd runs, and the loop that runs it.

:class:`Schedule` holds the scheduled queries from two places: the config (its main
schedule and the packs that are active, replaced as a whole when pack discovery
changes) and queries added one by one (the collector's subscriptions, next).  It keeps
when each is due (:class:`~agent.scheduler.Scheduler`, splay kept across restarts in the
state database) and each query's counters (:class:`~agent.status.QueryStats`).

:class:`ScheduleLoop` runs what is due, one query at a time on the query executor,
records what each run cost, denylists a query that was interrupted, evaluates pack
discovery again when due, and sleeps until the next query is due or the schedule
changes.  Shutdown lets a running query finish for ``query_grace`` seconds, then
interrupts it (the query is denylisted, as osquery does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from .config import ScheduledQuery
from .packs import PackDiscovery
from .runner import RunOutcome
from .scheduler import Scheduler
from .state import StateDB
from .status import QueryStats, QueryStatus

if TYPE_CHECKING:
    from .denylist import Denylist
    from .executor import QueryExecutor

__all__ = ["Schedule", "ScheduleLoop"]

log = logging.getLogger("agentd")

#: The longest the loop sleeps without looking at the clock again.
MAX_SLEEP = 60.0


class Schedule:
    """Scheduled queries (config and added ones), when each is due, and their counters."""

    def __init__(self, statedb: StateDB, *, clock: Callable[[], float], splay_percent: int, seed: str) -> None:
        self.statedb = statedb
        self.clock = clock
        self._config: dict[str, ScheduledQuery] = {}
        self._added: dict[str, ScheduledQuery] = {}
        self.queries: Mapping[str, ScheduledQuery] = {}
        self.stats: dict[str, QueryStats] = {}
        self._scheduler = Scheduler(
            (), clock=clock, splay_percent=splay_percent, seed=seed, denylisted=statedb.denylisted
        )
        #: Set whenever the set of queries changes (the loop then re-plans its sleep).
        self.changed = asyncio.Event()

    # -- what is scheduled ----------------------------------------------------------------------

    def set_config_queries(self, queries: Iterable[ScheduledQuery]) -> tuple[list[str], list[str]]:
        """The config's queries now (startup, pack discovery); (names added, names removed)."""
        new = {q.name: q for q in queries}
        if new == self._config:
            return [], []
        clash = sorted(set(new) & set(self._added))
        if clash:
            raise ValueError(f"config queries clash with added queries: {', '.join(clash)}")
        added, removed = sorted(set(new) - set(self._config)), sorted(set(self._config) - set(new))
        self._config = new
        self._apply()
        return added, removed

    def add(self, query: ScheduledQuery) -> None:
        """Schedule one more query (e.g. a collector subscription), or replace an added one of that name."""
        if query.name in self._config:
            raise ValueError(f"a config query is already named {query.name!r}")
        self._added[query.name] = query
        self._apply()

    def remove(self, name: str) -> bool:
        """Unschedule an added query; False when there was none of that name."""
        if self._added.pop(name, None) is None:
            return False
        self._apply()
        return True

    def _apply(self) -> None:
        queries = {**self._config, **self._added}
        gone = {name for name in set(self.queries) - set(queries) if not self._scheduler.is_running(name)}
        self._scheduler.set_queries(queries.values(), last_runs=self.statedb.last_runs(), splayed=self.statedb.splay())
        for name, (interval, splayed) in self._scheduler.splayed().items():
            self.statedb.set_splay(name, interval, splayed)
        self.queries = queries
        for name in gone:  # a running query's counters stay until it ends (mark_run)
            self.stats.pop(name, None)
        denied = self.statedb.denylist(self.clock())
        for query in queries.values():
            if query.name not in self.stats:
                self.stats[query.name] = QueryStats(
                    name=query.name,
                    query=query.query,
                    interval=query.interval,
                    pack=query.pack or "",
                    snapshot=query.snapshot,
                    removed=query.removed,
                    denylist=query.denylist,
                    denylisted_until=denied.get(query.name, (0.0, ""))[0],
                )
        self.changed.set()

    def expedite(self, name: str, when: float | None = None) -> None:
        """Run ``name`` as soon as the loop is free (``when``: not later than that); wakes the loop."""
        if self._scheduler.expedite(name, self.clock() if when is None else when):
            self.changed.set()

    # -- timing ---------------------------------------------------------------------------------

    def due(self, now: float) -> list[ScheduledQuery]:
        """Queries due at ``now``; each is running until :meth:`mark_run`."""
        return self._scheduler.due(now)

    def next_due(self) -> float:
        return self._scheduler.next_due()

    def interval_of(self, name: str) -> int:
        """The splayed interval of ``name``."""
        return self._scheduler.interval_of(name)

    def mark_run(self, name: str, finished: float) -> None:
        """The run of ``name`` ended at ``finished``."""
        self._scheduler.mark_run(name, finished)
        stats = self.stats.get(name)
        if name not in self.queries:
            self.stats.pop(name, None)  # it left the schedule while it ran
        elif stats is not None:
            stats.next_run = finished + self._scheduler.interval_of(name)  # approximate: splay/drift aside

    def note_denied(self, name: str, until: float) -> None:
        stats = self.stats.get(name)
        if stats is not None:
            stats.denylisted_until = until

    def statuses(self, now: float) -> tuple[QueryStatus, ...]:
        """Every query's status entry (control socket), by name."""
        entries = []
        for name, stats in sorted(self.stats.items()):
            interval = self._scheduler.interval_of(name) if name in self.queries else None
            entries.append(QueryStatus.from_row(stats.row(now), interval=interval))
        return tuple(entries)


class ScheduleLoop:
    """Runs the schedule: due queries one at a time, pack discovery when due; a graceful stop."""

    name = "scheduler"

    def __init__(
        self,
        schedule: Schedule,
        packs: PackDiscovery,
        executor: QueryExecutor,
        denylist: Denylist,
        *,
        clock: Callable[[], float],
        schedule_timeout: float,
        query_grace: float,
        on_failure: Callable[[str, BaseException], None],
    ) -> None:
        self.schedule = schedule
        self.packs = packs
        self.executor = executor
        self.denylist = denylist
        self.clock = clock
        self.schedule_timeout = schedule_timeout
        self.query_grace = query_grace
        self._on_failure = on_failure
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="agentd-scheduler")
            self._task.add_done_callback(self._done)

    async def stop(self) -> None:
        """Let a running query finish for query_grace seconds, then interrupt it; then end the loop."""
        self._stopping = True
        self.schedule.changed.set()
        task = self._task
        if task is None or task.done():
            return
        done, _ = await asyncio.wait({task}, timeout=self.query_grace)
        if not done:
            log.warning("shutdown: interrupting the running query %s", self.executor.running)
            self.executor.interrupt("was interrupted by shutdown")
            done, _ = await asyncio.wait({task}, timeout=1.0)
        if not done:
            task.cancel("the running query did not stop in time")
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("scheduler failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
            self._on_failure(self.name, exc)

    async def _loop(self) -> None:
        """Run due queries; sleep until the next is due (or the schedule changes)."""
        while not self._stopping:
            self.schedule.changed.clear()
            await self.run_due()
            if self._stopping:
                break
            wait = min(self.schedule.next_due(), self.packs.next_refresh) - self.clock()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.schedule.changed.wait(), timeout=min(max(0.0, wait), MAX_SLEEP))

    async def run_due(self, now: float | None = None) -> list[RunOutcome]:
        """Run every query due at ``now`` (default: the clock), one at a time; their outcomes."""
        now = self.clock() if now is None else now
        if self.packs.due(now):
            await self.refresh_packs(now)
        outcomes = []
        for query in self.schedule.due(now):
            if self._stopping:
                break
            outcomes.append(await self._run(query))
        return outcomes

    async def refresh_packs(self, now: float) -> None:
        """Evaluate the packs' discovery queries again (every pack_refresh_interval, as osquery).

        Queries of packs that became active join the schedule; those of packs that became
        inactive leave it; the others keep their timing.
        """
        queries = await self.executor.call(self.packs.evaluate, self.executor.execute_dicts, now)
        added, gone = self.schedule.set_config_queries(queries)
        if not added and not gone:
            return
        log.info(
            "pack discovery changed the schedule: %d queries added%s, %d removed%s",
            len(added),
            f" ({', '.join(added)})" if added else "",
            len(gone),
            f" ({', '.join(gone)})" if gone else "",
        )

    async def _run(self, query: ScheduledQuery) -> RunOutcome:
        stats = self.schedule.stats[query.name]
        run = await self.executor.run_scheduled(query, self.clock())
        outcome = run.outcome
        finished = self.clock()
        stats.record(
            finished=finished,
            wall_ms=int(outcome.wall_time * 1000),
            user_ms=run.user_ms,
            system_ms=run.system_ms,
            memory=run.memory,
            rows=outcome.rows,
            lines=outcome.line_count,
            output_bytes=run.output_bytes,
            error=outcome.error or "",
        )
        if outcome.error:
            if outcome.timed_out or run.interrupted:
                reason = run.interrupted or (
                    f"exceeded its time limit of {self.schedule_timeout:g} s (schedule_timeout) and was interrupted"
                )
                self.denylist.deny(query, reason)
            else:
                log.warning("query %s failed: %s", query.name, outcome.error)
        self.schedule.mark_run(query.name, finished)
        return outcome
