"""agentd: the daemon that replaces osqueryd.

``Agent.serve()`` = :meth:`Agent.startup` -> run until a shutdown trigger ->
:meth:`Agent.shutdown` (uvicorn's shape; hypercorn's injectable trigger).  One
:class:`Settings` in, one small :class:`AgentState` shared (it is also what the status
tables read), every background task owned by the agent.

Startup loads the config (or the embedded default), opens the state database, builds the
query engine (tables/ + status tables + the event manager's), delivers result lines a
previous run committed but did not write, starts the event sources and the control
socket, and tells systemd READY=1.  The scheduler loop runs due queries one at a time in
a worker thread, so the event loop keeps serving events, the control socket and the
watchdogs.  SIGTERM/SIGINT stop everything in order within 5 s; exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tables._procfs import CLK_TCK
from tables.registry import catalog
from tables.spec import TableSpec
from tables.sqlite import Database, QueryError

from .config import AgentConfig, ConfigError, ScheduledQuery, config_check_main, load_config, pack_active, parse_config
from .control import ControlError, ControlServer
from .events import EventManager
from .hostid import HostIdError, host_identifier, host_uuid
from .results import ResultWriter
from .runner import DecorationRunner, QueryRunner, RunOutcome, event_tables_in
from .scheduler import Scheduler
from .sdnotify import Notifier, watchdog_interval
from .state import StateDB, StateError
from .status_tables import SPECS as STATUS_SPECS
from .status_tables import AgentInfo, QueryStats, flag_rows
from .watchdog import (
    DENYLIST_SECONDS,
    EXIT_WATCHDOG,
    ResourceWatch,
    WatchdogLimits,
    denylist_message,
    own_rss,
    parse_stat,
    read_sample,
)

__all__ = ["DEFAULT_CONFIG", "Agent", "AgentState", "Settings", "main"]

log = logging.getLogger("agentd")

DEFAULT_STATE_DIR = "/var/lib/agentd"
DEFAULT_LOG_DIR = "/var/log/agentd"
EXIT_OK, EXIT_FAILURE = 0, 1

#: The config agentd runs without --config (docs/config.example.json holds the same JSON).
DEFAULT_CONFIG = """{
  "options": {
    "host_identifier": "hostname",
    "schedule_splay_percent": 10,
    "schedule_timeout": 10,
    "events_max": 50000,
    "events_expiry": 3600,
    "audit_allow_sockets": true,
    "watchdog_level": 0
  },
  "schedule": {
    "process_events": {
      "query": "SELECT pid, parent, path, cmdline, cwd, uid, euid, time FROM process_events;",
      "interval": 60
    },
    "socket_events": {
      "query": "SELECT action, pid, path, family, protocol, local_address, local_port, remote_address, remote_port, time FROM socket_events WHERE success = 1;",
      "interval": 60
    },
    "system_info": {
      "query": "SELECT hostname, cpu_brand, physical_memory FROM system_info;",
      "interval": 3600
    },
    "listening_ports": {
      "query": "SELECT pid, port, protocol, family, address FROM listening_ports;",
      "interval": 300
    },
    "processes": {
      "query": "SELECT pid, name, path, cmdline, uid, parent FROM processes;",
      "interval": 300
    },
    "agent_info": {
      "query": "SELECT i.*, p.resident_size, p.user_time, p.system_time FROM osquery_info i, processes p WHERE p.pid = i.pid;",
      "interval": 3600,
      "removed": false,
      "denylist": false
    }
  }
}
"""  # noqa: E501


@dataclass(slots=True)
class Settings:
    """How agentd was started (command line); the config file holds the rest."""

    config_path: str | None = None  # None: the embedded DEFAULT_CONFIG
    state_dir: str = DEFAULT_STATE_DIR
    log_dir: str = DEFAULT_LOG_DIR
    socket_path: str | None = None  # None: <state_dir>/agentd.sock
    clock: Callable[[], float] = time.time
    stop_timeout: float = 5.0  # the whole shutdown fits in this
    query_grace: float = 2.0  # how long shutdown waits for a running query before interrupting it
    adhoc_time_limit: float = 60.0  # control-socket queries
    adhoc_max_rows: int = 1_000_000  # control-socket queries: bounded before they are held in memory
    loss_report_interval: float = 60.0
    watchdog_interval: float = 3.0  # seconds between samples of our own CPU and RSS (osquery: 3)

    @property
    def socket(self) -> str:
        return self.socket_path or os.path.join(self.state_dir, "agentd.sock")


@dataclass(slots=True)
class AgentState:
    """The small state shared by the agent's parts; the status tables read it (AgentView)."""

    info: AgentInfo = field(default_factory=AgentInfo)
    queries: dict[str, QueryStats] = field(default_factory=dict)
    packs: list[dict[str, Any]] = field(default_factory=list)
    flags: list[dict[str, Any]] = field(default_factory=list)
    running: str | None = None  # the scheduled query in the worker thread
    should_exit: bool = False
    exit_code: int = EXIT_OK
    cpu_percent: float = 0.0  # of all cores, over the last watchdog interval
    rss: int = 0


class _Worker:
    """One daemon thread that runs blocking calls in order; results come back as futures.

    A daemon thread (not a ThreadPoolExecutor, whose workers are joined at exit) so a
    query stuck in a generate() can never keep agentd from exiting.
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.busy = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
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

    def stop(self) -> None:
        self._queue.put(None)

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


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


class Agent:
    """The daemon: ``await Agent(settings).serve()`` returns the exit status.

    Tests drive it without signals or sleeps: pass ``shutdown_trigger`` (an awaitable
    factory; when it returns the agent stops) and a stepped ``Settings.clock``, or call
    :meth:`startup`, :meth:`run_due` and :meth:`shutdown` directly.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
        notifier: Notifier | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = settings.clock
        self.shutdown_trigger = shutdown_trigger
        env = dict(os.environ if environ is None else environ)
        self.notifier = notifier if notifier is not None else Notifier.from_environment(env)
        self.sd_watchdog_interval = watchdog_interval(env)
        self.state = AgentState()
        self.config: AgentConfig | None = None
        self.statedb: StateDB | None = None
        self.database: Database | None = None
        self.events: EventManager | None = None
        self.runner: QueryRunner | None = None
        self.writer: ResultWriter | None = None
        self.scheduler: Scheduler | None = None
        self.control: ControlServer | None = None
        self.worker: _Worker | None = None
        self.watch: ResourceWatch | None = None
        self.queries: dict[str, ScheduledQuery] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main: asyncio.Task[Any] | None = None
        self._stop = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._interrupt_reason: str | None = None
        self._started_monotonic = time.monotonic()
        self._discovery_runs: dict[str, int] = {}  # pack -> discovery evaluations (osquery_packs)
        self.next_pack_refresh = float("inf")  # when discovery queries are evaluated again

    # -- lifecycle -------------------------------------------------------------------------

    async def serve(self) -> int:
        """startup -> scheduler loop until the shutdown trigger -> shutdown; the exit status."""
        with self._capture_signals():
            await self.startup()
            if not self.state.should_exit:
                self._main = self._spawn(self.main_loop(), "scheduler")
                if self.shutdown_trigger is not None:
                    self._spawn(self._await_trigger(), "shutdown-trigger")
                await self._stop.wait()
            await self.shutdown()
        return self.state.exit_code

    def request_stop(self, reason: str = "requested", exit_code: int | None = None) -> None:
        """Ask the agent to stop (signal handlers, the watchdog, the shutdown trigger)."""
        if exit_code is not None and self.state.exit_code == EXIT_OK:
            self.state.exit_code = exit_code
        if not self.state.should_exit:
            log.info("agentd stopping: %s", reason)
        self.state.should_exit = True
        self._stop.set()
        self._wakeup.set()

    def _fail(self, message: str) -> None:
        log.error("%s", message)
        self.state.exit_code = EXIT_FAILURE
        self.state.should_exit = True

    async def startup(self) -> None:
        """Everything up to READY=1; a failure logs one clear line and sets should_exit (status 1)."""
        settings = self.settings
        try:
            config = self._load_config()
        except ConfigError as exc:
            self._fail(f"config error: {exc}")
            return
        self.config = config
        options = config.options
        for warning in config.warnings:
            log.warning("config: %s", warning)
        try:
            os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
            self.statedb = StateDB(os.path.join(settings.state_dir, "agentd.db"))
        except (OSError, StateError) as exc:
            self._fail(f"cannot open the state directory {settings.state_dir}: {exc}")
            return
        try:
            identifier = host_identifier(
                options.host_identifier, specified=options.specified_identifier, state=self.statedb
            )
        except HostIdError as exc:
            self._fail(f"config error: {exc}")
            return
        instance_id = self.statedb.instance_id()
        log_dir = options.logger_path or settings.log_dir
        try:
            self.writer = ResultWriter(
                log_dir,
                max_bytes=options.logger_rotate_size,
                backups=options.logger_rotate_max_files,
                mode=options.logger_mode,
            )
        except OSError as exc:
            self._fail(f"cannot use the log directory {log_dir}: {exc}")
            return
        limits = dataclasses.replace(WatchdogLimits.from_options(options), interval=settings.watchdog_interval)
        self.state.info = AgentInfo(
            uuid=host_uuid() or instance_id,
            instance_id=instance_id,
            host_identifier=identifier,
            config_path=settings.config_path or "",
            config_hash=config_hash(config, settings.config_path),
            config_valid=True,
            state_dir=settings.state_dir,
            log_dir=log_dir,
            socket=settings.socket,
            results_log=self.writer.results.path,
            events_enabled=not options.disable_events,
            watchdog_enabled=limits.enabled,
        )
        self.state.flags = flag_rows(options)

        self.events = EventManager(options, state_dir=settings.state_dir)
        self.database = Database(
            self._specs(),
            catalog=catalog(),
            time_limit=options.schedule_timeout,
            services={"agent": self.state, **self.events.services},
        )
        self.worker = _Worker("agentd-query")
        decorations = DecorationRunner(self._execute_dicts, config.decorators)
        self.runner = QueryRunner(
            self.database,
            self.statedb,
            host_identifier=identifier,
            options=options,
            decorations_provider=decorations,
        )
        try:
            delivered = await self.worker.submit(self._prepare, decorations)
        except (OSError, StateError) as exc:
            self._fail(f"cannot write result lines left from the previous run to {log_dir}: {exc}")
            return
        if delivered:
            log.info("delivered %d result batches committed before the previous stop", delivered)

        queries = await self.worker.submit(self._active_queries, config)
        self.queries = {q.name: q for q in queries}
        self.scheduler = Scheduler(
            queries,
            clock=self.clock,
            splay_percent=options.schedule_splay_percent,
            seed=instance_id,
            denylisted=self.statedb.denylisted,
            last_runs=self.statedb.last_runs(),
            splayed=self.statedb.splay(),
        )
        for name, (interval, splayed) in self.scheduler.splayed().items():
            self.statedb.set_splay(name, interval, splayed)
        denied = self.statedb.denylist(self.clock())
        self._add_stats(queries)
        if any(pack.discovery and not pack.skipped for pack in config.packs):
            self.next_pack_refresh = self.clock() + options.pack_refresh_interval
        for name, (until, reason) in denied.items():
            if name in self.queries:
                log.warning("query %s stays denylisted until %s (%s)", name, _utc(until), reason)

        # The socket first: a path that cannot be served fails start-up before kernel audit is touched.
        self.control = ControlServer(settings.socket, self)
        try:
            await self.control.start()
        except ControlError as exc:
            self._fail(str(exc))
            return
        await self.events.start()

        if limits.enabled:
            self.watch = ResourceWatch(limits, started=time.monotonic())
            self._spawn(self._watchdog_loop(limits.interval), "watchdog")
        if self.sd_watchdog_interval:
            self._spawn(self._sd_watchdog_loop(self.sd_watchdog_interval), "sd-watchdog")
        self._spawn(self._loss_loop(settings.loss_report_interval), "event-loss")
        summary = f"{len(queries)} scheduled queries; {self.events.choice}"
        log.info(
            "agentd %s ready: %s; control socket %s; results in %s",
            self.state.info.version,
            summary,
            settings.socket,
            log_dir,
        )
        self.notifier.ready(summary)

    def _load_config(self) -> AgentConfig:
        path = self.settings.config_path
        if path is None:
            return parse_config(DEFAULT_CONFIG, base_dir=os.getcwd(), source="<embedded default config>")
        return load_config(path)

    def _specs(self) -> list[TableSpec]:
        """Status tables + the event manager's, each name once; tables/ load on first use (catalog())."""
        specs: dict[str, TableSpec] = {}
        assert self.events is not None
        for spec in (*STATUS_SPECS, *self.events.specs()):
            specs.setdefault(spec.name, spec)
        return list(specs.values())

    def _add_stats(self, queries: Sequence[ScheduledQuery]) -> None:
        """Status counters for queries not yet in the schedule (startup, a pack becoming active)."""
        assert self.statedb is not None
        denied = self.statedb.denylist(self.clock())
        for query in queries:
            if query.name in self.state.queries:
                continue
            self.state.queries[query.name] = QueryStats(
                name=query.name,
                query=query.query,
                interval=query.interval,
                pack=query.pack or "",
                snapshot=query.snapshot,
                removed=query.removed,
                denylist=query.denylist,
                denylisted_until=denied.get(query.name, (0.0, ""))[0],
            )

    async def refresh_packs(self, now: float) -> None:
        """Evaluate the packs' discovery queries again (every pack_refresh_interval, as osquery).

        Queries of packs that became active join the schedule; those of packs that became
        inactive leave it; the others keep their timing.
        """
        assert self.worker is not None and self.scheduler is not None and self.config is not None
        assert self.statedb is not None
        self.next_pack_refresh = now + self.config.options.pack_refresh_interval
        queries = await self.worker.submit(self._active_queries, self.config)
        names = {q.name for q in queries}
        if names == set(self.queries):
            return
        added, gone = sorted(names - set(self.queries)), sorted(set(self.queries) - names)
        log.info(
            "pack discovery changed the schedule: %d queries added%s, %d removed%s",
            len(added),
            f" ({', '.join(added)})" if added else "",
            len(gone),
            f" ({', '.join(gone)})" if gone else "",
        )
        self.scheduler.set_queries(queries, last_runs=self.statedb.last_runs(), splayed=self.statedb.splay())
        for name, (interval, splayed) in self.scheduler.splayed().items():
            self.statedb.set_splay(name, interval, splayed)
        self.queries = {q.name: q for q in queries}
        for name in gone:
            if name != self.state.running:
                self.state.queries.pop(name, None)
        self._add_stats(queries)

    def _execute_dicts(self, sql: str) -> list[dict[str, Any]]:
        assert self.database is not None
        return self.database.execute(sql).dicts()

    def _prepare(self, decorations: DecorationRunner) -> int:
        """Worker thread: load decorators, deliver the previous run's committed lines."""
        assert self.runner is not None and self.writer is not None
        decorations.load()
        return self.runner.deliver(self.writer)

    def _active_queries(self, config: AgentConfig) -> list[ScheduledQuery]:
        """Worker thread: the schedule minus packs whose discovery queries fail."""
        inactive: set[str] = set()
        was_active = {p["name"]: p["active"] for p in self.state.packs}
        packs = []
        for pack in config.packs:
            active = pack.runs_here() and pack_active(pack, self._execute_dicts)
            if pack.discovery and not pack.skipped:
                self._discovery_runs[pack.name] = self._discovery_runs.get(pack.name, 0) + 1
            if not active:
                inactive.add(pack.name)
            if was_active.get(pack.name) != int(active):
                if active and pack.name in was_active:
                    log.info("pack %s is active now: its discovery queries return rows", pack.name)
                elif not active:
                    log.info("pack %s is inactive: %s", pack.name, pack.inactive_reason or pack.skipped)
            packs.append(
                {
                    "name": pack.name,
                    "platform": pack.platform,
                    "version": pack.version,
                    "shard": pack.shard,
                    "discovery_cache_hits": 0,
                    "discovery_executions": self._discovery_runs.get(pack.name, 0),
                    "active": int(active),
                }
            )
        self.state.packs = packs
        return [q for q in config.queries if not q.pack or q.pack not in inactive]

    async def main_loop(self) -> None:
        """Run due queries; sleep until the next is due (or a wake-up)."""
        assert self.scheduler is not None
        while not self.state.should_exit:
            await self.run_due()
            wait = min(max(0.0, min(self.scheduler.next_due(), self.next_pack_refresh) - self.clock()), 60.0)
            self._wakeup.clear()
            if self.state.should_exit:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=wait)

    async def run_due(self, now: float | None = None) -> list[RunOutcome]:
        """Run every query due at ``now`` (default: the clock), one at a time; their outcomes."""
        assert self.scheduler is not None
        now = self.clock() if now is None else now
        if now >= self.next_pack_refresh:
            await self.refresh_packs(now)
        outcomes = []
        for query in self.scheduler.due(now):
            if self.state.should_exit:
                break
            outcomes.append(await self._run_scheduled(query))
        return outcomes

    async def _run_scheduled(self, query: ScheduledQuery) -> RunOutcome:
        assert self.worker is not None and self.scheduler is not None
        stats = self.state.queries[query.name]
        started = self.clock()
        self.state.running = query.name
        self._interrupt_reason = None
        try:
            outcome, user_ms, system_ms, memory, size = await self.worker.submit(
                self._execute_scheduled, query, started
            )
        finally:
            self.state.running = None
        finished = self.clock()
        stats.record(
            finished=finished,
            wall_ms=int(outcome.wall_time * 1000),
            user_ms=user_ms,
            system_ms=system_ms,
            memory=memory,
            rows=outcome.rows,
            lines=outcome.line_count,
            output_bytes=size,
            error=outcome.error or "",
        )
        if outcome.error:
            if outcome.timed_out or self._interrupt_reason:
                reason = self._interrupt_reason or (
                    f"exceeded its time limit of {self.runner.options.schedule_timeout:g} s "  # type: ignore[union-attr]
                    "(schedule_timeout) and was interrupted"
                )
                self.denylist(query, reason)
            else:
                log.warning("query %s failed: %s", query.name, outcome.error)
        self.scheduler.mark_run(query.name, finished)
        stats.next_run = finished + self.scheduler.interval_of(query.name)  # approximate: splay/drift aside
        return outcome

    def _execute_scheduled(self, query: ScheduledQuery, now: float) -> tuple[RunOutcome, int, int, int, int]:
        """Worker thread: run, commit and write one scheduled query; with its CPU and memory."""
        assert self.runner is not None
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
        return outcome, user1 - user0, system1 - system0, own_rss(), outcome.output_bytes

    def denylist(self, query: ScheduledQuery, reason: str) -> None:
        """Denylist ``query`` for 24 h (unless ``denylist: false`` or an event-only query), and log why."""
        assert self.statedb is not None and self.config is not None and self.database is not None
        stats = self.state.queries.get(query.name)
        exempt = not query.denylist or (
            event_tables_in(self.database, query.query) and not self.config.options.events_enforce_denylist
        )
        if exempt:
            log.warning("%s", denylist_message(query.name, reason, None))
            return
        until = self.clock() + DENYLIST_SECONDS
        self.statedb.deny(query.name, until, reason)
        if stats is not None:
            stats.denylisted_until = until
        log.warning("%s", denylist_message(query.name, reason, until))

    async def shutdown(self) -> None:
        """Ordered and time-boxed: scheduling, running query, events, control socket, state."""
        self.state.should_exit = True
        self._stop.set()
        self._wakeup.set()
        self.notifier.stopping()
        deadline = time.monotonic() + self.settings.stop_timeout
        for task in list(self._tasks):
            if task is not self._main:
                task.cancel("agentd is shutting down")
        if self._main is not None and not self._main.done():
            done, _ = await asyncio.wait({self._main}, timeout=self.settings.query_grace)
            if not done and self.database is not None:
                log.warning("shutdown: interrupting the running query %s", self.state.running)
                self._interrupt_reason = "was interrupted by shutdown"
                self.database.interrupt()
                done, _ = await asyncio.wait({self._main}, timeout=min(1.0, _left(deadline, 2.5)))
            if not done:
                self._main.cancel("the running query did not stop in time")
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=_left(deadline, 2.0))
        if self.events is not None:
            try:
                await asyncio.wait_for(self.events.stop(), timeout=_left(deadline, 1.0))
            except TimeoutError:
                log.error("shutdown: event sources did not stop in time")
        if self.control is not None:
            await self.control.close()
        worker_idle = True
        if self.worker is not None:
            self.worker.stop()
            worker_idle = self.worker.join(timeout=_left(deadline, 0.2))
        if self.statedb is not None and worker_idle:
            self.statedb.close()
        if self.database is not None and worker_idle:
            self.database.close()
        self.notifier.close()
        log.info("agentd stopped")

    # -- background tasks -------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"agentd-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s failed: %s: %s", task.get_name(), type(exc).__name__, exc, exc_info=exc)
            self.request_stop(f"{task.get_name()} failed", EXIT_FAILURE)

    async def _await_trigger(self) -> None:
        assert self.shutdown_trigger is not None
        await self.shutdown_trigger()
        self.request_stop("shutdown trigger")

    async def _watchdog_loop(self, interval: float) -> None:
        """Sample our own CPU and RSS every ``interval`` s; act on the verdict."""
        assert self.watch is not None
        while True:
            await asyncio.sleep(interval)
            try:
                sample = read_sample()
            except (OSError, ValueError) as exc:
                log.warning("watchdog: cannot read /proc/self: %s", exc)
                continue
            verdict = self.watch.feed(sample, query_running=self.state.running is not None)
            self.state.cpu_percent = self.watch.last_utilization
            self.state.rss = sample.rss
            if verdict is None:
                continue
            running = self.state.running
            if verdict.action == "interrupt" and running is not None and self.database is not None:
                log.warning("watchdog: %s while query %s ran; interrupting it", verdict.reason, running)
                self._interrupt_reason = f"exceeded the CPU limit ({verdict.reason}) and was interrupted"
                self.database.interrupt()
                continue
            if running is not None and running in self.queries:
                self.denylist(self.queries[running], f"was running when the watchdog stopped agentd: {verdict.reason}")
            log.error("watchdog: %s; agentd exits with status %d so systemd restarts it", verdict.reason, EXIT_WATCHDOG)
            self.request_stop("watchdog", EXIT_WATCHDOG)
            return

    async def _sd_watchdog_loop(self, interval: float) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def _loss_loop(self, interval: float) -> None:
        """Event loss, summarised about once a minute, never per event."""
        assert self.events is not None
        while True:
            await asyncio.sleep(interval)
            summary = self.events.loss_summary()
            if summary:
                log.warning("%s", summary)

    # -- control socket handler -------------------------------------------------------------

    async def query(self, sql: str, *, time_limit: float | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """An ad-hoc query inside the daemon (serialised with the schedule in the worker)."""
        if self.worker is None or self.database is None:
            raise ControlError("agentd is not ready")
        limit = (
            self.settings.adhoc_time_limit if time_limit is None else min(time_limit, self.settings.adhoc_time_limit)
        )
        result = await self.worker.submit(self._adhoc, sql, limit)
        return result.columns, result.rows

    def _adhoc(self, sql: str, time_limit: float) -> Any:
        assert self.database is not None
        return self.database.execute(sql, time_limit=time_limit, max_rows=self.settings.adhoc_max_rows)

    def status(self) -> dict[str, Any]:
        """Schedule, event sources and buffers, agent info (``agent-cli status``)."""
        info = self.state.info
        now = self.clock()
        schedule = []
        for name, stats in sorted(self.state.queries.items()):
            entry = stats.as_status(now)
            if self.scheduler is not None:
                with contextlib.suppress(KeyError):
                    entry["interval"] = self.scheduler.interval_of(name)
            schedule.append(entry)
        rows = self.events.status() if self.events is not None else []
        return {
            "agent": {
                "version": info.version,
                "pid": info.pid,
                "uptime": round(time.monotonic() - self._started_monotonic, 1),
                "host_identifier": info.host_identifier,
                "config_path": info.config_path or "<embedded default>",
                "state_dir": info.state_dir,
                "results_log": info.results_log,
                "socket": info.socket,
                "rss_bytes": self.state.rss or own_rss(),
                "cpu_percent": round(self.state.cpu_percent, 2),
                "running": self.state.running,
                "events": self.events.choice if self.events is not None else "",
            },
            "schedule": schedule,
            "events": {
                "sources": [r for r in rows if r.get("kind") == "source"],
                "buffers": [r for r in rows if r.get("kind") == "table"],
            },
        }

    # -- signals ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _capture_signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT request a stop; the previous handlers come back afterwards."""
        if self.shutdown_trigger is not None or threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig in previous:
            loop.add_signal_handler(sig, self.request_stop, f"signal {signal.Signals(sig).name}")
        try:
            yield
        finally:
            for sig, handler in previous.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)


def _left(deadline: float, cap: float) -> float:
    return max(0.05, min(cap, deadline - time.monotonic()))


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def config_hash(config: AgentConfig, path: str | None) -> str:
    """SHA-1 of the config text (osquery_info.config_hash)."""
    import hashlib

    if path is None:
        data = DEFAULT_CONFIG.encode()
    else:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            data = json.dumps([q.name for q in config.queries]).encode()
    return hashlib.sha1(data).hexdigest()


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agentd",
        description="osquery-compatible host agent: scheduled queries, differential results, events.",
    )
    p.add_argument("--config", metavar="FILE", help="osquery-format JSON config (default: the embedded config)")
    p.add_argument("--config-check", metavar="FILE", help="validate FILE and exit (0 valid, 1 invalid)")
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        default=DEFAULT_STATE_DIR,
        help=f"state database and control socket (default {DEFAULT_STATE_DIR})",
    )
    p.add_argument(
        "--log-dir", metavar="DIR", default=DEFAULT_LOG_DIR, help=f"results log directory (default {DEFAULT_LOG_DIR})"
    )
    p.add_argument("--socket", metavar="PATH", help="control socket (default <state-dir>/agentd.sock)")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The ``agentd`` console script."""
    args = _parser().parse_args(argv)
    if args.config_check:
        return config_check_main(args.config_check)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s"
        if os.environ.get("INVOCATION_ID")
        else "%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    settings = Settings(
        config_path=args.config,
        state_dir=args.state_dir,
        log_dir=args.log_dir,
        socket_path=args.socket,
    )
    return asyncio.run(Agent(settings).serve())


if __name__ == "__main__":
    raise SystemExit(main())
