"""The daemon's status, defined once: what agentd builds and the control socket, agent-cli and the tables read.

* :class:`AgentInfo`, :class:`QueryStats`, :class:`Activity`: the live state the parts
  keep (facts fixed at startup; per-query counters; what runs now and the last resource
  sample).  :meth:`QueryStats.row` is the one way a query's counters become a row.
* :class:`Status` and its parts (:class:`AgentSummary`, :class:`QueryStatus`,
  :class:`SourceEntry`, :class:`BufferEntry`, :class:`EventsStatus`): frozen snapshots,
  sent over the control socket as JSON (:meth:`Status.to_json` / :meth:`Status.from_json`)
  and printed by :func:`format_status` (``agent-cli status``).
* :class:`StatusView`: builds a :class:`Status` from the parts; it is also the agent
  service the status tables read (``services[AGENT_SERVICE]``).

A new long-lived part (the collector uplink) adds its own frozen section here, a field
of :class:`Status` with a default (older readers ignore it, older daemons omit it), and
a provider to :class:`StatusView`.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventsources.base import SourceMode

from .typed_json import from_json, to_json

__all__ = [
    "VERSION",
    "Activity",
    "AgentInfo",
    "AgentSummary",
    "BufferEntry",
    "EventsStatus",
    "EventsView",
    "QueryStats",
    "QueryStatus",
    "SourceEntry",
    "Status",
    "StatusView",
    "TableMode",
    "UplinkStatus",
    "format_status",
]

VERSION = "0.1.0"


# ---------------------------------------------------------------------------
# Live state kept by the parts
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class AgentInfo:
    """Facts about the running daemon, fixed at startup (config fields change on reload)."""

    pid: int = field(default_factory=os.getpid)
    uuid: str = ""
    instance_id: str = ""
    version: str = VERSION
    host_identifier: str = ""
    config_path: str = ""
    config_hash: str = ""
    config_valid: bool = False
    start_time: int = field(default_factory=lambda: int(time.time()))
    state_dir: str = ""
    log_dir: str = ""
    socket: str = ""
    results_log: str = ""
    events_enabled: bool = False
    watchdog_enabled: bool = False


@dataclass(slots=True)
class QueryStats:
    """Counters of one scheduled query, updated after every run."""

    name: str
    query: str
    interval: int
    pack: str = ""
    snapshot: bool = False
    removed: bool = True
    denylist: bool = True
    executions: int = 0
    last_executed: int = 0  # unix seconds of the last completed run
    output_size: int = 0  # bytes of result lines written, cumulative
    wall_time_ms: int = 0
    last_wall_time_ms: int = 0
    user_time: int = 0  # ms
    last_user_time: int = 0
    system_time: int = 0  # ms
    last_system_time: int = 0
    memory_total: int = 0  # sum of last_memory over executions (for average_memory)
    last_memory: int = 0  # RSS bytes after the run
    last_rows: int = 0  # rows the query returned last time
    last_lines: int = 0  # result lines written last time (0 when nothing changed)
    errors: int = 0
    last_error: str = ""
    denylisted_until: float = 0.0  # unix time; 0 = not denylisted
    next_run: float = 0.0  # unix time of the next planned run

    def denylisted(self, now: float | None = None) -> bool:
        return self.denylisted_until > (time.time() if now is None else now)

    def record(
        self,
        *,
        finished: float,
        wall_ms: int,
        user_ms: int,
        system_ms: int,
        memory: int,
        rows: int,
        lines: int,
        output_bytes: int,
        error: str = "",
    ) -> None:
        """Account one run (successful or not)."""
        self.executions += 1
        self.last_executed = int(finished)
        self.last_wall_time_ms = wall_ms
        self.wall_time_ms += wall_ms
        self.last_user_time = user_ms
        self.user_time += user_ms
        self.last_system_time = system_ms
        self.system_time += system_ms
        self.last_memory = memory
        self.memory_total += memory
        self.last_rows = rows
        self.last_lines = lines
        self.output_size += output_bytes
        if error:
            self.errors += 1
        self.last_error = error

    @property
    def average_memory(self) -> int:
        return self.memory_total // self.executions if self.executions else 0

    def row(self, now: float) -> dict[str, Any]:
        """Every column osquery_schedule and agent_schedule show for this query (each table picks its own)."""
        denylisted = self.denylisted(now)
        return {
            "name": self.name,
            "pack": self.pack,
            "query": self.query,
            "interval": self.interval,
            "snapshot": int(self.snapshot),
            "removed": int(self.removed),
            "denylist": int(self.denylist),
            "executions": self.executions,
            "last_executed": self.last_executed,
            "next_run": int(self.next_run),
            "last_rows": self.last_rows,
            "last_lines": self.last_lines,
            "output_size": self.output_size,
            "wall_time": self.wall_time_ms // 1000,
            "wall_time_ms": self.wall_time_ms,
            "last_wall_time_ms": self.last_wall_time_ms,
            "user_time": self.user_time,
            "last_user_time": self.last_user_time,
            "system_time": self.system_time,
            "last_system_time": self.last_system_time,
            "average_memory": self.average_memory,
            "last_memory": self.last_memory,
            "errors": self.errors,
            "last_error": self.last_error,
            "denylisted": int(denylisted),
            "blacklisted": int(denylisted),
            "denylisted_until": int(self.denylisted_until) if denylisted else 0,
        }


@dataclass(slots=True)
class Activity:
    """What changes while agentd runs: the query on the worker thread, the watchdog's last sample."""

    running: str | None = None  # the scheduled query running now
    cpu_percent: float = 0.0  # of all cores, over the last watchdog interval
    rss: int = 0  # bytes, at the last watchdog sample (0: not sampled yet)
    event_cpu_budget: float | None = None  # CPU s/s the watchdog allows reading events (None: no budget)


# ---------------------------------------------------------------------------
# The status snapshot (control socket, agent-cli status)
# ---------------------------------------------------------------------------


class TableMode(enum.StrEnum):
    """What ``agent_events_status.mode`` says about an event table."""

    ACTIVE = "active"  # a running source feeds it
    IDLE = "idle"  # no source feeds it (none was started for it)
    UNAVAILABLE = "unavailable"  # no source can feed it here (e.g. socket_events without audit)
    DISABLED = "disabled"  # turned off by an option
    LOST = "lost"  # the source feeding it lost the kernel facility (audit taken by another process)


@dataclass(frozen=True, slots=True)
class AgentSummary:
    """The daemon itself: identity, paths, resource use, the query running now."""

    version: str = VERSION
    pid: int = 0
    uptime: float = 0.0  # seconds
    host_identifier: str = ""
    config_path: str = ""
    state_dir: str = ""
    results_log: str = ""
    socket: str = ""
    rss_bytes: int = 0
    cpu_percent: float = 0.0
    running: str | None = None
    events: str = ""  # the event manager's choice of sources, and why
    event_cpu_budget: float | None = None  # CPU s/s the watchdog allows reading events (None: no budget)


@dataclass(frozen=True, slots=True)
class QueryStatus:
    """One scheduled query: its interval (after splay), runs, last result, errors, denylisting."""

    name: str
    pack: str = ""
    interval: int = 0
    executions: int = 0
    last_executed: int = 0
    last_rows: int = 0
    last_lines: int = 0
    wall_time_ms: int = 0
    last_wall_time_ms: int = 0
    denylisted: bool = False
    denylisted_until: int = 0
    errors: int = 0
    last_error: str = ""
    next_run: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, interval: int | None = None) -> QueryStatus:
        """From :meth:`QueryStats.row`; ``interval`` is the scheduler's (splayed) one when known."""
        return cls(
            name=row["name"],
            pack=row["pack"],
            interval=row["interval"] if interval is None else interval,
            executions=row["executions"],
            last_executed=row["last_executed"],
            last_rows=row["last_rows"],
            last_lines=row["last_lines"],
            wall_time_ms=row["wall_time_ms"],
            last_wall_time_ms=row["last_wall_time_ms"],
            denylisted=bool(row["denylisted"]),
            denylisted_until=row["denylisted_until"],
            errors=row["errors"],
            last_error=row["last_error"],
            next_run=row["next_run"],
        )


@dataclass(frozen=True, slots=True)
class SourceEntry:
    """One event source (an ``agent_events_status`` row of kind ``source``)."""

    name: str
    mode: SourceMode
    active: bool = False  # the source delivers rows now (mode.feeding)
    tables: tuple[str, ...] = ()
    events_seen: int = 0
    kernel_lost: int = 0
    parse_errors: int = 0
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    shed: int = 0  # events dropped unread to keep within the watchdog's CPU budget
    degraded: int = 0  # rows made without the /proc columns, to keep within it


@dataclass(frozen=True, slots=True)
class BufferEntry:
    """One event table's buffer (an ``agent_events_status`` row of kind ``table``)."""

    name: str
    mode: TableMode
    active: bool = False  # a running source feeds it
    source: str | None = None  # the source feeding it
    buffered: int = 0
    added: int = 0
    dropped_expired: int = 0
    dropped_overflow: int = 0
    filtered_self: int = 0
    consumers: int = 0
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventsStatus:
    """Event sources (running, then refused or stopped) and the event tables' buffers."""

    sources: tuple[SourceEntry, ...] = ()
    buffers: tuple[BufferEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class UplinkStatus:
    """The uplink to collectord (agent.uplink): where, in which state, what waits and what was dropped."""

    url: str = ""
    state: str = ""  # connecting | connected | disconnected | revoked | stopped
    last_ack: int = 0  # highest sequence the collector acknowledged
    last_ack_time: float = 0.0
    queued_batches: int = 0
    queued_rows: int = 0
    queued_bytes: int = 0
    dropped_batches: int = 0  # dropped by the queue's bounds (oldest first), reported to the collector
    dropped_rows: int = 0
    sent_batches: int = 0  # since agentd started
    subscriptions: int = 0  # collector subscriptions this host runs
    connected_since: float = 0.0
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class Status:
    """``agent-cli status``: the agent, its schedule, its event sources and buffers, its uplink."""

    agent: AgentSummary = field(default_factory=AgentSummary)
    schedule: tuple[QueryStatus, ...] = ()
    events: EventsStatus = field(default_factory=EventsStatus)
    uplink: UplinkStatus | None = None  # None: no collector configured

    def to_json(self) -> dict[str, Any]:
        """JSON values (the control socket's ``status`` reply)."""
        return to_json(self)

    @classmethod
    def from_json(cls, data: Any) -> Status:
        """Back from JSON values; :class:`~agent.typed_json.DecodeError` names a field that does not fit."""
        return from_json(cls, data, "status")


# ---------------------------------------------------------------------------
# The view that builds it
# ---------------------------------------------------------------------------


class EventsView(Protocol):
    """What the status needs from the event manager."""

    @property
    def choice(self) -> str: ...

    def report(self) -> EventsStatus: ...


class ScheduleView(Protocol):
    """What the status needs from the schedule."""

    @property
    def stats(self) -> Mapping[str, QueryStats]: ...

    def statuses(self, now: float) -> tuple[QueryStatus, ...]: ...


class PacksView(Protocol):
    """What osquery_packs shows."""

    @property
    def rows(self) -> Sequence[Mapping[str, Any]]: ...


class StatusView:
    """Builds :class:`Status` from the parts; also the status tables' agent service (AgentView).

    It holds references, not copies: every :meth:`build` (and every status-table query)
    sees the parts as they are now.
    """

    def __init__(
        self,
        info: AgentInfo,
        activity: Activity,
        *,
        schedule: ScheduleView,
        packs: PacksView,
        events: EventsView,
        flags: Sequence[Mapping[str, Any]],
        clock: Callable[[], float] = time.time,
        own_rss: Callable[[], int] = lambda: 0,
    ) -> None:
        self.info = info
        self.activity = activity
        self.flags = flags
        self._schedule = schedule
        self._packs = packs
        self._events = events
        self._clock = clock
        self._own_rss = own_rss
        self._started = time.monotonic()
        self._uplink: Callable[[], UplinkStatus] | None = None

    def set_uplink(self, provider: Callable[[], UplinkStatus] | None) -> None:
        """The uplink's section (its component sets it when it starts, clears it when it stops)."""
        self._uplink = provider

    @property
    def uplink(self) -> UplinkStatus | None:
        return self._uplink() if self._uplink is not None else None

    # AgentView (the status tables)
    @property
    def queries(self) -> Mapping[str, QueryStats]:
        return self._schedule.stats

    @property
    def packs(self) -> Sequence[Mapping[str, Any]]:
        return self._packs.rows

    def build(self) -> Status:
        """The status now."""
        info, activity = self.info, self.activity
        agent = AgentSummary(
            version=info.version,
            pid=info.pid,
            uptime=round(time.monotonic() - self._started, 1),
            host_identifier=info.host_identifier,
            config_path=info.config_path or "<embedded default>",
            state_dir=info.state_dir,
            results_log=info.results_log,
            socket=info.socket,
            rss_bytes=activity.rss or self._own_rss(),
            cpu_percent=round(activity.cpu_percent, 2),
            event_cpu_budget=activity.event_cpu_budget,
            running=activity.running,
            events=self._events.choice,
        )
        return Status(
            agent=agent,
            schedule=self._schedule.statuses(self._clock()),
            events=self._events.report(),
            uplink=self.uplink,
        )


# ---------------------------------------------------------------------------
# Human-readable status (agent-cli status)
# ---------------------------------------------------------------------------


def _when(ts: float) -> str:
    if not ts:
        return "never"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))
    except (ValueError, OverflowError):
        return str(ts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [[str("" if v is None else v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return lines


def format_status(status: Status) -> str:
    """``agent-cli --connect SOCKET status`` output: agent, schedule, event sources, buffers."""
    agent = status.agent
    lines = [
        f"agentd {agent.version} pid {agent.pid}, up {int(agent.uptime)} s"
        + (f", host {agent.host_identifier}" if agent.host_identifier else "")
    ]
    labels: tuple[tuple[str, Any], ...] = (
        ("config", agent.config_path),
        ("state dir", agent.state_dir),
        ("results log", agent.results_log),
        ("socket", agent.socket),
        ("memory (RSS)", f"{agent.rss_bytes / 1048576:.1f} MB"),
        ("CPU", f"{agent.cpu_percent:g} % (all cores, last watchdog interval)"),
        (
            "event budget",
            f"{100 * agent.event_cpu_budget:.1f} % of one core for reading events (watchdog: the rest is shed)"
            if agent.event_cpu_budget is not None
            else None,
        ),
        ("running now", agent.running),
    )
    for label, value in labels:
        if value is not None:
            lines.append(f"  {label + ':':<14}{value}")
    lines.append(f"schedule ({len(status.schedule)} queries):")
    rows: list[tuple[Any, ...]]
    if status.schedule:
        rows = [
            (
                q.name,
                q.interval,
                q.executions,
                _when(q.last_executed),
                q.last_rows,
                q.last_wall_time_ms,
                ("until " + _when(q.denylisted_until)) if q.denylisted else "no",
                q.last_error,
            )
            for q in status.schedule
        ]
        lines += _table(("name", "interval", "runs", "last run", "rows", "wall ms", "denylisted", "error"), rows)
    sources = status.events.sources
    lines.append(f"event sources ({len(sources)}):")
    if sources:
        rows = [
            (s.name, s.mode, ",".join(s.tables), s.events_seen, s.kernel_lost, s.shed, s.parse_errors, s.detail)
            for s in sources
        ]
        lines += _table(("source", "mode", "tables", "events", "lost", "shed", "errors", "detail"), rows)
    buffers = status.events.buffers
    lines.append(f"event buffers ({len(buffers)}):")
    if buffers:
        rows = [(b.name, b.buffered, b.added, b.dropped_overflow, b.dropped_expired, b.consumers) for b in buffers]
        lines += _table(("table", "buffered", "added", "dropped(max)", "expired", "consumers"), rows)
    uplink = status.uplink
    if uplink is not None:
        lines.append(f"collector uplink: {uplink.state} {uplink.url}")
        ack = f"seq {uplink.last_ack}" + (f" at {_when(uplink.last_ack_time)}" if uplink.last_ack_time else "")
        details: tuple[tuple[str, Any], ...] = (
            ("last ack", ack),
            ("queued", f"{uplink.queued_rows} rows in {uplink.queued_batches} batches ({uplink.queued_bytes} bytes)"),
            ("dropped", f"{uplink.dropped_rows} rows in {uplink.dropped_batches} batches (queue bounds)"),
            ("sent", f"{uplink.sent_batches} batches since start"),
            ("subscriptions", uplink.subscriptions),
            ("last error", uplink.last_error or None),
        )
        for label, value in details:
            if value is not None:
                lines.append(f"  {label + ':':<16}{value}")
    return "\n".join(lines) + "\n"
