"""agentd: the daemon that replaces osqueryd.

``Agent.serve()`` = :meth:`Agent.startup` -> :meth:`Agent.run` until a stop is requested
-> :meth:`Agent.shutdown`, the last in a ``finally`` (uvicorn's shape; hypercorn's
injectable shutdown trigger).  The agent is composed of parts that each own one concern
and are built complete (:class:`Parts`); :class:`~agent.lifecycle.Lifecycle` starts them in
order and shutdown stops every part that started, newest first, within one deadline,
whatever failed before (a failed startup too: the socket file is removed, the event
sources are stopped and kernel audit is restored).

Startup order (shutdown is the reverse):

1. the query thread, then the state database and results log (:class:`~agent.stores.Stores`);
2. the query executor: decorators loaded, result lines a previous run committed but did not
   write are delivered; pack discovery gives the schedule its queries;
3. the control socket (before the event sources: a socket path that cannot be served fails
   startup before kernel audit is touched), then the event sources;
4. the watchdog, the systemd watchdog ping, the event-loss reporter;
5. further components (``components=``: the collector uplink comes here), then READY=1;
6. :meth:`Agent.run` starts the scheduler loop (queries run one at a time on the query
   thread, so the event loop keeps serving events, the control socket and the watchdogs).

SIGTERM/SIGINT stop everything in order within 5 s; exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tables.registry import catalog
from tables.spec import TableSpec
from tables.sqlite import Database

from .config import AgentConfig, ConfigError, config_check_main, load_config, parse_config
from .control import ControlError, ControlServer, FunctionHandler
from .denylist import Denylist
from .events import EventManager
from .executor import QueryExecutor, Worker
from .hostid import host_uuid
from .lifecycle import Closing, Component, Deadline, Lifecycle, Periodic, StartupError
from .packs import PackDiscovery
from .runner import DecorationRunner, QueryRunner, RunOutcome, event_tables_in
from .schedule import Schedule, ScheduleLoop
from .sdnotify import Notifier, watchdog_interval
from .services import AGENT_SERVICE
from .status import Activity, AgentInfo, Status, StatusView
from .status_tables import SPECS as STATUS_SPECS
from .status_tables import flag_rows
from .stores import Stores
from .watchdog import Watchdog, WatchdogLimits, own_rss

__all__ = ["DEFAULT_CONFIG", "Agent", "ComponentFactory", "Parts", "Settings", "main"]

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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Parts:
    """What startup built, each part complete.  Further components are built from it.

    An uplink to the collector, for instance, takes ``stores.statedb`` (the outbox of
    result batches), ``schedule`` (to add and remove the collector's subscriptions),
    ``events`` (listeners for rows as they arrive), ``status`` (its section of the status)
    and ``on_failure`` (its task's unexpected end stops the agent).
    """

    settings: Settings
    config: AgentConfig
    stores: Stores
    activity: Activity
    events: EventManager
    packs: PackDiscovery
    schedule: Schedule
    status: StatusView
    executor: QueryExecutor
    denylist: Denylist
    control: ControlServer
    loop: ScheduleLoop
    on_failure: Callable[[str, BaseException], None]


#: Builds one more long-lived component from the parts; started after the built-in ones, in order.
ComponentFactory = Callable[[Parts], Component]


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
        components: Sequence[ComponentFactory] = (),
    ) -> None:
        self.settings = settings
        self.clock = settings.clock
        self.shutdown_trigger = shutdown_trigger
        env = dict(os.environ if environ is None else environ)
        self.notifier = notifier if notifier is not None else Notifier.from_environment(env)
        self.sd_watchdog_interval = watchdog_interval(env)
        self.components = tuple(components)
        self.lifecycle = Lifecycle()
        self.exit_code = EXIT_OK
        self.stopping = False
        self._parts: Parts | None = None
        self._stop = asyncio.Event()

    @property
    def parts(self) -> Parts:
        """The parts startup built; RuntimeError before startup built them."""
        if self._parts is None:
            raise RuntimeError("agentd has not built its parts (startup did not run, or failed before)")
        return self._parts

    # -- lifecycle -------------------------------------------------------------------------

    async def serve(self) -> int:
        """startup -> run until a stop is requested -> shutdown (always); the exit status."""
        with self._capture_signals():
            try:
                await self.startup()
                await self.run()
            except StartupError as exc:
                self._fail(str(exc))
            except Exception as exc:
                log.exception("agentd failed: %s: %s", type(exc).__name__, exc)
                self._fail(f"agentd failed: {type(exc).__name__}: {exc}", logged=True)
            finally:
                await self.shutdown()
        return self.exit_code

    def request_stop(self, reason: str = "requested", exit_code: int | None = None) -> None:
        """Ask the agent to stop (signal handlers, the watchdog, the shutdown trigger, a failed part)."""
        if exit_code is not None and self.exit_code == EXIT_OK:
            self.exit_code = exit_code
        if not self.stopping:
            log.info("agentd stopping: %s", reason)
        self.stopping = True
        self._stop.set()

    def _fail(self, message: str, *, logged: bool = False) -> None:
        if not logged:
            log.error("%s", message)
        self.exit_code = EXIT_FAILURE
        self.stopping = True
        self._stop.set()

    def _part_failed(self, name: str, exc: BaseException) -> None:
        self.request_stop(f"{name} failed", EXIT_FAILURE)

    async def _start(self, component: Component, *, stop_timeout: float = 1.0) -> None:
        """Start one part (registered first, so shutdown stops it even when its start fails)."""
        try:
            await self.lifecycle.start(component, stop_timeout=stop_timeout)
        except ControlError as exc:
            raise StartupError(str(exc)) from exc
        except OSError as exc:
            raise StartupError(f"cannot start {component.name}: {exc}") from exc

    async def startup(self) -> None:
        """Everything up to READY=1; :class:`StartupError` (one clear line) when something cannot start.

        Whatever started before a failure is stopped by :meth:`shutdown` (serve() always runs it).
        """
        settings = self.settings
        config = self._load_config()
        for warning in config.warnings:
            log.warning("config: %s", warning)
        worker = Worker()
        await self._start(worker, stop_timeout=0.5)
        log_dir = config.options.logger_path or settings.log_dir
        stores = Stores.open(settings.state_dir, log_dir, config.options)
        # closed on the query thread, after its last job: never under a running query
        self.lifecycle.adopt(Closing("state database", lambda: worker.submit(stores.close)), stop_timeout=0.5)
        parts = self._parts = self._build(config, stores, worker)

        await self._start(parts.executor)  # delivers what the previous run committed
        queries = await parts.executor.call(parts.packs.evaluate, parts.executor.execute_dicts, self.clock())
        parts.schedule.set_config_queries(queries)  # the config's queries minus those of inactive packs
        parts.denylist.log_current()
        # The socket first: a path that cannot be served fails start-up before kernel audit is touched.
        await self._start(parts.control, stop_timeout=2.0)
        await self._start(parts.events)
        for component in self._background(parts):
            await self._start(component)
        # Further long-lived components (the collector uplink) start here, in the order given: after the
        # schedule and the event sources they read, before READY=1.  Shutdown stops them first.
        for factory in self.components:
            await self._start(factory(parts))

        summary = f"{len(parts.schedule.queries)} scheduled queries; {parts.events.choice}"
        log.info(
            "agentd %s ready: %s; control socket %s; results in %s",
            parts.status.info.version,
            summary,
            settings.socket,
            log_dir,
        )
        self.notifier.ready(summary)

    def _limits(self, config: AgentConfig) -> WatchdogLimits:
        return dataclasses.replace(
            WatchdogLimits.from_options(config.options), interval=self.settings.watchdog_interval
        )

    def _build(self, config: AgentConfig, stores: Stores, worker: Worker) -> Parts:
        """Every part, complete and wired, nothing started (construction has no side effects)."""
        settings, options = self.settings, config.options
        info = AgentInfo(
            uuid=host_uuid() or stores.instance_id,
            instance_id=stores.instance_id,
            host_identifier=stores.host_identifier,
            config_path=settings.config_path or "",
            config_hash=config_hash(config, settings.config_path),
            config_valid=True,
            state_dir=settings.state_dir,
            log_dir=stores.log_dir,
            socket=settings.socket,
            results_log=stores.writer.results.path,
            events_enabled=not options.disable_events,
            watchdog_enabled=self._limits(config).enabled,
        )
        activity = Activity()
        events = EventManager(options, state_dir=settings.state_dir)
        packs = PackDiscovery(config, refresh_interval=options.pack_refresh_interval)
        schedule = Schedule(
            stores.statedb, clock=self.clock, splay_percent=options.schedule_splay_percent, seed=stores.instance_id
        )
        status = StatusView(
            info,
            activity,
            schedule=schedule,
            packs=packs,
            events=events,
            flags=flag_rows(options),
            clock=self.clock,
            own_rss=own_rss,
        )
        database = Database(
            _specs(events),
            catalog=catalog(),  # tables/ are registered when a query first names them
            time_limit=options.schedule_timeout,
            services={AGENT_SERVICE: status, **events.services},
        )
        decorations = DecorationRunner(lambda sql: database.execute(sql).dicts(), config.decorators)
        runner = QueryRunner(
            database,
            stores.statedb,
            host_identifier=stores.host_identifier,
            options=options,
            decorations_provider=decorations,
        )
        executor = QueryExecutor(
            worker,
            database,
            runner,
            stores.writer,
            activity,
            decorations=decorations,
            adhoc_time_limit=settings.adhoc_time_limit,
            adhoc_max_rows=settings.adhoc_max_rows,
        )
        denylist = Denylist(
            stores.statedb,
            schedule,
            clock=self.clock,
            reads_events=lambda sql: bool(event_tables_in(database, sql)),
            enforce_on_events=options.events_enforce_denylist,
        )
        loop = ScheduleLoop(
            schedule,
            packs,
            executor,
            denylist,
            clock=self.clock,
            schedule_timeout=options.schedule_timeout,
            query_grace=settings.query_grace,
            on_failure=self._part_failed,
        )
        return Parts(
            settings=settings,
            config=config,
            stores=stores,
            activity=activity,
            events=events,
            packs=packs,
            schedule=schedule,
            status=status,
            executor=executor,
            denylist=denylist,
            control=ControlServer(settings.socket, FunctionHandler(executor.query, status.build)),
            loop=loop,
            on_failure=self._part_failed,
        )

    def _background(self, parts: Parts) -> list[Component]:
        """The watchdog, the systemd watchdog ping and the event-loss report (those that apply)."""
        components: list[Component] = []
        limits = self._limits(parts.config)
        if limits.enabled:
            components.append(
                Watchdog(
                    limits,
                    parts.activity,
                    interrupt=parts.executor.interrupt,
                    deny=parts.denylist.deny_name,
                    request_stop=self.request_stop,
                    on_failure=self._part_failed,
                    events=parts.events,
                )
            )
        if self.sd_watchdog_interval:
            ping = self.notifier.watchdog
            components.append(Periodic("sd-watchdog", self.sd_watchdog_interval, ping, self._part_failed, first=0))
        interval = self.settings.loss_report_interval
        components.append(Periodic("event-loss", interval, self._report_losses, self._part_failed))
        return components

    async def run(self) -> None:
        """Run the schedule until a stop is requested (signal, shutdown trigger, watchdog, a failed part)."""
        if self.stopping:
            return
        parts = self.parts
        await self._start(parts.loop, stop_timeout=self.settings.query_grace + 1.5)
        trigger = None
        if self.shutdown_trigger is not None:
            trigger = asyncio.create_task(self._await_trigger(self.shutdown_trigger), name="agentd-shutdown-trigger")
        try:
            await self._stop.wait()
        finally:
            if trigger is not None:
                trigger.cancel()

    async def _await_trigger(self, trigger: Callable[[], Awaitable[Any]]) -> None:
        await trigger()
        self.request_stop("shutdown trigger")

    async def shutdown(self) -> None:
        """Ordered and time-boxed: every part that started stops, newest first (safe after a failed startup)."""
        self.stopping = True
        self._stop.set()
        self.notifier.stopping()
        await self.lifecycle.stop(Deadline(self.settings.stop_timeout))
        self.notifier.close()
        log.info("agentd stopped")

    def _load_config(self) -> AgentConfig:
        path = self.settings.config_path
        try:
            if path is None:
                return parse_config(DEFAULT_CONFIG, base_dir=os.getcwd(), source="<embedded default config>")
            return load_config(path)
        except ConfigError as exc:
            raise StartupError(f"config error: {exc}") from exc

    def _report_losses(self) -> None:
        """Event loss, summarised about once a minute, never per event."""
        summary = self.parts.events.loss_summary()
        if summary:
            log.warning("%s", summary)

    # -- conveniences for tests and embedding (the control socket talks to the parts directly) --

    async def run_due(self, now: float | None = None) -> list[RunOutcome]:
        """Run every query due at ``now`` (default: the clock), one at a time; their outcomes."""
        return await self.parts.loop.run_due(now)

    async def query(
        self, sql: str, *, time_limit: float | None = None
    ) -> tuple[Sequence[str], Sequence[Sequence[Any]]]:
        """An ad-hoc query inside the daemon (serialised with the schedule on the query thread)."""
        return await self.parts.executor.query(sql, time_limit=time_limit)

    def status(self) -> Status:
        """Schedule, event sources and buffers, agent info (``agent-cli status``)."""
        return self.parts.status.build()

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


def _specs(events: EventManager) -> list[TableSpec]:
    """Status tables + the event manager's, each name once; tables/ load on first use (catalog())."""
    specs: dict[str, TableSpec] = {}
    for spec in (*STATUS_SPECS, *events.specs()):
        specs.setdefault(spec.name, spec)
    return list(specs.values())


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
    p.add_argument(
        "--collector",
        metavar="URL",
        action="append",
        help="collectord to push results to (ws:// or wss://; repeat for failover); overrides collector.urls",
    )
    p.add_argument(
        "--enroll-secret-file", metavar="FILE", help="the collector's enroll secret (overrides the config's)"
    )
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
    from .uplink.component import uplink_component
    from .uplink.settings import ConfigError as CollectorConfigError
    from .uplink.settings import check_url

    try:
        for url in args.collector or ():
            check_url(url, "--collector")
    except CollectorConfigError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    uplink = uplink_component(args.collector or (), args.enroll_secret_file)
    return asyncio.run(Agent(settings, components=[uplink]).serve())


if __name__ == "__main__":
    raise SystemExit(main())
