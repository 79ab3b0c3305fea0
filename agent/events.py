"""The event manager: event stores, the choice of event sources, and agent_events_status.

One :class:`EventManager` per daemon.  It creates an :class:`~tables.events.EventStore`
per event table, starts the sources that feed them and reports what it chose:

* process_events from kernel audit first, then the proc connector, then /proc polling
  (the preferred source may be set; the chain continues after it when it is refused);
* socket_events only exist with audit;
* hardware_events from kernel uevents (USB add/remove).

Every row passes through one sink that drops the agent's own events (counted) and
tells live viewers (``agent-cli watch`` through the control socket).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from eventsources.base import EventSource, SourceMode, SourceStatus, SourceUnavailable
from tables.events import DEFAULT_EVENTS_EXPIRY, DEFAULT_EVENTS_MAX, EVENT_STORES, EventStore
from tables.spec import Column, QueryContext, Row, TableSpec

from .services import EVENT_MANAGER
from .status import BufferEntry, EventsStatus, SourceEntry, TableMode

__all__ = [
    "AUDIT_STATE_FILE",
    "EVENTS_STATUS_SPEC",
    "EVENT_MANAGER",
    "EVENT_TABLES",
    "PROCESS_SOURCES",
    "EventManager",
    "EventOptions",
    "Listener",
    "buffer_row",
    "source_row",
]

log = logging.getLogger(__name__)

EVENT_TABLES = ("process_events", "socket_events", "hardware_events")
#: Name of audit's crash-recovery file in the state directory.
AUDIT_STATE_FILE = "audit-state.json"
#: Process event sources, best first.
PROCESS_SOURCES = ("audit", "proc_connector", "proc_poll")

#: ``callback(table, row)``: a live viewer of rows as they are stored.
Listener = Callable[[str, dict[str, Any]], None]


@dataclass(slots=True)
class EventOptions:
    """What the manager needs from the agent's options (osquery names where osquery has one)."""

    events_max: int = DEFAULT_EVENTS_MAX
    events_expiry: float = DEFAULT_EVENTS_EXPIRY
    disable_events: bool = False
    disable_audit: bool = False
    audit_allow_sockets: bool = False
    audit_backlog_limit: int = 8192
    disable_hardware_events: bool = False
    disable_process_events: bool = False  # no process source at all (e.g. a viewer of hardware_events)
    process_events_source: str = "auto"  # "auto" | "audit" | "proc_connector" | "proc_poll"
    proc_poll_interval: float = 0.1  # s
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    state_dir: str | None = None  # the agent's state directory: audit's crash-recovery file goes there
    audit_state_path: str | None = None  # explicit path of that file (default: <state_dir>/audit-state.json)

    def __post_init__(self) -> None:
        if self.process_events_source not in ("auto", *PROCESS_SOURCES):
            raise ValueError(
                f"process_events_source: {self.process_events_source!r} is not one of auto, "
                + ", ".join(PROCESS_SOURCES)
            )

    def audit_state_file(self) -> str | None:
        """Where AuditSource saves the audit state it found; None: no crash recovery."""
        if self.audit_state_path:
            return self.audit_state_path
        if self.state_dir:
            return os.path.join(self.state_dir, AUDIT_STATE_FILE)
        return None

    @classmethod
    def from_options(cls, options: Any) -> EventOptions:
        """From any object with (some of) these attribute names, e.g. agent.options.Options."""
        if isinstance(options, cls):
            return options
        values = {name: getattr(options, name) for name in cls.__dataclass_fields__ if hasattr(options, name)}
        return cls(**values)


@dataclass(slots=True)
class _TableCounters:
    filtered_self: int = 0  # the agent's own events, dropped
    listener_errors: int = 0


@dataclass(slots=True)
class _LossMark:
    """Counters at the previous loss_summary() call."""

    values: dict[str, int] = field(default_factory=dict)


class EventManager:
    """Owns the event stores and sources; the daemon calls start()/stop() and registers specs()."""

    name = "event sources"

    def __init__(
        self,
        options: Any = None,
        *,
        own_pid: int | None = None,
        clock: Callable[[], float] = time.time,
        state_dir: str | None = None,
    ) -> None:
        self.options = EventOptions.from_options(options if options is not None else EventOptions())
        if state_dir is not None:
            self.options = replace(self.options, state_dir=state_dir)
        self.own_pid = os.getpid() if own_pid is None else own_pid
        self.stores: dict[str, EventStore] = {
            table: EventStore(table, max_events=self.options.events_max, expiry=self.options.events_expiry, clock=clock)
            for table in EVENT_TABLES
        }
        self._counters = {table: _TableCounters() for table in EVENT_TABLES}
        self._listeners: list[Listener] = []
        self._sources: list[EventSource] = []  # started, in start order
        self._failed: list[SourceStatus] = []  # sources tried and refused
        self._stopped: list[SourceStatus] = []  # sources stopped by stop()
        self._table_notes: dict[str, tuple[TableMode, str]] = {}  # table -> (mode, detail) when no source feeds it
        self.process_source: str | None = None
        self.choice = "not started"
        self._loss = _LossMark()
        self._started = False

    # -- wiring ------------------------------------------------------------------------------

    @property
    def services(self) -> dict[str, Any]:
        """What the Database needs: the stores, and this manager for agent_events_status."""
        return {EVENT_STORES: self.stores, EVENT_MANAGER: self}

    @staticmethod
    def specs() -> tuple[TableSpec, ...]:
        """Tables this manager provides besides tables/: agent_events_status."""
        return (EVENTS_STATUS_SPEC,)

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(table, row)`` for every stored row; returns a function that removes it."""
        self._listeners.append(callback)
        return lambda: self.remove_listener(callback)

    def remove_listener(self, callback: Listener) -> None:
        try:
            self._listeners.remove(callback)
        except ValueError:
            pass

    def sink(self, table: str, row: dict[str, Any]) -> None:
        """Where every source delivers rows: drop our own, store, tell the listeners."""
        store = self.stores.get(table)
        if store is None:
            log.warning("event manager: a source sent a row for unknown table %s; dropped", table)
            return
        counters = self._counters[table]
        if row.get("pid") == self.own_pid:
            counters.filtered_self += 1
            return
        store.add(row)
        for listener in tuple(self._listeners):
            try:
                listener(table, row)
            except Exception:  # a broken viewer must not stop event capture
                counters.listener_errors += 1
                log.exception("event listener %r failed; removed", listener)
                self.remove_listener(listener)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the sources: a process source (audit -> proc connector -> /proc polling), uevents."""
        if self._started:
            return
        self._started = True
        self._failed, self._stopped, self._table_notes = [], [], {}
        self.process_source = None
        opts = self.options
        if opts.disable_events:
            self.choice = "events are disabled (disable_events)"
            for table in EVENT_TABLES:
                self._table_notes[table] = (TableMode.DISABLED, "disable_events is set")
            log.info("events: disabled by disable_events")
            return
        if opts.disable_process_events:
            self.choice = "process events are disabled"
            self._table_notes["process_events"] = (TableMode.DISABLED, "disable_process_events is set")
        else:
            await self._start_process_source()
        if self.process_source != "audit":
            note = "socket_events unavailable without audit"
            self._table_notes["socket_events"] = (TableMode.UNAVAILABLE, note)
            if opts.audit_allow_sockets:
                log.warning("events: %s (process events come from %s)", note, self.process_source or "nothing")
        elif not opts.audit_allow_sockets:
            self._table_notes["socket_events"] = (TableMode.DISABLED, "audit_allow_sockets is off")
        if opts.disable_hardware_events:
            self._table_notes["hardware_events"] = (TableMode.DISABLED, "disable_hardware_events is set")
        else:
            from eventsources.uevent import UeventSource

            await self._try_start("uevent", UeventSource(self.sink, sys_root=opts.sys_root))
            if not any(s.name == "uevent" for s in self._sources):
                self._table_notes["hardware_events"] = (TableMode.UNAVAILABLE, self._failed[-1].detail)

    async def stop(self) -> None:
        """Stop every source (newest first); safe to call twice."""
        sources, self._sources = self._sources, []
        for source in reversed(sources):
            try:
                await source.stop()
            except Exception:
                log.exception("events: stopping %s failed", source.name)
            self._stopped.append(source.status())
        self._started = False

    async def _start_process_source(self) -> None:
        opts = self.options
        chain = list(PROCESS_SOURCES)
        if opts.process_events_source != "auto":
            chain = chain[chain.index(opts.process_events_source) :]
        reasons: list[str] = []
        if opts.process_events_source == "auto" and opts.disable_audit and "audit" in chain:
            chain.remove("audit")
            reasons.append("audit: disable_audit is set")
        elif opts.process_events_source != "auto" and chain[0] != "audit":
            reasons.append(f"process_events_source is {opts.process_events_source}")
        for name in chain:
            try:
                source = self._make_process_source(name)
            except (ImportError, SourceUnavailable) as exc:
                detail = f"not available: {exc}"
                self._failed.append(
                    SourceStatus(name=name, mode=SourceMode.FAILED, tables=("process_events",), detail=detail)
                )
                reasons.append(f"{name}: {detail}")
                continue
            if await self._try_start(name, source):
                self.process_source = name
                why = "; ".join(reasons) if reasons else "first choice"
                self.choice = f"process_events from {name} ({why})"
                log.info("events: %s", self.choice)
                return
            reasons.append(f"{name}: {self._failed[-1].detail}")
        self.choice = "no process event source: " + "; ".join(reasons)
        self._table_notes["process_events"] = (TableMode.UNAVAILABLE, self.choice)
        log.warning("events: %s", self.choice)

    def _make_process_source(self, name: str) -> EventSource:
        opts = self.options
        if name == "audit":
            from eventsources.audit.source import AuditSource  # written beside us; may be absent

            return AuditSource(
                self.sink,
                socket_events=opts.audit_allow_sockets,
                mode="auto",
                backlog_limit=opts.audit_backlog_limit,
                proc_root=opts.proc_root,
                state_path=opts.audit_state_file(),
            )
        if name == "proc_connector":
            from eventsources.cnproc import ProcConnectorSource

            return ProcConnectorSource(self.sink, proc_root=opts.proc_root)
        from eventsources.procpoll import ProcPollSource

        return ProcPollSource(self.sink, interval=opts.proc_poll_interval, proc_root=opts.proc_root)

    async def _try_start(self, name: str, source: EventSource) -> bool:
        try:
            await source.start()
        except SourceUnavailable as exc:
            detail = f"refused: {exc}"
        except Exception as exc:  # a source's bug must not leave the agent without its fallbacks
            log.exception("events: starting %s failed", name)
            detail = f"failed to start: {type(exc).__name__}: {exc}"
        else:
            self._sources.append(source)
            return True
        try:
            await source.stop()
        except Exception:
            log.exception("events: cleaning up %s after a failed start", name)
        self._failed.append(
            SourceStatus(name=name, mode=SourceMode.FAILED, tables=source.status().tables, detail=detail)
        )
        log.info("events: %s %s", name, detail)
        return False

    # -- reporting ---------------------------------------------------------------------------

    def source_statuses(self) -> list[SourceStatus]:
        """Running sources, then those tried and refused (or stopped)."""
        return [s.status() for s in self._sources] + self._failed + self._stopped

    def report(self) -> EventsStatus:
        """Each source (running, then refused or stopped) and each event table's buffer, typed."""
        sources: list[SourceEntry] = []
        feeding: dict[str, str] = {}  # table -> the running source that feeds it
        lost: dict[str, SourceStatus] = {}  # table -> a source that fed it and lost its facility
        for st in self.source_statuses():
            active = st.mode.feeding
            for table in st.tables:
                if active:
                    feeding.setdefault(table, st.name)
                elif st.mode == SourceMode.LOST:
                    lost.setdefault(table, st)
            detail = st.detail
            if st.name == self.process_source and active:
                detail = f"{detail} [{self.choice}]" if detail else self.choice
            sources.append(
                SourceEntry(
                    name=st.name,
                    mode=st.mode,
                    active=active,
                    tables=tuple(st.tables),
                    events_seen=st.events_seen,
                    kernel_lost=st.kernel_lost,
                    parse_errors=st.parse_errors,
                    detail=detail,
                    extra=dict(st.extra),
                    shed=st.shed,
                    degraded=st.degraded,
                )
            )
        buffers: list[BufferEntry] = []
        for table in EVENT_TABLES:
            if table in feeding:
                mode, detail = TableMode.ACTIVE, f"fed by {feeding[table]}"
            elif table in lost:
                mode, detail = TableMode.LOST, f"{lost[table].name}: {lost[table].detail}"
            else:
                mode, detail = self._table_notes.get(table, (TableMode.IDLE, ""))
            stats = self.stores[table].stats()
            counters = self._counters[table]
            buffers.append(
                BufferEntry(
                    name=table,
                    mode=mode,
                    active=table in feeding,
                    source=feeding.get(table),
                    buffered=stats.buffered,
                    added=stats.added,
                    dropped_expired=stats.dropped_expired,
                    dropped_overflow=stats.dropped_overflow,
                    filtered_self=counters.filtered_self,
                    consumers=stats.consumers,
                    detail=detail,
                    extra=_buffer_extra(counters.listener_errors, stats.missed),
                )
            )
        return EventsStatus(sources=tuple(sources), buffers=tuple(buffers))

    def ingest_load(self) -> tuple[float, int]:
        """(CPU seconds the running sources spent reading events, events they shed or made lean), since start."""
        cpu, degraded = 0.0, 0
        for source in self._sources:
            st = source.status()
            cpu += st.cpu_seconds
            degraded += st.shed + st.degraded
        return cpu, degraded

    def set_cpu_budget(self, budget: float | None) -> None:
        """The watchdog's CPU budget for reading events (CPU seconds a second; None: none), to every source."""
        for source in self._sources:
            source.set_cpu_budget(budget)

    def status(self) -> list[dict[str, Any]]:
        """agent_events_status rows: one per source, one per event table (from :meth:`report`)."""
        report = self.report()
        return [source_row(s) for s in report.sources] + [buffer_row(b) for b in report.buffers]

    def loss_summary(self) -> str | None:
        """One line naming what was lost since the previous call, or None when nothing was.

        Losses: rows pushed out by events_max, the kernel's lost counters, records
        that did not parse.  (Expiry is normal ageing and shows in agent_events_status.)
        """
        now: dict[str, int] = {}
        for table in EVENT_TABLES:
            now[f"{table} dropped by events_max"] = self.stores[table].stats().dropped_overflow
        for st in self.source_statuses():
            now[f"{st.name} kernel lost"] = st.kernel_lost
            now[f"{st.name} parse errors"] = st.parse_errors
            now[f"{st.name} shed (CPU budget)"] = st.shed
            now[f"{st.name} rows without /proc columns (CPU budget)"] = st.degraded
        parts = []
        for key, value in now.items():
            delta = value - self._loss.values.get(key, 0)
            if delta > 0:
                parts.append(f"{key}: {delta}")
        self._loss.values = now
        if not parts:
            return None
        return "events lost since the last report: " + ", ".join(parts)


def _buffer_extra(listener_errors: int, missed: dict[str, int]) -> dict[str, Any]:
    """A buffer's further counters: broken viewers, rows each scheduled query missed (events_max)."""
    extra: dict[str, Any] = {}
    if listener_errors:
        extra["listener_errors"] = listener_errors
    if missed:
        extra["missed"] = missed
    return extra


def source_row(entry: SourceEntry) -> dict[str, Any]:
    """An agent_events_status row of kind ``source``."""
    return {
        "kind": "source",
        "name": entry.name,
        "mode": str(entry.mode),
        "active": int(entry.active),
        "tables": ",".join(entry.tables),
        "events_seen": entry.events_seen,
        "kernel_lost": entry.kernel_lost,
        "parse_errors": entry.parse_errors,
        "shed": entry.shed,
        "detail": entry.detail,
        "extra": json.dumps(entry.extra, sort_keys=True, default=str) if entry.extra else None,
    }


def buffer_row(entry: BufferEntry) -> dict[str, Any]:
    """An agent_events_status row of kind ``table``."""
    return {
        "kind": "table",
        "name": entry.name,
        "mode": str(entry.mode),
        "active": int(entry.active),
        "tables": entry.source,
        "buffered": entry.buffered,
        "added": entry.added,
        "dropped_expired": entry.dropped_expired,
        "dropped_overflow": entry.dropped_overflow,
        "filtered_self": entry.filtered_self,
        "consumers": entry.consumers,
        "detail": entry.detail,
        "extra": json.dumps(entry.extra, sort_keys=True) if entry.extra else None,
    }


def _generate_status(context: QueryContext) -> Iterable[Row]:
    manager = context.services.get(EVENT_MANAGER)
    if manager is None:
        return []  # agent-cli in-process: no sources run here
    return manager.status()


EVENTS_STATUS_SPEC = TableSpec(
    name="agent_events_status",
    description="Event sources and event buffers of the agent: chosen mode, events seen, losses and drops.",
    columns=(
        Column("kind", "TEXT", "source or table"),
        Column("name", "TEXT", "Source name (audit, proc_connector, proc_poll, uevent) or event table name"),
        Column(
            "mode",
            "TEXT",
            "Source: owner, read-only, active, lost, failed, inactive, stopped; "
            "table: active, idle, unavailable, disabled, lost",
        ),
        Column("active", "INTEGER", "1 when the source runs or a running source feeds the table"),
        Column("tables", "TEXT", "Source: tables it feeds; table: the source feeding it"),
        Column("events_seen", "BIGINT", "Rows the source produced"),
        Column("kernel_lost", "BIGINT", "Source: the kernel's lost counter (audit) or socket overruns"),
        Column("parse_errors", "BIGINT", "Source: malformed records counted and skipped"),
        Column("shed", "BIGINT", "Source: events dropped unread to keep within the watchdog's CPU budget"),
        Column("buffered", "BIGINT", "Table: rows in the buffer now"),
        Column("added", "BIGINT", "Table: rows added since start"),
        Column("dropped_expired", "BIGINT", "Table: rows dropped by events_expiry"),
        Column("dropped_overflow", "BIGINT", "Table: rows pushed out by events_max"),
        Column("filtered_self", "BIGINT", "Table: the agent's own events, not stored"),
        Column("consumers", "INTEGER", "Table: scheduled queries reading it"),
        Column("detail", "TEXT", "Why this mode: the reason a source was chosen or refused"),
        Column(
            "extra",
            "TEXT",
            "Further counters, as a JSON object (table: missed = rows each scheduled query never read, "
            "pushed out by events_max first)",
        ),
    ),
    generate=_generate_status,
    examples=(
        "SELECT name, mode, events_seen, kernel_lost, detail FROM agent_events_status WHERE kind = 'source'",
        "SELECT name, buffered, dropped_overflow, dropped_expired FROM agent_events_status WHERE kind = 'table'",
    ),
)
