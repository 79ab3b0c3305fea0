"""Tables about the agent itself: agent_info, agent_schedule, and osquery's utility tables.

``osquery_info``, ``osquery_schedule``, ``osquery_packs`` and ``osquery_flags`` keep
osquery's exact columns so its monitoring pack runs unchanged; ``agent_info`` and
``agent_schedule`` are our own, richer views of the same state.  All read the daemon's
state from ``context.services["agent"]`` (an :class:`AgentView`); without a daemon
(``agent-cli query``) osquery_info and agent_info describe the current process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tables.spec import Column, QueryContext, Row, TableSpec

from .watchdog import own_rss

__all__ = [
    "AGENT_SERVICE",
    "SPECS",
    "AgentInfo",
    "AgentView",
    "QueryStats",
    "build_distro",
    "flag_rows",
]

#: Key of the daemon's state in QueryContext.services.
AGENT_SERVICE = "agent"
VERSION = "0.1.0"
#: osquery's PlatformType bits for Linux: TYPE_POSIX (0x01) | TYPE_LINUX (0x08).
PLATFORM_MASK_LINUX = 9


@dataclass(slots=True)
class QueryStats:
    """Counters of one scheduled query, updated by the daemon after every run."""

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

    def as_status(self, now: float | None = None) -> dict[str, Any]:
        """The control socket's per-query status entry."""
        return {
            "name": self.name,
            "pack": self.pack,
            "interval": self.interval,
            "executions": self.executions,
            "last_executed": self.last_executed,
            "last_rows": self.last_rows,
            "last_lines": self.last_lines,
            "wall_time_ms": self.wall_time_ms,
            "last_wall_time_ms": self.last_wall_time_ms,
            "denylisted": self.denylisted(now),
            "denylisted_until": self.denylisted_until if self.denylisted(now) else 0,
            "errors": self.errors,
            "last_error": self.last_error,
            "next_run": self.next_run,
        }


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


class AgentView(Protocol):
    """What the status tables read from ``services["agent"]`` (the daemon's state)."""

    info: AgentInfo
    queries: Mapping[str, QueryStats]
    packs: Sequence[Mapping[str, Any]]  # osquery_packs rows
    flags: Sequence[Mapping[str, Any]]  # osquery_flags rows


def build_distro(os_release: str = "/etc/os-release") -> str:
    """``ID`` + ``VERSION_ID`` from os-release (e.g. ``debian12``), osquery's build_distro."""
    values: dict[str, str] = {}
    try:
        with open(os_release, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep:
                    values[key] = value.strip().strip('"')
    except OSError:
        return ""
    return values.get("ID", "") + values.get("VERSION_ID", "").split(".")[0]


def _agent(context: QueryContext) -> AgentView | None:
    return context.services.get(AGENT_SERVICE)


def _info(context: QueryContext) -> AgentInfo:
    agent = _agent(context)
    return agent.info if agent is not None else AgentInfo()


def _self_usage() -> tuple[int, int, int]:
    """(resident bytes, user ms, system ms) of this process."""
    t = os.times()
    return own_rss(), int(t.user * 1000), int(t.system * 1000)


# ---------------------------------------------------------------------------
# osquery_info / agent_info
# ---------------------------------------------------------------------------


def generate_osquery_info(context: QueryContext) -> Iterable[Row]:
    info = _info(context)
    yield {
        "pid": info.pid,
        "uuid": info.uuid,
        "instance_id": info.instance_id,
        "version": info.version,
        "config_hash": info.config_hash,
        "config_valid": int(info.config_valid),
        "extensions": "inactive",
        "build_platform": "linux",
        "build_distro": build_distro(context.paths.host("/etc/os-release")),
        "start_time": info.start_time,
        "watcher": -1,  # no separate watcher process: agentd watches itself
        "platform_mask": PLATFORM_MASK_LINUX,
    }


def generate_agent_info(context: QueryContext) -> Iterable[Row]:
    info = _info(context)
    rss, user_ms, system_ms = _self_usage()
    now = time.time()
    yield {
        "pid": info.pid,
        "version": info.version,
        "uuid": info.uuid,
        "instance_id": info.instance_id,
        "host_identifier": info.host_identifier,
        "config_path": info.config_path,
        "config_hash": info.config_hash,
        "config_valid": int(info.config_valid),
        "start_time": info.start_time,
        "uptime": max(0, int(now - info.start_time)),
        "state_dir": info.state_dir,
        "log_dir": info.log_dir,
        "socket": info.socket,
        "results_log": info.results_log,
        "events_enabled": int(info.events_enabled),
        "watchdog_enabled": int(info.watchdog_enabled),
        "resident_size": rss,
        "user_time": user_ms,
        "system_time": system_ms,
        "daemon": int(_agent(context) is not None),
    }


# ---------------------------------------------------------------------------
# osquery_schedule / agent_schedule
# ---------------------------------------------------------------------------


def _queries(context: QueryContext) -> list[QueryStats]:
    agent = _agent(context)
    if agent is None:
        return []
    return sorted(agent.queries.values(), key=lambda q: q.name)


def generate_osquery_schedule(context: QueryContext) -> Iterable[Row]:
    now = time.time()
    for q in _queries(context):
        denylisted = int(q.denylisted(now))
        yield {
            "name": q.name,
            "query": q.query,
            "interval": q.interval,
            "executions": q.executions,
            "last_executed": q.last_executed,
            "denylisted": denylisted,
            "blacklisted": denylisted,
            "output_size": q.output_size,
            "wall_time": q.wall_time_ms // 1000,
            "wall_time_ms": q.wall_time_ms,
            "last_wall_time_ms": q.last_wall_time_ms,
            "user_time": q.user_time,
            "last_user_time": q.last_user_time,
            "system_time": q.system_time,
            "last_system_time": q.last_system_time,
            "average_memory": q.average_memory,
            "last_memory": q.last_memory,
        }


def generate_agent_schedule(context: QueryContext) -> Iterable[Row]:
    now = time.time()
    for q in _queries(context):
        denylisted = q.denylisted(now)
        yield {
            "name": q.name,
            "pack": q.pack,
            "query": q.query,
            "interval": q.interval,
            "snapshot": int(q.snapshot),
            "removed": int(q.removed),
            "denylist": int(q.denylist),
            "executions": q.executions,
            "last_executed": q.last_executed,
            "next_run": int(q.next_run),
            "last_rows": q.last_rows,
            "last_lines": q.last_lines,
            "output_size": q.output_size,
            "wall_time_ms": q.wall_time_ms,
            "last_wall_time_ms": q.last_wall_time_ms,
            "user_time": q.user_time,
            "system_time": q.system_time,
            "last_memory": q.last_memory,
            "errors": q.errors,
            "last_error": q.last_error,
            "denylisted": int(denylisted),
            "denylisted_until": int(q.denylisted_until) if denylisted else 0,
        }


# ---------------------------------------------------------------------------
# osquery_packs / osquery_flags
# ---------------------------------------------------------------------------

_PACK_COLUMNS = ("name", "platform", "version", "shard", "discovery_cache_hits", "discovery_executions", "active")
_FLAG_COLUMNS = ("name", "type", "description", "default_value", "value", "shell_only")


def generate_osquery_packs(context: QueryContext) -> Iterable[Row]:
    agent = _agent(context)
    for pack in agent.packs if agent is not None else ():
        yield {c: pack.get(c) for c in _PACK_COLUMNS}


def generate_osquery_flags(context: QueryContext) -> Iterable[Row]:
    agent = _agent(context)
    for flag in agent.flags if agent is not None else ():
        yield {c: flag.get(c) for c in _FLAG_COLUMNS}


def generate_osquery_events(context: QueryContext) -> Iterable[Row]:
    """Publishers (event sources) and subscribers (event tables) from the event manager's status."""
    manager = context.services.get("event_manager")
    if manager is None:
        return
    for row in manager.status():
        if row.get("kind") == "source":
            yield {
                "name": row.get("name"),
                "publisher": row.get("name"),
                "type": "publisher",
                "subscriptions": len([t for t in (row.get("tables") or "").split(",") if t]),
                "events": row.get("events_seen", 0),
                "refreshes": 0,
                "active": row.get("active", 0),
            }
        elif row.get("kind") == "table":
            yield {
                "name": row.get("name"),
                "publisher": row.get("tables") or "",
                "type": "subscriber",
                "subscriptions": row.get("consumers", 0),
                "events": row.get("added", 0),
                "refreshes": 0,
                "active": row.get("active", 0),
            }


# ---------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------

OSQUERY_INFO = TableSpec(
    name="osquery_info",
    description="Top level information about the running agent, in osquery's columns.",
    columns=(
        Column("pid", "INTEGER", "Process (or thread/handle) ID"),
        Column("uuid", "TEXT", "Unique ID provided by the system"),
        Column("instance_id", "TEXT", "Unique, long-lived ID per instance of the agent"),
        Column("version", "TEXT", "Agent version"),
        Column("config_hash", "TEXT", "Hash of the working configuration state"),
        Column("config_valid", "INTEGER", "1 if the config was loaded and considered valid, else 0"),
        Column("extensions", "TEXT", "Extensions status (always inactive)"),
        Column("build_platform", "TEXT", "Build platform"),
        Column("build_distro", "TEXT", "Platform distribution name and major version"),
        Column("start_time", "INTEGER", "UNIX time in seconds when the process started"),
        Column("watcher", "INTEGER", "Process ID of a separate watcher process, -1 when none"),
        Column("platform_mask", "INTEGER", "The osquery platform bitmask"),
    ),
    generate=generate_osquery_info,
    examples=("SELECT pid, version, config_valid FROM osquery_info",),
)

OSQUERY_SCHEDULE = TableSpec(
    name="osquery_schedule",
    description="Information about the queries the agent schedules, in osquery's columns.",
    columns=(
        Column("name", "TEXT", "The given name for this query"),
        Column("query", "TEXT", "The exact query to run"),
        Column("interval", "INTEGER", "The interval in seconds to run this query, not an exact interval"),
        Column("executions", "BIGINT", "Number of times the query was executed"),
        Column("last_executed", "BIGINT", "UNIX time stamp in seconds of the last completed execution"),
        Column("denylisted", "INTEGER", "1 if the query is denylisted else 0"),
        Column("output_size", "BIGINT", "Cumulative total number of bytes generated by the resultant rows"),
        Column("wall_time", "BIGINT", "Total wall time in seconds spent executing (deprecated)"),
        Column("wall_time_ms", "BIGINT", "Total wall time in milliseconds spent executing"),
        Column("last_wall_time_ms", "BIGINT", "Wall time in milliseconds of the latest execution"),
        Column("user_time", "BIGINT", "Total user time in milliseconds spent executing"),
        Column("last_user_time", "BIGINT", "User time in milliseconds of the latest execution"),
        Column("system_time", "BIGINT", "Total system time in milliseconds spent executing"),
        Column("last_system_time", "BIGINT", "System time in milliseconds of the latest execution"),
        Column("average_memory", "BIGINT", "Average resident bytes left allocated after collecting results"),
        Column("last_memory", "BIGINT", "Resident bytes left allocated after the latest execution"),
        Column("blacklisted", "INTEGER", "Alias of denylisted", hidden=True),
    ),
    generate=generate_osquery_schedule,
    examples=("SELECT name, executions, wall_time_ms, denylisted FROM osquery_schedule",),
)

OSQUERY_PACKS = TableSpec(
    name="osquery_packs",
    description="Information about the query packs the agent loaded, in osquery's columns.",
    columns=(
        Column("name", "TEXT", "The given name for this query pack"),
        Column("platform", "TEXT", "Platforms this query is supported on"),
        Column("version", "TEXT", "Minimum osquery version that this query will run on"),
        Column("shard", "INTEGER", "Shard restriction limit, 1-100, 0 meaning no restriction"),
        Column("discovery_cache_hits", "INTEGER", "Times the discovery queries used cached values"),
        Column("discovery_executions", "INTEGER", "Times the discovery queries were executed"),
        Column("active", "INTEGER", "1 if the pack is active (platform, version and discovery match), else 0"),
    ),
    generate=generate_osquery_packs,
)

OSQUERY_FLAGS = TableSpec(
    name="osquery_flags",
    description="Configurable options that modify the agent's behaviour, in osquery's columns.",
    columns=(
        Column("name", "TEXT", "Flag name"),
        Column("type", "TEXT", "Flag type"),
        Column("description", "TEXT", "Flag description"),
        Column("default_value", "TEXT", "Flag default value"),
        Column("value", "TEXT", "Flag value"),
        Column("shell_only", "INTEGER", "Is the flag shell only?"),
    ),
    generate=generate_osquery_flags,
)

OSQUERY_EVENTS = TableSpec(
    name="osquery_events",
    description="Event publishers (sources) and subscribers (event tables) of the agent, in osquery's columns.",
    columns=(
        Column("name", "TEXT", "Event publisher or subscriber name"),
        Column("publisher", "TEXT", "Name of the associated publisher"),
        Column("type", "TEXT", "Either publisher or subscriber"),
        Column("subscriptions", "INTEGER", "Tables a publisher feeds, or scheduled queries reading a subscriber"),
        Column("events", "INTEGER", "Number of events emitted or received since the agent started"),
        Column("refreshes", "INTEGER", "Publisher only: number of runloop restarts"),
        Column("active", "INTEGER", "1 if the publisher or subscriber is active else 0"),
    ),
    generate=generate_osquery_events,
    examples=("SELECT name, publisher, type, subscriptions, events, active FROM osquery_events",),
)

AGENT_INFO = TableSpec(
    name="agent_info",
    description="The running agent: identity, configuration, paths and its own resource use.",
    columns=(
        Column("pid", "INTEGER", "Process ID of the agent"),
        Column("version", "TEXT", "Agent version"),
        Column("uuid", "TEXT", "Host UUID"),
        Column("instance_id", "TEXT", "Unique, long-lived ID of this agent's state"),
        Column("host_identifier", "TEXT", "hostIdentifier written in result lines"),
        Column("config_path", "TEXT", "Config file in use (empty: the embedded default)"),
        Column("config_hash", "TEXT", "SHA-1 of the config text"),
        Column("config_valid", "INTEGER", "1 if the config loaded"),
        Column("start_time", "INTEGER", "UNIX time the agent started"),
        Column("uptime", "BIGINT", "Seconds since the agent started"),
        Column("state_dir", "TEXT", "State directory (state database)"),
        Column("log_dir", "TEXT", "Log directory (results log)"),
        Column("socket", "TEXT", "Control socket path"),
        Column("results_log", "TEXT", "Results log path"),
        Column("events_enabled", "INTEGER", "1 if event sources run"),
        Column("watchdog_enabled", "INTEGER", "1 if the resource watchdog is enforced"),
        Column("resident_size", "BIGINT", "Resident memory of the agent in bytes"),
        Column("user_time", "BIGINT", "CPU time in user mode, ms"),
        Column("system_time", "BIGINT", "CPU time in kernel mode, ms"),
        Column("daemon", "INTEGER", "1 inside agentd, 0 in an ad-hoc agent-cli process"),
    ),
    generate=generate_agent_info,
    examples=("SELECT pid, uptime, resident_size FROM agent_info",),
)

AGENT_SCHEDULE = TableSpec(
    name="agent_schedule",
    description="Every scheduled query of the agent with its counters, errors and denylist state.",
    columns=(
        Column("name", "TEXT", "Scheduled query name (pack queries: pack_<pack>_<query>)"),
        Column("pack", "TEXT", "Pack the query comes from (empty: the main schedule)"),
        Column("query", "TEXT", "The SQL"),
        Column("interval", "INTEGER", "Interval in seconds"),
        Column("snapshot", "INTEGER", "1 for snapshot queries"),
        Column("removed", "INTEGER", "1 if removed rows are reported"),
        Column("denylist", "INTEGER", "1 if the watchdog may denylist the query"),
        Column("executions", "BIGINT", "Runs so far"),
        Column("last_executed", "BIGINT", "UNIX time of the last completed run"),
        Column("next_run", "BIGINT", "UNIX time of the next planned run"),
        Column("last_rows", "BIGINT", "Rows the last run returned"),
        Column("last_lines", "BIGINT", "Result lines the last run wrote"),
        Column("output_size", "BIGINT", "Bytes of result lines written, cumulative"),
        Column("wall_time_ms", "BIGINT", "Total wall time, ms"),
        Column("last_wall_time_ms", "BIGINT", "Wall time of the last run, ms"),
        Column("user_time", "BIGINT", "Total user CPU time, ms"),
        Column("system_time", "BIGINT", "Total system CPU time, ms"),
        Column("last_memory", "BIGINT", "Resident bytes after the last run"),
        Column("errors", "BIGINT", "Runs that failed"),
        Column("last_error", "TEXT", "Error of the last run (empty when it succeeded)"),
        Column("denylisted", "INTEGER", "1 while the query is denylisted"),
        Column("denylisted_until", "BIGINT", "UNIX time the denylisting ends (0: not denylisted)"),
    ),
    generate=generate_agent_schedule,
    examples=("SELECT name, executions, last_rows, last_error, denylisted FROM agent_schedule",),
)

SPECS: tuple[TableSpec, ...] = (
    AGENT_INFO,
    AGENT_SCHEDULE,
    OSQUERY_EVENTS,
    OSQUERY_FLAGS,
    OSQUERY_INFO,
    OSQUERY_PACKS,
    OSQUERY_SCHEDULE,
)


def flag_rows(options: Any) -> list[dict[str, Any]]:
    """osquery_flags rows from an options dataclass (agent.options.Options): name, type, default, value."""
    import dataclasses

    if not dataclasses.is_dataclass(options):
        return []
    defaults = type(options)()
    rows = []
    for f in dataclasses.fields(options):
        if f.name == "custom":
            continue
        value = getattr(options, f.name)
        kind = {bool: "bool", int: "int32", float: "double"}.get(type(value), "string")
        rows.append(
            {
                "name": f.name,
                "type": kind,
                "description": "",
                "default_value": _flag_text(getattr(defaults, f.name)),
                "value": _flag_text(value),
                "shell_only": 0,
            }
        )
    return rows


def _flag_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
