"""Tables about the agent itself: agent_info, agent_schedule, and osquery's utility tables.

``osquery_info``, ``osquery_schedule``, ``osquery_packs`` and ``osquery_flags`` keep
osquery's exact columns so its monitoring pack runs unchanged; ``agent_info`` and
``agent_schedule`` are our own, richer views of the same state.  All read the daemon's
state from ``context.services[AGENT_SERVICE]`` (an :class:`AgentView`: the daemon's
:class:`~agent.status.StatusView`); ``osquery_events`` reads the event manager's report
(``services[EVENT_MANAGER]``).  Without a daemon (``agent-cli query``) osquery_info and
agent_info describe the current process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from tables.spec import Column, QueryContext, Row, TableSpec

from .services import AGENT_SERVICE, EVENT_MANAGER
from .status import AgentInfo, EventsView, QueryStats
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

#: osquery's PlatformType bits for Linux: TYPE_POSIX (0x01) | TYPE_LINUX (0x08).
PLATFORM_MASK_LINUX = 9


class AgentView(Protocol):
    """What the status tables read from ``services[AGENT_SERVICE]`` (the daemon's :class:`~agent.status.StatusView`)."""

    @property
    def info(self) -> AgentInfo: ...

    @property
    def queries(self) -> Mapping[str, QueryStats]: ...

    @property
    def packs(self) -> Sequence[Mapping[str, Any]]: ...  # osquery_packs rows

    @property
    def flags(self) -> Sequence[Mapping[str, Any]]: ...  # osquery_flags rows


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
        **_uplink_columns(context),
    }


def _uplink_columns(context: QueryContext) -> dict[str, Any]:
    agent = _agent(context)
    uplink = getattr(agent, "uplink", None) if agent is not None else None
    if uplink is None:
        return dict.fromkeys(
            ("uplink_url", "uplink_state", "uplink_last_ack", "uplink_queued_rows", "uplink_dropped_rows")
        )
    return {
        "uplink_url": uplink.url,
        "uplink_state": uplink.state,
        "uplink_last_ack": uplink.last_ack,
        "uplink_queued_rows": uplink.queued_rows,
        "uplink_dropped_rows": uplink.dropped_rows,
    }


# ---------------------------------------------------------------------------
# osquery_schedule / agent_schedule
# ---------------------------------------------------------------------------


def _queries(context: QueryContext) -> list[QueryStats]:
    agent = _agent(context)
    if agent is None:
        return []
    return sorted(agent.queries.values(), key=lambda q: q.name)


def _schedule_rows(context: QueryContext, columns: Sequence[Column]) -> Iterable[Row]:
    """The queries' rows (:meth:`QueryStats.row`), each cut to one table's columns."""
    now = time.time()
    names = [c.name for c in columns]
    for q in _queries(context):
        row = q.row(now)
        yield {name: row[name] for name in names}


def generate_osquery_schedule(context: QueryContext) -> Iterable[Row]:
    return _schedule_rows(context, OSQUERY_SCHEDULE.columns)


def generate_agent_schedule(context: QueryContext) -> Iterable[Row]:
    return _schedule_rows(context, AGENT_SCHEDULE.columns)


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
    """Publishers (event sources) and subscribers (event tables) from the event manager's report."""
    manager: EventsView | None = context.services.get(EVENT_MANAGER)
    if manager is None:
        return
    report = manager.report()
    for source in report.sources:
        yield {
            "name": source.name,
            "publisher": source.name,
            "type": "publisher",
            "subscriptions": len(source.tables),
            "events": source.events_seen,
            "refreshes": 0,
            "active": int(source.active),
        }
    for buffer in report.buffers:
        yield {
            "name": buffer.name,
            "publisher": buffer.source or "",
            "type": "subscriber",
            "subscriptions": buffer.consumers,
            "events": buffer.added,
            "refreshes": 0,
            "active": int(buffer.active),
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
        Column("uplink_url", "TEXT", "Collector the uplink uses (NULL: no collector configured)"),
        Column("uplink_state", "TEXT", "connecting, connected, disconnected, revoked or stopped"),
        Column("uplink_last_ack", "BIGINT", "Highest result sequence the collector acknowledged"),
        Column("uplink_queued_rows", "BIGINT", "Result rows waiting for the collector"),
        Column("uplink_dropped_rows", "BIGINT", "Rows dropped by the uplink queue's bounds (reported)"),
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

    if not dataclasses.is_dataclass(options) or isinstance(options, type):
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
